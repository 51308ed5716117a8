"""Cursor pagination for every list route: ``?cursor=...&limit=N`` →
``{"items": [...], "next_cursor": "..." | null}``.

The cursor is opaque to clients (base64url of the last item's sort key): a
page starts strictly after it, so items added or removed between two calls
never shift a page the way offsets would.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from core.errors import IbxError

__all__ = ["CURSOR", "LIMIT", "CursorError", "Page", "cursor_after", "cursor_for", "paginate"]

T = TypeVar("T")

CURSOR = Query(None, max_length=512, description="where the previous page ended (next_cursor)")
LIMIT = Query(100, ge=1, le=1000, description="items per page")


class CursorError(IbxError):
    """A cursor this exchange did not hand out."""

    title = "invalid cursor"


class Page(BaseModel, Generic[T]):
    """One page of a list; ``next_cursor`` is null on the last page."""

    items: list[T]
    next_cursor: str | None = None


def _encode(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise CursorError("the cursor is not one this exchange handed out") from exc


def paginate(
    items: Sequence[T], *, key: Callable[[T], str], cursor: str | None, limit: int
) -> tuple[list[T], str | None]:
    """The page of ``items`` (sorted by ``key``, keys unique) after ``cursor``.

    Raises:
        CursorError: a malformed cursor.
    """
    after = _decode(cursor) if cursor else None
    start = 0
    if after is not None:
        start = next((i for i, item in enumerate(items) if key(item) > after), len(items))
    page = list(items[start : start + limit])
    more = start + limit < len(items)
    return page, _encode(key(page[-1])) if page and more else None


def cursor_after(cursor: str | None) -> str | None:
    """The sort key ``cursor`` stands for (None: from the start), for a keyset query
    that the database runs itself (a list too long to hold for :func:`paginate`).

    Raises:
        CursorError: a malformed cursor.
    """
    return _decode(cursor) if cursor else None


def cursor_for(key: str) -> str:
    """The ``next_cursor`` of a page whose last item has sort key ``key``."""
    return _encode(key)
