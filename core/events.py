"""The event-recorder protocol: how a package writes to the ledger without importing it.

A package that must record what it did (a consent granted, a policy activated,
a key generated) takes an :class:`EventRecorder` in its constructor.
``exchange`` wires in the ledger, which implements it; tests may wire in the
in-memory ledger. An event's ``payload`` is the package's own schema: the
ledger stores the canonical bytes and never interprets them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from core.canonical import JsonValue

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["Event", "EventRecorder", "RecordedEvent"]

_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


@dataclass(frozen=True)
class Event:
    """Something that happened, to be written to the ledger.

    ``type`` is a dotted lower-case name such as ``consent.grant``; ``actor``
    is the identity that caused it. ``subjects`` name what the entry is about
    (a consent id, an enterprise, a policy version, a job): the ledger indexes
    them (:meth:`ledger.Ledger.find`) so a service can check a stored row
    against the entries about it; they are an index, not part of the entry.
    """

    type: str
    actor: str
    payload: Mapping[str, JsonValue] = field(default_factory=dict)
    subjects: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _TYPE.fullmatch(self.type) or len(self.type) > 100:
            raise ValueError(
                f"event type {self.type!r} must be dotted lower-case words, e.g. 'consent.grant'"
            )
        if not self.actor or len(self.actor) > 200:
            raise ValueError("event actor must be a non-empty name of at most 200 characters")
        for subject in self.subjects:
            if not subject or len(subject) > 200:
                raise ValueError("event subjects must be non-empty names of at most 200 characters")


@dataclass(frozen=True)
class RecordedEvent:
    """Where an event landed: its ledger index, its time and its RFC 9162 leaf hash."""

    index: int
    time: datetime
    leaf_hash: bytes


@runtime_checkable
class EventRecorder(Protocol):
    """Appends events to a tamper-evident log.

    When ``session`` is given and the recorder shares that database, the
    entries are written inside the caller's transaction, so the caller's own
    rows and their ledger entries commit or roll back together.
    """

    def record(self, event: Event, *, session: Session | None = None) -> RecordedEvent:
        """Append one event and return where it landed.

        Raises:
            ledger.LedgerError: the event could not be recorded; nothing was written.
        """
        ...

    def record_batch(
        self, events: Sequence[Event], *, session: Session | None = None
    ) -> list[RecordedEvent]:
        """Append several events atomically, in order.

        Raises:
            ledger.LedgerError: none of the events was recorded.
        """
        ...
