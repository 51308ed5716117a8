"""What the auditor's pages read from the API, as the signed-in auditor.

The checkpoint and its cosignatures, a filtered scan of the entries, and the
whole log as an :class:`audit.LedgerExport` (for ``audit.trace_job`` and
``audit.build_report``, exactly as ``ibx audit trace --exchange`` builds it).
Nothing here verifies: the entry page checks its inclusion proof and the
checkpoint's signature in the browser (``static/proof.js``), and
``ibx audit verify`` checks the whole ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from audit import ExportedEntry, ExportHeader, LedgerExport
from core.canonical import canonical_bytes
from core.clock import utcnow
from exchange.console.api import ConsoleApi
from ledger import Checkpoint, CheckpointError, NoteSignature, SignedNote, cosignature_timestamp

__all__ = [
    "ENTRY_PAGE",
    "Cosigned",
    "EntryQuery",
    "Head",
    "ScannedPage",
    "WitnessedCheckpoint",
    "read_entry",
    "read_export",
    "read_head",
    "scan_entries",
    "witnessed_checkpoints",
]

ENTRY_PAGE: Final = 50
"""Matching entries shown per page."""
_API_PAGE: Final = 1000
_SCAN_LIMIT: Final = 5000
"""Entries one page of the console scans at most looking for matches (then: scan on)."""


@dataclass(frozen=True)
class Cosigned:
    """One signature line of a checkpoint other than the ledger's: a witness's cosignature."""

    witness: str
    time: datetime | None
    """The time the line states (read, not verified), None if it is no cosignature."""


@dataclass(frozen=True)
class Head:
    """The latest checkpoint as served: the note, its body, the ledger's key, the witnesses."""

    text: str
    checkpoint: Checkpoint
    vkey: str
    cosignatures: tuple[Cosigned, ...]

    @property
    def ledger_name(self) -> str:
        """The ledger key's name (the first part of the verifier key)."""
        return self.vkey.split("+", 1)[0]


def _cosignatures(note: SignedNote, ledger_name: str) -> tuple[Cosigned, ...]:
    out: list[Cosigned] = []
    for line in note.signatures:
        if line.name == ledger_name:
            continue
        out.append(Cosigned(line.name, _stated_time(line)))
    return tuple(out)


def _stated_time(line: NoteSignature) -> datetime | None:
    try:
        return datetime.fromtimestamp(cosignature_timestamp(line), UTC)
    except (CheckpointError, OverflowError, ValueError, OSError):
        return None


async def read_head(api: ConsoleApi) -> Head:
    """The latest checkpoint and the ledger's verifier key (both public routes).

    Raises:
        ApiRefusal: the API refused.
        CheckpointError: the served checkpoint is no signed note.
    """
    text = (await api.call("GET", "/v1/ledger/checkpoint", accept="text/plain")).text()
    vkey = (await api.call("GET", "/v1/ledger/vkey", accept="text/plain")).text().strip()
    note = SignedNote.from_text(text)
    checkpoint = Checkpoint.from_text(note.text)
    return Head(text, checkpoint, vkey, _cosignatures(note, vkey.split("+", 1)[0]))


@dataclass(frozen=True)
class WitnessedCheckpoint:
    """A checkpoint witnesses cosigned: its size, root, note and cosignatures."""

    text: str
    checkpoint: Checkpoint
    cosignatures: tuple[Cosigned, ...]


async def witnessed_checkpoints(api: ConsoleApi, ledger_name: str) -> list[WitnessedCheckpoint]:
    """Every checkpoint witnesses cosigned (``GET /v1/ledger/checkpoints``), newest first.

    Raises:
        ApiRefusal: the API refused.
    """
    found: list[WitnessedCheckpoint] = []
    start: int | None = 0
    while start is not None:
        page = await api.get("/v1/ledger/checkpoints", start=start, limit=_API_PAGE)
        for text in page.get("checkpoints", []):
            try:
                note = SignedNote.from_text(str(text))
                checkpoint = Checkpoint.from_text(note.text)
            except CheckpointError:
                continue
            found.append(
                WitnessedCheckpoint(str(text), checkpoint, _cosignatures(note, ledger_name))
            )
        after = page.get("next")
        start = after if isinstance(after, int) and after > start else None
    found.sort(key=lambda w: w.checkpoint.size, reverse=True)
    return found


@dataclass(frozen=True)
class EntryQuery:
    """The ledger page's filters (None: any)."""

    entry_type: str | None = None
    actor: str | None = None
    since: str | None = None
    """RFC 3339 or a day (midnight UTC), inclusive."""
    until: str | None = None
    """RFC 3339 or a day (midnight UTC), exclusive."""

    def params(self) -> dict[str, Any]:
        """The API's query parameters."""
        return {"type": self.entry_type, "actor": self.actor, "since": self.since,
                "until": self.until}  # fmt: skip


@dataclass(frozen=True)
class ScannedPage:
    """Up to :data:`ENTRY_PAGE` matching entries from ``start`` on, and where to go on."""

    start: int
    entries: list[dict[str, Any]] = field(default_factory=list)
    next: int | None = None
    """Where the next page starts (None: the log ends)."""
    scanned_to: int = 0
    """The first index not scanned."""
    cut_short: bool = False
    """The scan stopped at its limit before the page filled (more may match further on)."""


async def scan_entries(api: ConsoleApi, query: EntryQuery, start: int) -> ScannedPage:
    """Scan from ``start`` for entries matching ``query`` (the API filters each range).

    Raises:
        ApiRefusal: the API refused (a start beyond the log: 400).
    """
    found: list[dict[str, Any]] = []
    position: int | None = start
    scanned = 0
    while position is not None and len(found) <= ENTRY_PAGE and scanned < _SCAN_LIMIT:
        page = await api.get(
            "/v1/ledger/entries", start=position, limit=_API_PAGE, **query.params()
        )
        found.extend(item["entry"] for item in page["entries"])
        after = page["next"]
        scanned += _API_PAGE
        position = after if isinstance(after, int) and after > position else None
    if len(found) > ENTRY_PAGE:
        return ScannedPage(start, found[:ENTRY_PAGE], int(found[ENTRY_PAGE]["index"]),
                           int(found[ENTRY_PAGE]["index"]))  # fmt: skip
    end = position if position is not None else (int(found[-1]["index"]) + 1 if found else start)
    return ScannedPage(start, found, position, end, cut_short=position is not None)


async def read_entry(api: ConsoleApi, index: int) -> dict[str, Any]:
    """The entry at ``index`` as served (its members, decoded from the leaf).

    Raises:
        ApiRefusal: the API refused (an index beyond the log: 400).
        LookupError: the page came back without it.
    """
    page = await api.get("/v1/ledger/entries", start=index, limit=1)
    for item in page["entries"]:
        if item["index"] == index:
            entry: dict[str, Any] = item["entry"]
            return entry
    raise LookupError(f"ledger entry {index} was not served")


async def read_export(api: ConsoleApi, source: str) -> LedgerExport:
    """The whole log as the auditor reads it: the latest checkpoint, every entry it signs.

    Raises:
        ApiRefusal: the API refused.
        CheckpointError: the served checkpoint is no signed note.
    """
    head = await read_head(api)
    size = head.checkpoint.size
    entries: list[ExportedEntry] = []
    position = 0
    while position < size:
        page = await api.get(
            "/v1/ledger/entries", start=position, limit=min(_API_PAGE, size - position)
        )
        items = page["entries"]
        entries.extend(
            ExportedEntry(int(item["index"]), canonical_bytes(item["entry"]))
            for item in items
            if int(item["index"]) < size
        )
        after = page["next"]
        if not items or not isinstance(after, int) or after <= position:
            break
        position = after
    header = ExportHeader(
        origin=head.checkpoint.origin,
        ledger_vkey=head.vkey,
        tree_size=size,
        exported_at=utcnow(),
    )
    return LedgerExport(header, tuple(entries), (head.text,), None, source)
