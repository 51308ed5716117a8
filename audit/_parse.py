"""Every entry of an export decoded and parsed through its typed class; no I/O.

``audit`` does not know the entry types: the composition root hands it a
registry (``exchange.ledger_types.ENTRY_TYPES``, each class's
``model_validate``), so an auditor's verifier parses exactly what the
exchange's packages declare they write. Bytes that are no ledger entry, a
type the registry does not know and a payload its class refuses are findings;
the entries that parse go on to the cross-entry invariants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeAlias

from audit._export import ExportedEntry
from audit._findings import Finding
from core.canonical import JsonValue
from ledger import InvalidEntryError, LedgerEntry

__all__ = ["EntryTypes", "ParsedEntry", "parse_entries"]

EntryTypes: TypeAlias = Mapping[str, Callable[[Mapping[str, JsonValue]], object]]
"""Entry type → the function that parses its payload (raising ValueError/TypeError)."""

_MAX_ERROR = 300


@dataclass(frozen=True)
class ParsedEntry:
    """An entry of the export: the index its line gives, the decoded entry, and its
    typed payload (None when the payload did not parse: already a finding)."""

    index: int
    entry: LedgerEntry
    typed: object | None


def parse_entries(
    entries: Iterable[ExportedEntry], entry_types: EntryTypes
) -> tuple[list[ParsedEntry], list[Finding]]:
    """Decode each leaf and parse its payload through ``entry_types``.

    Never raises on content: an entry that does not decode is left out (and is
    a finding); one whose payload does not parse is kept with ``typed=None``.
    """
    parsed: list[ParsedEntry] = []
    findings: list[Finding] = []
    for exported in entries:
        index = exported.index
        try:
            entry = LedgerEntry.from_leaf_input(exported.leaf)
        except InvalidEntryError as exc:
            findings.append(Finding("entry.decode", index, f"the leaf is no ledger entry: {exc}"))
            continue
        parse = entry_types.get(entry.type)
        typed: object | None = None
        if parse is None:
            findings.append(
                Finding(
                    "entry.parse",
                    index,
                    f"entry type {entry.type!r} is none the ledger's packages declare",
                )
            )
        else:
            try:
                typed = parse(entry.payload)
            except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
                findings.append(
                    Finding(
                        "entry.parse",
                        index,
                        f"the {entry.type} payload does not parse: {_one_line(exc)}",
                    )
                )
        parsed.append(ParsedEntry(index, entry, typed))
    return parsed, findings


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
