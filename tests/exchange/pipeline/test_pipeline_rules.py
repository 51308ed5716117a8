"""The pipeline's rules, each attacked: policy and consent refusals, the cohort minimum, the
decision on the ledger before any task, signed answers only, one answer per round, who reads a
result, withdrawal on revocation, deadlines, cancellation, differencing, a restart."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from consent import Classification, Operation
from core.clock import parse_rfc3339, utcnow
from exchange.error_table import RemoteRefusalError
from exchange.pipeline import CONTRIBUTION_KIND, AgentStatement
from exchange.pipeline.jobs import JobState
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.exchange.pipeline.conftest import World

NAMES = ("e1", "e2", "e3", "e4")
VALUES = {"e1": [10.0], "e2": [20.0], "e3": [40.0], "e4": [80.0]}


def _enterprises(world: World, names: tuple[str, ...] = NAMES, **consent: Any) -> None:
    for name in names:
        world.enterprise(name)
        world.consent(name, **consent)


def _datasets(names: tuple[str, ...] = NAMES) -> list[str]:
    return [f"{n}.energy" for n in names]


def _refused(call: Any, *args: Any, **kwargs: Any) -> RemoteRefusalError:
    with pytest.raises(RemoteRefusalError) as info:
        call(*args, **kwargs)
    return info.value


def _open(world: World, names: tuple[str, ...] = NAMES, **request: Any) -> str:
    job_id: str = world.submit(datasets=_datasets(names), **request)["job_id"]
    assert world.wait_state(job_id, ["collecting"])["state"] == "collecting"
    return job_id


def _contribute_all(world: World, job_id: str, names: tuple[str, ...]) -> None:
    for name in names:
        [task] = [t for t in world.tasks(name) if t["job_id"] == job_id]
        world.post_answer(name, job_id, world.he_body(name, task, VALUES[name]))


# --- authorization ---------------------------------------------------------------------------


def test_a_sysadmin_may_not_submit(world: World) -> None:
    _enterprises(world)
    error = _refused(world.submit, "ops", datasets=_datasets())
    assert error.status == 403
    assert "may not request_submit" in str(error)


def test_another_industrys_subbrain_is_refused_for_want_of_consent(world: World) -> None:
    _enterprises(world)
    error = _refused(world.submit, "sb-nm", datasets=_datasets())
    assert error.status == 403
    assert "cohort 0 is below the minimum of 3" in str(error)
    assert "no_consent" in str(error) or "scope" in str(error)


def test_an_operation_the_classification_forbids_is_denied_by_policy(world: World) -> None:
    for name in NAMES:
        world.enterprise(name, classification=Classification.CORE)
        world.consent(name, operations=(Operation.VARIANCE,))
    size = world.runtime.ledger.size()
    error = _refused(world.submit, datasets=_datasets(), operation="variance")
    assert error.status == 403
    assert "operation variance is not allowed on core data" in str(error)
    types = [e.type for e in world.runtime.ledger.entries(size, world.runtime.ledger.size() - size)]
    assert "pipeline.decision" not in types and "consent.use" not in types  # rolled back


def test_a_cohort_below_the_minimum_is_refused_with_the_reason(world: World) -> None:
    _enterprises(world, ("e1", "e2"))
    error = _refused(world.submit, datasets=_datasets(("e1", "e2")))
    assert error.status == 403
    assert "cohort 2 is below the minimum of 3 (policy general: 3" in str(error)


def test_a_consents_own_minimum_cohort_counts(world: World) -> None:
    _enterprises(world, ("e1", "e2", "e3"))
    world.enterprise("e4")
    world.consent("e4", min_cohort=5)  # e4 is left out: its consent wants 5
    created = world.submit(datasets=_datasets())
    assert created["participants"] == 3
    left = world.runtime.ledger.entry(created["decision_index"]).payload["left_out"]
    assert isinstance(left, list)
    assert [o["owner"] for o in left if isinstance(o, dict)] == ["e4"]


def test_the_decision_is_on_the_ledger_before_any_task(world: World) -> None:
    _enterprises(world)
    assert world.tasks("e1") == []
    job_id = _open(world)
    view = world.job(job_id)
    entry = world.runtime.ledger.entry(view["decision_index"])
    assert entry.type == "pipeline.decision" and entry.actor == "sb-lb"
    assert entry.payload["job_id"] == job_id
    _contribute_all(world, job_id, NAMES)
    world.wait_state(job_id, ["released"])
    ledger = world.runtime.ledger
    contributions = [
        e for e in ledger.entries(0, ledger.size()) if e.type == "pipeline.contribution"
    ]
    assert len(contributions) == 4
    assert all(c.index > view["decision_index"] for c in contributions)


# --- the agents' answers ---------------------------------------------------------------------


def test_a_contribution_signed_with_another_key_is_refused(world: World) -> None:
    _enterprises(world)
    job_id = _open(world)
    [task] = world.tasks("e1")
    body = world.he_body("e1", task, [1.0], signer_of="e2")
    error = _refused(world.post_answer, "e1", job_id, body)
    assert error.status == 403
    assert "does not verify under e1's registered key" in str(error)
    assert world.job(job_id)["contributed"] == 0


@pytest.mark.parametrize("attack", ["unsigned", "garbled", "other_job", "other_enterprise", "hash"])
def test_unsigned_or_garbled_statements_are_refused(world: World, attack: str) -> None:
    _enterprises(world)
    job_id = _open(world)
    [task] = world.tasks("e1")
    body = world.he_body("e1", task, [1.0])
    if attack == "unsigned":
        del body["signature"]
    elif attack == "garbled":
        body["signature"] = "AAAA" + body["signature"][4:]
    elif attack == "other_job":
        body["statement"]["job_id"] = "job_" + "0" * 32
    elif attack == "other_enterprise":
        body["statement"]["enterprise"] = "e2"
    else:  # a signed statement whose hash is not the payload's
        statement = AgentStatement(CONTRIBUTION_KIND, job_id, "e1", 1, "ab" * 32)
        body["statement"] = statement.to_dict()
        body["signature"] = statement.sign(world.keys["e1"].signer)
    error = _refused(world.post_answer, "e1", job_id, body)
    assert error.status == 403, error


def test_the_same_statement_again_is_ignored_and_another_is_a_conflict(world: World) -> None:
    _enterprises(world)
    job_id = _open(world)
    [task] = world.tasks("e1")
    body = world.he_body("e1", task, [1.0])
    assert world.post_answer("e1", job_id, body).status_code == 201
    assert world.post_answer("e1", job_id, body).status_code == 200
    assert world.tasks("e1") == []  # answered: no task any more
    other = world.he_body("e1", task, [2.0])
    assert _refused(world.post_answer, "e1", job_id, other).status == 409
    refusal = world.refusal_body("e1", job_id)
    assert _refused(world.post_answer, "e1", job_id, refusal, "refusals").status == 409


def test_a_signed_refusal_is_recorded(world: World) -> None:
    _enterprises(world)
    job_id = _open(world)
    response = world.post_answer("e1", job_id, world.refusal_body("e1", job_id), "refusals")
    assert response.status_code == 201
    assert world.job(job_id)["refused"] == 1
    ledger = world.runtime.ledger
    last = ledger.entry(ledger.size() - 1)
    assert (last.type, last.actor) == ("pipeline.refusal", "e1")


def test_a_non_participant_is_refused(world: World) -> None:
    _enterprises(world, ("e1", "e2", "e3"))
    world.enterprise("e4")  # no consent: not a participant
    job_id = _open(world, ("e1", "e2", "e3", "e4"))
    statement = AgentStatement(CONTRIBUTION_KIND, job_id, "e4", 1, "ab" * 32)
    body = {
        "statement": statement.to_dict(),
        "signature": statement.sign(world.keys["e4"].signer),
        "payload": {"key_fingerprint": "00", "chunks": ["AA=="]},
    }
    error = _refused(world.post_answer, "e4", job_id, body)
    assert error.status == 403 and "not a participant" in str(error)


# --- results -----------------------------------------------------------------------------


def test_only_the_requester_reads_the_result_and_a_participant_its_share(world: World) -> None:
    _enterprises(world)
    job_id = _open(world)
    with world.client("sb-lb") as client:
        assert _refused(client.get, f"/v1/results/{job_id}").status == 409
    _contribute_all(world, job_id, NAMES)
    assert world.wait_state(job_id, ["released"])["state"] == "released"
    with world.client("sb-lb") as client:
        result = client.get(f"/v1/results/{job_id}")
    assert result["values"]["mean"] == pytest.approx([37.5])
    with world.client("sb-nm") as client:
        assert _refused(client.get, f"/v1/results/{job_id}").status == 403
        assert _refused(client.get, f"/v1/jobs/{job_id}").status == 404
    with world.client("e1") as client:
        assert client.get(f"/v1/results/{job_id}")["enterprise"] == "e1"
    with world.client("aud") as client:
        assert client.get(f"/v1/jobs/{job_id}")["state"] == "released"
        assert [j["job_id"] for j in client.get("/v1/jobs")["items"]] == [job_id]


def test_a_consent_revoked_while_collecting_removes_the_contribution(world: World) -> None:
    _enterprises(world)
    job_id = _open(world)
    _contribute_all(world, job_id, ("e4",))
    world.revoke("e4")
    _contribute_all(world, job_id, ("e1", "e2", "e3"))
    assert world.wait_state(job_id, ["released", "failed", "refused"])["state"] == "released"
    with world.client("sb-lb") as client:
        result = client.get(f"/v1/results/{job_id}")
    assert result["cohort"] == 3
    assert result["values"]["mean"] == pytest.approx([np.mean([10.0, 20.0, 40.0])])
    ledger = world.runtime.ledger
    types = [(e.type, e.payload.get("enterprise")) for e in ledger.entries(0, ledger.size())]
    assert ("pipeline.withdrawal", "e4") in types
    assert "e4" not in world.runtime.pipeline.desk.payloads(job_id)


def test_two_results_whose_cohorts_differ_by_one_enterprise(world: World) -> None:
    _enterprises(world)
    first = _open(world)
    _contribute_all(world, first, NAMES)
    assert world.wait_state(first, ["released"])["state"] == "released"
    second = _open(world, ("e1", "e2", "e3"))
    _contribute_all(world, second, ("e1", "e2", "e3"))
    view = world.wait_state(second, ["released", "refused", "failed"])
    assert view["state"] == "refused", view
    assert "disclose" in view["reason"] or "differenc" in view["reason"]


# --- time and cancellation -----------------------------------------------------------------


def test_a_job_past_its_deadline_fails(world: World) -> None:
    _enterprises(world)
    job_id = _open(world, parameters={"deadline_seconds": 5})
    created = parse_rfc3339(world.job(job_id)["created_at"])
    pipeline = world.runtime.pipeline
    pipeline.sweep(created + timedelta(seconds=4.5))  # collection ended: too few answers
    view = world.wait_state(job_id, ["failed"])
    assert view["state"] == "failed" and "minimum cohort" in view["reason"]
    other = _open(world, parameters={"deadline_seconds": 5})
    pipeline.sweep(utcnow() + timedelta(seconds=6))
    view = world.wait_state(other, ["failed"])
    assert (view["state"], view["reason"]) == ("failed", "the deadline passed")


def test_cancel(world: World) -> None:
    _enterprises(world)
    job_id = _open(world)
    with world.client("sb-nm") as client:
        assert _refused(client.post, f"/v1/jobs/{job_id}/cancel").status == 404
    with world.client("sb-lb") as client:
        assert client.post(f"/v1/jobs/{job_id}/cancel")["state"] == "cancelled"
        assert _refused(client.post, f"/v1/jobs/{job_id}/cancel").status == 409
    assert world.tasks("e1") == []
    [task_body] = [world.refusal_body("e1", job_id)]
    assert _refused(world.post_answer, "e1", job_id, task_body, "refusals").status == 410


def test_a_job_computing_when_the_exchange_restarts_fails(world: World) -> None:
    _enterprises(world)
    job_id = _open(world)
    pipeline = world.runtime.pipeline
    assert pipeline.jobs.move(job_id, source=[JobState.COLLECTING], to=JobState.COMPUTING)
    again = Runtime(Settings(data_dir=world.runtime.data_dir))
    try:
        again.pipeline.recover()
        job = again.pipeline.jobs.get(job_id)
        assert job.state is JobState.FAILED
        assert job.reason == "the exchange restarted while computing"
    finally:
        again.close()
