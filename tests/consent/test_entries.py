"""consent's typed ledger entries: every payload round-trips, keeps the bytes it had
before it was typed, and refuses what is not one."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

import consent
from consent import (
    Classification,
    ConsentReceipt,
    ConsentRequest,
    Dataset,
    DatasetScope,
    Engine,
    Operation,
    Purpose,
    Requester,
    Revocation,
    SignedReceipt,
    SignedRevocation,
    new_consent_id,
)
from consent.entries import (
    ConsentRef,
    DatasetRegisterEntry,
    GrantEntry,
    JobEntry,
    RevokeEntry,
    UseEntry,
)
from core.canonical import canonical_bytes
from core.clock import format_rfc3339
from core.keys import Ed25519Signer

SIGNER = Ed25519Signer.generate("ent")
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,20}", fullmatch=True)
fields = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True)
field_lists = st.lists(fields, min_size=1, max_size=4, unique=True)
times = st.integers(min_value=0, max_value=10**8).map(lambda s: T0 + timedelta(seconds=s))
texts = st.none() | st.text(max_size=40)


def _subset(kind: Any) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.lists(st.sampled_from(list(kind)), min_size=1, unique=True).map(tuple)


requesters = st.one_of(
    names.map(Requester.one),
    st.builds(Requester.group, st.sampled_from(["subbrain", "enterprise"]), st.none() | names),
)


@st.composite
def receipts(draw: st.DrawFn) -> SignedReceipt:
    start = draw(times)
    datasets = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    receipt = ConsentReceipt(
        consent_id=new_consent_id(),
        origin=draw(names),
        enterprise=draw(names),
        public_key=SIGNER.public_key,
        scope=tuple(DatasetScope(d, tuple(draw(field_lists))) for d in datasets),
        requester=draw(requesters),
        purposes=draw(_subset(Purpose)),
        operations=draw(_subset(Operation)),
        engines=draw(_subset(Engine)),
        min_cohort=draw(st.integers(1, 1000)),
        valid_from=start,
        valid_until=start + timedelta(seconds=draw(st.integers(1, 10**7))),
        signed_at=draw(times),
        use_limit=draw(st.none() | st.integers(1, 10**6)),
        notice=draw(texts),
    )
    return receipt.sign(SIGNER)


@st.composite
def revocations(draw: st.DrawFn) -> SignedRevocation:
    revocation = Revocation(
        consent_id=new_consent_id(),
        origin=draw(names),
        enterprise=draw(names),
        public_key=SIGNER.public_key,
        signed_at=draw(times),
        reason=draw(texts),
    )
    return revocation.sign(SIGNER)


requests = st.builds(
    ConsentRequest,
    requester=names,
    purpose=st.sampled_from(list(Purpose)),
    operation=st.sampled_from(list(Operation)),
    engine=st.sampled_from(list(Engine)),
    datasets=st.lists(names, min_size=1, max_size=3).map(tuple),
    fields=field_lists.map(tuple),
    time=st.none() | times,
)
refs = st.lists(
    st.builds(
        ConsentRef,
        consent_id=st.builds(new_consent_id),
        enterprise=names,
        receipt_hash=st.binary(min_size=32, max_size=32).map(bytes.hex),
    ),
    min_size=1,
    max_size=4,
)


def _round_trip(model: BaseModel) -> dict[str, Any]:
    payload = model.model_dump(mode="json")
    canonical_bytes(payload)  # a ledger payload: plain JSON
    again = type(model).model_validate(payload)
    assert again == model
    assert again.model_dump(mode="json") == payload
    return payload


@settings(max_examples=25, deadline=None)
@given(receipts())
def test_grant_round_trips_with_the_payload_it_always_had(signed: SignedReceipt) -> None:
    payload = _round_trip(GrantEntry.of(signed))
    assert payload == {  # the bytes written before the entry was typed
        "consent_id": signed.receipt.consent_id,
        "enterprise": signed.receipt.enterprise,
        "receipt": signed.receipt.to_dict(),
        "receipt_hash": signed.receipt_hash(),
        "signature": base64.b64encode(signed.signature).decode(),
    }
    assert GrantEntry.model_validate(payload).signed() == signed


@settings(max_examples=25, deadline=None)
@given(revocations())
def test_revoke_round_trips(signed: SignedRevocation) -> None:
    payload = _round_trip(RevokeEntry.of(signed))
    assert payload["revocation"] == signed.revocation.to_dict()
    assert payload["receipt_hash"] == signed.receipt_hash()
    assert RevokeEntry.model_validate(payload).signed() == signed


@settings(max_examples=25, deadline=None)
@given(requests, times, refs, st.from_regex(r"[a-z0-9-]{1,40}", fullmatch=True))
def test_use_round_trips(
    request: ConsentRequest, at: datetime, cited: list[ConsentRef], decision: str
) -> None:
    entry = UseEntry(
        decision_id=decision, request=request.to_dict(), checked_at=format_rfc3339(at),
        consents=cited,
    )  # fmt: skip
    payload = _round_trip(entry)
    assert UseEntry.model_validate(payload).consent_request() == request
    assert payload["consents"] == [c.model_dump() for c in cited]


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(["released", "stopped"]), times, refs, names)
def test_job_round_trips(status: str, at: datetime, cited: list[ConsentRef], job: str) -> None:
    entry = JobEntry(
        decision_id="d-1", job_id=job, status=status,
        reason="revoked" if status == "stopped" else None, checked_at=format_rfc3339(at),
        consents=cited,
    )  # fmt: skip
    _round_trip(entry)


@settings(max_examples=25, deadline=None)
@given(names, names, field_lists, st.sampled_from(list(Classification)), times, texts)
def test_dataset_register_round_trips_as_the_catalog_wrote_it(
    dataset_id: str,
    owner: str,
    columns: list[str],
    classification: Classification,
    at: datetime,
    description: str | None,
) -> None:
    dataset = Dataset(dataset_id, owner, tuple(columns), classification, at, description)
    payload = dataset.to_dict()
    assert _round_trip(DatasetRegisterEntry.model_validate(payload)) == payload


def _grant_payload() -> dict[str, Any]:
    signed = ConsentReceipt(
        consent_id=new_consent_id(), origin="o", enterprise="ent", public_key=SIGNER.public_key,
        scope=(DatasetScope("ent.energy", ("energy_kwh",)),), requester=Requester.one("sb"),
        purposes=(Purpose.BENCHMARKING,), operations=(Operation.MEAN,), engines=(Engine.HE,),
        min_cohort=1, valid_from=T0, valid_until=T0 + timedelta(days=1), signed_at=T0,
    ).sign(SIGNER)  # fmt: skip
    return GrantEntry.of(signed).model_dump(mode="json")


def _edit(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**payload, **changes}


@pytest.mark.parametrize(
    "payload",
    [
        _edit(_grant_payload(), extra="field"),
        _edit(_grant_payload(), receipt_hash="0" * 64),
        _edit(_grant_payload(), enterprise="someone-else"),
        _edit(_grant_payload(), signature="not base64!"),
        _edit(_grant_payload(), signature=base64.b64encode(b"short").decode()),
        _edit(_grant_payload(), receipt={"kind": "grant"}),
        {k: v for k, v in _grant_payload().items() if k != "signature"},
    ],
    ids=["extra", "hash", "enterprise", "signature", "short-signature", "receipt", "missing"],
)
def test_a_grant_that_is_not_one_does_not_parse(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GrantEntry.model_validate(payload)


@pytest.mark.parametrize(
    "changes",
    [
        {"status": "stopped", "reason": None},
        {"status": "released", "reason": "revoked"},
        {"status": "paused", "reason": None},
        {"checked_at": "yesterday"},
        {"consents": []},
    ],
    ids=["stopped-without-reason", "released-with-reason", "status", "time", "no-consents"],
)
def test_a_job_that_is_not_one_does_not_parse(changes: dict[str, Any]) -> None:
    good = {
        "decision_id": "d", "job_id": "j", "status": "released", "reason": None,
        "checked_at": "2026-11-25T08:00:00Z",
        "consents": [{"consent_id": new_consent_id(), "enterprise": "e", "receipt_hash": "a" * 64}],
    }  # fmt: skip
    JobEntry.model_validate(good)
    with pytest.raises(ValidationError):
        JobEntry.model_validate({**good, **changes})


def test_the_package_exports_every_entry_type_once() -> None:
    types = [model.TYPE for model in consent.ENTRY_TYPES]
    assert types == [
        "consent.grant", "consent.revoke", "consent.use", "consent.job", "dataset.register",
    ]  # fmt: skip
    for model in consent.ENTRY_TYPES:
        assert model.model_config.get("extra") == "forbid"
        assert model.model_config.get("frozen") is True
        assert model.model_json_schema()["additionalProperties"] is False
