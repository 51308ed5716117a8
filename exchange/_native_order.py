"""Load native libraries in an order that works.

Measured on this platform (tenseal 0.3.18, regopy 1.5.2): importing ``regopy``
and then ``tenseal`` in one process aborts it in the C++ runtime
(``free(): invalid pointer``); the reverse order works and both libraries
then run correctly. Every ibx process enters through ``exchange`` (the CLI,
the server, the demo, the tests), so ``exchange/__init__.py`` installs
:func:`install`: an import hook that loads TenSEAL just before the first
import of regopy. A process that never evaluates Rego (``ibx --help``,
``ibx ledger checkpoint``) therefore loads neither, and one that does gets
them in the working order. The regression test is
``tests/exchange/test_native_order.py``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["install"]


class _TensealBeforeRegopy:
    """Imports ``tenseal`` the moment something first imports ``regopy``; then steps aside.

    A meta-path finder needs only ``find_spec``; not deriving from
    ``importlib.abc.MetaPathFinder`` spares every ``ibx`` start ~18 ms of imports.
    """

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> None:
        """Load TenSEAL first when ``regopy`` is asked for; never find anything itself."""
        if fullname == "regopy":  # the ordinary finders then import regopy itself
            _remove_hook()
            importlib.import_module("tenseal")


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TensealBeforeRegopy)]


def install() -> None:
    """Make sure TenSEAL is loaded before regopy in this process (idempotent)."""
    if "regopy" in sys.modules:
        importlib.import_module("tenseal")  # too late to order; fails as loudly as before
        return
    if not any(isinstance(f, _TensealBeforeRegopy) for f in sys.meta_path):
        sys.meta_path.insert(0, _TensealBeforeRegopy())
