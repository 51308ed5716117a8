"""The ledger driver: turns events into entries, keeps the tree, signs checkpoints.

It is the only writer of a backend and the ibx implementation of
:class:`core.events.EventRecorder`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from core.canonical import canonical_bytes
from core.clock import format_rfc3339, require_aware, utcnow
from core.events import Event, RecordedEvent
from core.keys import Ed25519Signer
from ledger._batch import LedgerBatch
from ledger._checkpoint import Checkpoint, NoteVerifier, SignedNote, sign_note
from ledger._entry import LedgerEntry, PreparedEntry, prepare
from ledger._integrity import IntegrityReport, ProgressReport, check_integrity
from ledger._kept import KeptCheckpoint, check_kept_checkpoint
from ledger._merkle import (
    NodeKey,
    append_nodes,
    consistency_ranges,
    frontier,
    hash_range,
    inclusion_ranges,
    leaf_hash,
    nodes_for_ranges,
    root_from_nodes,
)
from ledger.backends.base import LedgerBackend, StoredEntry, SubjectHit, TreeHead
from ledger.errors import InvalidEntryError, LedgerError, TreeSizeError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["ConsistencyProof", "InclusionProof", "Ledger", "LedgerConfig"]

logger = logging.getLogger(__name__)

MAX_ENTRIES_PER_READ = 1000
_BATCH_KEY = "ibx.ledger.batch"
"""Where :meth:`Ledger.batch` leaves its open batch in ``Session.info``."""


@dataclass(frozen=True)
class LedgerConfig:
    """How a ledger names itself.

    Attributes:
        origin: the checkpoint origin line, naming the deployment
            (schema-less URL form, e.g. ``ibx.example.gov.cn/ledger``).
        key_name: the signed-note key name; defaults to the origin.
        max_batch: the most entries one append may carry.
    """

    origin: str = "ibx.localhost/ledger"
    key_name: str | None = None
    max_batch: int = 100_000

    @property
    def note_name(self) -> str:
        """The key name used in signature lines and the vkey."""
        return self.key_name or self.origin


@dataclass(frozen=True)
class InclusionProof:
    """RFC 9162 inclusion proof of the entry at ``index`` in the tree of ``tree_size``."""

    index: int
    tree_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class ConsistencyProof:
    """RFC 9162 consistency proof between tree sizes ``first`` and ``second``."""

    first: int
    second: int
    hashes: tuple[bytes, ...]


class Ledger:
    """Append-only verifiable log over a :class:`LedgerBackend`."""

    def __init__(
        self,
        backend: LedgerBackend,
        signer: Ed25519Signer,
        config: LedgerConfig | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._backend = backend
        self._signer = signer
        self.config = config or LedgerConfig()
        self._clock = clock
        self.verifier = NoteVerifier(self.config.note_name, signer.public_key)

    # -- writing -------------------------------------------------------------------------

    def record(self, event: Event, *, session: Session | None = None) -> RecordedEvent:
        """Append one event (see :class:`core.events.EventRecorder`).

        Raises:
            LedgerError: the event could not be recorded; nothing was written.
        """
        return self.append([event], session=session)[0]

    def record_batch(
        self, events: Sequence[Event], *, session: Session | None = None
    ) -> list[RecordedEvent]:
        """Append events atomically (see :class:`core.events.EventRecorder`).

        Raises:
            LedgerError: none of the events was recorded.
        """
        return self.append(events, session=session)

    def append(
        self,
        events: Sequence[Event],
        *,
        session: Session | None = None,
        now: datetime | None = None,
    ) -> list[RecordedEvent]:
        """Append ``events`` as one atomic batch and sign the new checkpoint.

        When ``session`` has a batch of this ledger open (:meth:`batch`), the
        events join it: their indices are given now, their entries are written
        when the batch closes, with the session's transaction.

        Raises:
            InvalidEntryError: an event's payload has no canonical form (names the line).
            EntryTooLargeError: a payload is over 64 KiB (names the line).
            LedgerError: the batch is empty or too large, or storage failed.
        """
        if session is not None:
            open_batch = self._open_batch(session)
            if open_batch is not None:
                return open_batch.add(events, now=now)
        if not events:
            raise InvalidEntryError("nothing to append")
        if len(events) > self.config.max_batch:
            raise InvalidEntryError(
                f"a batch holds at most {self.config.max_batch} entries, not {len(events)}"
            )
        prepared = [prepare(event, line=i + 1) for i, event in enumerate(events)]
        when = require_aware(now if now is not None else self._clock())
        with self._backend.writer(session) as writer:
            head = writer.head()
            rows, hashes = self._build(prepared, head.size, when)
            known = writer.nodes(frontier(head.size))
            new_nodes = append_nodes(head.size, hashes, known)
            size = head.size + len(rows)
            root = root_from_nodes(size, {**known, **new_nodes})
            note = self._sign(size, root)
            writer.write(rows, new_nodes, TreeHead(size, root, note.to_text()))
        logger.debug("appended %d entries, size now %d", len(rows), size)
        return [RecordedEvent(row.index, when, h) for row, h in zip(rows, hashes, strict=True)]

    @contextmanager
    def batch(self, session: Session | None = None) -> Iterator[LedgerBatch]:
        """Collect every entry recorded in ``session``'s transaction into one append.

        Takes the append lock (in ``session``'s transaction, or a write
        transaction of its own without one) until the block ends; then writes
        the entries with one tree update and one signed checkpoint. Inside the
        block, :meth:`record`/:meth:`append` with the same ``session`` join the
        batch (see :class:`~ledger._batch.LedgerBatch`). The entries are
        durable when the caller's transaction commits.

        Raises:
            LedgerError: a batch is already open in ``session``, or storage failed.
        """
        if session is not None and session.info.get(_BATCH_KEY) is not None:
            raise LedgerError("a ledger batch is already open in this session")
        with self._backend.writer(session) as writer:
            opened = LedgerBatch(
                writer, sign=self._sign, clock=self._clock, max_batch=self.config.max_batch
            )
            if session is not None:
                session.info[_BATCH_KEY] = (self, opened)
            try:
                yield opened
            finally:
                if session is not None:
                    session.info.pop(_BATCH_KEY, None)
            opened.close()

    def _open_batch(self, session: Session) -> LedgerBatch | None:
        held = session.info.get(_BATCH_KEY)
        if held is None or held[0] is not self:
            return None
        batch: LedgerBatch = held[1]
        return batch

    def _build(
        self, prepared: Sequence[PreparedEntry], start: int, when: datetime
    ) -> tuple[list[StoredEntry], list[bytes]]:
        stamp = format_rfc3339(when)
        stamp_json = canonical_bytes(stamp)
        rows: list[StoredEntry] = []
        hashes: list[bytes] = []
        for offset, entry in enumerate(prepared):
            leaf = entry.leaf_input_at(start + offset, stamp_json)
            rows.append(
                StoredEntry(start + offset, entry.type, entry.actor, stamp, leaf, entry.subjects)
            )
            hashes.append(leaf_hash(leaf))
        return rows, hashes

    def _sign(self, size: int, root: bytes) -> SignedNote:
        body = Checkpoint(self.config.origin, size, root).to_text()
        return sign_note(body, self.config.note_name, self._signer)

    # -- reading -------------------------------------------------------------------------

    def head(self) -> TreeHead:
        """The latest committed size, root and checkpoint."""
        return self._backend.head()

    def size(self) -> int:
        """The number of entries."""
        return self._backend.head().size

    def checkpoint(self) -> SignedNote:
        """The latest signed checkpoint (the empty tree's, signed now, before any append)."""
        head = self._backend.head()
        if not head.checkpoint:
            return self._sign(head.size, head.root)
        return SignedNote.from_text(head.checkpoint)

    def vkey(self) -> str:
        """The C2SP verifier key of the checkpoint signer."""
        return self.verifier.to_vkey()

    def entries(self, start: int, limit: int) -> list[LedgerEntry]:
        """Up to ``limit`` (at most 1000) entries from ``start``.

        Raises:
            TreeSizeError: ``start`` is negative or beyond the log, or ``limit`` < 1.
        """
        size = self.size()
        if start < 0 or limit < 1:
            raise TreeSizeError("start must be >= 0 and limit >= 1", tree_size=size)
        if start >= size:
            raise TreeSizeError(f"start {start} is beyond the log of size {size}", tree_size=size)
        stop = min(size, start + min(limit, MAX_ENTRIES_PER_READ))
        return [
            LedgerEntry.from_leaf_input(e.leaf_input) for e in self._backend.entries(start, stop)
        ]

    def entry(self, index: int) -> LedgerEntry:
        """The entry at ``index``.

        Raises:
            TreeSizeError: no such index.
        """
        return self.entries(index, 1)[0]

    def find(
        self,
        subjects: Sequence[str],
        types: Sequence[str] | None = None,
        *,
        session: Session | None = None,
    ) -> list[SubjectHit]:
        """The entries about any of ``subjects`` (:attr:`core.events.Event.subjects`), of
        ``types`` if given, in index order: how a service checks a stored row against
        the ledger entries about it. The subject index is not hashed; ``ibx audit
        verify`` reads every entry instead.

        With ``session``, read in the caller's transaction.
        """
        return self._backend.find(subjects, types, session=session)

    def count(
        self, subjects: Sequence[str], types: Sequence[str], *, session: Session | None = None
    ) -> dict[str, int]:
        """How many entries of ``types`` are about each of ``subjects`` (a subject with none
        is absent): :meth:`find` counted by the database, for subjects with many entries
        (the uses of a consent). Like :meth:`find`, an index, not the verified log.

        With ``session``, read in the caller's transaction.
        """
        return self._backend.count(subjects, types, session=session)

    def _nodes_within(self, tree_size: int, keys: set[NodeKey]) -> dict[NodeKey, bytes]:
        size, nodes = self._backend.nodes_with_size(keys)
        if tree_size > size:
            raise TreeSizeError(
                f"tree size {tree_size} is beyond the log of size {size}", tree_size=size
            )
        if len(nodes) != len(keys):
            raise LedgerError("stored tree nodes are missing; run `ibx ledger verify`")
        return nodes

    def inclusion_proof(self, index: int, tree_size: int) -> InclusionProof:
        """The RFC 9162 inclusion proof of ``index`` in the tree of ``tree_size``.

        Raises:
            TreeSizeError: ``tree_size`` is beyond the log or ``index`` not below it.
        """
        ranges = inclusion_ranges(index, tree_size)
        nodes = self._nodes_within(tree_size, nodes_for_ranges(ranges))
        return InclusionProof(index, tree_size, tuple(hash_range(a, b, nodes) for a, b in ranges))

    def consistency_proof(self, first: int, second: int) -> ConsistencyProof:
        """The RFC 9162 consistency proof from ``first`` to ``second``.

        Raises:
            TreeSizeError: unless ``0 < first <= second <= size``.
        """
        ranges = consistency_ranges(first, second)
        nodes = self._nodes_within(second, nodes_for_ranges(ranges))
        return ConsistencyProof(first, second, tuple(hash_range(a, b, nodes) for a, b in ranges))

    def root_at(self, tree_size: int) -> bytes:
        """The root hash of the tree of ``tree_size`` (O(log n) reads).

        Raises:
            TreeSizeError: ``tree_size`` is beyond the log or negative.
        """
        if tree_size < 0:
            raise TreeSizeError("tree size must not be negative")
        return root_from_nodes(tree_size, self._nodes_within(tree_size, set(frontier(tree_size))))

    def verify_kept_checkpoint(self, note: str) -> KeptCheckpoint:
        """Check a signed checkpoint kept earlier against the log as it stands now.

        Raises:
            CheckpointError: ``note`` is malformed, not signed by this log, or of another origin.
            LedgerIntegrityError: the log was rolled back or its history rewritten since.
        """
        kept = KeptCheckpoint.parse(note, self.verifier, self.config.origin)
        head = self.head()
        first = kept.checkpoint.size
        proof: tuple[bytes, ...] = ()
        if 0 < first < head.size:
            proof = self.consistency_proof(first, head.size).hashes
        check_kept_checkpoint(kept, head.size, head.root, proof)
        return kept

    def verify(self, progress: ProgressReport | None = None) -> IntegrityReport:
        """Recompute everything from the stored entries and check the latest checkpoint.

        ``progress(entries_checked, size)``, if given, is told how far the
        recomputation has got (``ibx ledger verify`` draws a bar with it).

        Raises:
            LedgerIntegrityError: names the first index that is wrong and why.
            LedgerError: storage could not be read.
        """
        try:
            return check_integrity(self._backend, self.verifier, self.config.origin, progress)
        except LedgerError:
            raise
        except Exception as exc:  # storage errors surface as ledger errors, once
            raise LedgerError(f"ledger storage could not be read: {exc}") from exc
