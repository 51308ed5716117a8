"""Load native libraries in an order that works.

Measured on this platform (tenseal 0.3.18, regopy 1.5.2): importing ``regopy``
and then ``tenseal`` in one process aborts it in the C++ runtime
(``free(): invalid pointer``); the reverse order works and both libraries
then run correctly. Every ibx process enters through ``exchange`` (the CLI,
the server, the demo, the tests), so loading TenSEAL here, before anything
can import regopy, fixes the order once for all of them. The regression test
is ``tests/exchange/test_native_order.py``.
"""

from __future__ import annotations

import tenseal  # noqa: F401 -- imported for its side effect: native load order

__all__: list[str] = []
