"""A party command whose party 2 never answers (for the deadline test); others run normally."""

import sys
import time

from mpc._party_main import main

if __name__ == "__main__":
    if sys.argv[sys.argv.index("--index") + 1] == "2":
        time.sleep(600)
    sys.exit(main(sys.argv[1:]))
