"""``python -m exchange.demo`` (``make demo``); ``python -m exchange.demo console``
(``make console``): serve the world the demo left again."""

import sys

if sys.argv[1:] == ["console"]:
    from exchange.demo.console import main as serve_again

    sys.exit(serve_again())

from exchange.demo import main

sys.exit(main())
