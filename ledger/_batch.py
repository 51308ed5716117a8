"""A batch of entries appended inside one write transaction: one tree update, one checkpoint.

:meth:`ledger.Ledger.batch` opens a :class:`LedgerBatch` in a caller's write
transaction (it takes the backend's append lock for the whole of it). Every
event recorded in that transaction -- through :meth:`ledger.Ledger.record`
with the same session, whoever calls it -- gets its index at once, in order,
and joins the batch; when the batch closes, all of its entries are written
with one multi-row insert, the tree is updated once and one checkpoint is
signed. The entries commit or roll back with the caller's transaction.

A caller that runs several units of work in the transaction, each in its own
savepoint, takes a :meth:`LedgerBatch.mark` before each unit and, when a unit
fails, drops its entries with :meth:`LedgerBatch.rollback_to` (indices stay
dense: the units run one after another).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from core.canonical import canonical_bytes
from core.clock import format_rfc3339, require_aware
from core.events import Event, RecordedEvent
from ledger._entry import prepare
from ledger._merkle import append_nodes, frontier, leaf_hash, root_from_nodes
from ledger.backends.base import LedgerWriter, StoredEntry, TreeHead
from ledger.errors import InvalidEntryError, LedgerError

if TYPE_CHECKING:
    from ledger._checkpoint import SignedNote

__all__ = ["LedgerBatch"]

logger = logging.getLogger(__name__)


class LedgerBatch:
    """Entries waiting for the end of their transaction (see the module docstring)."""

    def __init__(
        self,
        writer: LedgerWriter,
        *,
        sign: Callable[[int, bytes], SignedNote],
        clock: Callable[[], datetime],
        max_batch: int,
    ) -> None:
        self._writer = writer
        self._sign = sign
        self._clock = clock
        self._max = max_batch
        self._head = writer.head()
        self._rows: list[StoredEntry] = []
        self._hashes: list[bytes] = []
        self._stamps: dict[datetime, tuple[str, bytes]] = {}
        self._closed = False

    @property
    def start(self) -> int:
        """The tree size before the batch: its first entry's index."""
        return self._head.size

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, events: Sequence[Event], *, now: datetime | None = None) -> list[RecordedEvent]:
        """Give ``events`` the next indices, in order, and keep them for :meth:`close`.

        Raises:
            InvalidEntryError: an event's payload has no canonical form (names the line),
                the batch would exceed its limit, or the batch is closed.
            EntryTooLargeError: a payload is over 64 KiB (names the line).
        """
        if self._closed:
            raise InvalidEntryError("the batch was already written")
        if not events:
            raise InvalidEntryError("nothing to append")
        if len(self._rows) + len(events) > self._max:
            raise InvalidEntryError(f"a batch holds at most {self._max} entries")
        prepared = [prepare(event, line=i + 1) for i, event in enumerate(events)]
        when = require_aware(now if now is not None else self._clock())
        stamp, stamp_json = self._stamp(when)
        recorded: list[RecordedEvent] = []
        for entry in prepared:
            index = self._head.size + len(self._rows)
            leaf = entry.leaf_input_at(index, stamp_json)
            digest = leaf_hash(leaf)
            self._rows.append(
                StoredEntry(index, entry.type, entry.actor, stamp, leaf, entry.subjects)
            )
            self._hashes.append(digest)
            recorded.append(RecordedEvent(index, when, digest))
        return recorded

    def _stamp(self, when: datetime) -> tuple[str, bytes]:
        known = self._stamps.get(when)
        if known is None:
            text = format_rfc3339(when)
            known = (text, canonical_bytes(text))
            if len(self._stamps) < 64:
                self._stamps[when] = known
        return known

    def mark(self) -> int:
        """A point to roll back to: the number of entries so far."""
        return len(self._rows)

    def rollback_to(self, mark: int) -> None:
        """Drop every entry added after :meth:`mark` returned ``mark``.

        Raises:
            LedgerError: ``mark`` is not a point of this batch, or it is closed.
        """
        if self._closed or not 0 <= mark <= len(self._rows):
            raise LedgerError(f"cannot roll the batch back to {mark}")
        del self._rows[mark:]
        del self._hashes[mark:]

    def close(self) -> TreeHead | None:
        """Write every entry, the new nodes and one signed checkpoint; the new head, or
        None when the batch is empty (nothing is written).

        Raises:
            LedgerError: storage failed (the caller's transaction must roll back).
        """
        if self._closed:
            raise LedgerError("the batch was already written")
        self._closed = True
        if not self._rows:
            return None
        size = self._head.size
        known = self._writer.nodes(frontier(size))
        new_nodes = append_nodes(size, self._hashes, known)
        new_size = size + len(self._rows)
        root = root_from_nodes(new_size, {**known, **new_nodes})
        head = TreeHead(new_size, root, self._sign(new_size, root).to_text())
        self._writer.write(self._rows, new_nodes, head)
        logger.debug("appended a batch of %d entries, size now %d", len(self._rows), new_size)
        return head
