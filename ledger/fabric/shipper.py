"""Ships the SQL log to its Fabric channel, in order, without loss or duplicates.

The entry table is the outbox: entries are dense and append-only, so what is
not on the channel yet is every entry from the channel's size on. Each pass
(:meth:`FabricShipper.ship`) reads the channel's head, checks that the channel
agrees with the SQL log at that size, and sends what follows:

* **full** mode: the entries, in batches (at most ``batch_size`` entries and
  :data:`~ledger.fabric.wire.MAX_BATCH_BYTES`), each with the SQL log's root at
  its end, and the signed checkpoint when a batch ends at the signed head. The
  chaincode refuses a batch that does not start at its size (``gap``), so a
  retried or duplicated batch is never stored twice; after a ``gap`` or an
  MVCC conflict (another shipper moved the head first) the pass re-reads the
  head, re-checks agreement and continues from there.
* **anchor** mode: the signed head checkpoint, with the consistency proof from
  the last anchored one.

Nothing is kept between passes but the shipper's own progress row (status
only, :class:`~ledger.fabric.outbox.FabricOutbox`): a new shipper, after a
restart or on another replica, resumes from the channel's head. While Fabric is
unreachable a pass stops and says why; the entries stay in SQL and the next
pass ships them.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from core.clock import utcnow
from ledger._checkpoint import Checkpoint, SignedNote
from ledger._ledger import Ledger
from ledger.backends.sql import SqlLedgerBackend
from ledger.errors import CheckpointError, LedgerIntegrityError
from ledger.fabric.channel import LedgerChannel
from ledger.fabric.config import FabricMode
from ledger.fabric.errors import (
    ChaincodeRefusedError,
    CommitConflictError,
    EndorsementError,
    FabricConfigError,
    FabricUnavailableError,
    TransactionInvalidError,
)
from ledger.fabric.outbox import FabricOutbox, OutboxKey
from ledger.fabric.wire import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ENTRIES,
    AnchorHead,
    AnchorRequest,
    AppendBatch,
    ChannelHead,
    LogGenesis,
)

__all__ = ["MAX_REPLANS", "FabricShipper", "OutboxSlot", "ShipReport"]

logger = logging.getLogger(__name__)

MAX_REPLANS = 8
"""How many times one pass re-reads the head after a conflict or a gap before it gives up."""

_BATCH_OVERHEAD = 64
"""Bytes a leaf adds to a batch document beyond its base64 (quotes, comma; generous)."""


@dataclass(frozen=True)
class ShipReport:
    """What one pass did.

    Attributes:
        mode: full or anchor.
        shipped: entries newly on the channel (full) or newly covered by an anchored
            checkpoint (anchor).
        channel_size: the channel's size after the pass (full: entries; anchor: the
            anchored checkpoint's tree size).
        sql_size: the SQL log's size when the pass began.
        transactions: transactions committed in this pass.
        error: why the pass stopped before the SQL head (Fabric unreachable, too few
            endorsers, a transaction committed invalid), or None. The entries stay in
            SQL; the next pass ships them.
    """

    mode: FabricMode
    shipped: int
    channel_size: int
    sql_size: int
    transactions: int
    error: str | None = None

    @property
    def lag(self) -> int:
        """Entries in SQL not yet on the channel (or not yet covered by an anchor)."""
        return max(0, self.sql_size - self.channel_size)

    def to_dict(self) -> dict[str, object]:
        """Stable JSON fields."""
        return {
            "mode": str(self.mode),
            "shipped": self.shipped,
            "transactions": self.transactions,
            "channel_size": self.channel_size,
            "sql_size": self.sql_size,
            "lag": self.lag,
            "error": self.error,
        }


@dataclass(frozen=True)
class OutboxSlot:
    """Where a shipper records its progress: the store and its row's key."""

    outbox: FabricOutbox
    key: OutboxKey


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class FabricShipper:
    """Ships one ledger to one log on one channel (see the module docstring).

    Not thread-safe: one pass at a time per shipper (two shippers, in two processes,
    may run at once: the chaincode orders them and the loser re-plans).
    """

    def __init__(
        self,
        ledger: Ledger,
        backend: SqlLedgerBackend,
        channel: LedgerChannel,
        mode: FabricMode,
        *,
        batch_size: int = 500,
        outbox: OutboxSlot | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """Ship ``ledger`` (stored in ``backend``) to ``channel``.

        Raises:
            FabricConfigError: ``batch_size`` is not 1..1000, or the channel's log id is
                not the ledger's origin (the chaincode names a log by its checkpoint origin).
        """
        if not 0 < batch_size <= MAX_BATCH_ENTRIES:
            raise FabricConfigError(
                f"a batch holds 1-{MAX_BATCH_ENTRIES} entries, not {batch_size}"
            )
        if channel.log != ledger.config.origin or ledger.config.note_name != ledger.config.origin:
            raise FabricConfigError(
                f"the channel's log id {channel.log!r} must be the ledger's origin and key "
                f"name {ledger.config.origin!r}"
            )
        self._ledger = ledger
        self._backend = backend
        self._channel = channel
        self.mode = mode
        self._batch_size = batch_size
        self._outbox = outbox
        self._clock = clock
        self._genesis: LogGenesis | None = None
        self._progress = _Progress(0)

    @property
    def channel(self) -> LedgerChannel:
        """The channel this shipper ships to."""
        return self._channel

    # -- a pass ---------------------------------------------------------------------------

    def ship(self, max_batches: int | None = None) -> ShipReport:
        """Ship what is pending now (at most ``max_batches`` transactions).

        Fabric being unreachable, too few endorsers, or a transaction committed
        invalid stops the pass: the report says why (:attr:`ShipReport.error`) and the
        next pass resumes from the channel's head.

        Raises:
            LedgerIntegrityError: the channel and the SQL log disagree (the channel is
                ahead, or has another root at its size, or its log has another key):
                nothing was shipped.
            ChaincodeRefusedError: the chaincode refused a batch or checkpoint for a
                reason other than a gap (e.g. the SQL entries do not hash to the SQL root).
            FabricError: another failure (a malformed answer, too many conflicts).
        """
        try:
            self._ensure_log()
            if self.mode is FabricMode.FULL:
                report = self._ship_full(max_batches)
            else:
                report = self._anchor()
        except CommitConflictError as exc:  # still conflicting after MAX_REPLANS re-reads
            self._failed(str(exc))
            raise
        except (FabricUnavailableError, EndorsementError, TransactionInvalidError) as exc:
            self._failed(str(exc))
            return self._stopped(exc)
        except Exception as exc:
            self._failed(str(exc))
            raise
        return report

    def _stopped(self, exc: Exception) -> ShipReport:
        """The report of a pass that Fabric stopped (progress is re-read next time)."""
        progress = self._progress
        return ShipReport(
            self.mode,
            progress.shipped,
            progress.channel_size,
            progress.sql_size,
            progress.transactions,
            str(exc),
        )

    # -- full mode ------------------------------------------------------------------------

    def _ship_full(self, max_batches: int | None) -> ShipReport:
        sql = self._ledger.head()
        self._progress = _Progress(sql.size)
        head = self._agreed_head(sql.size)
        self._progress.channel_size = head.size
        stalled = 0
        while head.size < sql.size and (
            max_batches is None or self._progress.transactions < max_batches
        ):
            batch = self._plan(head.size, sql.size, sql.checkpoint)
            try:
                head = self._channel.append(batch)
            except (CommitConflictError, ChaincodeRefusedError) as exc:
                if isinstance(exc, ChaincodeRefusedError) and exc.refusal.code != "gap":
                    raise
                before = head.size
                head = self._agreed_head(sql.size)
                self._progress.channel_size = head.size
                stalled = self._replanned(exc, stalled, moved=head.size != before)
                continue
            if head.size != batch.end or head.root != batch.root:
                raise LedgerIntegrityError(
                    f"the channel answered size {head.size} root {_b64(head.root)} to a batch "
                    f"ending at {batch.end} with root {_b64(batch.root)}"
                )
            stalled = 0
            self._progress.shipped += len(batch.leaves)
            self._progress.transactions += 1
            self._progress.channel_size = head.size
            self._record(head.size, head.root)
            logger.debug("shipped entries %d..%d to %s", batch.start, batch.end, self._channel.log)
        if self._progress.transactions == 0:
            self._record(head.size, head.root)
        return self._progress.report(self.mode)

    def _replanned(self, exc: Exception, stalled: int, *, moved: bool) -> int:
        """Count a re-read of the head after a conflict or a gap: another shipper moved the
        head (``moved``: carry on), or nothing moved (at most :data:`MAX_REPLANS` times).

        Raises:
            Exception: ``exc`` itself, after :data:`MAX_REPLANS` re-reads in a row that
                found the head where it was.
        """
        logger.info("the channel's head moved under the shipper (%s); re-reading it", exc)
        if moved:
            return 0
        if stalled >= MAX_REPLANS:
            raise exc
        return stalled + 1

    def _agreed_head(self, sql_size: int) -> ChannelHead:
        """The channel's head, checked against the SQL log at the channel's size.

        Raises:
            LedgerIntegrityError: the channel is ahead of SQL, or its root differs.
        """
        seen = self._seen_size()  # read before the head: a shipper racing us only raises it
        head = self._channel.head()
        log = self._channel.log
        self._not_rolled_back(seen, head.size, "holds", "entries")
        if head.size > sql_size:  # another shipper may have shipped what we have not seen
            sql_size = self._ledger.size()
        if head.size > sql_size:
            raise LedgerIntegrityError(
                f"the channel's log {log} holds {head.size} entries but the SQL log only "
                f"{sql_size}: the SQL log was rolled back or replaced; nothing shipped"
            )
        root = self._ledger.root_at(head.size)
        if root != head.root:
            raise LedgerIntegrityError(
                f"the channel's log {log} and the SQL log disagree at size {head.size}: channel "
                f"root {_b64(head.root)}, SQL root {_b64(root)}; nothing shipped"
            )
        return head

    def _plan(self, start: int, sql_size: int, signed_head: str) -> AppendBatch:
        """The next batch from ``start``: at most ``batch_size`` entries and
        :data:`MAX_BATCH_BYTES` of leaves, with the SQL root at its end.

        Raises:
            LedgerIntegrityError: an entry is missing from the SQL table.
        """
        stop = min(sql_size, start + self._batch_size)
        leaves: list[bytes] = []
        size = 0
        rows = list(self._backend.scan_entries(start, stop))  # at most batch_size rows
        for index, leaf in rows:
            if index != start + len(leaves):
                raise LedgerIntegrityError(
                    "the entry is missing from the SQL log", index=start + len(leaves)
                )
            cost = (len(leaf) + 2) // 3 * 4 + _BATCH_OVERHEAD
            if leaves and size + cost > MAX_BATCH_BYTES:
                break
            leaves.append(leaf)
            size += cost
        if not leaves:
            raise LedgerIntegrityError("the entry is missing from the SQL log", index=start)
        end = start + len(leaves)
        checkpoint = signed_head if end == sql_size else ""
        return AppendBatch(start, tuple(leaves), self._ledger.root_at(end), checkpoint)

    # -- anchor mode ----------------------------------------------------------------------

    def _anchor(self) -> ShipReport:
        sql = self._ledger.head()
        self._progress = _Progress(sql.size)
        anchored = self._agreed_anchor(sql.size)
        self._progress.channel_size = anchored.size
        stalled = 0
        while anchored.size < sql.size and sql.checkpoint:
            first = anchored.size
            proof = () if first == 0 else self._ledger.consistency_proof(first, sql.size).hashes
            try:
                anchored = self._channel.anchor(AnchorRequest(sql.checkpoint, proof))
            except (CommitConflictError, ChaincodeRefusedError) as exc:
                if isinstance(exc, ChaincodeRefusedError) and exc.refusal.code != "not-newer":
                    raise
                anchored = self._agreed_anchor(sql.size)
                self._progress.channel_size = anchored.size
                stalled = self._replanned(exc, stalled, moved=anchored.size != first)
                continue
            stalled = 0
            self._progress.shipped += anchored.size - first
            self._progress.transactions += 1
            self._progress.channel_size = anchored.size
            self._record(anchored.size, anchored.root)
        if self._progress.transactions == 0:
            self._record(anchored.size, anchored.root)
        return self._progress.report(self.mode)

    def _agreed_anchor(self, sql_size: int) -> AnchorHead:
        """The channel's anchor head, checked against the SQL log.

        Raises:
            LedgerIntegrityError: the anchored checkpoint is beyond SQL, not this
                ledger's, or has another root than SQL's at its size.
        """
        seen = self._seen_size()  # read before the head: a shipper racing us only raises it
        anchored = self._channel.anchor_head()
        log = self._channel.log
        self._not_rolled_back(seen, anchored.size, "anchors", "entries")
        if anchored.size > sql_size:  # another shipper may have anchored a newer head
            sql_size = self._ledger.size()
        if anchored.size > sql_size:
            raise LedgerIntegrityError(
                f"the channel's log {log} anchors size {anchored.size} but the SQL log holds "
                f"only {sql_size}: the SQL log was rolled back or replaced; nothing anchored"
            )
        if anchored.size == 0:
            return anchored
        try:
            note = SignedNote.from_text(anchored.checkpoint)
            note.verify(self._ledger.verifier)
            body = Checkpoint.from_text(note.text)
        except CheckpointError as exc:
            raise LedgerIntegrityError(
                f"the channel's anchored checkpoint of size {anchored.size} does not verify "
                f"under this ledger's key: {exc}"
            ) from exc
        root = self._ledger.root_at(anchored.size)
        if (body.size, body.root) != (anchored.size, anchored.root) or root != anchored.root:
            raise LedgerIntegrityError(
                f"the channel's log {log} and the SQL log disagree at size {anchored.size}: "
                f"anchored root {_b64(anchored.root)}, SQL root {_b64(root)}; nothing anchored"
            )
        return anchored

    def _seen_size(self) -> int:
        """The channel size this deployment last saw committed (0 without a progress row)."""
        if self._outbox is None:
            return 0
        status = self._outbox.outbox.status(self._outbox.key)
        return 0 if status is None else status.shipped_size

    def _not_rolled_back(self, seen: int, size: int, verb: str, what: str) -> None:
        """Refuse a channel smaller than this deployment last saw it committed: its state
        was rolled back (a colluding majority of endorsers can rewrite world state; the
        progress row remembers how far the channel had got).

        Raises:
            LedgerIntegrityError: it was.
        """
        if size < seen:
            raise LedgerIntegrityError(
                f"the channel's log {self._channel.log} {verb} {size} {what} but it held "
                f"{seen} when this deployment last saw it committed: the "
                f"channel's state was rolled back; nothing shipped"
            )

    # -- the log and the progress row -----------------------------------------------------

    def _ensure_log(self) -> None:
        """Create the log on the channel with this ledger's key, or check the key it has.

        Raises:
            LedgerIntegrityError: the channel's log has another checkpoint key.
        """
        self._progress = _Progress(0)
        if self._genesis is not None:
            return
        vkey = self._ledger.vkey()
        genesis = self._channel.genesis()
        if genesis is None:
            try:
                genesis = self._channel.create(vkey)
            except (CommitConflictError, ChaincodeRefusedError) as exc:
                if isinstance(exc, ChaincodeRefusedError) and exc.refusal.code != "exists":
                    raise
                genesis = self._channel.genesis()  # created meanwhile by another shipper
        if genesis is None or genesis.vkey != vkey:
            held = "none" if genesis is None else genesis.vkey
            raise LedgerIntegrityError(
                f"the channel's log {self._channel.log} belongs to another checkpoint key "
                f"({held}), not this ledger's ({vkey}); nothing shipped"
            )
        self._genesis = genesis

    def _record(self, size: int, root: bytes) -> None:
        if self._outbox is not None:
            self._outbox.outbox.shipped(self._outbox.key, size, root, self._clock())

    def _failed(self, error: str) -> None:
        if self._outbox is None:
            return
        try:
            self._outbox.outbox.failed(self._outbox.key, error, self._clock())
        except Exception:  # the status row must not hide the failure itself
            logger.warning("could not record the shipping failure", exc_info=True)


@dataclass
class _Progress:
    """One pass's counters."""

    sql_size: int
    shipped: int = 0
    transactions: int = 0
    channel_size: int = 0

    def report(self, mode: FabricMode) -> ShipReport:
        return ShipReport(mode, self.shipped, self.channel_size, self.sql_size, self.transactions)
