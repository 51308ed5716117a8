"""The identity registry's typed ledger entries: payload round-trips and refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from core.duty import Duty
from core.keys import Ed25519Signer
from exchange.identity_entries import (
    ENTRY_TYPES,
    AuthLockoutEntry,
    CertificateIssueEntry,
    CertificateRevokeEntry,
    IdentityCreateEntry,
    IdentityRevokeEntry,
    PublicKeyEntry,
    TokenRotateEntry,
)

SIGNER = Ed25519Signer("test-officer", b"\x07" * 32)
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,30}", fullmatch=True)
texts = st.text(min_size=1, max_size=40)
stamps = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
roles = st.sampled_from(["security_officer", "auditor", "witness", "sysadmin", "enterprise"])
hexes = st.from_regex(r"[0-9a-f]{1,40}", fullmatch=True)


@st.composite
def duties(draw: st.DrawFn) -> dict[str, Any]:
    duty = Duty(
        origin=draw(texts),
        actor=draw(names),
        action=draw(st.sampled_from(["identity.create", "identity.revoke", "certificate.revoke"])),
        subject=draw(names),
        signed_at=datetime(2026, 1, 1, tzinfo=UTC),
        details={"role": draw(roles)},
    )
    return duty.sign(SIGNER).to_dict()


optional_duty = st.none() | duties()
STRATEGIES: dict[type[BaseModel], st.SearchStrategy[Any]] = {
    IdentityCreateEntry: st.builds(
        IdentityCreateEntry,
        name=names,
        role=roles,
        industry=st.none() | names,
        public_key=st.none() | st.just(SIGNER.public_key.to_base64()),
        token_expires_at=stamps,
        duty=optional_duty,
        bootstrap=st.booleans(),
    ),
    IdentityRevokeEntry: st.builds(IdentityRevokeEntry, name=names, role=roles, duty=optional_duty),
    PublicKeyEntry: st.builds(PublicKeyEntry, name=names, public_key=texts),
    TokenRotateEntry: st.builds(TokenRotateEntry, name=names, role=roles, token_expires_at=stamps),
    AuthLockoutEntry: st.builds(
        AuthLockoutEntry,
        source=texts,
        failures=st.integers(0, 10**6),
        window_seconds=st.integers(0, 10**6),
        locked_until=stamps,
    ),
    CertificateIssueEntry: st.builds(
        CertificateIssueEntry,
        name=names,
        role=roles,
        serial=hexes,
        fingerprint=hexes,
        subject_uri=texts,
        not_after=stamps,
        superseded=st.lists(hexes, max_size=3),
    ),
    CertificateRevokeEntry: st.builds(
        CertificateRevokeEntry,
        name=names,
        serials=st.lists(hexes, min_size=1, max_size=3),
        revoked_at=stamps,
        reason=st.none() | texts,
        duty=optional_duty,
    ),
}


def test_every_entry_type_is_exported_once() -> None:
    assert set(ENTRY_TYPES) == set(STRATEGIES)
    types = [model.TYPE for model in ENTRY_TYPES]
    assert len(types) == len(set(types))
    assert all(t.startswith("identity.") for t in types)


@pytest.mark.parametrize("model", ENTRY_TYPES, ids=lambda m: m.TYPE)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_payload_round_trips(model: type[BaseModel], data: st.DataObject) -> None:
    entry = data.draw(STRATEGIES[model])
    payload = entry.to_payload()
    assert model.model_validate(payload) == entry
    assert model.model_validate(json.loads(json.dumps(payload))) == entry
    for optional in ("duty", "bootstrap"):
        if optional in payload:
            assert payload[optional] not in (None, False)


@pytest.mark.parametrize("model", ENTRY_TYPES, ids=lambda m: m.TYPE)
@settings(max_examples=5, deadline=None)
@given(data=st.data())
def test_an_unknown_field_is_refused(model: type[BaseModel], data: st.DataObject) -> None:
    entry = data.draw(STRATEGIES[model])
    with pytest.raises(ValidationError):
        model.model_validate({**entry.to_payload(), "smuggled": 1})


def test_a_malformed_duty_is_refused() -> None:
    base = {
        "name": "a1",
        "role": "auditor",
        "industry": None,
        "public_key": None,
        "token_expires_at": "2027-01-01T00:00:00.000000Z",
    }
    for bad in ({"statement": {}, "signature": "AA=="}, {"signature": "x"}, {"x": 1}):
        with pytest.raises(ValidationError):
            IdentityCreateEntry.model_validate({**base, "duty": bad})
