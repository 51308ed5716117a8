"""The exchange: composition root, HTTP service and CLI. Nothing imports it.

The heavy parts (FastAPI, the runtime and every package it wires) load on
first use, so ``ibx --help`` and simple commands start at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exchange import _native_order

_native_order.install()  # before anything can load regopy

if TYPE_CHECKING:
    from exchange.app import create_app
    from exchange.runtime import Runtime
    from exchange.settings import Settings

__all__ = ["Runtime", "Settings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from exchange.app import create_app

        return create_app
    if name == "Runtime":
        from exchange.runtime import Runtime

        return Runtime
    if name == "Settings":
        from exchange.settings import Settings

        return Settings
    raise AttributeError(f"module 'exchange' has no attribute {name!r}")
