"""``python -m exchange.demo``."""

import sys

from exchange.demo import main

sys.exit(main())
