"""Does the Fabric channel agree with the SQL log? (``ibx ledger verify --fabric``)

* **full** mode: every entry on the channel equals the SQL entry at its index,
  byte for byte; the channel's entries alone rebuild its head root (the channel
  is enough to rebuild and verify the log) and that root is the SQL log's root
  at the channel's size; the checkpoint the channel keeps is signed by the
  ledger's key and names the channel's tree at its size. A channel behind SQL
  is lag (shipping has not caught up), not a failure; a channel ahead is.
* **anchor** mode: every anchored checkpoint is signed by the ledger's key,
  names this log, and has the SQL log's root at its size; the last one is the
  channel's anchor head.

The first disagreement is named (``entry 41 differs: ...``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass

from ledger._checkpoint import Checkpoint, SignedNote
from ledger._compact import CompactRange
from ledger._ledger import Ledger
from ledger._merkle import leaf_hash
from ledger.backends.sql import SqlLedgerBackend
from ledger.errors import CheckpointError, LedgerError
from ledger.fabric.channel import LedgerChannel
from ledger.fabric.config import FabricMode
from ledger.fabric.wire import MAX_PAGE, AnchorHead, ChannelHead, WireError

__all__ = ["FabricComparison", "compare"]


@dataclass(frozen=True)
class FabricComparison:
    """The verdict: ``ok`` unless ``first_disagreement`` names what differs.

    ``channel_size`` is the channel's entries (full) or its last anchored tree size
    (anchor); ``sql_size`` the SQL log's size when the comparison began.
    """

    ok: bool
    mode: FabricMode
    sql_size: int
    channel_size: int
    first_disagreement: str | None = None

    @property
    def lag(self) -> int:
        """SQL entries not yet on (or anchored on) the channel."""
        return max(0, self.sql_size - self.channel_size)

    def to_dict(self) -> dict[str, object]:
        """Stable JSON fields."""
        return {
            "ok": self.ok,
            "mode": str(self.mode),
            "sql_size": self.sql_size,
            "channel_size": self.channel_size,
            "lag": self.lag,
            "first_disagreement": self.first_disagreement,
        }


class _DisagreementError(Exception):
    """The first difference found (internal: becomes the comparison's verdict)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def compare(
    ledger: Ledger, backend: SqlLedgerBackend, channel: LedgerChannel, mode: FabricMode
) -> FabricComparison:
    """Compare the channel's copy of the log with the SQL log (see the module docstring).

    Raises:
        FabricError: the channel could not be read (unreachable, refused a query).
        LedgerError: the SQL log could not be read.
    """
    genesis = channel.genesis()
    if genesis is None:  # nothing shipped yet: all of SQL is lag
        return FabricComparison(True, mode, ledger.size(), 0)
    if mode is FabricMode.FULL:
        head = channel.head()
        channel_size = head.size
    else:
        anchored = channel.anchor_head()
        channel_size = anchored.size
    # SQL after the channel: a shipper running meanwhile ships only what SQL already had.
    sql_size = ledger.size()
    try:
        if genesis.vkey != ledger.vkey():
            raise _DisagreementError(
                f"the channel's log {channel.log} has checkpoint key {genesis.vkey}, "
                f"not this ledger's {ledger.vkey()}"
            )
        if mode is FabricMode.FULL:
            _compare_full(ledger, backend, channel, head, sql_size)
        else:
            _compare_anchors(ledger, channel, anchored, sql_size)
    except _DisagreementError as exc:
        return FabricComparison(False, mode, sql_size, channel_size, str(exc))
    return FabricComparison(True, mode, sql_size, channel_size)


def _compare_full(
    ledger: Ledger,
    backend: SqlLedgerBackend,
    channel: LedgerChannel,
    head: ChannelHead,
    sql_size: int,
) -> None:
    try:
        head.compact()
    except WireError as exc:
        raise _DisagreementError(f"the channel's head is not a valid compact range: {exc}") from exc
    if head.size > sql_size:
        raise _DisagreementError(
            f"the channel holds {head.size} entries but the SQL log only {sql_size}"
        )
    kept = _kept_checkpoint(ledger, head.checkpoint, head.size)
    sql_rows = backend.scan_entries(0, head.size)
    compact = CompactRange.empty()
    for start, leaves in _channel_pages(channel, head.size):
        for offset, leaf in enumerate(leaves):
            _same_entry(start + offset, leaf, next(sql_rows, None))
        if kept is not None and start < kept.size <= start + len(leaves):
            cut = kept.size - start
            compact = compact.append(leaves[:cut])
            if compact.root() != kept.root:
                raise _DisagreementError(
                    f"the channel's checkpoint of size {kept.size} has root {_b64(kept.root)} "
                    f"but the channel's entries give {_b64(compact.root())}"
                )
            compact = compact.append(leaves[cut:])
        else:
            compact = compact.append(leaves)
    if compact.root() != head.root:
        raise _DisagreementError(
            f"the channel's entries rebuild root {_b64(compact.root())}, not its head root "
            f"{_b64(head.root)} (size {head.size})"
        )
    root = _root_at(ledger, head.size)
    if root != head.root:
        raise _DisagreementError(
            f"at size {head.size} the channel's root is {_b64(head.root)} but the SQL log's "
            f"is {_b64(root)}"
        )


def _channel_pages(channel: LedgerChannel, size: int) -> Iterator[tuple[int, tuple[bytes, ...]]]:
    """The channel's entries ``[0, size)``, page by page.

    Raises:
        _DisagreementError: a page starts elsewhere, or the channel has fewer entries than
            its head says.
    """
    start = 0
    while start < size:
        page = channel.entries(start, min(MAX_PAGE, size - start))
        if page.start != start or not page.leaves:
            raise _DisagreementError(
                f"the channel's head says {size} entries but it serves none from {start}"
            )
        leaves = page.leaves[: size - start]
        yield start, leaves
        start += len(leaves)


def _same_entry(index: int, leaf: bytes, sql: tuple[int, bytes] | None) -> None:
    if sql is None or sql[0] != index:
        raise _DisagreementError(f"entry {index} is on the channel but missing from the SQL log")
    if sql[1] != leaf:
        raise _DisagreementError(
            f"entry {index} differs: channel leaf hash {_b64(leaf_hash(leaf))}, "
            f"sql leaf hash {_b64(leaf_hash(sql[1]))}"
        )


def _kept_checkpoint(ledger: Ledger, note: str, size: int) -> Checkpoint | None:
    """The checkpoint the channel's head keeps, checked against the ledger's key."""
    if not note:
        return None
    body = _checked_note(ledger, note, "the channel's checkpoint")
    if body.size > size:
        raise _DisagreementError(
            f"the channel's checkpoint is of size {body.size}, beyond its {size} entries"
        )
    return body


def _checked_note(ledger: Ledger, note: str, what: str) -> Checkpoint:
    try:
        signed = SignedNote.from_text(note)
        signed.verify(ledger.verifier)
        body = Checkpoint.from_text(signed.text)
    except CheckpointError as exc:
        raise _DisagreementError(f"{what} does not verify under the ledger's key: {exc}") from exc
    if body.origin != ledger.config.origin:
        raise _DisagreementError(
            f"{what} names origin {body.origin!r}, not {ledger.config.origin!r}"
        )
    return body


def _root_at(ledger: Ledger, size: int) -> bytes:
    try:
        return ledger.root_at(size)
    except LedgerError as exc:
        raise _DisagreementError(f"the SQL log has no root at size {size}: {exc}") from exc


def _compare_anchors(
    ledger: Ledger, channel: LedgerChannel, anchored: AnchorHead, sql_size: int
) -> None:
    if anchored.size > sql_size:
        raise _DisagreementError(
            f"the channel anchors size {anchored.size} but the SQL log holds only {sql_size}"
        )
    after = 0
    last = 0
    while True:
        page = channel.anchors(after, MAX_PAGE)
        if not page.checkpoints:
            break
        for note in page.checkpoints:
            what = "the anchored checkpoint"
            body = _checked_note(ledger, note, what)
            if body.size <= after:
                raise _DisagreementError(f"{what} of size {body.size} is out of order")
            if body.size > sql_size:
                raise _DisagreementError(
                    f"{what} of size {body.size} is beyond the SQL log's {sql_size} entries"
                )
            root = _root_at(ledger, body.size)
            if root != body.root:
                raise _DisagreementError(
                    f"{what} of size {body.size} has root {_b64(body.root)} but the SQL "
                    f"log's is {_b64(root)}"
                )
            after = last = body.size
    if last != anchored.size:
        raise _DisagreementError(
            f"the channel's anchor head says size {anchored.size} but its last anchored "
            f"checkpoint is of size {last}"
        )
