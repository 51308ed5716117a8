"""The typed policy entries round-trip: model → payload → model, and payload → JSON → model;
a payload with an extra field, a missing field or a malformed duty does not parse."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from policies import (
    ENTRY_TYPES,
    CoverageSummary,
    PolicyActivateEntry,
    PolicyApproveEntry,
    PolicyProposeEntry,
    PolicyTestEntry,
)
from tests.policies.duties import DutyOfficer

OFFICER = DutyOfficer("officer-h")
hashes = st.text("0123456789abcdef", min_size=64, max_size=64)
names = st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True)
counts = st.integers(min_value=0, max_value=10**6)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


@st.composite
def duties(draw: st.DrawFn, version: str, action: str) -> dict[str, Any]:
    at = draw(times)
    return OFFICER.sign(action, version, origin=draw(names), at=at).to_dict()


@st.composite
def propose_entries(draw: st.DrawFn) -> PolicyProposeEntry:
    version = draw(hashes)
    return PolicyProposeEntry(
        version=version,
        officer=draw(names),
        duty=draw(duties(version, "policy.propose")),
        summary=draw(st.dictionaries(names, counts, max_size=4)),
    )


@st.composite
def run_entries(draw: st.DrawFn) -> PolicyTestEntry:
    version = draw(hashes)
    coverage = draw(
        st.none() | st.builds(CoverageSummary, deny_fired=counts, deny_rules=counts,
                              lines_evaluated=counts, lines=counts)
    )  # fmt: skip
    return PolicyTestEntry(
        version=version,
        officer=draw(names),
        duty=draw(duties(version, "policy.test")),
        passed=draw(st.booleans()),
        results=draw(counts),
        failed=draw(st.lists(st.text(max_size=40), max_size=4)),
        error=draw(st.none() | st.text(max_size=80)),
        coverage=coverage,
    )


@st.composite
def approve_entries(draw: st.DrawFn) -> PolicyApproveEntry:
    version = draw(hashes)
    officer = draw(names)
    return PolicyApproveEntry(
        version=version,
        officer=officer,
        duty=draw(duties(version, "policy.approve")),
        proposer=draw(names),
        approver=officer,
    )


@st.composite
def activate_entries(draw: st.DrawFn) -> PolicyActivateEntry:
    version = draw(hashes)
    officer = draw(names)
    return PolicyActivateEntry(
        version=version,
        officer=officer,
        duty=draw(duties(version, "policy.activate")),
        previous=draw(st.none() | hashes),
        rollback=draw(st.booleans()),
        proposer=draw(names),
        approver=draw(names),
        activator=officer,
    )


entries = propose_entries() | run_entries() | approve_entries() | activate_entries()


@settings(max_examples=40)  # each example signs a duty; the suite has a time budget
@given(entries)
def test_model_payload_model(entry: BaseModel) -> None:
    payload = entry.model_dump(mode="json")
    again = type(entry).model_validate(payload)
    assert again == entry
    assert type(entry) in ENTRY_TYPES


@settings(max_examples=40)  # each example signs a duty; the suite has a time budget
@given(entries)
def test_payload_json_parse(entry: BaseModel) -> None:
    text = json.dumps(entry.model_dump(mode="json"), sort_keys=True)
    parsed = type(entry).model_validate_json(text)
    assert parsed == entry
    assert parsed.model_dump(mode="json") == json.loads(text)


@settings(max_examples=40)  # each example signs a duty; the suite has a time budget
@given(entries)
def test_the_duty_parses_back_to_the_signed_statement(entry: BaseModel) -> None:
    assert isinstance(entry, PolicyProposeEntry | PolicyTestEntry | PolicyApproveEntry
                      | PolicyActivateEntry)  # fmt: skip
    signed = entry.signed_duty()
    assert signed.duty.subject == entry.version
    assert signed.duty.action == entry.TYPE
    assert signed.verify(OFFICER.public_key)


def _approve_payload() -> dict[str, Any]:
    version = "a" * 64
    return PolicyApproveEntry(
        version=version,
        officer="officer-b",
        duty=OFFICER.sign("policy.approve", version).to_dict(),
        proposer="officer-a",
        approver="officer-b",
    ).model_dump(mode="json")


BROKEN = [
    ("an extra field", lambda p: {**p, "note": "x"}),
    ("no duty", lambda p: {k: v for k, v in p.items() if k != "duty"}),
    ("an unsigned duty", lambda p: {**p, "duty": {"statement": p["duty"]["statement"]}}),
    ("a duty of another shape", lambda p: {**p, "duty": {**p["duty"], "by": "me"}}),
    ("a short signature", lambda p: {**p, "duty": {**p["duty"], "signature": "AAAA"}}),
    ("a statement with an extra field",
     lambda p: {**p, "duty": {**p["duty"], "statement": {**p["duty"]["statement"], "x": 1}}}),
    ("a version that is no hash", lambda p: {**p, "version": "abc"}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "breaks"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_malformed_payload_does_not_parse(name: str, breaks: Any) -> None:
    payload = _approve_payload()
    PolicyApproveEntry.model_validate(payload)
    with pytest.raises(ValidationError):
        PolicyApproveEntry.model_validate(breaks(payload))


def test_entry_types_are_the_four_steps() -> None:
    assert [t.TYPE for t in ENTRY_TYPES] == [  # type: ignore[attr-defined]
        "policy.propose",
        "policy.test",
        "policy.approve",
        "policy.activate",
    ]
    for model in ENTRY_TYPES:
        assert model.model_config.get("extra") == "forbid"
        assert model.model_config.get("frozen") is True
