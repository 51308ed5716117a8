"""Every refusal of the issue, attempted and seen refused (real keys, SQLite, SQL ledger)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from consent import (
    BadConsentSignatureError,
    ConsentAccessError,
    ConsentConfigError,
    ConsentError,
    ConsentExpiredError,
    ConsentNotYetValidError,
    ConsentRevokedError,
    DatasetNotOwnedError,
    DatasetScope,
    Engine,
    ForeignKeyError,
    InvalidConsentError,
    NoConsentError,
    NoRegisteredKeyError,
    Operation,
    Purpose,
    ReplayedNonceError,
    ScopeMismatchError,
    SignedReceipt,
    UnknownDatasetError,
    UseLimitReachedError,
    WrongOriginError,
)
from core.keys import Ed25519Signer
from tests.consent.conftest import T0, World

# -- refused when the exchange is handed the receipt ------------------------------------


def _bad_signature(w: World) -> SignedReceipt:
    signed = w.sign(w.receipt("ent-0"))
    return SignedReceipt(signed.receipt, bytes(64))


def _another_enterprises_key(w: World) -> SignedReceipt:
    # ent-1 signs a consent in ent-0's name with its own key.
    return w.sign(w.receipt("ent-0", public_key=w.keys["ent-1"].public_key), w.keys["ent-1"])


def _claims_right_key_signed_by_other(w: World) -> SignedReceipt:
    return w.sign(w.receipt("ent-0"), w.keys["ent-1"])


def _unregistered_key(w: World) -> SignedReceipt:
    stranger = Ed25519Signer.generate("stranger")
    return w.sign(w.receipt("ent-0", public_key=stranger.public_key), stranger)


def _no_registered_key(w: World) -> SignedReceipt:
    rogue = Ed25519Signer.generate("rogue")
    w.keys["ent-x"] = rogue
    return w.sign(w.receipt("ent-x", scope=(DatasetScope("ent-0.energy", ("energy_kwh",)),)))


def _dataset_not_owned(w: World) -> SignedReceipt:
    return w.sign(w.receipt("ent-0", scope=(DatasetScope("ent-1.energy", ("energy_kwh",)),)))


def _unknown_dataset(w: World) -> SignedReceipt:
    return w.sign(w.receipt("ent-0", scope=(DatasetScope("ent-0.water", ("litres",)),)))


def _unknown_field(w: World) -> SignedReceipt:
    return w.sign(w.receipt("ent-0", scope=(DatasetScope("ent-0.energy", ("salary",)),)))


def _expired(w: World) -> SignedReceipt:
    return w.sign(
        w.receipt(
            "ent-0",
            valid_from=T0 - timedelta(days=10),
            valid_until=T0 - timedelta(seconds=1),
            signed_at=T0 - timedelta(days=10),
        )
    )


def _wrong_origin(w: World) -> SignedReceipt:
    return w.sign(w.receipt("ent-0", origin="other.deployment.example/ledger"))


def _signed_in_future(w: World) -> SignedReceipt:
    return w.sign(w.receipt("ent-0", signed_at=T0 + timedelta(hours=1)))


GRANT_REFUSALS: list[tuple[str, Callable[[World], SignedReceipt], type[ConsentError]]] = [
    ("bad-signature", _bad_signature, BadConsentSignatureError),
    ("key-of-another-enterprise", _another_enterprises_key, ForeignKeyError),
    ("signed-by-other-enterprise", _claims_right_key_signed_by_other, BadConsentSignatureError),
    ("unregistered-key", _unregistered_key, ForeignKeyError),
    ("signer-has-no-key", _no_registered_key, NoRegisteredKeyError),
    ("dataset-not-owned", _dataset_not_owned, DatasetNotOwnedError),
    ("unknown-dataset", _unknown_dataset, UnknownDatasetError),
    ("unknown-field", _unknown_field, InvalidConsentError),
    ("expired", _expired, ConsentExpiredError),
    ("wrong-origin", _wrong_origin, WrongOriginError),
    ("signed-in-the-future", _signed_in_future, InvalidConsentError),
]


@pytest.mark.parametrize(
    ("make", "error"), [(m, e) for _, m, e in GRANT_REFUSALS], ids=[i for i, _, _ in GRANT_REFUSALS]
)
def test_grant_refused(
    world: World, make: Callable[[World], SignedReceipt], error: type[ConsentError]
) -> None:
    size = world.ledger.size()
    with pytest.raises(error):
        world.service.grant(make(world), actor="ent-0")
    assert world.service.list() == []
    assert world.ledger.size() == size  # nothing recorded


def test_replayed_receipt_is_refused(world: World) -> None:
    signed = world.sign(world.receipt("ent-0"))
    world.service.grant(signed, actor="ent-0")
    with pytest.raises(ReplayedNonceError):
        world.service.grant(signed, actor="ent-0")


def test_replayed_nonce_under_a_new_id_is_refused(world: World) -> None:
    first = world.receipt("ent-0")
    world.service.grant(world.sign(first), actor="ent-0")
    again = world.receipt("ent-0", nonce=first.nonce)
    with pytest.raises(ReplayedNonceError):
        world.service.grant(world.sign(again), actor="ent-0")


def test_a_naive_service_clock_is_refused(world: World) -> None:
    world.clock.set(T0.replace(tzinfo=None))
    with pytest.raises(ConsentConfigError):
        world.service.grant(world.sign(world.receipt("ent-0")), actor="x")
    assert world.service.list() == []


# -- refused at check time -------------------------------------------------------------


_LATER: dict[str, object] = {
    "valid_from": T0 + timedelta(days=2),
    "valid_until": T0 + timedelta(days=9),
}
# (id, grant overrides, request overrides, the exchange's clock, error, dimension)
CHECK_REFUSALS: list[
    tuple[str, dict[str, object], dict[str, object], datetime, type[ConsentError], str]
] = [
    ("expired", {}, {}, T0 + timedelta(days=31), ConsentExpiredError, ""),
    ("not-yet-valid", _LATER, {}, T0, ConsentNotYetValidError, ""),
    ("field", {}, {"fields": ("emissions_t",)}, T0, ScopeMismatchError, "field"),
    ("purpose", {}, {"purpose": Purpose.TRADE_MATCHING}, T0, ScopeMismatchError, "purpose"),
    ("operation", {}, {"operation": Operation.REGRESSION}, T0, ScopeMismatchError, "operation"),
    ("engine", {"engines": (Engine.HE,)}, {"engine": Engine.MPC}, T0, ScopeMismatchError, "engine"),
    ("other-requester", {}, {"requester": "sb-steel"}, T0, NoConsentError, ""),
]


@pytest.mark.parametrize(
    ("grant", "ask", "at", "error", "dimension"),
    [(g, a, t, e, d) for _, g, a, t, e, d in CHECK_REFUSALS],
    ids=[i for i, *_ in CHECK_REFUSALS],
)
def test_check_refuses(
    world: World,
    grant: dict[str, Any],
    ask: dict[str, Any],
    at: datetime,
    error: type[ConsentError],
    dimension: str,
) -> None:
    record = world.grant("ent-0", **grant)
    world.clock.set(T0 + timedelta(days=3))  # control: the plain request is covered then
    assert world.service.covering_consents(world.request("ent-0")).covered_owners() == ("ent-0",)
    world.clock.set(at)
    report = world.service.covering_consents(world.request("ent-0", **ask))
    assert report.covering == {}
    assert report.chosen() == {}
    with pytest.raises(error) as info:
        report.raise_for("ent-0")
    if dimension:
        assert isinstance(info.value, ScopeMismatchError)
        assert info.value.dimension == dimension
        assert info.value.consent_id == record.consent_id


def test_covering_then_revoked(world: World) -> None:
    record = world.grant("ent-0")
    report = world.service.covering_consents(world.request("ent-0"))
    assert [r.consent_id for r in report.covering["ent-0"]] == [record.consent_id]
    world.service.revoke(world.revocation(record), actor="ent-0")
    report = world.service.covering_consents(world.request("ent-0"))
    with pytest.raises(ConsentRevokedError):
        report.raise_for("ent-0")
    assert report.refusals["ent-0"][0].reason == "revoked"


def test_use_limit_reached(world: World) -> None:
    world.grant("ent-0", use_limit=2)
    for n in range(2):
        use = world.service.use(world.request("ent-0"), decision_id=f"d{n}")
        assert list(use.used) == ["ent-0"]
    use = world.service.use(world.request("ent-0"), decision_id="d3")
    assert use.used == {}
    with pytest.raises(UseLimitReachedError):
        use.report.raise_for("ent-0")


def test_tampered_stored_receipt_is_refused(world: World) -> None:
    record = world.grant("ent-0")
    with world.db.write() as session:
        session.execute(
            text("UPDATE consent_grants SET receipt = replace(receipt, :a, :b)"),
            {"a": b'"min_cohort":1', "b": b'"min_cohort":2'},
        )
    report = world.service.covering_consents(world.request("ent-0"))
    with pytest.raises(BadConsentSignatureError):
        report.raise_for("ent-0")
    assert report.refusals["ent-0"][0].consent_id == record.consent_id


def test_rotated_key_stops_old_consents(world: World) -> None:
    world.grant("ent-0")
    world.directory.add_enterprise("ent-0", Ed25519Signer.generate("new").public_key)
    with pytest.raises(ForeignKeyError):
        world.service.covering_consents(world.request("ent-0")).raise_for("ent-0")


# -- revocations -----------------------------------------------------------------------


def test_revocation_refusals(world: World) -> None:
    record = world.grant("ent-0")
    other = world.grant("ent-1")
    good = world.revocation(record)
    with pytest.raises(BadConsentSignatureError):
        world.service.revoke(replace(good, signature=bytes(64)), actor="ent-0")
    with pytest.raises(WrongOriginError):
        world.service.revoke(world.revocation(record, origin="elsewhere"), actor="x")
    # ent-1 cannot revoke ent-0's consent, even signing correctly with its own key.
    with pytest.raises(ConsentAccessError):
        world.service.revoke(world.revocation(other, consent_id=record.consent_id), actor="ent-1")
    world.service.revoke(good, actor="ent-0")
    with pytest.raises(ConsentRevokedError):
        world.service.revoke(world.revocation(record), actor="ent-0")
    second = world.grant("ent-0")
    with pytest.raises(ReplayedNonceError):
        world.service.revoke(world.revocation(second, nonce=good.revocation.nonce), actor="ent-0")
    world.service.revoke(world.revocation(second), actor="ent-0")
