"""Decisions in group commits: many requests, one durable commit — and every rule kept.

Concurrent ``POST /v1/requests`` share transactions and one ledger append per
group (:class:`exchange.pipeline.authorize.GroupCommit`, :meth:`ledger.Ledger.batch`).
Attacked here: a use limit under concurrent requests (never overrun), a
revocation (the very next request no longer uses the consent), a refused
request (its ``authz.decision`` is on the ledger all the same), and a 201 only
once the decision, its ``authz.decision`` and ``consent.use`` are durable.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from consent import (
    ConsentReceipt,
    ConsentRequest,
    CoverageReport,
    DatasetScope,
    Engine,
    Operation,
    Purpose,
    Requester,
    new_consent_id,
)
from core.clock import utcnow
from exchange.access import ROUTES, authorize
from exchange.error_table import RemoteRefusalError
from exchange.pipeline.errors import RequestRefusedError
from exchange.pipeline.request import ComputeRequest
from tests.exchange.pipeline.conftest import LB, World

NAMES = ("e1", "e2", "e3", "e4")
SUBMIT = ROUTES[("POST", "/v1/requests")]


def _grant(world: World, name: str, *, use_limit: int | None = None) -> str:
    signer = world.keys[name].signer
    now = utcnow()
    signed = ConsentReceipt(
        consent_id=new_consent_id(),
        origin=world.runtime.settings.ledger_origin,
        enterprise=name,
        public_key=signer.public_key,
        scope=(DatasetScope(f"{name}.energy", ("energy_kwh",)),),
        requester=Requester.group("subbrain", LB),
        purposes=(Purpose.BENCHMARKING,),
        operations=(Operation.MEAN,),
        engines=(Engine.HE, Engine.MPC),
        min_cohort=1,
        valid_from=now - timedelta(seconds=1),
        valid_until=now + timedelta(days=1),
        use_limit=use_limit,
        signed_at=now,
    ).sign(signer)
    consent_id = world.runtime.consents.grant(signed, actor=name).consent_id
    world.consents[name] = consent_id
    return consent_id


def _request() -> ComputeRequest:
    return ComputeRequest.from_dict(
        {
            "purpose": "benchmarking",
            "operation": "mean",
            "fields": ["energy_kwh"],
            "datasets": [f"{n}.energy" for n in NAMES],
            "engine": "he",
        }
    )


def _authz_entries(world: World) -> list[dict[str, object]]:
    ledger = world.runtime.ledger
    return [
        dict(e.payload)
        for e in ledger.entries(0, ledger.size())
        if e.type == "authz.decision" and e.payload.get("action") == "request_submit"
    ]


def test_concurrent_requests_never_overrun_a_use_limit(world: World) -> None:
    for name in NAMES:
        world.enterprise(name)
        _grant(world, name, use_limit=3)
    runtime = world.runtime
    requester = runtime.identities.get("sb-lb")
    decided: list[int] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(12)

    def submit() -> None:
        grant = authorize(runtime, requester, SUBMIT, second_factor=False)
        start.wait()
        try:
            view = runtime.pipeline.submit(requester, _request(), authz=grant.pending)
        except RequestRefusedError as exc:
            with lock:
                refused.append(exc.reason)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        else:
            with lock:
                decided.append(view.decision_index)

    threads = [threading.Thread(target=submit) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(decided) == 3 and len(refused) == 9
    assert set(refused) == {"cohort"}
    for name in NAMES:
        assert runtime.consents.get(world.consents[name]).use_count == 3
    ledger = runtime.ledger
    for index in decided:  # each 201's decision is on the ledger, after its authz and uses
        assert ledger.entry(index).type == "pipeline.decision"
        assert ledger.entry(index - 1).type == "consent.use"
        assert ledger.entry(index - 2).type == "authz.decision"
    assert len(_authz_entries(world)) == 12  # the refused ones too
    before = ledger.size()  # the jobs' starts may still append their moves meanwhile
    assert ledger.verify().size >= before


def test_a_revoked_consent_is_not_used_by_the_next_request(world: World) -> None:
    for name in NAMES:
        world.enterprise(name)
        _grant(world, name)
    body: dict[str, Any] = {"datasets": [f"{n}.energy" for n in NAMES], "engine": "he"}
    assert world.submit(**body)["participants"] == 4
    world.revoke("e1")
    job = world.submit(**body)
    assert job["participants"] == 3
    decision = world.runtime.ledger.entry(job["decision_index"]).payload
    left_out = decision["left_out"]
    assert isinstance(left_out, list)
    assert [(o["owner"], str(o["reason"]).split(":")[0]) for o in left_out] == [("e1", "revoked")]


def test_a_refused_request_leaves_its_authz_record(world: World) -> None:
    world.enterprise("e1")
    _grant(world, "e1")
    before = len(_authz_entries(world))
    try:
        world.submit(datasets=["e1.energy"], engine="he")
    except RemoteRefusalError as exc:
        assert exc.status == 403
    else:  # pragma: no cover - the cohort minimum refuses one enterprise
        raise AssertionError("a cohort of one was authorized")
    try:
        world.submit(datasets=["e1.energy"], engine="warp")  # malformed: 422
    except RemoteRefusalError as exc:
        assert exc.status == 422
    entries = _authz_entries(world)
    assert len(entries) == before + 2
    assert all(e["effect"] == "allow" for e in entries[before:])


def test_a_revocation_landing_after_the_check_ahead_is_seen_under_the_lock(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in NAMES:
        world.enterprise(name)
        _grant(world, name)
    consents = world.runtime.consents
    check_ahead = consents.check_ahead

    def then_revoke(request: ConsentRequest, **kwargs: Any) -> CoverageReport:
        report = check_ahead(request, **kwargs)  # e1 still stands here ...
        assert "e1" in report.chosen()
        world.revoke("e1")  # ... and is revoked before the decision's unit runs
        return report

    monkeypatch.setattr(consents, "check_ahead", then_revoke)
    job = world.submit(datasets=[f"{n}.energy" for n in NAMES], engine="he")
    assert job["participants"] == 3
    left_out = world.runtime.ledger.entry(job["decision_index"]).payload["left_out"]
    assert isinstance(left_out, list)
    assert [o["owner"] for o in left_out if isinstance(o, dict)] == ["e1"]
    assert consents.get(world.consents["e1"]).use_count == 0


def test_a_use_limit_reached_after_the_check_ahead_is_not_overrun(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in NAMES:
        world.enterprise(name)
        _grant(world, name, use_limit=1)
    consents = world.runtime.consents
    check_ahead = consents.check_ahead
    body: dict[str, Any] = {"datasets": [f"{n}.energy" for n in NAMES], "engine": "he"}
    first: list[dict[str, Any]] = []

    def then_another(request: ConsentRequest, **kwargs: Any) -> CoverageReport:
        report = check_ahead(request, **kwargs)
        if not first:  # another request takes the last use of every consent meanwhile
            first.append({})
            first[0] = world.submit(**body)
        return report

    monkeypatch.setattr(consents, "check_ahead", then_another)
    try:
        world.submit(**body)
    except RemoteRefusalError as exc:
        assert exc.status == 403
    else:  # pragma: no cover - the consents were used up under the lock
        raise AssertionError("a used-up consent was used again")
    assert first[0]["participants"] == 4
    for name in NAMES:
        assert consents.get(world.consents[name]).use_count == 1


def test_a_psi_job_opens_for_collection_in_its_decision_s_transaction(world: World) -> None:
    names = NAMES[:3]
    for name in names:
        world.enterprise(name, fields=("supplier_id",))
        world.consent(name, operations=(Operation.SET_INTERSECTION_SIZE,), fields=("supplier_id",))
    job = world.submit(
        operation="set_intersection_size",
        fields=["supplier_id"],
        datasets=[f"{n}.energy" for n in names],
        engine="psi",
    )
    assert job["state"] == "collecting"  # the 201 says so: it committed with the decision
    ledger = world.runtime.ledger
    move = ledger.entry(job["decision_index"] + 1)
    assert move.type == "pipeline.job"
    assert move.payload == {
        "job_id": job["job_id"],
        "requester": "sb-lb",
        "from": "authorized",
        "state": "collecting",
        "reason": None,
    }
    assert world.job(job["job_id"])["state"] == "collecting"
    assert [t["job_id"] for t in world.tasks(names[0])] == [job["job_id"]]
