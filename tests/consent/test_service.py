"""Checks, uses, jobs, usage reports, the ledger record and the revocation race."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta

import pytest

from consent import (
    SCHEMAS,
    ConsentExpiredError,
    ConsentNotFoundError,
    ConsentReceipt,
    ConsentRevokedError,
    DatasetScope,
    Requester,
)
from core.canonical import canonical_bytes
from core.keys import Ed25519PublicKey, verify_ed25519
from tests.consent.conftest import T0, World


def test_group_and_single_requesters(world: World) -> None:
    group = world.grant("ent-0")
    single = world.grant("ent-1", requester=Requester.one("sb-battery"))
    world.grant("ent-2", requester=Requester.group("subbrain", "steel"))
    report = world.service.covering_consents(world.request("ent-0", "ent-1", "ent-2"))
    assert report.owners == ("ent-0", "ent-1", "ent-2")
    assert [r.consent_id for r in report.covering["ent-0"]] == [group.consent_id]
    assert [r.consent_id for r in report.covering["ent-1"]] == [single.consent_id]
    assert "ent-2" not in report.covering
    assert report.refusals["ent-2"][0].reason == "no_consent"
    steel = world.service.covering_consents(world.request("ent-2", requester="sb-steel"))
    assert steel.covered_owners() == ("ent-2",)


def test_unknown_requester_gets_nothing(world: World) -> None:
    world.grant("ent-0")
    report = world.service.covering_consents(world.request("ent-0", requester="nobody"))
    assert report.covering == {}
    assert "not an active identity" in str(report.refusals["ent-0"][0].error)


def test_min_cohort_drops_owners_until_stable(world: World) -> None:
    world.grant("ent-0", min_cohort=1)
    world.grant("ent-1", min_cohort=2)
    world.grant("ent-2", min_cohort=5)
    report = world.service.covering_consents(world.request("ent-0", "ent-1", "ent-2"))
    assert report.covered_owners() == ("ent-0", "ent-1", "ent-2")
    assert sorted(report.chosen()) == ["ent-0", "ent-1"]
    only_two = world.service.covering_consents(world.request("ent-1", "ent-2"))
    assert only_two.chosen() == {}  # ent-2 needs 5, then ent-1 alone is below its 2


def test_use_records_and_usage_reads_the_ledger(world: World) -> None:
    record = world.grant("ent-0")
    world.grant("ent-1")
    use = world.service.use(world.request("ent-0", "ent-1"), decision_id="dec-1")
    assert sorted(use.used) == ["ent-0", "ent-1"]
    assert use.ledger_index is not None
    entry = world.ledger.entry(use.ledger_index)
    assert entry.type == "consent.use"
    assert entry.actor == "sb-battery"
    assert world.service.confirm_release("dec-1", job_id="job-1") == use.consent_ids()
    usage = world.service.usage("ent-0")
    assert [u.record.consent_id for u in usage] == [record.consent_id]
    kinds = [(e.kind, e.decision_id, e.job_id, e.status) for e in usage[0].entries]
    assert kinds == [("decision", "dec-1", None, "used"), ("job", "dec-1", "job-1", "released")]
    assert usage[0].entries[0].requester == "sb-battery"
    assert usage[0].entries[0].purpose == "benchmarking"
    assert world.service.get(record.consent_id).use_count == 1
    world.ledger.verify()


def test_job_stops_when_consent_revoked_before_release(world: World) -> None:
    record = world.grant("ent-0")
    world.service.use(world.request("ent-0"), decision_id="dec-1")
    world.service.revoke(world.revocation(record), actor="ent-0")
    with pytest.raises(ConsentRevokedError):
        world.service.confirm_release("dec-1", job_id="job-1")
    entries = world.service.usage("ent-0")[0].entries
    assert [(e.kind, e.status) for e in entries] == [("decision", "used"), ("job", "stopped")]


def test_job_stops_when_consent_expired_before_release(world: World) -> None:
    world.grant("ent-0")
    world.service.use(world.request("ent-0"), decision_id="dec-1")
    world.clock.set(T0 + timedelta(days=60))
    with pytest.raises(ConsentExpiredError):
        world.service.confirm_release("dec-1", job_id="j")
    with pytest.raises(ConsentNotFoundError):
        world.service.confirm_release("no-such-decision", job_id="j")


def test_auditor_verifies_grant_from_the_ledger_alone(world: World) -> None:
    record = world.grant("ent-0")
    entry = world.ledger.entry(record.ledger_index)
    payload = entry.payload
    assert entry.type == "consent.grant"
    receipt_bytes = canonical_bytes(payload["receipt"])
    signature = base64.b64decode(str(payload["signature"]))
    assert payload["receipt_hash"] == record.signed.receipt_hash()
    key = Ed25519PublicKey.from_base64(str(json.loads(receipt_bytes)["public_key"]))
    assert key == world.keys["ent-0"].public_key
    assert verify_ed25519(key, receipt_bytes, signature)


def test_receipts_validate_against_the_json_schemas(world: World) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    grant_schema = json.loads((SCHEMAS / "consent-receipt.schema.json").read_text())
    revoke_schema = json.loads((SCHEMAS / "consent-revocation.schema.json").read_text())
    for schema in (grant_schema, revoke_schema):
        jsonschema.Draft202012Validator.check_schema(schema)
    records = [
        world.grant("ent-0"),
        world.grant("ent-0", requester=Requester.one("sb-battery"), use_limit=5, notice="n"),
        world.grant(
            "ent-1",
            scope=(DatasetScope("ent-1.energy", ("emissions_t", "energy_kwh", "output_units")),),
            requester=Requester.group("subbrain"),
        ),
    ]
    validator = jsonschema.Draft202012Validator(grant_schema)
    for record in records:
        validator.validate(record.signed.to_dict())
        validator.validate(
            json.loads(json.dumps(world.service.get(record.consent_id).signed.to_dict()))
        )
    revoked = world.service.revoke(world.revocation(records[0]), actor="ent-0")
    assert revoked.revocation_ledger_index is not None
    payload = world.ledger.entry(revoked.revocation_ledger_index).payload
    jsonschema.Draft202012Validator(revoke_schema).validate(
        {"receipt": payload["revocation"], "signature": payload["signature"]}
    )
    bad = records[0].signed.to_dict()
    assert isinstance(bad["receipt"], dict)
    bad["receipt"] = {**bad["receipt"], "purposes": ["gossip"]}
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)


def test_revocation_racing_decisions(world: World) -> None:
    """Decisions recorded after the revocation never use the consent; none is lost."""
    record = world.grant("ent-0")
    world.grant("ent-1")
    some_decided = threading.Event()
    revoked = threading.Event()
    errors: list[BaseException] = []
    revoked_at: list[int] = []

    def decide(worker: int) -> None:
        try:
            for n in range(12):
                world.service.use(world.request("ent-0", "ent-1"), decision_id=f"w{worker}-{n}")
                if n == 3:
                    some_decided.set()
                if worker == 0 and n == 8:
                    revoked.wait(timeout=30)  # worker 1 keeps racing the revocation
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def revoke() -> None:
        try:
            some_decided.wait(timeout=60)
            done = world.service.revoke(world.revocation(record), actor="ent-0")
            assert done.revocation_ledger_index is not None
            revoked_at.append(done.revocation_ledger_index)
            revoked.set()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(2)]
    threads.append(threading.Thread(target=revoke))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    cut = revoked_at[0]
    uses = [e for e in world.ledger.entries(0, 1000) if e.type == "consent.use"]
    assert len(uses) == 24
    before = [e for e in uses if e.index < cut]
    after = [e for e in uses if e.index > cut]
    assert before and after  # the revocation really landed between decisions
    for entry in uses:
        consents = entry.payload["consents"]
        assert isinstance(consents, list)
        ids = {c["consent_id"] for c in consents if isinstance(c, dict)}
        assert (record.consent_id in ids) == (entry.index < cut)
    assert world.service.get(record.consent_id).use_count == len(before)


def test_use_limit_holds_under_concurrent_decisions(world: World) -> None:
    record = world.grant("ent-0", use_limit=7)
    used: list[int] = []
    lock = threading.Lock()

    def decide(worker: int) -> None:
        for n in range(6):
            use = world.service.use(world.request("ent-0"), decision_id=f"{worker}-{n}")
            with lock:
                used.append(len(use.used))

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(used) == 7
    assert world.service.get(record.consent_id).use_count == 7


def test_receipt_from_ledger_round_trips(world: World) -> None:
    record = world.grant("ent-0")
    payload = world.ledger.entry(record.ledger_index).payload
    assert ConsentReceipt.from_dict(payload["receipt"]) == record.signed.receipt
