"""The authorize-before-use pipeline end to end, with real processes (issue 12).

One real ``ibx serve`` over TLS, six enterprises each with its own CSV file or
SQLite database and its own ``ibx agent`` process, three sub-brains; the
tests share them (module scope) and each linear release reads a field of its
own, because the release guard remembers, per field, everything released to
the requesters' industry. Results are compared with numpy over the very same
files. The attacks are real: another deployment's ledger key, a forked
ledger, a database row the operator tampered with, a contribution signed by
another key, a replay, SIGKILL of an agent and of the server mid-job.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consent import EnterpriseKey
from core.canonical import canonical_bytes
from core.clock import format_rfc3339
from exchange.agent.contribute import Contributor
from exchange.agent.sources import FieldReader, open_source
from exchange.agent.task import Task
from exchange.pipeline.request import EngineName
from exchange.pipeline.statements import CONTRIBUTION_KIND, AgentStatement
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.e2e.pipeline_fixtures import (
    COMMON_SUPPLIERS,
    ORIGIN,
    AgentProcess,
    World,
    build_world,
    mean_request,
)

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    built = build_world(tmp_path_factory.mktemp("pipeline"))
    try:
        yield built
    finally:
        built.stop()


def _logs(world: World) -> str:
    """The agents' and the server's output, for a failing assertion's message."""
    parts = [f"--- {name}\n{agent.log()[-1500:]}" for name, agent in world.agents.items()]
    return "\n".join([*parts, f"--- server\n{world.url.log()[-3000:]}"])


def _released(world: World, job_id: str, **kwargs: Any) -> dict[str, Any]:
    view = world.wait(job_id, **kwargs)
    assert view["state"] == "released", f"{view}\n{_logs(world)}"
    return view


def _result_sha256(result: dict[str, Any]) -> str:
    body = {k: v for k, v in result.items() if k not in ("result_sha256", "result_index")}
    return hashlib.sha256(canonical_bytes(body)).hexdigest()


def _contributions(world: World, job_id: str, who: str | None = None) -> list[dict[str, Any]]:
    """The ``pipeline.contribution`` entries of a job (of one enterprise)."""
    return [
        e
        for e in world.entries("pipeline.contribution")
        if _job_of(e["payload"]) == job_id and who in (None, _enterprise_of(e["payload"]))
    ]


def _dataset_args(world: World, names: list[str]) -> list[str]:
    return [a for d in world.datasets(names) for a in ("--dataset", d)]


def _job_of(payload: dict[str, Any]) -> str | None:
    statement = payload.get("statement")
    if isinstance(statement, dict):
        return statement.get("job_id")
    return payload.get("job_id")


def _enterprise_of(payload: dict[str, Any]) -> str | None:
    statement = payload.get("statement")
    if isinstance(statement, dict):
        return statement.get("enterprise")
    return payload.get("enterprise")


# --- what is computed --------------------------------------------------------------------


def test_an_he_mean_over_csv_and_sqlite_agents_equals_numpy_and_is_traced_on_the_ledger(
    world: World,
) -> None:
    """``ibx request submit --wait``: decision on the ledger before any contribution,
    every agent's signed contribution, the released mean, its hash on the ledger."""
    names = world.names()
    argv = ["request", "submit", "--purpose", "benchmarking", "--operation", "mean",
            "--field", "energy_kwh", "--engine", "he", "--length", "4", "--deadline", "60",
            *_dataset_args(world, names), "--wait", "--json"]  # fmt: skip
    code, out, err = world.ibx("sb-lb", *argv)
    assert code == 0, f"{err}\n{_logs(world)}"
    assert err.startswith("idempotency key ")
    result = json.loads(out)
    expected = np.mean([world.enterprises[n].column("energy_kwh") for n in names], axis=0)
    assert result["cohort"] == len(names)
    np.testing.assert_allclose(result["values"]["mean"], expected, rtol=1e-6)
    assert result["result_sha256"] == _result_sha256(result)

    job_id = result["job_id"]
    view = world.job(job_id)
    assert (view["participants"], view["contributed"], view["refused"]) == (
        len(names),
        len(names),
        0,
    )
    decision = [e for e in world.entries("pipeline.decision") if e["payload"]["job_id"] == job_id]
    assert len(decision) == 1 and decision[0]["index"] == view["decision_index"]
    contributions = _contributions(world, job_id)
    assert sorted(_enterprise_of(c["payload"]) or "" for c in contributions) == names
    assert all(c["index"] > decision[0]["index"] for c in contributions)
    results = [e for e in world.entries("pipeline.result") if e["payload"]["job_id"] == job_id]
    assert [r["payload"]["result_sha256"] for r in results] == [result["result_sha256"]]
    assert results[0]["index"] == result["result_index"] > max(c["index"] for c in contributions)
    for name in names:  # each agent journaled its contribution and why
        lines = world.agents[name].journal_for(job_id)
        assert [line["event"] for line in lines if line["event"] == "contributed"] == [
            "contributed"
        ], lines


def test_an_he_regression_pools_every_enterprise_rows(world: World) -> None:
    names = world.names(5)
    fields = ("line_kwh", "line_units")
    job = world.submit("sb-lb", mean_request(fields, world.datasets(names), operation="regression"))
    _released(world, job["job_id"])
    result = world.result(job["job_id"])
    y = np.concatenate([world.enterprises[n].column("line_kwh") for n in names])
    x = np.concatenate([world.enterprises[n].column("line_units") for n in names])
    expected, *_ = np.linalg.lstsq(np.column_stack([np.ones_like(x), x]), y, rcond=None)
    np.testing.assert_allclose(result["values"]["coefficients"], expected, rtol=1e-6)
    assert result["cohort"] == len(names)


def test_mpc_benchmarking_median_quartiles_and_each_enterprise_its_own_rank(
    world: World,
) -> None:
    """Each agent contributes its column's mean as sealed shares; the requester gets the
    median and quartiles; each agent alone learns its own rank from its share."""
    names = world.names()
    job = world.submit("sb-lb", mean_request(("unit_cost",), world.datasets(names),
                                             operation="percentile_rank", engine="auto",
                                             bound=1000.0))  # fmt: skip
    assert job["engine"] == "mpc"
    _released(world, job["job_id"])
    result = world.result(job["job_id"])
    means = {n: float(np.mean(world.enterprises[n].column("unit_cost"))) for n in names}
    values = np.array(list(means.values()))
    assert result["cohort"] == len(names)
    np.testing.assert_allclose(result["values"]["median"], [np.median(values)], atol=1e-3)
    np.testing.assert_allclose(
        result["values"]["quartiles"],
        np.percentile(values, [25, 50, 75], method="weibull"),  # statistics.quantiles
        atol=1e-3,
    )
    assert set(result["values"]) >= {"median", "quartiles"}
    for name in names:  # the agent reads its share after the release and journals its rank
        below = sum(1 for other, v in means.items() if other != name and v < means[name])
        expected_rank = 100.0 * below / (len(names) - 1)
        agent = world.agents[name]
        deadline = time.monotonic() + 30
        ranks: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            ranks = [x for x in agent.journal_for(job["job_id"]) if x["event"] == "rank"]
            if ranks:
                break
            time.sleep(0.2)
        assert ranks, f"{name} never learnt its rank\n{agent.log()[-2000:]}"
        assert ranks[-1]["percentile"] == pytest.approx(expected_rank), ranks
    share = world.result(job["job_id"], who=names[0])  # an enterprise reads its own share
    assert share["enterprise"] == names[0] and "rank_tags" in share["share"]
    assert "values" not in share


def test_psi_gives_the_size_of_the_suppliers_every_participant_shares(world: World) -> None:
    names = world.names(4)
    job = world.submit("sb-lb", mean_request(("supplier",), world.datasets(names),
                                             operation="set_intersection_size",
                                             purpose="trade_matching", engine="auto"))  # fmt: skip
    assert job["engine"] == "psi"
    _released(world, job["job_id"])
    world.notes["psi_job"] = job["job_id"]
    result = world.result(job["job_id"])
    sets = [set(world.enterprises[n].data["supplier"]) for n in names]
    assert result["values"]["size"] == [len(set.intersection(*sets))] == [len(COMMON_SUPPLIERS)]
    assert result["cohort"] == len(names)


# --- what is refused before any data is touched -----------------------------------------


def test_a_request_the_policy_denies_is_refused_and_nothing_is_recorded_for_agents(
    world: World,
) -> None:
    """Benchmarking over core data: the pack's Rego rule refuses it (403, exit 3) before any
    consent is used; no decision reaches the ledger, no agent is asked."""
    before = len(world.entries("pipeline.decision"))
    code, out, err = world.ibx("sb-lb", "request", "submit", "--purpose", "benchmarking",
                               "--operation", "mean", "--field", "binder_ratio",
                               "--dataset", "plant-a.recipes")  # fmt: skip
    assert (code, out) == (3, ""), err
    assert "purpose benchmarking is not whitelisted for core data" in err, err
    outsider = world.ibx("sb-nm", "request", "submit", "--purpose", "benchmarking",
                         "--operation", "mean", "--field", "energy_kwh",
                         *_dataset_args(world, world.names()))  # fmt: skip
    assert outsider[:2] == (3, ""), outsider  # another industry: no consent covers it
    assert len(world.entries("pipeline.decision")) == before
    with world.client("sb-nm") as client:
        assert list(client.pages("/v1/jobs")) == []


def test_a_cohort_below_the_minimum_is_refused_with_the_reason(world: World) -> None:
    code, out, err = world.ibx("sb-lb", "request", "submit", "--purpose", "benchmarking",
                               "--operation", "mean", "--field", "energy_kwh",
                               *_dataset_args(world, world.names(2)))  # fmt: skip
    assert (code, out) == (3, ""), err
    assert "cohort" in err and "minimum" in err, err


def test_a_requester_cannot_read_another_requesters_job_or_result(world: World) -> None:
    job = world.submit("sb-lb", mean_request(("energy_kwh",), world.datasets(world.names()),
                                             length=4))  # fmt: skip
    _released(world, job["job_id"])
    refused = world.refusal(world.result, job["job_id"], who="sb-lb2")
    assert refused.status == 403
    assert world.refusal(world.job, job["job_id"], who="sb-lb2").status in (403, 404)
    code, out, err = world.ibx("sb-lb2", "request", "result", job["job_id"])
    assert (code, out) == (3, ""), err


# --- the CLI's job commands -------------------------------------------------------------


def test_status_list_cancel_and_a_result_not_released(world: World) -> None:
    """A job held open by a stopped agent: status names its state, list shows it, the
    result is not released (one line, exit 1), cancel ends it once; a retry with the
    same idempotency key gets the same job."""
    held = world.agents["plant-f"]
    held.stop()
    try:
        argv = ["request", "submit", "--purpose", "benchmarking", "--operation", "mean",
                "--field", "energy_kwh", "--length", "4", "--deadline", "120",
                "--idempotency-key", "e2e-cancel-1",
                *_dataset_args(world, world.names())]  # fmt: skip
        code, out, err = world.ibx("sb-lb", *argv, "--json")
        assert code == 0, err
        job_id = json.loads(out)["job_id"]
        again = world.ibx("sb-lb", *argv, "--json")
        assert again[0] == 0, again
        assert json.loads(again[1])["job_id"] == job_id
        world.wait_for(job_id, lambda v: v["contributed"] == 5)

        code, out, err = world.ibx("sb-lb", "request", "status", job_id)
        assert code == 0 and out.splitlines()[1].split()[:2] == ["state", "collecting"], out
        code, out, err = world.ibx("sb-lb", "request", "result", job_id)
        assert (code, out) == (1, "")
        assert err == f"ibx: not released: job {job_id} is collecting\n"
        code, out, err = world.ibx("sb-lb", "request", "list")
        assert code == 0 and any(line.startswith(f"{job_id}\tcollecting") for line in
                                 out.splitlines()), out  # fmt: skip

        code, out, err = world.ibx("sb-lb2", "request", "cancel", job_id)
        assert code in (1, 3) and out == "", err  # not its job: as if there were none
        code, out, err = world.ibx("sb-lb", "request", "cancel", job_id)
        assert (code, out) == (0, f"cancelled {job_id} (cancelled)\n"), err
        code, out, err = world.ibx("sb-lb", "request", "cancel", job_id)
        assert code == 1 and out == "", err  # 409: already ended
        code, out, err = world.ibx("sb-lb", "request", "result", job_id)
        assert code == 1 and err.startswith(f"ibx: not released: job {job_id} is cancelled")
    finally:
        held.start()


# --- consent revoked while collecting ---------------------------------------------------


def test_a_consent_revoked_while_its_job_collects_removes_that_contribution(
    world: World,
) -> None:
    names = world.names()
    waiting, revoker = world.agents["plant-e"], world.enterprises["plant-f"]
    waiting.stop()  # holds the job open while plant-f has contributed
    try:
        asked = mean_request(("water_m3",), world.datasets(names), length=4,
                             purpose="industry_monitoring")  # fmt: skip
        job = world.submit("sb-lb", asked)
        world.agents["plant-f"].wait_journal(job["job_id"], "contributed")
        consent_id = revoker.consents["monitoring"]
        code, _, err = world.ibx(revoker.name, "consent", "revoke", consent_id,
                                 "--key", str(revoker.key_file), "--reason", "e2e")  # fmt: skip
        assert code == 0, err
    finally:
        waiting.start()
    view = _released(world, job["job_id"])
    result = world.result(job["job_id"])
    kept = [n for n in names if n != "plant-f"]
    expected = np.mean([world.enterprises[n].column("water_m3") for n in kept], axis=0)
    assert result["cohort"] == len(kept)
    np.testing.assert_allclose(result["values"]["mean"], expected, rtol=1e-6)
    withdrawn = [e["payload"] for e in world.entries("pipeline.withdrawal")
                 if e["payload"]["job_id"] == job["job_id"]]  # fmt: skip
    assert [w["enterprise"] for w in withdrawn] == ["plant-f"], withdrawn
    assert view["contributed"] == len(kept)


# --- differencing -----------------------------------------------------------------------


def test_two_requests_whose_cohorts_differ_by_one_enterprise_the_second_is_refused(
    world: World,
) -> None:
    names = world.names()
    first = world.submit("sb-lb", mean_request(("scrap_kg",), world.datasets(names), length=4))
    _released(world, first["job_id"])
    second = world.submit(
        "sb-lb2", mean_request(("scrap_kg",), world.datasets(names[:-1]), length=4)
    )  # another sub-brain of the same industry: the same adversary group
    view = world.wait(second["job_id"], who="sb-lb2")
    assert view["state"] == "refused", view
    assert view["reason"], view
    code, _, err = world.ibx("sb-lb2", "request", "result", second["job_id"])
    assert code == 3 and err.startswith(f"ibx: not released: job {second['job_id']} is refused")


# --- the agents' checks -----------------------------------------------------------------


def _participants_table(db: sqlite3.Connection) -> tuple[str, str]:
    """The pipeline's participant table and its consent column (found, not assumed)."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    for table in tables:
        if "pipeline" in table and "particip" in table:
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
            if "consent_id" in columns:
                return table, "consent_id"
    raise AssertionError(f"no pipeline participants table among {tables}")


def test_agents_refuse_a_forked_ledger_another_deployments_key_and_a_tampered_row(
    world: World, tmp_path: Path
) -> None:
    """plant-a kept a checkpoint of a fork of this ledger (same key, other history);
    plant-b was handed another deployment's verifier key; plant-c's task was tampered
    with in the exchange's database (its consent swapped for another of its own,
    which the decision on the ledger does not cite). Each refuses before reading any
    data, with a signed refusal; the others' contributions still release."""
    a, b, c = (world.agents[n] for n in ("plant-a", "plant-b", "plant-c"))
    for agent in (a, b, c):
        agent.stop()
    (a.state / "checkpoint").write_text(world.fork_checkpoint)
    other = tmp_path / "other.vkey"

    elsewhere_dir = initialised(tmp_path / "elsewhere", ledger_origin=ORIGIN)  # same name
    elsewhere = Runtime(Settings(data_dir=elsewhere_dir))
    other.write_text(elsewhere.ledger.vkey() + "\n")
    elsewhere.close()
    forged_b = AgentProcess(b.enterprise, world.url, vkey=other)
    world.agents["plant-b"] = forged_b
    names = world.names()
    try:
        job = world.submit("sb-lb", mean_request(("heat_gj",), world.datasets(names), length=4))
        job_id = job["job_id"]
        with closing(sqlite3.connect(world.data_dir / "ibx.db")) as db:
            table, column = _participants_table(db)
            db.execute(
                f"UPDATE {table} SET {column} = ? WHERE job_id = ? AND enterprise = ?",
                (world.enterprises["plant-c"].consents["monitoring"], job_id, "plant-c"),
            )
            db.commit()
        a.start()
        forged_b.start()
        c.start()
        view = world.wait(job_id)
        assert view["refused"] == 3, f"{view}\n{_logs(world)}"
        assert view["state"] == "released", view
        result = world.result(job_id)
        kept = ["plant-d", "plant-e", "plant-f"]
        expected = np.mean([world.enterprises[n].column("heat_gj") for n in kept], axis=0)
        np.testing.assert_allclose(result["values"]["mean"], expected, rtol=1e-6)
        for agent, word in ((a, "consisten"), (forged_b, "checkpoint"), (c, "consent")):
            refusals = [x for x in agent.journal_for(job_id) if x["event"] == "refused"]
            assert refusals and word in refusals[0]["reason"].lower(), agent.journal()
            assert not [x for x in agent.journal_for(job_id) if x["event"] == "contributed"]
        assert (a.state / "ledger-alarm").exists()
        refusals = [e for e in world.entries("pipeline.refusal") if _job_of(e["payload"]) == job_id]
        assert sorted(_enterprise_of(e["payload"]) or "" for e in refusals) == [
            "plant-a", "plant-b", "plant-c"
        ]  # fmt: skip
    finally:  # the agents as they were: the right key, a fresh trust in this ledger
        for agent in (a, forged_b, c):
            agent.stop()
        for path in ("checkpoint", "ledger-alarm"):
            (a.state / path).unlink(missing_ok=True)
        world.agents["plant-b"] = b
        for agent in (a, b, c):
            agent.start()


def test_agents_refuse_a_job_whose_decision_is_not_on_the_ledger(world: World) -> None:
    """The operator forges a job in the exchange's database: a copy of a released PSI job
    under a new id, collecting again, its decision said to be at a ledger index that holds
    a consent grant. Every participant's agent finds no such decision and refuses, signed;
    none reads its data; the forged job never releases."""
    original = world.notes.get("psi_job")
    if original is None:
        pytest.skip("the PSI job did not release")
    grant_index = world.entries("consent.grant")[0]["index"]
    forged = "job_" + secrets.token_hex(16)
    now = time.time()
    deadline = datetime.fromtimestamp(now + 20, UTC)
    with closing(sqlite3.connect(world.data_dir / "ibx.db", timeout=10)) as db:
        db.execute(
            "INSERT INTO pipeline_jobs (job_id, requester, engine, operation, state, reason, "
            "request_json, decision_json, terms_json, classification, decision_index, created_at, "
            "deadline, deadline_ts, collect_until_ts, updated_at, result_json, result_sha256, "
            "result_index, min_cohort) SELECT ?, requester, engine, operation, 'collecting', NULL, "
            "request_json, decision_json, terms_json, classification, ?, created_at, ?, ?, ?, "
            "updated_at, NULL, NULL, NULL, min_cohort FROM pipeline_jobs WHERE job_id = ?",
            (forged, grant_index, format_rfc3339(deadline), now + 20, now + 15, original),
        )
        db.execute(
            "INSERT INTO pipeline_participants (job_id, enterprise, dataset, consent_id, "
            "receipt_sha256, state) SELECT ?, enterprise, dataset, consent_id, receipt_sha256, "
            "'pending' FROM pipeline_participants WHERE job_id = ?",
            (forged, original),
        )
        db.commit()
        rows = db.execute(
            "SELECT enterprise FROM pipeline_participants WHERE job_id = ?", (forged,)
        )
        names = [r[0] for r in rows]
    assert len(names) >= 3
    for name in names:
        refusal = world.agents[name].wait_journal(forged, "refused", timeout=30)
        assert "decision" in refusal["reason"], refusal
        assert not [
            x for x in world.agents[name].journal_for(forged) if x["event"] == "contributed"
        ]
    view = world.wait(forged, timeout=60)
    assert view["state"] != "released", view
    assert not [
        e for e in world.entries("pipeline.contribution") if _job_of(e["payload"]) == forged
    ]


def _hand_made_task(world: World, enterprise: str, job_id: str) -> dict[str, Any]:
    with world.client(enterprise) as client:
        tasks = client.get("/v1/agent/tasks", wait=5)["tasks"]
    found = [t for t in tasks if t["job_id"] == job_id]
    assert found, tasks
    return dict(found[0])


def test_a_contribution_signed_by_another_key_is_dropped_and_a_replay_is_ignored(
    world: World,
) -> None:
    """plant-d's agent is stopped; the enterprise posts by hand what its agent would:
    signed by another key → 403 and not counted; signed right → 201; the same again →
    200, ignored; a different one for the same round → 409. The result counts it once."""
    firm = world.enterprises["plant-d"]
    world.agents["plant-d"].stop()
    names = world.names()
    try:
        job = world.submit("sb-lb", mean_request(("steam_t",), world.datasets(names), length=4))
        job_id = job["job_id"]
        world.wait_for(job_id, lambda v: v["contributed"] == len(names) - 1)
        task = Task.from_dict(_hand_made_task(world, firm.name, job_id))
        spec, table = firm.source_spec
        source = open_source(spec, table=table)
        with world.client(firm.name) as client:

            def context(jid: str) -> bytes:
                return client.call("GET", f"/v1/agent/jobs/{jid}/he-context").content

            made = Contributor(firm.name, FieldReader(source), context).contribute(
                task, EngineName.HE
            )
            statement = AgentStatement(kind=CONTRIBUTION_KIND, job_id=job_id,
                                       enterprise=firm.name, round=task.round,
                                       payload_sha256=made.payload_sha256)  # fmt: skip
            right = EnterpriseKey.load(firm.key_file).signer
            wrong = EnterpriseKey.generate(world.root / "mallory.key").signer
            path = f"/v1/agent/jobs/{job_id}/contributions"
            body = {"statement": statement.to_dict(), "payload": dict(made.payload)}
            forged = client._http.post(path, json={**body, "signature": statement.sign(wrong)})
            assert forged.status_code == 403, forged.text
            assert world.job(job_id)["contributed"] == len(names) - 1
            good = {**body, "signature": statement.sign(right)}
            assert client._http.post(path, json=good).status_code == 201
            replay = client._http.post(path, json=good)
            assert replay.status_code == 200, replay.text
            other = Contributor(firm.name, FieldReader(source), context).contribute(
                task, EngineName.HE
            )  # fresh randomness: another ciphertext, another statement for the same round
            second = AgentStatement(kind=CONTRIBUTION_KIND, job_id=job_id,
                                    enterprise=firm.name, round=task.round,
                                    payload_sha256=other.payload_sha256)  # fmt: skip
            conflict = client._http.post(path, json={"statement": second.to_dict(),
                                                     "signature": second.sign(right),
                                                     "payload": dict(other.payload)})  # fmt: skip
            assert conflict.status_code == 409, conflict.text
        _released(world, job_id)
        result = world.result(job_id)
        expected = np.mean([world.enterprises[n].column("steam_t") for n in names], axis=0)
        np.testing.assert_allclose(result["values"]["mean"], expected, rtol=1e-6)
        assert len(_contributions(world, job_id, firm.name)) == 1
    finally:
        world.agents["plant-d"].start()


# --- crashes ----------------------------------------------------------------------------


def test_an_agent_killed_mid_job_and_restarted_contributes_exactly_once(world: World) -> None:
    names = world.names()
    victim = world.agents["plant-e"]
    job = world.submit("sb-lb", mean_request(("co2_t",), world.datasets(names), length=4))
    time.sleep(0.3)  # the agent is fetching, verifying or contributing
    victim.kill()
    victim.start()
    _released(world, job["job_id"])
    result = world.result(job["job_id"])
    expected = np.mean([world.enterprises[n].column("co2_t") for n in names], axis=0)
    np.testing.assert_allclose(result["values"]["mean"], expected, rtol=1e-6)
    assert result["cohort"] == len(names)
    mine = _contributions(world, job["job_id"], "plant-e")
    assert len(mine) == 1, mine


def test_the_server_killed_mid_job_restarts_and_the_job_ends(world: World) -> None:
    """SIGKILL of ``ibx serve`` while a job collects; started again on the same data dir
    and port, the job reaches a terminal state (released with every contribution once,
    or failed) — it never hangs; the agents reconnect by themselves."""
    names = world.names()
    held = world.agents["plant-f"]
    held.stop()
    try:
        job = world.submit("sb-lb", mean_request(("power_kw",), world.datasets(names),
                                                 length=4, deadline=40))  # fmt: skip
        world.wait_for(job["job_id"], lambda v: v["contributed"] == len(names) - 1)
        world.server.kill()
        world.server.start()
    finally:
        held.start()
    view = world.wait(job["job_id"], timeout=70)
    assert view["state"] in ("released", "failed"), view
    if view["state"] == "released":
        result = world.result(job["job_id"])
        expected = np.mean([world.enterprises[n].column("power_kw") for n in names], axis=0)
        np.testing.assert_allclose(result["values"]["mean"], expected, rtol=1e-6)
        for name in names:
            mine = _contributions(world, job["job_id"], name)
            assert len(mine) == 1, (name, mine)
    # the agents found the exchange again: a new job releases
    again = world.submit("sb-lb", mean_request(("energy_kwh",), world.datasets(names), length=4))
    _released(world, again["job_id"])
