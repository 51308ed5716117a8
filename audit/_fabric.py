"""The export checked against the ledger's copy on a Fabric channel (``ibx audit verify
--fabric``, docs/audit.md and docs/fabric.md).

The operator ships its log to a channel the consortium's organisations hold; an
auditor of another organisation reads the channel through their own peer and
compares it with the export the operator gave them
(:func:`ledger.fabric.compare.compare_log`): every entry on the channel equals
the export's at its index, the roots agree, the channel's log was created with
the export's ledger key, and every anchored checkpoint verifies and names the
export's tree. Each disagreement is a :class:`~audit.Finding` with a
``fabric.*`` code; a channel behind the export is lag (reported, not a
finding): the operator may not have shipped the newest entries yet.

A channel ahead of the export is a finding (``fabric.ahead``) only for an
export read from the exchange just now, after the channel was read: the
exchange then serves fewer entries than it had already shipped (rolled back or
cut). An export file is older than the channel whenever anything was
appended since it was written, so for a file the channel is compared up to
the export's size and its newer entries are reported (export again to check
them), not found wrong.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, replace
from itertools import islice
from typing import Final

from audit._export import LedgerExport
from audit._findings import Finding, VerifyReport
from core.canonical import JsonValue
from ledger import NoteVerifier, leaf_hash
from ledger._compact import CompactRange
from ledger.fabric.channel import LedgerChannel
from ledger.fabric.compare import (
    ChannelState,
    DisagreementKind,
    FabricComparison,
    compare_log,
)
from ledger.fabric.config import FabricMode

__all__ = ["ExportLog", "FabricCheck", "check_fabric", "with_fabric"]

_HINTS: Final[Mapping[DisagreementKind, str]] = {
    DisagreementKind.KEY: "the log on the channel is not this ledger's (its key was replaced)",
    DisagreementKind.ENTRY: "the export's entry is not the one the operator shipped "
    "(changed after shipping, or the log was rewritten)",
    DisagreementKind.ROOT: "the export's tree is not the one on the channel",
    DisagreementKind.AHEAD: "the channel holds more than the export: entries were cut from "
    "the export, or it is older than the channel (export again)",
    DisagreementKind.ANCHOR: "a checkpoint the consortium witnessed is not in the export's history",
    DisagreementKind.ROLLBACK: "the channel's state was rolled back",
}


@dataclass(frozen=True)
class ExportLog:
    """An export as the log the channel is compared with
    (:class:`ledger.fabric.compare.ComparedLog`).

    Entries are taken by position (the tree is built by position); the index each
    line claims is what a differing entry is named by.
    """

    export: LedgerExport
    verifier: NoteVerifier

    @property
    def name(self) -> str:
        """``the export``."""
        return "the export"

    @property
    def short_name(self) -> str:
        """``export``."""
        return "export"

    @property
    def origin(self) -> str:
        """The export's origin (the log id on the channel)."""
        return self.export.header.origin

    def size(self) -> int:
        """The entries the export holds (not what its header claims)."""
        return len(self.export.entries)

    def entries(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        """``(index, leaf)`` of the entry lines at positions ``[start, stop)``."""
        for entry in islice(self.export.entries, start, stop):
            yield entry.index, entry.leaf

    def roots_at(self, sizes: Collection[int]) -> Mapping[int, bytes]:
        """The root at each size, from one fold of the leaves (O(n) once, however many
        sizes); sizes beyond the export are absent."""
        entries = self.export.entries
        wanted = sorted({s for s in sizes if 0 <= s <= len(entries)})
        remaining = iter(entries)
        compact = CompactRange.empty()
        roots: dict[int, bytes] = {}
        for size in wanted:
            step = islice(remaining, size - compact.size)
            compact = compact.append_hashes(leaf_hash(entry.leaf) for entry in step)
            roots[size] = compact.root()
        return roots


@dataclass(frozen=True)
class FabricCheck:
    """What the channel showed: the mode compared, its size and the export's, and the
    ``fabric.*`` findings (none: the consortium's copy agrees with the export)."""

    mode: FabricMode
    log: str
    created: bool
    """False: the channel holds no such log (nothing shipped yet; all of the export is lag)."""
    channel_size: int
    export_size: int
    findings: tuple[Finding, ...] = ()
    live: bool = False
    """The export was read from the exchange after the channel (a channel ahead is then a
    finding), not from a file."""

    @property
    def ok(self) -> bool:
        """True when nothing disagrees."""
        return not self.findings

    @property
    def lag(self) -> int:
        """Export entries not on (or not anchored on) the channel yet."""
        return max(0, self.export_size - self.channel_size)

    @property
    def newer(self) -> int:
        """Channel entries (or anchored size) beyond an export file: not checked."""
        return max(0, self.channel_size - self.export_size) if self.ok else 0

    def to_dict(self) -> dict[str, JsonValue]:
        """The ``fabric`` object of ``--json``."""
        return {
            "ok": self.ok,
            "mode": str(self.mode),
            "log": self.log,
            "created": self.created,
            "channel_size": self.channel_size,
            "export_size": self.export_size,
            "lag": self.lag,
            "newer": self.newer,
        }

    def line(self) -> str:
        """``fabric full: channel size S of export size E agrees (lag L)`` (or disagrees;
        anchor mode: ``anchored size``)."""
        if not self.created:
            return (
                f"fabric: the channel holds no log {self.log}: nothing shipped yet (lag {self.lag})"
            )
        verdict = "agrees" if self.ok else "disagrees"
        newer = (
            f"; the channel holds {self.newer} newer entries: export again to check them"
            if self.newer
            else ""
        )
        size = "channel size" if self.mode is FabricMode.FULL else "anchored size"
        return (
            f"fabric {self.mode}: {size} {self.channel_size} of export size "
            f"{self.export_size} {verdict} (lag {self.lag}{newer})"
        )


def check_fabric(
    export: LedgerExport,
    channel: LedgerChannel,
    *,
    verifier: NoteVerifier | None,
    mode: FabricMode | None = None,
    state: ChannelState | None = None,
    live: bool = False,
) -> FabricCheck:
    """Compare the export with the channel's copy of its log.

    Args:
        export: the export (its origin is the log id on the channel).
        channel: that log on the channel, through the auditor's own peer.
        verifier: the ledger key the export was verified with (the pinned one, else the
            export's); None: the export's key is no key, and the channel is not compared.
        mode: what the operator ships; None: as the channel shows (anchor when it holds
            anchored checkpoints and no entries, else full, and then its anchors, if any,
            are checked too).
        state: the channel's genesis and heads, read before the export was fetched (an
            export fetched from a live exchange may then only be ahead of it).
        live: the export was fetched from the exchange after ``state`` was read: a channel
            ahead of it is a finding (for a file it is newer entries, reported).

    Raises:
        FabricError: the channel could not be read.
    """
    explicit = mode is not None
    if state is None:
        state = ChannelState.read(channel, mode)
    if mode is None:
        mode = state.shipped_mode()
    size = len(export.entries)
    log = export.header.origin
    if verifier is None:
        finding = Finding(
            "fabric.key",
            None,
            "the export's ledger key is no verifier key: the channel's copy could not be compared",
        )
        return FabricCheck(mode, log, state.genesis is not None, 0, size, (finding,), live)
    exported = ExportLog(export, verifier)
    comparison = compare_log(exported, channel, mode, state)
    findings = _findings(comparison, live=live)
    if _also_anchored(state, mode, asked=explicit):
        # entries and anchors both on the channel: the anchors are the operator's
        # commitments too, and nothing on the channel ties them to the entries
        seen = {(f.code, f.index) for f in findings}
        anchors = _findings(compare_log(exported, channel, FabricMode.ANCHOR, state), live=live)
        findings += tuple(f for f in anchors if (f.code, f.index) not in seen)
    return FabricCheck(
        mode,
        log,
        state.genesis is not None,
        comparison.channel_size,
        size,
        findings,
        live,
    )


def _also_anchored(state: ChannelState, mode: FabricMode, *, asked: bool) -> bool:
    """Whether a full-mode comparison the channel chose should check its anchors too."""
    return (
        not asked
        and mode is FabricMode.FULL
        and state.anchored is not None
        and state.anchored.size > 0
    )


def _findings(comparison: FabricComparison, *, live: bool) -> tuple[Finding, ...]:
    found = comparison.disagreement
    if found is None:
        return ()
    if found.kind is DisagreementKind.AHEAD and not live:
        return ()  # everything up to the file's size agreed: the rest is newer
    message = f"the Fabric channel: {found.message}; {_HINTS[found.kind]}"
    return (Finding(f"fabric.{found.kind}", found.index, message),)


def with_fabric(report: VerifyReport, check: FabricCheck) -> VerifyReport:
    """The report with the channel's findings added (in the report's order)."""
    findings = sorted((*report.findings, *check.findings), key=_order)
    return replace(report, findings=tuple(findings))


def _order(finding: Finding) -> tuple[int, int]:
    return (0, 0) if finding.index is None else (1, finding.index)
