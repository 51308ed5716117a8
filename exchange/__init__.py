"""The exchange: composition root, HTTP service and CLI. Nothing imports it."""

from exchange import _native_order  # noqa: F401 -- must precede anything that loads regopy
from exchange.app import create_app
from exchange.runtime import Runtime
from exchange.settings import Settings

__all__ = ["Runtime", "Settings", "create_app"]
