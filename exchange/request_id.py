"""The request id: one per HTTP request, in its response and in every log line it causes.

A caller may send ``X-Request-ID``; a well-formed one (:data:`WELL_FORMED`) is
kept so that a client's and the exchange's logs can be joined, anything else
is replaced by a fresh random id. The id lives in a context variable for the
duration of the request (sync routes run in a thread pool that copies the
context), and :func:`install_log_context` makes every log record carry it: as
``record.request_id`` for formats that name it, and as a ``[id]`` prefix of the
message so that the formats already configured (the CLI's, uvicorn's) show it
without change.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "HEADER",
    "NO_REQUEST",
    "WELL_FORMED",
    "current_request_id",
    "in_request",
    "install_log_context",
    "request_id_from",
]

logger = logging.getLogger(__name__)

HEADER = "X-Request-ID"
WELL_FORMED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""An incoming id is kept only if it matches: short, and nothing a log line or a header
could be split or forged with (no spaces, no ``%``, no control characters)."""
NO_REQUEST = "-"
"""``record.request_id`` of log records made outside any request."""

_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ibx_request_id", default=None
)
_INSTALL_LOCK = threading.Lock()


def request_id_from(headers: Iterator[tuple[bytes, bytes]] | list[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-ID`` if well-formed, else a new random id (96 bits, hex)."""
    for name, value in headers:
        if name.lower() == b"x-request-id":
            try:
                text = value.decode("ascii")
            except UnicodeDecodeError:
                break
            if WELL_FORMED.fullmatch(text):
                return text
            break
    return secrets.token_hex(12)


def current_request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return _CURRENT.get()


@contextmanager
def in_request(request_id: str) -> Iterator[None]:
    """Run the block as part of request ``request_id`` (log records carry it).

    Raises:
        ValueError: ``request_id`` is not well-formed.
    """
    if not WELL_FORMED.fullmatch(request_id):
        raise ValueError("a request id is 1-128 letters, digits, '.', '_' or '-'")
    token = _CURRENT.set(request_id)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class _RequestIdRecordFactory:
    """Wraps the process's log record factory: every record gets ``request_id``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.inner(*args, **kwargs)
        request_id = _CURRENT.get()
        record.request_id = request_id or NO_REQUEST
        if request_id is not None:
            # well-formed ids hold no '%', so %-style arguments still format as before
            record.msg = f"[{request_id}] {record.msg}"
        return record


def install_log_context() -> None:
    """Make every log record of the process carry the current request id (idempotent).

    Called by :func:`exchange.app.create_app`: only ``exchange`` configures logging.
    """
    with _INSTALL_LOCK:
        factory = logging.getLogRecordFactory()
        if isinstance(factory, _RequestIdRecordFactory):
            return
        logging.setLogRecordFactory(_RequestIdRecordFactory(factory))
