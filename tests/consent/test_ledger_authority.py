"""Rows are an index: an operator who edits the consent tables cannot make the service
act against the ledger.

Each test does what an operator with write access to the database could do --
raw SQL on the real SQLite file -- and then uses the consent as the exchange
would. The service believes the ledger, refuses, and records a ``row.mismatch``
alert (critical, actor ``ibx``) whose evidence is the ledger entries it rests on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

import ledger
from consent import (
    Classification,
    ConsentReceipt,
    ConsentRequest,
    ConsentRevokedError,
    DatasetScope,
    Engine,
    ForeignKeyError,
    KeyRegistration,
    Operation,
    Purpose,
    ReplayedNonceError,
    Requester,
    SignedReceipt,
    UseLimitReachedError,
    new_consent_id,
)
from consent.entries import GrantEntry, RevokeEntry, UseEntry, receipt_subject
from core.alerts import ALERT_EVENT
from core.clock import utcnow
from core.db import Database
from core.keys import Ed25519Signer
from exchange.client import ExchangeClient
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.consent.conftest import World


def _sql(db: Database, statement: str, **params: object) -> None:
    """The operator's edit: plain SQL on the database, outside every service."""
    with db.engine.begin() as connection:
        connection.execute(text(statement), params)


def _alerts(log: ledger.Ledger, subject: str) -> list[dict[str, Any]]:
    """The alerts the ledger holds about ``subject`` (payloads)."""
    return [dict(log.entry(hit.index).payload) for hit in log.find([subject], [ALERT_EVENT])]


def _one_alert(log: ledger.Ledger, subject: str) -> dict[str, Any]:
    [alert] = _alerts(log, subject)
    assert alert["rule"] == "row.mismatch"
    assert alert["severity"] == "critical"
    assert alert["subject"] == subject
    return alert


def _types(log: ledger.Ledger, indices: list[int]) -> list[str]:
    return [log.entry(i).type for i in indices]


def test_every_consent_entry_names_its_subjects(world: World) -> None:
    record = world.grant("ent-0", use_limit=5)
    use = world.service.use(world.request("ent-0"), decision_id="d-subjects")
    world.service.revoke(world.revocation(record), actor="ent-0")
    signed_hash = record.signed.receipt_hash()
    found = world.ledger.find([record.consent_id, receipt_subject(signed_hash)])
    by_type = {(hit.subject, hit.type) for hit in found}
    assert by_type == {
        (record.consent_id, GrantEntry.TYPE),
        (receipt_subject(signed_hash), GrantEntry.TYPE),
        (record.consent_id, UseEntry.TYPE),
        (record.consent_id, RevokeEntry.TYPE),
    }
    assert use.ledger_index in {hit.index for hit in found}
    about_enterprise = {hit.type for hit in world.ledger.find(["ent-0"])}
    assert {"consent.grant", "consent.revoke", "dataset.register"} <= about_enterprise
    assert [h.type for h in world.ledger.find(["ent-0.energy"])] == ["dataset.register"]


# -- un-revoke ---------------------------------------------------------------------------


def _unrevoke(world: World, consent_id: str) -> None:
    _sql(
        world.db,
        "UPDATE consent_grants SET revoked_at = NULL, revocation = NULL, "
        "revocation_signature = NULL, revocation_ledger_index = NULL WHERE consent_id = :cid",
        cid=consent_id,
    )


def test_an_unrevoked_row_is_refused_as_revoked_and_reported(world: World) -> None:
    record = world.grant("ent-0")
    revoked = world.service.revoke(world.revocation(record), actor="ent-0")
    _unrevoke(world, record.consent_id)
    assert world.service.get(record.consent_id).revoked_at is None  # the row says active

    report = world.service.covering_consents(world.request("ent-0"))
    assert report.chosen() == {}
    [refusal] = report.refusals["ent-0"]
    assert isinstance(refusal.error, ConsentRevokedError)
    assert str(refusal.error) == (
        f"consent {record.consent_id} is revoked on the ledger (entry "
        f"{revoked.revocation_ledger_index}) but its row says active; refused and reported"
    )
    alert = _one_alert(world.ledger, record.consent_id)
    assert alert["evidence"] == [revoked.revocation_ledger_index]
    assert _types(world.ledger, alert["evidence"]) == ["consent.revoke"]

    # Every way of using it refuses it; the disagreement is reported once.
    assert world.service.use(world.request("ent-0"), decision_id="d-1").used == {}
    assert world.service.check_ahead(world.request("ent-0")).chosen() == {}
    assert len(_alerts(world.ledger, record.consent_id)) == 1


def test_a_row_unrevoked_between_the_check_ahead_and_the_lock_is_not_counted(
    world: World,
) -> None:
    record = world.grant("ent-1")
    ahead = world.service.check_ahead(world.request("ent-1"))
    assert set(ahead.chosen()) == {"ent-1"}
    revoked = world.service.revoke(world.revocation(record), actor="ent-1")
    _unrevoke(world, record.consent_id)
    with world.db.write() as session:  # the pipeline's path, under the lock
        assert world.service.use_checked(ahead, decision_id="d-2", session=session) is None
        again = world.service.use(world.request("ent-1"), decision_id="d-2", session=session)
        assert again.used == {}
    alert = _one_alert(world.ledger, record.consent_id)  # recorded with the caller's unit
    assert alert["evidence"] == [revoked.revocation_ledger_index]


def test_a_release_stops_when_the_ledger_revoked_a_consent_its_row_shows_active(
    world: World,
) -> None:
    record = world.grant("ent-2")
    use = world.service.use(world.request("ent-2"), decision_id="d-3")
    assert set(use.used) == {"ent-2"}
    world.service.revoke(world.revocation(record), actor="ent-2")
    _unrevoke(world, record.consent_id)
    with pytest.raises(ConsentRevokedError, match="revoked on the ledger"):
        world.service.confirm_release("d-3", job_id="job-3")
    assert _one_alert(world.ledger, record.consent_id)["rule"] == "row.mismatch"


# -- use count reset ---------------------------------------------------------------------


def test_a_reset_use_count_does_not_lift_the_limit(world: World) -> None:
    record = world.grant("ent-0", use_limit=2)
    indices = [
        world.service.use(world.request("ent-0"), decision_id=f"d-{n}").ledger_index
        for n in range(2)
    ]
    _sql(world.db, "UPDATE consent_grants SET use_count = 0 WHERE consent_id = :cid",
         cid=record.consent_id)  # fmt: skip

    report = world.service.covering_consents(world.request("ent-0"))
    [refusal] = report.refusals["ent-0"]
    assert isinstance(refusal.error, UseLimitReachedError)
    assert str(refusal.error) == (
        f"consent {record.consent_id} has been used 2 times on the ledger but its row counts "
        "0, the limit is 2; refused and reported"
    )
    assert world.service.use(world.request("ent-0"), decision_id="d-9").used == {}
    alert = _one_alert(world.ledger, record.consent_id)
    assert alert["evidence"] == indices
    assert alert["details"] == {
        "enterprise": "ent-0",
        "row_use_count": 0,
        "ledger_use_count": 2,
        "use_limit": 2,
    }


def test_below_the_limit_the_ledger_count_is_what_counts(world: World) -> None:
    record = world.grant("ent-1", use_limit=3)
    for n in range(2):
        world.service.use(world.request("ent-1"), decision_id=f"e-{n}")
    ahead = world.service.check_ahead(world.request("ent-1"))
    _sql(world.db, "UPDATE consent_grants SET use_count = 0 WHERE consent_id = :cid",
         cid=record.consent_id)  # fmt: skip
    with world.db.write() as session:  # the pipeline's path: the row no longer agrees
        assert world.service.use_checked(ahead, decision_id="e-2", session=session) is None
        third = world.service.use(world.request("ent-1"), decision_id="e-2", session=session)
    assert set(third.used) == {"ent-1"}
    assert third.used["ent-1"].use_count == 2  # judged at the ledger's count
    assert world.service.use(world.request("ent-1"), decision_id="e-3").used == {}
    uses = world.ledger.find([record.consent_id], [UseEntry.TYPE])
    assert len(uses) == 3  # never more than the receipt allows
    assert len(_alerts(world.ledger, record.consent_id)) == 1


# -- delete and replay -------------------------------------------------------------------


def _delete(world: World, consent_id: str) -> None:
    for table in ("consent_scope", "consent_uses", "consent_nonces", "consent_grants"):
        _sql(world.db, f"DELETE FROM {table} WHERE consent_id = :cid", cid=consent_id)


def test_a_deleted_revoked_consent_cannot_be_granted_again(world: World) -> None:
    signed = world.sign(world.receipt("ent-0"))
    granted = world.service.grant(signed, actor="ent-0")
    revoked = world.service.revoke(world.revocation(granted), actor="ent-0")
    _delete(world, granted.consent_id)

    with pytest.raises(ReplayedNonceError) as caught:
        world.service.grant(signed, actor="ent-0")
    assert str(caught.value) == (
        f"consent {granted.consent_id} was already granted on the ledger (entry "
        f"{granted.ledger_index}) but has no row; refused as a replay and reported"
    )
    alert = _one_alert(world.ledger, granted.consent_id)
    assert alert["evidence"] == [granted.ledger_index, revoked.revocation_ledger_index]
    assert _types(world.ledger, alert["evidence"]) == ["consent.grant", "consent.revoke"]
    assert alert["details"]["receipt_hash"] == signed.receipt_hash()
    assert world.service.covering_consents(world.request("ent-0")).chosen() == {}
    with pytest.raises(ReplayedNonceError):  # each attempt is refused (and reported)
        world.service.grant(signed, actor="ent-0")
    assert len(_alerts(world.ledger, granted.consent_id)) == 2


# -- key swap ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """One real exchange runtime (SQLite data dir) for the key tests (one enterprise each)."""
    runtime = Runtime.initialise(Settings(data_dir=tmp_path_factory.mktemp("keys") / "data"))
    yield runtime
    runtime.close()


def test_a_swapped_key_row_signs_nothing_and_earlier_consents_still_verify(
    exchange: Runtime,
) -> None:
    real = Ed25519Signer.generate("ent-a")
    attacker = Ed25519Signer.generate("operator")
    created = exchange.identities.create(
        "ent-a", Role.ENTERPRISE, public_key=real.public_key, industry="lithium-battery"
    )
    exchange.identities.create("sb-1", Role.SUBBRAIN, industry="lithium-battery")
    consents = exchange.consents
    consents.catalog.register(
        "ent-a.energy", owner="ent-a", fields=["energy_kwh"],
        classification=Classification.IMPORTANT, now=utcnow() - timedelta(days=1),
    )  # fmt: skip

    def receipt(signer: Ed25519Signer) -> SignedReceipt:
        now = utcnow()
        return ConsentReceipt(
            consent_id=new_consent_id(),
            origin=consents.config.origin,
            enterprise="ent-a",
            public_key=signer.public_key,
            scope=(DatasetScope("ent-a.energy", ("energy_kwh",)),),
            requester=Requester.group("subbrain", "lithium-battery"),
            purposes=(Purpose.BENCHMARKING,),
            operations=(Operation.MEAN,),
            engines=(Engine.HE,),
            min_cohort=1,
            valid_from=now - timedelta(hours=1),
            valid_until=now + timedelta(days=1),
            signed_at=now - timedelta(minutes=1),
        ).sign(signer)

    earlier = consents.grant(receipt(real), actor="ent-a")
    _sql(exchange.db, "UPDATE exchange_identities SET public_key = :key WHERE name = 'ent-a'",
         key=attacker.public_key.raw)  # fmt: skip
    assert exchange.identities.get("ent-a").public_key == attacker.public_key

    with pytest.raises(ForeignKeyError) as caught:
        consents.grant(receipt(attacker), actor="ent-a")
    assert "not signed with the key the ledger records for ent-a" in str(caught.value)
    assert "refused and reported" in str(caught.value)

    request = ConsentRequest(
        requester="sb-1", purpose=Purpose.BENCHMARKING, operation=Operation.MEAN,
        engine=Engine.HE, datasets=("ent-a.energy",), fields=("energy_kwh",),
    )  # fmt: skip
    report = consents.covering_consents(request)
    assert [r.consent_id for r in report.covering["ent-a"]] == [earlier.consent_id]
    assert consents.registered_key("ent-a")[0] == real.public_key

    log = exchange.ledger
    alert = _one_alert(log, "ent-a")
    [registration] = log.find(["ent-a"], ["identity.create"])
    assert alert["evidence"] == [registration.index]
    assert alert["details"] == {
        "row_key": attacker.public_key.to_base64(),
        "ledger_key": real.public_key.to_base64(),
    }
    assert created.identity.public_key == real.public_key
    granted = {h.subject for h in log.find([earlier.consent_id], [GrantEntry.TYPE])}
    assert granted == {earlier.consent_id}  # nothing was granted with the attacker's key


def test_a_swapped_key_row_cannot_be_rotated_onto_the_ledger(exchange: Runtime) -> None:
    """Whoever swapped the row (and holds the token) signs a rotation "replacing" the
    swapped-in key: the exchange checks the replaced key against the ledger's."""
    real = Ed25519Signer.generate("ent-b")
    swapped, wanted = Ed25519Signer.generate("swapped"), Ed25519Signer.generate("wanted")
    token = exchange.identities.create(
        "ent-b", Role.ENTERPRISE, public_key=real.public_key, industry="lithium-battery"
    ).token
    _sql(exchange.db, "UPDATE exchange_identities SET public_key = :key WHERE name = 'ent-b'",
         key=swapped.public_key.raw)  # fmt: skip
    origin = exchange.consents.config.origin
    rotation = KeyRegistration(origin, "ent-b", wanted.public_key, swapped.public_key, utcnow())
    with (
        ExchangeClient.local(exchange, token=token) as client,
        pytest.raises(RemoteRefusalError) as caught,
    ):
        client.call("PUT", "/v1/me/consent-key", json=rotation.sign(wanted, swapped).to_dict())
    assert caught.value.status == 400
    assert real.public_key.fingerprint()[:16] in str(caught.value)
    log = exchange.ledger
    assert [h.type for h in log.find(["ent-b"], ["identity.public_key"])] == []
    assert _one_alert(log, "ent-b")["details"]["ledger_key"] == real.public_key.to_base64()


def test_an_enterprise_revoked_on_the_ledger_signs_nothing_when_its_row_is_reactivated(
    exchange: Runtime,
) -> None:
    signer = Ed25519Signer.generate("ent-c")
    exchange.identities.create(
        "ent-c", Role.ENTERPRISE, public_key=signer.public_key, industry="lithium-battery"
    )
    exchange.identities.revoke("ent-c")
    _sql(exchange.db, "UPDATE exchange_identities SET status = 'active' WHERE name = 'ent-c'")
    assert exchange.consents.registered_key("ent-c")[0] is None
    [revocation] = exchange.ledger.find(["ent-c"], ["identity.revoke"])
    alert = _one_alert(exchange.ledger, "ent-c")
    assert alert["evidence"] == [revocation.index]
    assert "the ledger records ent-c as revoked" in alert["message"]
