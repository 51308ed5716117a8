"""The verifier's short way through an entry gives what the long way gives, or takes the long way.

``audit._parse`` decodes a stored leaf once and, when the leaf is laid out as
the ledger stores it, parses the payload strictly from its own bytes
(``EntryParser.parse_json``) instead of re-encoding the decoded payload. These
tests attack that: leaves an operator could forge (JSON the strict parse would
not take, members out of order, two payloads, text in a string that looks like
the members after the payload, bytes that are no UTF-8) must come out of
``parse_entries`` exactly as from the long way alone (same findings, same typed
payloads), a canonical leaf must take the short way, and an entry line must read as
its JSON reading.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict
from pydantic import JsonValue as PydanticJson

from audit import ExportedEntry, ExportHeader, LedgerExport
from audit._export import export_lines
from audit._parse import EntryTypes, JsonEntryParser, parse_entries
from audit.errors import ExportFormatError
from core.canonical import JsonValue, canonical_bytes
from core.clock import utcnow
from exchange.ledger_types import ENTRY_PARSERS, EntryParser

PAYLOAD: dict[str, JsonValue] = {
    "dataset_id": "acme.energy",
    "owner": "acme",
    "fields": ["energy_kwh", "output_units"],
    "classification": "general",
    "description": 'monthly,"time":"2026-01-01T00:00:00Z","type":"x"} energy',
    "created_at": "2026-11-25T08:00:00.000000Z",
}


class _Reading(BaseModel):
    """A test type whose float member takes what a strict JSON parse gives it."""

    model_config = ConfigDict(extra="forbid", strict=True)
    value: float
    extra: dict[str, PydanticJson] = {}


def _leaf(
    payload: Mapping[str, Any], entry_type: str = "dataset.register", index: int = 0
) -> bytes:
    return canonical_bytes(
        {
            "index": 0,
            "type": entry_type,
            "actor": "acme",
            "time": "2026-11-25T08:00:00.000000Z",
            "payload": dict(payload),
        }
    )


def _registry() -> dict[str, Any]:
    return {**ENTRY_PARSERS, "test.reading": EntryParser("test.reading", _Reading)}


def _long_only(registry: Mapping[str, Any]) -> EntryTypes:
    """The same parsers, as plain functions: no JSON text path, so always the long way."""

    def plain(parser: Callable[[Mapping[str, JsonValue]], object]) -> Callable[..., object]:
        def parse(payload: Mapping[str, JsonValue]) -> object:
            return parser(payload)

        return parse

    return {entry_type: plain(parser) for entry_type, parser in registry.items()}


class _Counting:
    """A JSON-text parser that counts how often the short way reached it."""

    def __init__(self, parser: EntryParser) -> None:
        self.parser, self.calls = parser, 0

    def __call__(self, payload: Mapping[str, JsonValue]) -> object:
        return self.parser(payload)

    def parse_json(self, text: str) -> object:
        self.calls += 1
        return self.parser.parse_json(text)


def _same_both_ways(*leaves: bytes) -> list[Any]:
    """Parse ``leaves`` both ways, assert the results agree, return the findings."""
    exported = [ExportedEntry(i, leaf) for i, leaf in enumerate(leaves)]
    registry = _registry()
    short, short_findings = parse_entries(exported, registry)
    long, long_findings = parse_entries(exported, _long_only(registry))
    assert short_findings == long_findings
    assert [(p.index, p.entry, p.typed) for p in short] == [
        (p.index, p.entry, p.typed) for p in long
    ]
    return long_findings


def test_a_canonical_leaf_takes_the_short_way_and_parses_as_the_long_way() -> None:
    counting = _Counting(ENTRY_PARSERS["dataset.register"])
    assert isinstance(counting, JsonEntryParser)
    leaf = _leaf(PAYLOAD)
    parsed, findings = parse_entries([ExportedEntry(0, leaf)], {"dataset.register": counting})
    assert counting.calls == 1 and findings == []
    assert parsed[0].typed == ENTRY_PARSERS["dataset.register"](PAYLOAD)
    assert parsed[0].entry.payload == PAYLOAD and parsed[0].entry.leaf_input == leaf
    assert _same_both_ways(leaf) == []


def test_what_a_strict_parse_of_the_bytes_would_take_but_the_decoded_payload_is_not() -> None:
    # json.loads reads NaN, Infinity and 1e400 (inf); a strict JSON parse of the payload's own
    # bytes would hand them to a float member. The long way refuses them (no JSON for them):
    # so must the short way.
    for number in ("NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400 + ".0"):
        good = _leaf({"value": 1.5}, "test.reading")
        leaf = good.replace(b'"value":1.5', b'"value":' + number.encode())
        findings = _same_both_ways(leaf)
        assert [f.code for f in findings] == ["entry.parse"], number
    nested = _leaf({"value": 1.5, "extra": {"a": 1}}, "test.reading").replace(b'"a":1', b'"a":NaN')
    assert [f.code for f in _same_both_ways(nested)] == ["entry.parse"]
    assert _same_both_ways(_leaf({"value": 1.5, "extra": {"a": [1e300]}}, "test.reading")) == []


def test_leaves_not_laid_out_as_stored_take_the_long_way() -> None:
    leaf = _leaf(PAYLOAD)
    obj = json.loads(leaf)
    second = dict(PAYLOAD, owner="mallory")
    forged = [
        json.dumps(obj).encode(),  # spaces
        json.dumps(obj, sort_keys=True, indent=1).encode(),
        json.dumps(dict(reversed(list(obj.items())))).encode(),  # members in another order
        b"\xef\xbb\xbf" + leaf,  # a byte order mark
        leaf + b" ",
        b" " + leaf,
        # two payloads: the decoder keeps the last, the slice would be both
        leaf.replace(b',"time":', b',"payload":' + canonical_bytes(second) + b',"time":', 1),
        leaf.replace(b'"actor":"acme"', b'"actor":"\\u0061cme"'),  # an escape the encoder omits
        leaf.replace(b'"owner":"acme"', b'"owner":"\\ud800"'),  # a lone surrogate
        leaf.replace(b'"index":0', b'"index":true'),
        leaf.replace(b'"index":0', b'"index":0.0'),
        leaf.replace(b'"type":"dataset.register"', b'"type":7'),
        leaf.replace(b'"time":"2026-11-25T08:00:00.000000Z"', b'"time":"yesterday"'),
        leaf.replace(b'"fields":["energy_kwh","output_units"]', b'"fields":"energy_kwh"'),
        leaf.replace(b'"owner":"acme"', b'"owner":"acme","owner":"mallory"'),  # last one wins
        leaf.replace(b"acme.energy", "acmé.energy".encode("latin-1")),  # no UTF-8
        leaf.replace(b"dataset.register", b"dataset.unknown"),
        leaf.replace(b'"payload":{', b'"payload":[{').replace(b',"time"', b'],"time"', 1),
        leaf.replace(b"{", b"[", 1),
        b"",
    ]
    for leaf in forged:
        _same_both_ways(leaf)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=400),
    st.integers(min_value=0, max_value=30),
    st.binary(max_size=12),
)
def test_any_edit_of_a_leaf_parses_as_the_long_way(at: int, cut: int, insert: bytes) -> None:
    leaf = _leaf(PAYLOAD)
    at = min(at, len(leaf))
    _same_both_ways(leaf[:at] + insert + leaf[at + cut :])


@settings(max_examples=150, deadline=None)
@given(
    st.text(max_size=20),
    st.text(max_size=20),
    st.one_of(st.floats(), st.integers(), st.text(max_size=8), st.none()),
)
def test_any_member_values_parse_as_the_long_way(actor: str, text: str, value: object) -> None:
    leaf = _leaf(PAYLOAD).replace(b'"actor":"acme"', b'"actor":' + json.dumps(actor).encode())
    described = _leaf(dict(PAYLOAD, description=text))
    reading = _leaf({"value": 1.5}, "test.reading").replace(
        b"1.5", json.dumps(value, allow_nan=True).encode()
    )
    _same_both_ways(leaf, described, reading)


def _read(*entry_lines: bytes) -> tuple[ExportedEntry, ...] | str:
    """The entries an export with these entry lines holds, or the error reading it."""
    header = ExportHeader("o", "k", 0, utcnow())
    lines = [next(export_lines(header, [], [])), *entry_lines]
    try:
        return LedgerExport.parse(lines).entries
    except ExportFormatError as exc:
        return str(exc)


def _read_as_json(line: bytes) -> tuple[ExportedEntry, ...] | str:
    """What the JSON reading of one entry line gives (the line re-serialised with spaces,
    so the short way cannot take it)."""
    try:
        obj = json.loads(line)
    except ValueError:
        return _read(line)
    return _read(json.dumps(obj, separators=(", ", ": ")).encode() + b"\n")


def test_entry_lines_read_short_as_the_json_reading() -> None:
    written = list(export_lines(ExportHeader("o", "k", 2, utcnow()), [(0, b"a"), (7, b"")], []))
    assert written[1:] == [b'{"index":0,"leaf":"YQ=="}\n', b'{"index":7,"leaf":""}\n']
    assert _read(*written[1:]) == (ExportedEntry(0, b"a"), ExportedEntry(7, b""))
    for line in [
        b'{"index":3,"leaf":"YWJj"}\n',
        b'  {"index":3,"leaf":"YWJj"}\r\n',
        b'{"index":3,"leaf":"YWJ"}\n',  # no base64
        b'{"index":3,"leaf":"YW=j"}\n',
        b'{"index":03,"leaf":"YWJj"}\n',  # no JSON
        b'{"index":-3,"leaf":"YWJj"}\n',
        b'{"index":3,"leaf":"Y\\/Jj"}\n',  # an escaped solidus
        b'{"index":3,"leaf":"YWJj","x":1}\n',
        b'{"index":true,"leaf":"YWJj"}\n',
        b'{"index":3,"leaf":"YWJj"}\x0c\n',
    ]:
        assert _read(line) == _read_as_json(line), line
