"""Does the Fabric channel agree with a copy of the log? (``ibx ledger verify --fabric``,
``ibx audit verify --fabric``)

The log compared is a :class:`ComparedLog`: the operator's SQL log
(:class:`SqlLog`) or an auditor's ``ibx-ledger-export/v1`` export
(``audit._fabric.ExportLog``).

* **full** mode: every entry on the channel equals the log's entry at its index,
  byte for byte; the channel's entries alone rebuild its head root (the channel
  is enough to rebuild and verify the log) and that root is the log's root at
  the channel's size; the checkpoint the channel keeps is signed by the
  ledger's key and names the channel's tree at its size. A channel behind the
  log is lag (shipping has not caught up), not a failure; a channel ahead is.
* **anchor** mode: every anchored checkpoint is signed by the ledger's key,
  names this log, and has the log's root at its size; the last one is the
  channel's anchor head.

The first disagreement is named (``entry 41 differs: ...``), with its kind
(:class:`DisagreementKind`) and, for an entry, its index.
"""

from __future__ import annotations

import base64
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from ledger._checkpoint import Checkpoint, NoteVerifier, SignedNote
from ledger._compact import CompactRange
from ledger._merkle import leaf_hash
from ledger.errors import CheckpointError, LedgerError
from ledger.fabric.channel import LedgerChannel
from ledger.fabric.config import FabricMode
from ledger.fabric.wire import MAX_PAGE, AnchorHead, ChannelHead, LogGenesis, WireError

if TYPE_CHECKING:  # the SQL log is one implementation; an auditor's export needs no database
    from ledger._ledger import Ledger
    from ledger.backends.sql import SqlLedgerBackend

__all__ = [
    "ChannelState",
    "ComparedLog",
    "Disagreement",
    "DisagreementKind",
    "FabricComparison",
    "SqlLog",
    "compare",
    "compare_log",
]


class ComparedLog(Protocol):
    """A copy of the log to compare the channel with."""

    @property
    def name(self) -> str:
        """What it is, for messages: ``the SQL log``, ``the export``."""
        ...

    @property
    def short_name(self) -> str:
        """One word for it in an entry's message: ``sql``, ``export``."""
        ...

    @property
    def origin(self) -> str:
        """The log's checkpoint origin (its log id on the channel)."""
        ...

    @property
    def verifier(self) -> NoteVerifier:
        """The ledger's checkpoint key."""
        ...

    def size(self) -> int:
        """How many entries it holds."""
        ...

    def entries(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        """``(index, leaf input)`` of the entries at positions ``[start, stop)``, in order.

        Raises:
            LedgerError: the log could not be read.
        """
        ...

    def roots_at(self, sizes: Collection[int]) -> Mapping[int, bytes]:
        """The RFC 9162 root at each of ``sizes``; sizes beyond the log are absent.

        Raises:
            LedgerError: the log could not be read.
        """
        ...


@dataclass(frozen=True)
class SqlLog:
    """The operator's SQL log as a :class:`ComparedLog`."""

    ledger: Ledger
    backend: SqlLedgerBackend

    @property
    def name(self) -> str:
        """``the SQL log``."""
        return "the SQL log"

    @property
    def short_name(self) -> str:
        """``sql``."""
        return "sql"

    @property
    def origin(self) -> str:
        """The ledger's origin."""
        return self.ledger.config.origin

    @property
    def verifier(self) -> NoteVerifier:
        """The ledger's checkpoint key."""
        return self.ledger.verifier

    def size(self) -> int:
        """The ledger's size."""
        return self.ledger.size()

    def entries(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        """The entry rows ``[start, stop)``."""
        return self.backend.scan_entries(start, stop)

    def roots_at(self, sizes: Collection[int]) -> Mapping[int, bytes]:
        """``Ledger.root_at`` for each size (O(log n) reads each).

        Raises:
            LedgerError: a root could not be read (sizes beyond the log are left out).
        """
        size = self.ledger.size()
        return {s: self.ledger.root_at(s) for s in sizes if 0 <= s <= size}


class DisagreementKind(StrEnum):
    """What kind of thing differs (``fabric.<kind>`` in an audit's findings)."""

    KEY = "key"
    """The channel's log has another checkpoint key (genesis)."""
    ENTRY = "entry"
    """An entry on the channel differs from the log's, or the log lacks it."""
    ROOT = "root"
    """A root differs, or the channel's head, entries and kept checkpoint disagree."""
    AHEAD = "ahead"
    """The channel holds (or anchors) more than the log."""
    ANCHOR = "anchor"
    """An anchored checkpoint does not verify, is out of order, or names another root."""
    ROLLBACK = "rollback"
    """The channel is smaller than the operator's deployment last saw it committed."""


@dataclass(frozen=True)
class Disagreement:
    """The first thing found to differ: its kind, what (in words), and the entry's index."""

    kind: DisagreementKind
    message: str
    index: int | None = None


@dataclass(frozen=True)
class FabricComparison:
    """The verdict: ``ok`` unless ``disagreement`` names what differs.

    ``channel_size`` is the channel's entries (full) or its last anchored tree size
    (anchor); ``log_size`` the compared log's size when the comparison began.
    """

    ok: bool
    mode: FabricMode
    log_size: int
    channel_size: int
    disagreement: Disagreement | None = None

    @property
    def sql_size(self) -> int:
        """The log's size (the name from when only the SQL log was compared)."""
        return self.log_size

    @property
    def first_disagreement(self) -> str | None:
        """What differs, in words (None when the channel agrees)."""
        return None if self.disagreement is None else self.disagreement.message

    @property
    def lag(self) -> int:
        """Log entries not yet on (or anchored on) the channel."""
        return max(0, self.log_size - self.channel_size)

    def to_dict(self) -> dict[str, object]:
        """Stable JSON fields."""
        return {
            "ok": self.ok,
            "mode": str(self.mode),
            "sql_size": self.log_size,
            "channel_size": self.channel_size,
            "lag": self.lag,
            "first_disagreement": self.first_disagreement,
        }


@dataclass(frozen=True)
class ChannelState:
    """What the channel held when it was read: its genesis (None: no such log) and the
    heads asked for (None: not read)."""

    genesis: LogGenesis | None
    head: ChannelHead | None = None
    anchored: AnchorHead | None = None

    @classmethod
    def read(cls, channel: LedgerChannel, mode: FabricMode | None = None) -> ChannelState:
        """Read the genesis and the head of ``mode`` (both heads when None).

        Raises:
            FabricError: the channel could not be read.
        """
        genesis = channel.genesis()
        if genesis is None:
            return cls(None)
        head = channel.head() if mode is not FabricMode.ANCHOR else None
        anchored = channel.anchor_head() if mode is not FabricMode.FULL else None
        return cls(genesis, head, anchored)

    def shipped_mode(self) -> FabricMode:
        """The mode the log was shipped in: anchor when it has anchors and no entries."""
        entries = 0 if self.head is None else self.head.size
        anchored = 0 if self.anchored is None else self.anchored.size
        return FabricMode.ANCHOR if anchored and not entries else FabricMode.FULL


class _DisagreementError(Exception):
    """The first difference found (internal: becomes the comparison's verdict)."""

    def __init__(self, kind: DisagreementKind, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.disagreement = Disagreement(kind, message, index)


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
    return compare_log(SqlLog(ledger, backend), channel, mode)


def compare_log(
    log: ComparedLog,
    channel: LedgerChannel,
    mode: FabricMode,
    state: ChannelState | None = None,
) -> FabricComparison:
    """Compare the channel's copy of the log with ``log``.

    Args:
        log: the copy to compare with.
        channel: the log on the channel.
        mode: what was shipped (entries, or anchored checkpoints).
        state: the channel's genesis and head, read before ``log`` was (default: read
            now, before ``log``'s size: a shipper running meanwhile ships only what the
            log already had).

    Raises:
        FabricError: the channel could not be read (unreachable, refused a query).
        LedgerError: the log could not be read.
    """
    if state is None:
        state = ChannelState.read(channel, mode)
    if state.genesis is None:  # nothing shipped yet: all of the log is lag
        return FabricComparison(True, mode, log.size(), 0)
    head, anchored = state.head, state.anchored
    if mode is FabricMode.FULL:
        head = head if head is not None else channel.head()
        channel_size = head.size
    else:
        anchored = anchored if anchored is not None else channel.anchor_head()
        channel_size = anchored.size
    log_size = log.size()
    try:
        vkey = log.verifier.to_vkey()
        if state.genesis.vkey != vkey:
            raise _DisagreementError(
                DisagreementKind.KEY,
                f"the channel's log {channel.log} has checkpoint key {state.genesis.vkey}, "
                f"not this ledger's {vkey}",
            )
        if head is not None and mode is FabricMode.FULL:
            _compare_full(log, channel, head, log_size)
        elif anchored is not None:
            _compare_anchors(log, channel, anchored, log_size)
    except _DisagreementError as exc:
        return FabricComparison(False, mode, log_size, channel_size, exc.disagreement)
    return FabricComparison(True, mode, log_size, channel_size)


def _compare_full(
    log: ComparedLog, channel: LedgerChannel, head: ChannelHead, log_size: int
) -> None:
    try:
        head.compact()
    except WireError as exc:
        raise _DisagreementError(
            DisagreementKind.ROOT, f"the channel's head is not a valid compact range: {exc}"
        ) from exc
    kept = _kept_checkpoint(log, head.checkpoint, head.size)
    shared = min(head.size, log_size)
    rows = log.entries(0, shared)
    compact = CompactRange.empty()
    for start, leaves in _channel_pages(channel, head.size):
        for offset, leaf in enumerate(leaves[: max(0, shared - start)]):
            _same_entry(log, start + offset, leaf, next(rows, None))
        if kept is not None and start < kept.size <= start + len(leaves):
            cut = kept.size - start
            compact = compact.append(leaves[:cut])
            if compact.root() != kept.root:
                raise _DisagreementError(
                    DisagreementKind.ROOT,
                    f"the channel's checkpoint of size {kept.size} has root "
                    f"{_b64(kept.root)} but the channel's entries give {_b64(compact.root())}",
                )
            compact = compact.append(leaves[cut:])
        else:
            compact = compact.append(leaves)
    if compact.root() != head.root:
        raise _DisagreementError(
            DisagreementKind.ROOT,
            f"the channel's entries rebuild root {_b64(compact.root())}, not its head root "
            f"{_b64(head.root)} (size {head.size})",
        )
    if head.size > log_size:
        raise _DisagreementError(
            DisagreementKind.AHEAD,
            f"the channel holds {head.size} entries but {log.name} only {log_size}",
            log_size,
        )
    root = _roots_at(log, [head.size]).get(head.size)
    if root != head.root:
        raise _DisagreementError(
            DisagreementKind.ROOT,
            f"at size {head.size} the channel's root is {_b64(head.root)} but "
            f"{log.name}'s is {_b64(root) if root is not None else 'missing'}",
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
                DisagreementKind.ROOT,
                f"the channel's head says {size} entries but it serves none from {start}",
            )
        leaves = page.leaves[: size - start]
        yield start, leaves
        start += len(leaves)


def _same_entry(log: ComparedLog, index: int, leaf: bytes, row: tuple[int, bytes] | None) -> None:
    if row is None or row[0] != index:
        raise _DisagreementError(
            DisagreementKind.ENTRY,
            f"entry {index} is on the channel but missing from {log.name}",
            index,
        )
    if row[1] != leaf:
        raise _DisagreementError(
            DisagreementKind.ENTRY,
            f"entry {index} differs: channel leaf hash {_b64(leaf_hash(leaf))}, "
            f"{log.short_name} leaf hash {_b64(leaf_hash(row[1]))}",
            index,
        )


def _kept_checkpoint(log: ComparedLog, note: str, size: int) -> Checkpoint | None:
    """The checkpoint the channel's head keeps, checked against the ledger's key."""
    if not note:
        return None
    what = "the channel's checkpoint"
    body = _checked_note(log, note, what, DisagreementKind.ROOT)
    if body.size > size:
        raise _DisagreementError(
            DisagreementKind.ROOT,
            f"{what} is of size {body.size}, beyond its {size} entries",
        )
    return body


def _checked_note(log: ComparedLog, note: str, what: str, kind: DisagreementKind) -> Checkpoint:
    try:
        signed = SignedNote.from_text(note)
        signed.verify(log.verifier)
        body = Checkpoint.from_text(signed.text)
    except CheckpointError as exc:
        raise _DisagreementError(
            kind, f"{what} does not verify under the ledger's key: {exc}"
        ) from exc
    if body.origin != log.origin:
        raise _DisagreementError(kind, f"{what} names origin {body.origin!r}, not {log.origin!r}")
    return body


def _roots_at(log: ComparedLog, sizes: Collection[int]) -> Mapping[int, bytes]:
    try:
        return log.roots_at(sizes)
    except LedgerError as exc:
        listed = ", ".join(str(s) for s in sorted(sizes))
        raise _DisagreementError(
            DisagreementKind.ROOT, f"{log.name} has no root at size {listed}: {exc}"
        ) from exc


def _compare_anchors(
    log: ComparedLog, channel: LedgerChannel, anchored: AnchorHead, log_size: int
) -> None:
    """Every anchored checkpoint checked, then the log's roots at their sizes taken at once."""
    what = "the anchored checkpoint"
    bodies: list[Checkpoint] = []
    beyond: Checkpoint | None = None
    after = 0
    more = True
    while more and after < anchored.size:
        page = channel.anchors(after, MAX_PAGE)
        more = bool(page.checkpoints)
        for note in page.checkpoints:
            body = _checked_note(log, note, what, DisagreementKind.ANCHOR)
            if body.size <= after:
                raise _DisagreementError(
                    DisagreementKind.ANCHOR, f"{what} of size {body.size} is out of order"
                )
            if body.size > anchored.size:  # anchored after the head was read
                more = False
                break
            if body.size > log_size:  # the ones within the log are compared first
                beyond, more = body, False
                break
            bodies.append(body)
            after = body.size
    roots = _roots_at(log, [body.size for body in bodies])
    for body in bodies:
        root = roots.get(body.size)
        if root != body.root:
            raise _DisagreementError(
                DisagreementKind.ANCHOR,
                f"{what} of size {body.size} has root {_b64(body.root)} but {log.name}'s is "
                f"{_b64(root) if root is not None else 'missing'}",
            )
    if beyond is not None:
        raise _DisagreementError(
            DisagreementKind.AHEAD,
            f"{what} of size {beyond.size} is beyond {log.name}'s {log_size} entries",
            log_size,
        )
    if after != anchored.size:
        raise _DisagreementError(
            DisagreementKind.ANCHOR,
            f"the channel's anchor head says size {anchored.size} but its last anchored "
            f"checkpoint is of size {after}",
        )
