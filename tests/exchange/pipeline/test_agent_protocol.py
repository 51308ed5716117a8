"""The agent routes' cheaper protocol through the API: the task list with ``since`` carries
the evidence, ``GET /v1/agent/jobs/{id}/evidence`` serves it to participants only, the HE
context has a strong ETag, and HE contributions come as framed bytes — each abuse refused."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

import mpc
from exchange.pipeline import CONTRIBUTION_KIND, AgentStatement
from exchange.pipeline.frames import FramedContribution
from tests.exchange.pipeline.conftest import World

NAMES = ("e1", "e2", "e3")


def _job(world: World, names: tuple[str, ...] = NAMES) -> str:
    for name in names:
        world.enterprise(name)
        world.consent(name)
    created = world.submit(datasets=[f"{n}.energy" for n in names], parameters={"length": 2})
    assert world.wait_state(created["job_id"], ["collecting"])["state"] == "collecting"
    return str(created["job_id"])


def _tasks(world: World, name: str, **params: Any) -> dict[str, Any]:
    with world.client(name) as client:
        answer: dict[str, Any] = client.get("/v1/agent/tasks", wait=0, **params)
    return answer


def _get(world: World, who: str, path: str, **kwargs: Any) -> httpx.Response:
    with world.client(who) as client:
        return client._http.request("GET", path, **kwargs)  # the status, not a raise


def test_the_task_list_with_since_carries_the_evidence(world: World) -> None:
    job_id = _job(world)
    assert "evidence" not in _tasks(world, "e1")  # not asked for
    kept = world.runtime.ledger.size() - 1
    answer = _tasks(world, "e1", since=kept)
    [task] = answer["tasks"]
    head = answer["evidence"]
    assert head["checkpoint"] == world.runtime.ledger.checkpoint().to_text()
    assert head["consistency"]["first"] == kept
    evidence = task["evidence"]
    decision = evidence["decision"]
    assert decision["index"] == task["decision_index"]
    leaf = world.runtime.ledger.entry(task["decision_index"]).leaf_input
    assert base64.b64decode(decision["entry"]) == leaf
    assert evidence["consent"]["consent_id"] == task["consent_id"] == world.consents["e1"]
    assert evidence["consent"]["enterprise"] == "e1"
    assert job_id == task["job_id"]


def test_the_evidence_route_serves_participants_only(world: World) -> None:
    job_id = _job(world)
    world.enterprise("outsider")
    path = f"/v1/agent/jobs/{job_id}/evidence"
    mine = _get(world, "e2", path, params={"since": 1})
    assert mine.status_code == 200, mine.text
    body = mine.json()
    assert set(body) == {"checkpoint", "consistency", "decision", "consent"}
    assert body["consent"]["enterprise"] == "e2"
    assert _get(world, "outsider", path).status_code == 403
    assert _get(world, "sb-lb", path).status_code == 403  # a requester is no agent
    assert _get(world, "e1", "/v1/agent/jobs/job_" + "0" * 32 + "/evidence").status_code == 404
    e3_consent = world.runtime.consents.get(world.consents["e3"]).ledger_index
    refused = _get(world, "e1", path, params={"handoff": e3_consent})  # another's entry
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"


def test_the_he_context_has_a_strong_etag_and_answers_304(world: World) -> None:
    job_id = _job(world)
    [task] = _tasks(world, "e1")["tasks"]
    path = f"/v1/agent/jobs/{job_id}/he-context"
    first = _get(world, "e1", path)
    etag = f'"{task["material"]["context_sha256"]}"'
    assert first.status_code == 200 and first.headers["etag"] == etag
    again = _get(world, "e1", path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = _get(world, "e1", path, headers={"If-None-Match": '"' + "0" * 64 + '"'})
    assert other.status_code == 200 and other.content == first.content


def _framed(world: World, name: str, task: dict[str, Any], signer_of: str | None = None) -> Any:
    with world.client(name) as client:
        context = client.call("GET", f"/v1/agent/jobs/{task['job_id']}/he-context").content
    public = mpc.HeJobPublic(mpc.HeJobSpec.from_dict(task["material"]["spec"]), context)
    contribution = mpc.HeContributor(public).encrypt(name, [1.0, 2.0])
    statement = AgentStatement(
        CONTRIBUTION_KIND, task["job_id"], name, task["round"], contribution.digest
    )
    signature = statement.sign(world.keys[signer_of or name].signer)
    return FramedContribution.of(
        statement, signature, contribution.key_fingerprint, contribution.chunks
    )


def _post(world: World, name: str, job_id: str, body: bytes, headers: dict[str, str]) -> Any:
    with world.client(name) as client:
        return client._http.request(
            "POST", f"/v1/agent/jobs/{job_id}/contributions", content=body, headers=headers
        )


def test_binary_contributions_are_accepted_once_and_released(world: World) -> None:
    job_id = _job(world)
    for name in NAMES:
        [task] = _tasks(world, name)["tasks"]
        framed = _framed(world, name, task)
        answer = _post(world, name, job_id, framed.body, framed.headers())
        assert answer.status_code == 201, answer.text
        if name == "e1":
            again = _post(world, name, job_id, framed.body, framed.headers())
            assert again.status_code == 200 and again.json()["status"] == "ignored"
    view = world.wait_state(job_id, ["released", "failed", "refused"])
    assert view["state"] == "released", view
    with world.client("sb-lb") as client:
        result = client.get(f"/v1/results/{job_id}")
    assert result["values"]["mean"] == pytest.approx([1.0, 2.0], abs=1e-6)
    assert result["cohort"] == len(NAMES)


def test_binary_contributions_that_are_not_authentic_or_not_framed_are_refused(
    world: World,
) -> None:
    job_id = _job(world)
    [task] = _tasks(world, "e1")["tasks"]
    framed = _framed(world, "e1", task)
    headers = framed.headers()
    tampered = bytearray(framed.body)
    tampered[-1] ^= 1
    answer = _post(world, "e1", job_id, bytes(tampered), headers)
    assert answer.status_code == 403 and "payload_sha256" in answer.json()["detail"]
    forged = _framed(world, "e1", task, signer_of="e2")  # another enterprise's key
    answer = _post(world, "e1", job_id, forged.body, forged.headers())
    assert answer.status_code == 403 and "registered key" in answer.json()["detail"]
    answer = _post(world, "e2", job_id, framed.body, headers)  # e1's statement, e2 calling
    assert answer.status_code == 403
    # a body that is not framed chunks, though its hash is the one signed
    bad = (10).to_bytes(8, "big") + b"short"
    statement = AgentStatement(
        CONTRIBUTION_KIND, job_id, "e1", 1, FramedContribution({}, "", "", bad).digest
    )
    unframed = FramedContribution(
        statement.to_dict(), statement.sign(world.keys["e1"].signer), "ab", bad
    )
    answer = _post(world, "e1", job_id, bad, unframed.headers())
    assert answer.status_code == 422, answer.text
    no_statement = {k: v for k, v in headers.items() if k != "Ibx-Statement"}
    assert _post(world, "e1", job_id, framed.body, no_statement).status_code == 422
    text = {**headers, "Content-Type": "text/plain"}
    answer = _post(world, "e1", job_id, framed.body, text)
    assert answer.status_code == 415
    assert answer.headers["content-type"] == "application/problem+json"
    # nothing was stored: the honest contribution is still accepted
    assert _post(world, "e1", job_id, framed.body, headers).status_code == 201


def test_the_pending_snapshot_is_shared_until_something_happens(world: World) -> None:
    desk = world.runtime.pipeline.desk
    before = desk.pending.pending()
    assert desk.pending.pending() is before  # nothing happened: the same look
    job_id = _job(world)  # the job opened in this process: the signal moved
    assert {"e1", "e2", "e3"} <= desk.pending.pending()
    assert desk.tasks_if_pending("outsider") == []
    [task] = desk.tasks_if_pending("e1")
    assert task["job_id"] == job_id
    framed = _framed(world, "e1", task)
    assert _post(world, "e1", job_id, framed.body, framed.headers()).status_code == 201
    assert "e1" not in desk.pending.pending()  # its answer moved the signal
    assert desk.tasks_if_pending("e1") == []
