"""``python -m exchange.cli`` is the ``ibx`` command."""

from exchange.cli import main

main()
