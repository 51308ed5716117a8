"""The self-contained ledger export, ``ibx-ledger-export/v1`` (docs/audit.md).

JSON Lines: a header line, one line per entry (its index and the base64 of its
exact leaf input bytes), the checkpoints with every signature line, and at
most one ``state`` line (the exchange's rows as served, for reconciliation).
Reading checks the shape only; whether the content is right is
:mod:`audit`'s verification, which reports findings instead of failing, so a
tampered export still verifies far enough to name what was changed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Final

from audit._gc_pause import collection_paused
from audit.errors import ExportFormatError
from core.canonical import JsonValue
from core.clock import format_rfc3339, parse_rfc3339

__all__ = [
    "EXPORT_FORMAT",
    "ExportHeader",
    "ExportedEntry",
    "LedgerExport",
    "export_lines",
    "write_export",
]

EXPORT_FORMAT: Final = "ibx-ledger-export/v1"
_HEADER_KEYS: Final = frozenset(
    {"format", "origin", "ledger_vkey", "witness_vkeys", "tree_size", "exported_at"}
)


@dataclass(frozen=True)
class ExportHeader:
    """Who the log is (origin, verifier keys), how long it was, when it was exported."""

    origin: str
    ledger_vkey: str
    tree_size: int
    exported_at: datetime
    witness_vkeys: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, JsonValue]:
        """The header line's object."""
        return {
            "format": EXPORT_FORMAT,
            "origin": self.origin,
            "ledger_vkey": self.ledger_vkey,
            "witness_vkeys": list(self.witness_vkeys),
            "tree_size": self.tree_size,
            "exported_at": format_rfc3339(self.exported_at),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ExportHeader:
        """Parse the header line.

        Raises:
            ExportFormatError: not an ``ibx-ledger-export/v1`` header.
        """
        if obj.get("format") != EXPORT_FORMAT:
            raise ExportFormatError(f"line 1 is not an {EXPORT_FORMAT} header")
        if set(obj) != _HEADER_KEYS:
            raise ExportFormatError(f"the header has exactly the fields {sorted(_HEADER_KEYS)}")
        witnesses = obj["witness_vkeys"]
        texts = (obj["origin"], obj["ledger_vkey"], obj["exported_at"])
        if not all(isinstance(t, str) for t in texts) or not isinstance(witnesses, list):
            raise ExportFormatError("the header's origin, keys and time are text")
        if not all(isinstance(w, str) for w in witnesses):
            raise ExportFormatError("witness_vkeys is a list of verifier keys")
        size = obj["tree_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ExportFormatError("tree_size is a non-negative integer")
        try:
            exported_at = parse_rfc3339(obj["exported_at"])
        except ValueError as exc:
            raise ExportFormatError(f"exported_at: {exc}") from exc
        return cls(obj["origin"], obj["ledger_vkey"], size, exported_at, tuple(witnesses))


@dataclass(frozen=True, slots=True)
class ExportedEntry:
    """An entry line: the index it claims and the exact leaf input bytes."""

    index: int
    leaf: bytes


@dataclass(frozen=True)
class LedgerExport:
    """Everything an auditor needs, with nothing fetched from the operator later."""

    header: ExportHeader
    entries: tuple[ExportedEntry, ...]
    checkpoints: tuple[str, ...]
    """Signed notes (ledger signature and cosignature lines), ascending size."""
    state: Mapping[str, JsonValue] | None = None
    """The exchange's rows as served (consents, identities, active policy), if exported."""
    source: str = field(default="", compare=False)
    """Where it was read from (a path or a URL), for messages."""

    @classmethod
    def read(cls, path: Path) -> LedgerExport:
        """Read an export file.

        Raises:
            ExportFormatError: unreadable, not JSON Lines, or a line of no known kind.
        """
        try:
            with path.open("rb") as stream, collection_paused():
                return cls.parse(stream, source=str(path))
        except OSError as exc:
            raise ExportFormatError(f"cannot read {path}: {exc.strerror or exc}") from exc

    @classmethod
    def parse(cls, lines: Iterable[bytes], *, source: str = "") -> LedgerExport:
        """Parse export lines.

        Raises:
            ExportFormatError: names the first malformed line.
        """
        header: ExportHeader | None = None
        entries: list[ExportedEntry] = []
        checkpoints: list[str] = []
        state: Mapping[str, JsonValue] | None = None
        match_entry = _ENTRY_LINE.fullmatch
        b64decode = base64.b64decode
        for number, raw in enumerate(lines, start=1):
            if header is not None:
                found = match_entry(raw)
                if found is not None:
                    # the line as written; what the JSON path reads it as, without the JSON
                    # parse (anything else, escapes included, takes that path)
                    try:
                        leaf = b64decode(found[2], validate=True)
                    except (binascii.Error, ValueError) as exc:
                        raise ExportFormatError(f"line {number}: the leaf is not base64") from exc
                    entries.append(ExportedEntry(int(found[1]), leaf))
                    continue
            if not raw.strip():
                continue
            obj = _json_line(raw, number)
            if header is None:
                header = ExportHeader.from_dict(obj)
            elif set(obj) == {"index", "leaf"}:
                entries.append(_entry(obj, number))
            elif set(obj) == {"checkpoint"} and isinstance(obj["checkpoint"], str):
                checkpoints.append(obj["checkpoint"])
            elif set(obj) == {"state"} and isinstance(obj["state"], dict) and state is None:
                state = obj["state"]
            else:
                raise ExportFormatError(f"line {number} is not an entry, checkpoint or state line")
        if header is None:
            raise ExportFormatError("the export is empty: no header line")
        return cls(header, tuple(entries), tuple(checkpoints), state, source)


_ENTRY_LINE: Final = re.compile(
    rb'[ \t\n\r]*\{"index":(0|[1-9][0-9]*),"leaf":"([A-Za-z0-9+/=]*)"\}[ \t\n\r]*'
)
"""An entry line as :func:`export_lines` writes it (JSON whitespace around it)."""


def _json_line(raw: bytes, number: int) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportFormatError(f"line {number} is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise ExportFormatError(f"line {number} is not a JSON object")
    return obj


def _entry(obj: Mapping[str, Any], number: int) -> ExportedEntry:
    index, leaf = obj["index"], obj["leaf"]
    if not isinstance(index, int) or isinstance(index, bool) or not isinstance(leaf, str):
        raise ExportFormatError(f"line {number}: an entry line is {{index: int, leaf: base64}}")
    try:
        return ExportedEntry(index, base64.b64decode(leaf, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise ExportFormatError(f"line {number}: the leaf is not base64") from exc


def export_lines(
    header: ExportHeader,
    entries: Iterable[tuple[int, bytes]],
    checkpoints: Iterable[str],
    state: Mapping[str, JsonValue] | None = None,
) -> Iterator[bytes]:
    """The lines of an export, streamed (a log of millions of entries is never held whole)."""
    yield _dump(header.to_dict())
    b64encode = base64.b64encode
    for index, leaf in entries:
        if type(index) is int:  # what _dump writes for it: base64 needs no JSON escape
            yield b'{"index":%d,"leaf":"%s"}\n' % (index, b64encode(leaf))
        else:
            yield _dump({"index": index, "leaf": b64encode(leaf).decode()})
    for note in checkpoints:
        yield _dump({"checkpoint": note})
    if state is not None:
        yield _dump({"state": dict(state)})


def write_export(
    out: IO[bytes],
    header: ExportHeader,
    entries: Iterable[tuple[int, bytes]],
    checkpoints: Iterable[str],
    state: Mapping[str, JsonValue] | None = None,
) -> None:
    """Write an export to ``out`` (see :func:`export_lines`)."""
    for line in export_lines(header, entries, checkpoints, state):
        out.write(line)


def _dump(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
