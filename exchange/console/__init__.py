"""The web console (``/console``): server-rendered pages per duty (docs/console.md).

Security officers, auditors, enterprises and sub-brains work in a browser.
Every page reads and writes through the HTTPS API as the signed-in identity
(:mod:`exchange.console.api`), so the console can do nothing that identity's
token could not; this package imports no service (import-linter checks).
"""

from exchange.console.app import DUTIES, install_console

__all__ = ["DUTIES", "install_console"]
