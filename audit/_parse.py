"""Every entry of an export decoded and parsed through its typed class; no I/O.

``audit`` does not know the entry types: the composition root hands it a
registry (``exchange.ledger_types.ENTRY_PARSERS``), so an auditor's verifier
parses exactly what the exchange's packages declare they write. Bytes that are
no ledger entry, a type the registry does not know and a payload its class
refuses are findings; the entries that parse go on to the cross-entry
invariants.

A provincial ledger holds millions of entries, so each is decoded once.
A stored leaf is the entry's RFC 8785 bytes,
``{"actor":…,"index":…,"payload":{…},"time":…,"type":…}``: when the
leaf is laid out exactly so (its other members re-encoded match the bytes
around the payload), the payload's own bytes are sliced from it and handed to
a parser that takes JSON text (:class:`JsonEntryParser`), so the payload is not
encoded again to be parsed strictly as JSON. The slice parses as the payload
the decoder read (the decoder refuses ``NaN``, ``Infinity`` and numbers too large
for a float, which a strict JSON parse would otherwise take); any leaf or
payload the short path does not take is decoded and parsed the long way, which
also words the finding.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Protocol, TypeAlias, runtime_checkable

from audit._export import ExportedEntry
from audit._findings import Finding
from audit._gc_pause import collection_paused
from core.canonical import JsonValue
from core.clock import parse_rfc3339
from ledger import InvalidEntryError, LedgerEntry

__all__ = ["EntryTypes", "JsonEntryParser", "ParsedEntry", "parse_entries"]

EntryTypes: TypeAlias = Mapping[str, Callable[[Mapping[str, JsonValue]], object]]
"""Entry type → the function that parses its payload (raising ValueError/TypeError)."""

_MAX_ERROR = 300


@runtime_checkable
class JsonEntryParser(Protocol):
    """A payload parser that also takes the payload's JSON text as it stands."""

    def __call__(self, payload: Mapping[str, JsonValue]) -> object:
        """Parse a decoded payload (raising ValueError/TypeError)."""
        ...

    def parse_json(self, text: str) -> object:
        """Parse the payload's JSON text strictly (raising ValueError/TypeError)."""
        ...


@dataclass(frozen=True, slots=True)
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
    by_json: dict[str, Callable[[str], object] | None] = {}
    with collection_paused():
        for exported in entries:
            done = _parse_short(exported, entry_types, by_json)
            if done is None:
                done = _parse_long(exported, entry_types, findings)
            if done is not None:
                parsed.append(done)
    return parsed, findings


def _parse_short(
    exported: ExportedEntry,
    entry_types: EntryTypes,
    by_json: dict[str, Callable[[str], object] | None],
) -> ParsedEntry | None:
    """The entry decoded once and its payload parsed from its own bytes; None: take
    the long way (the leaf is not laid out as stored, or something did not parse)."""
    leaf = exported.leaf
    try:
        text = leaf.decode()
        obj, stop = _DECODER.raw_decode(text)
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError and _refuse are ValueErrors
        return None
    if stop != len(text) or type(obj) is not dict or len(obj) != 5:
        return None
    actor, index, payload = obj.get("actor"), obj.get("index"), obj.get("payload")
    time, entry_type = obj.get("time"), obj.get("type")
    if (
        type(actor) is not str
        or type(index) is not int
        or type(payload) is not dict
        or type(time) is not str
        or type(entry_type) is not str
    ):
        return None
    if entry_type in by_json:
        parse_json = by_json[entry_type]
    else:
        parser = entry_types.get(entry_type)
        parse_json = parser.parse_json if isinstance(parser, JsonEntryParser) else None
        by_json[entry_type] = parse_json
    if parse_json is None:
        return None
    head = f'{{"actor":{encode_basestring(actor)},"index":{index},"payload":'
    tail = f',"time":{encode_basestring(time)},"type":{encode_basestring(entry_type)}}}'
    end = len(text) - len(tail)
    if end <= len(head) or not text.startswith(head) or not text.endswith(tail):
        return None
    try:
        when = parse_rfc3339(time)
        typed = parse_json(text[len(head) : end])
    except (ValueError, TypeError):
        return None
    return ParsedEntry(
        exported.index, LedgerEntry(index, entry_type, actor, when, payload, leaf), typed
    )


def _parse_long(
    exported: ExportedEntry, entry_types: EntryTypes, findings: list[Finding]
) -> ParsedEntry | None:
    """The entry decoded as the ledger decodes a stored leaf and its payload parsed
    from the decoded object; what fails is a finding (None: the leaf is no entry)."""
    index = exported.index
    try:
        entry = LedgerEntry.from_leaf_input(exported.leaf)
    except InvalidEntryError as exc:
        findings.append(Finding("entry.decode", index, f"the leaf is no ledger entry: {exc}"))
        return None
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
    return ParsedEntry(index, entry, typed)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite)
"""The standard decoder, refusing what a strict JSON parse of the payload's bytes
would not read as the decoder does (``NaN``, ``Infinity``, a float that overflows)."""


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= _MAX_ERROR else text[: _MAX_ERROR - 1] + "…"
