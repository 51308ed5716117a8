"""Ledger entries: ``{index, type, actor, time, payload}`` and their leaf input bytes.

The leaf input is exactly the RFC 8785 encoding of the entry object the API
returns. The payload is canonicalised once, before the append lock is taken,
and the entry bytes are then assembled around it in JCS key order (actor,
index, payload, time, type), which is what RFC 8785 would produce.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from core.canonical import JsonValue, canonical_bytes
from core.clock import format_rfc3339, parse_rfc3339
from core.errors import CanonicalJsonError
from core.events import Event
from ledger.errors import EntryTooLargeError, InvalidEntryError

__all__ = ["MAX_PAYLOAD_BYTES", "LedgerEntry", "PreparedEntry", "prepare"]

MAX_PAYLOAD_BYTES = 64 * 1024
_FIELDS = frozenset({"index", "type", "actor", "time", "payload"})


@dataclass(frozen=True)
class PreparedEntry:
    """An event whose payload is already canonical, waiting for its index."""

    type: str
    actor: str
    payload_bytes: bytes
    subjects: tuple[str, ...] = ()

    def leaf_input(self, index: int, time: datetime) -> bytes:
        """The RFC 8785 bytes of the entry at ``index``."""
        return self.leaf_input_at(index, canonical_bytes(format_rfc3339(time)))

    def leaf_input_at(self, index: int, time_json: bytes) -> bytes:
        """As :meth:`leaf_input`, with the time already encoded (shared by a batch)."""
        return b"".join(
            (
                b'{"actor":',
                _canonical_name(self.actor),
                b',"index":',
                str(index).encode(),
                b',"payload":',
                self.payload_bytes,
                b',"time":',
                time_json,
                b',"type":',
                _canonical_name(self.type),
                b"}",
            )
        )


@lru_cache(maxsize=4096)
def _canonical_name(text: str) -> bytes:
    """Canonical JSON of a type or actor name; few distinct values, so cached."""
    return canonical_bytes(text)


def prepare(event: Event, *, line: int | None = None) -> PreparedEntry:
    """Canonicalise and bound an event's payload.

    Raises:
        InvalidEntryError: the payload has no canonical form.
        EntryTooLargeError: the canonical payload is over 64 KiB.
    """
    if not isinstance(event.payload, Mapping):
        raise InvalidEntryError("payload must be a JSON object", line=line)
    try:
        payload = canonical_bytes(event.payload)
    except CanonicalJsonError as exc:
        raise InvalidEntryError(str(exc), line=line) from exc
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise EntryTooLargeError(len(payload), MAX_PAYLOAD_BYTES, line=line)
    return PreparedEntry(event.type, event.actor, payload, event.subjects)


@dataclass(frozen=True)
class LedgerEntry:
    """One entry as stored and served; ``leaf_input`` is its canonical encoding."""

    index: int
    type: str
    actor: str
    time: datetime
    payload: Mapping[str, JsonValue]
    leaf_input: bytes

    @classmethod
    def from_leaf_input(cls, leaf_input: bytes) -> LedgerEntry:
        """Decode stored canonical bytes.

        Raises:
            InvalidEntryError: the bytes are not an entry object.
        """
        try:
            obj: Any = json.loads(leaf_input)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidEntryError(f"stored entry is not JSON: {exc}") from exc
        if not isinstance(obj, dict) or set(obj) != _FIELDS:
            raise InvalidEntryError("stored entry does not have exactly the entry fields")
        if not isinstance(obj["index"], int) or not isinstance(obj["payload"], dict):
            raise InvalidEntryError("stored entry has a malformed index or payload")
        try:
            time = parse_rfc3339(obj["time"])
        except (TypeError, ValueError) as exc:
            raise InvalidEntryError("stored entry has a malformed time") from exc
        return cls(obj["index"], obj["type"], obj["actor"], time, obj["payload"], leaf_input)

    def to_dict(self) -> dict[str, JsonValue]:
        """The entry object whose RFC 8785 bytes are the leaf input."""
        return {
            "index": self.index,
            "type": self.type,
            "actor": self.actor,
            "time": format_rfc3339(self.time),
            "payload": dict(self.payload),
        }
