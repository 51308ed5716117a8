"""Receipts: canonical encoding round trips, signatures, strict decoding."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import (
    BadConsentSignatureError,
    ConsentReceipt,
    DatasetScope,
    Engine,
    InvalidConsentError,
    Operation,
    Purpose,
    Requester,
    Revocation,
    SignedReceipt,
    SignedRevocation,
    new_consent_id,
)
from core.canonical import canonical_bytes
from core.keys import Ed25519Signer

SIGNER = Ed25519Signer("ent", bytes(range(32)))
OTHER = Ed25519Signer("other", bytes(range(1, 33)))

names = st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True)
fields = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True)
times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)


@st.composite
def receipts(draw: st.DrawFn) -> ConsentReceipt:
    start = draw(times)
    scope = draw(
        st.lists(
            st.builds(
                DatasetScope,
                names,
                st.lists(fields, min_size=1, max_size=4, unique=True).map(tuple),
            ),
            min_size=1,
            max_size=3,
            unique_by=lambda s: s.dataset,
        )
    )
    requester = draw(
        st.one_of(
            names.map(Requester.one),
            st.builds(Requester.group, names, st.none() | names),
        )
    )
    return ConsentReceipt(
        consent_id=new_consent_id(),
        origin=draw(names),
        enterprise=draw(names),
        public_key=SIGNER.public_key,
        scope=tuple(scope),
        requester=requester,
        purposes=tuple(draw(st.sets(st.sampled_from(Purpose), min_size=1))),
        operations=tuple(draw(st.sets(st.sampled_from(Operation), min_size=1))),
        engines=tuple(draw(st.sets(st.sampled_from(Engine), min_size=1))),
        min_cohort=draw(st.integers(1, 1000)),
        valid_from=start,
        valid_until=start + draw(st.timedeltas(timedelta(seconds=1), timedelta(days=3000))),
        use_limit=draw(st.none() | st.integers(1, 10**9)),
        notice=draw(st.none() | st.text(max_size=50)),
        signed_at=draw(times),
    )


@given(receipts())
@settings(max_examples=60, deadline=None)
def test_canonical_encoding_round_trips(receipt: ConsentReceipt) -> None:
    data = receipt.to_dict()
    decoded = ConsentReceipt.from_dict(json.loads(receipt.canonical()))
    assert decoded == receipt
    assert decoded.canonical() == receipt.canonical() == canonical_bytes(data)
    signed = receipt.sign(SIGNER)
    again = SignedReceipt.from_dict(json.loads(json.dumps(signed.to_dict())))
    assert again == signed
    again.verify(SIGNER.public_key)


@given(receipts(), st.data())
@settings(max_examples=60, deadline=None)
def test_any_changed_byte_fails_verification(receipt: ConsentReceipt, data: st.DataObject) -> None:
    signed = receipt.sign(SIGNER)
    message = bytearray(signed.canonical())
    position = data.draw(st.integers(0, len(message) - 1))
    flip = data.draw(st.integers(1, 255))
    message[position] ^= flip
    tampered_bytes = bytes(message)
    # The tampered bytes either no longer decode as a receipt, or decode to a receipt
    # whose signature fails; either way the exchange refuses it.
    try:
        tampered = ConsentReceipt.from_dict(json.loads(tampered_bytes))
    except (InvalidConsentError, ValueError, UnicodeDecodeError):
        return
    with pytest.raises(BadConsentSignatureError):
        SignedReceipt(tampered, signed.signature).verify(SIGNER.public_key)


@given(receipts(), st.integers(0, 63), st.integers(1, 255))
@settings(max_examples=40, deadline=None)
def test_any_changed_signature_byte_fails(receipt: ConsentReceipt, pos: int, flip: int) -> None:
    signed = receipt.sign(SIGNER)
    sig = bytearray(signed.signature)
    sig[pos] ^= flip
    with pytest.raises(BadConsentSignatureError):
        SignedReceipt(receipt, bytes(sig)).verify(SIGNER.public_key)


def _receipt(**kw: object) -> ConsentReceipt:
    base: dict[str, object] = {
        "consent_id": new_consent_id(),
        "origin": "o",
        "enterprise": "ent",
        "public_key": SIGNER.public_key,
        "scope": (DatasetScope("ent.energy", ("energy_kwh",)),),
        "requester": Requester.one("sb"),
        "purposes": (Purpose.BENCHMARKING,),
        "operations": (Operation.MEAN,),
        "engines": (Engine.HE,),
        "min_cohort": 3,
        "valid_from": datetime(2026, 1, 1, tzinfo=UTC),
        "valid_until": datetime(2027, 1, 1, tzinfo=UTC),
        "signed_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    base.update(kw)
    return ConsentReceipt(**base)  # type: ignore[arg-type]


def test_other_key_does_not_verify() -> None:
    signed = _receipt().sign(SIGNER)
    with pytest.raises(BadConsentSignatureError):
        signed.verify(OTHER.public_key)


def test_signing_with_a_key_other_than_the_named_one_is_refused() -> None:
    with pytest.raises(InvalidConsentError):
        _receipt().sign(OTHER)


@pytest.mark.parametrize(
    "overrides",
    [
        {"valid_from": datetime(2026, 1, 1)},
        {"signed_at": datetime(2026, 1, 1)},
        {"valid_until": datetime(2025, 1, 1, tzinfo=UTC)},
        {"consent_id": "nope"},
        {"purposes": ("gossip",)},
        {"purposes": ()},
        {"min_cohort": 0},
        {"use_limit": 0},
        {"scope": ()},
        {"origin": "has space"},
    ],
    ids=[
        "naive-valid-from",
        "naive-signed-at",
        "ends-before-start",
        "bad-id",
        "unknown-purpose",
        "no-purpose",
        "cohort-0",
        "use-limit-0",
        "no-scope",
        "origin-space",
    ],
)
def test_invalid_receipts_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidConsentError):
        _receipt(**overrides)


def test_decoding_is_strict() -> None:
    data = _receipt(purposes=(Purpose.RISK_WARNING, Purpose.BENCHMARKING)).to_dict()
    assert data["purposes"] == ["benchmarking", "risk_warning"]
    mutators: list[Callable[[dict[str, Any]], object]] = [
        lambda d: d.update(purposes=["risk_warning", "benchmarking"]),
        lambda d: d.update(extra=1),
        lambda d: d.pop("nonce"),
        lambda d: d.update(valid_from="2026-01-01T00:00:00Z"),
        lambda d: d.update(min_cohort=True),
        lambda d: d.update(kind="revocation"),
    ]
    for mutate in mutators:
        copy = json.loads(json.dumps(data))
        mutate(copy)
        with pytest.raises(InvalidConsentError):
            ConsentReceipt.from_dict(copy)


def test_revocation_round_trip_and_signature() -> None:
    revocation = Revocation(
        consent_id=new_consent_id(),
        origin="o",
        enterprise="ent",
        public_key=SIGNER.public_key,
        signed_at=datetime(2026, 1, 1, tzinfo=UTC),
        reason="no longer",
    )
    signed = revocation.sign(SIGNER)
    again = SignedRevocation.from_dict(json.loads(json.dumps(signed.to_dict())))
    assert again == signed
    again.verify(SIGNER.public_key)
    with pytest.raises(BadConsentSignatureError):
        again.verify(OTHER.public_key)
    with pytest.raises(InvalidConsentError):
        Revocation(
            consent_id=revocation.consent_id,
            origin="o",
            enterprise="ent",
            public_key=SIGNER.public_key,
            signed_at=datetime(2026, 1, 1),
        )
