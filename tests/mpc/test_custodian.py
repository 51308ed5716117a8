"""The key custodian refuses every decryption that is not an approved final aggregate."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from exchange.runtime import Runtime
from mpc import (
    EncryptedAggregate,
    HeAggregator,
    HeContributor,
    HeJobSpec,
    HeOperation,
    KeyCustodian,
    ReleaseGuard,
    ReleasePolicy,
    ReleaseQuery,
    ReleaseRequest,
    ReleaseSubject,
    StatisticKind,
)
from mpc._tables import HeKeyRow, HePublicRow
from mpc.errors import (
    CohortTooSmallError,
    DecryptionRefusedError,
    KeyDestroyedError,
    UnknownJobError,
)


def _collect(custodian: KeyCustodian, job_id: str, n: int) -> EncryptedAggregate:
    job = custodian.create_job(HeJobSpec(job_id, HeOperation.SUM, length=1))
    agg = HeAggregator(job)
    for i in range(n):
        agg.add(HeContributor(job).encrypt(f"ent-{i}", [float(i + 1)]))
    return agg.aggregate()


SUBJECT = ReleaseSubject("energy", ("kwh",))


def _request(job_id: str, min_cohort: int = 3) -> ReleaseRequest:
    """A request from a group of its own: these tests are about the custodian, not history."""
    return ReleaseRequest(
        job_id, "sub-brain", f"group-{job_id}", SUBJECT, ReleasePolicy(min_cohort=min_cohort)
    )


def _approve(guard: ReleaseGuard, job_id: str, cohort: frozenset[str]) -> None:
    query = ReleaseQuery.uniform(SUBJECT, (StatisticKind.SUM,), cohort)
    guard.approve(_request(job_id), query)


def _ledger_types(runtime: Runtime) -> list[tuple[str, object]]:
    entries = runtime.ledger.entries(0, 1000)
    return [(e.type, e.payload.get("job_id")) for e in entries if e.type.startswith("mpc.")]


def test_lifecycle_is_recorded_and_secret_is_encrypted_at_rest(runtime, custodian, guard) -> None:
    aggregate = _collect(custodian, "job-life", 4)
    with runtime.db.read() as session:
        row = session.execute(select(HeKeyRow)).scalar_one()
        assert row.encrypted_secret is not None
        assert b"SEAL" not in row.encrypted_secret[:64]
        public = session.get(HePublicRow, "job-life")
        assert public is not None and len(public.public_context) > 0
    _approve(guard, "job-life", aggregate.contributors)
    result = custodian.release(aggregate)
    assert result.values == pytest.approx((10.0,), abs=1e-6)
    custodian.end_job("job-life")
    custodian.end_job("job-life")  # idempotent, recorded once
    assert _ledger_types(runtime) == [
        ("mpc.key.generate", "job-life"),
        ("mpc.key.decrypt", "job-life"),
        ("mpc.key.destroy", "job-life"),
    ]
    with runtime.db.read() as session:
        assert session.execute(select(HeKeyRow)).scalar_one().encrypted_secret is None


def test_refuses_without_approval(custodian) -> None:
    aggregate = _collect(custodian, "job-noapp", 4)
    with pytest.raises(DecryptionRefusedError, match="not approved"):
        custodian.release(aggregate)


def test_refuses_an_individual_ciphertext(custodian, guard) -> None:
    aggregate = _collect(custodian, "job-one", 4)
    single = EncryptedAggregate("job-one", aggregate.contributions[:1])
    _approve(guard, "job-one", aggregate.contributors)
    with pytest.raises(DecryptionRefusedError, match="at least two"):
        custodian.release(single)
    doubled = EncryptedAggregate("job-one", (aggregate.contributions[0],) * 3)
    with pytest.raises(DecryptionRefusedError, match="at least two distinct"):
        custodian.release(doubled)


def test_refuses_a_cohort_other_than_the_approved_one(custodian, guard) -> None:
    aggregate = _collect(custodian, "job-sub", 5)
    _approve(guard, "job-sub", aggregate.contributors)
    subset = EncryptedAggregate("job-sub", aggregate.contributions[:3])
    with pytest.raises(DecryptionRefusedError, match="approved cohort"):
        custodian.release(subset)


def test_refuses_contributions_of_another_job(custodian, guard) -> None:
    first = _collect(custodian, "job-x1", 3)
    second = _collect(custodian, "job-x2", 3)
    _approve(guard, "job-x2", second.contributors)
    mixed = EncryptedAggregate("job-x2", first.contributions)
    with pytest.raises(DecryptionRefusedError, match="other jobs"):
        custodian.release(mixed)


def test_refuses_a_second_decryption_and_after_destruction(custodian, guard) -> None:
    aggregate = _collect(custodian, "job-twice", 3)
    _approve(guard, "job-twice", aggregate.contributors)
    custodian.release(aggregate)
    with pytest.raises(DecryptionRefusedError, match="already released"):
        custodian.release(aggregate)
    custodian.end_job("job-twice")
    with pytest.raises(KeyDestroyedError):
        custodian.release(aggregate)


def test_refuses_unknown_jobs(custodian) -> None:
    aggregate = _collect(custodian, "job-known", 3)
    with pytest.raises(UnknownJobError):
        custodian.release(EncryptedAggregate("job-unknown", aggregate.contributions))
    with pytest.raises(UnknownJobError):
        custodian.end_job("job-unknown")
    with pytest.raises(UnknownJobError):
        custodian.public("job-unknown")
    assert custodian.public("job-known").spec.job_id == "job-known"


def test_refuses_a_second_key_for_the_same_job(custodian) -> None:
    custodian.create_job(HeJobSpec("job-dup", HeOperation.SUM))
    with pytest.raises(DecryptionRefusedError, match="already has a key"):
        custodian.create_job(HeJobSpec("job-dup", HeOperation.SUM))


def test_a_secret_blob_moved_to_another_job_does_not_open(runtime, custodian, guard) -> None:
    first = _collect(custodian, "job-aad-1", 3)
    _collect(custodian, "job-aad-2", 3)
    with runtime.db.write() as session:
        one = session.get(HeKeyRow, "job-aad-1")
        two = session.get(HeKeyRow, "job-aad-2")
        assert one is not None and two is not None
        one.encrypted_secret = two.encrypted_secret  # aad binds the blob to its job id
    _approve(guard, "job-aad-1", first.contributors)
    with pytest.raises(DecryptionRefusedError, match="does not open"):
        custodian.release(first)


def test_finish_job_approves_decrypts_and_destroys_in_one_transaction(
    runtime, custodian, guard
) -> None:
    aggregate = _collect(custodian, "job-finish", 4)
    request = _request("job-finish")
    result = custodian.finish_job(request, aggregate)
    assert result.values == pytest.approx((10.0,), abs=1e-6)
    approval = guard.approval("job-finish")
    assert approval is not None and approval.contributors == aggregate.contributors
    assert _ledger_types(runtime) == [
        ("mpc.key.generate", "job-finish"),
        ("mpc.key.decrypt", "job-finish"),
        ("mpc.key.destroy", "job-finish"),
    ]
    decrypt = next(e for e in runtime.ledger.entries(0, 1000) if e.type == "mpc.key.decrypt")
    assert decrypt.payload["cohort_sha256"] == aggregate.cohort_digest
    assert decrypt.payload["contributors"] == 4
    with runtime.db.read() as session:
        row = session.get(HeKeyRow, "job-finish")
        assert row is not None and row.encrypted_secret is None and row.state == "destroyed"
    with pytest.raises(KeyDestroyedError):
        custodian.finish_job(request, aggregate)


def test_finish_job_refuses_a_request_for_another_job_or_a_small_cohort(custodian, guard) -> None:
    aggregate = _collect(custodian, "job-fin-2", 3)
    other = _request("job-other")
    with pytest.raises(DecryptionRefusedError, match="job-other"):
        custodian.finish_job(other, aggregate)
    strict = _request("job-fin-2", min_cohort=5)
    with pytest.raises(CohortTooSmallError):
        custodian.finish_job(strict, aggregate)
    assert guard.approval("job-fin-2") is None
    request = _request("job-fin-2")
    assert custodian.finish_job(request, aggregate).values == pytest.approx((6.0,), abs=1e-6)


def test_public_halves_stay_loaded_until_the_job_ends(custodian) -> None:
    job = custodian.create_job(HeJobSpec("job-cache", HeOperation.SUM))
    assert custodian.public("job-cache") is job
    assert not job.context.is_private()
    custodian.end_job("job-cache")
    reloaded = custodian.public("job-cache")
    assert reloaded is not job and reloaded.key_fingerprint == job.key_fingerprint
