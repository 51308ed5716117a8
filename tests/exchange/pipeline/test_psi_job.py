"""The PSI engine with real PsiParty objects on the agents' side, round by round around the ring."""

from __future__ import annotations

import base64
import random

import pytest

import mpc
from consent import Operation
from core.canonical import JsonValue
from exchange.pipeline.engine import JobContext, PayloadError, ReleaseRefused
from exchange.pipeline.psi_job import (
    PsiEngineJob,
    psi_predecessor,
    psi_ring,
    psi_successor,
)
from exchange.pipeline.request import EngineName
from exchange.runtime import Runtime
from mpc.hazmat import ecgroup
from tests.exchange.pipeline._jobs import job_context

POLICY = mpc.ReleasePolicy(min_cohort=3)

Answers = dict[str, dict[int, dict[str, JsonValue]]]


def _index(job_id: str, who: str, round_no: int) -> int:
    """Where the hand-built answers would stand on the ledger (the engine only names it)."""
    return sum(map(ord, who)) * 100 + round_no


@pytest.fixture
def engine(runtime: Runtime) -> PsiEngineJob:
    return PsiEngineJob(runtime.release_guard, _index)


def _job(names: list[str], **kwargs: object) -> JobContext:
    return job_context(
        Operation.SET_INTERSECTION_SIZE,
        names,
        POLICY,
        engine=EngineName.PSI,
        field="supplier_id",
        dataset="ds-suppliers",
        **kwargs,  # type: ignore[arg-type]
    )


def _payload(blinded: mpc.BlindedSet) -> dict[str, JsonValue]:
    return {"points": [base64.b64encode(p).decode() for p in blinded.points]}


def _answer(
    engine: PsiEngineJob,
    job: JobContext,
    party: mpc.PsiParty,
    who: str,
    round_no: int,
    answers: Answers,
) -> dict[str, JsonValue] | None:
    """What ``who``'s agent posts for ``round_no``, from the task's material alone."""
    material = engine.material(job, who, round_no, answers)
    if material is None:
        return None
    assert material["session"] == job.job_id
    if round_no == 1:
        assert material["parties"] == engine.rounds(job)
        return _payload(party.blinded())
    handed = material["points"]
    assert isinstance(handed, list)
    ring = psi_ring(job)
    before = psi_predecessor(ring, who)
    assert material["from"] == before
    assert material["contribution_index"] == _index(job.job_id, before, round_no - 1)
    assert psi_successor(job, before, round_no - 1) == who
    theirs = mpc.BlindedSet(job.job_id, tuple(base64.b64decode(str(p)) for p in handed))
    return _payload(party.reblind(theirs))


def _run_ring(engine: PsiEngineJob, job: JobContext, parties: dict[str, mpc.PsiParty]) -> Answers:
    answers: Answers = {who: {} for who in parties}
    for round_no in range(1, engine.rounds(job) + 1):
        for who in sorted(parties):
            payload = _answer(engine, job, parties[who], who, round_no, answers)
            assert payload is not None
            engine.payload_digest(job, who, round_no, payload)
            answers[who][round_no] = payload
    return answers


def _sets(rng: random.Random, names: list[str]) -> dict[str, list[str]]:
    universe = [f"91330100MA2{n:07d}" for n in range(400)]
    core = rng.sample(universe, 30)
    return {who: core[: rng.randint(12, 30)] + rng.sample(universe, 60) for who in names}


def test_three_agents_learn_nothing_the_requester_gets_the_common_size(
    engine: PsiEngineJob,
) -> None:
    names = ["ent-a", "ent-b", "ent-c"]
    items = _sets(random.Random(7), names)
    job = _job(names)
    engine.start(job)
    assert engine.rounds(job) == 3
    parties = {who: mpc.PsiParty(job.job_id, items[who], mpc.PsiMode.CARDINALITY) for who in names}
    answers: Answers = {who: {} for who in names}
    # round 2 is not ready until the predecessor answered round 1
    assert engine.material(job, "ent-b", 2, answers) is None
    answers = _run_ring(engine, job, parties)
    outcome = engine.compute(job, answers)
    expected = len(set(items["ent-a"]) & set(items["ent-b"]) & set(items["ent-c"]))
    assert expected > 0
    assert outcome.values == {"size": [float(expected)]}
    assert outcome.cohort == 3 and outcome.left_out == {} and outcome.shares == {}
    # nothing posted is an item's plain group element
    plain = {ecgroup.hash_to_group(i.encode()) for who in names for i in items[who]}
    posted = {
        base64.b64decode(str(p))
        for rounds in answers.values()
        for payload in rounds.values()
        for p in payload["points"]  # type: ignore[union-attr]
    }
    assert plain.isdisjoint(posted)


def test_an_agent_restarted_between_rounds_answers_the_same(engine: PsiEngineJob) -> None:
    names = ["a", "b", "c", "d"]
    items = _sets(random.Random(3), names)
    job = _job(names)
    parties = {who: mpc.PsiParty(job.job_id, items[who], mpc.PsiMode.CARDINALITY) for who in names}
    answers = _run_ring(engine, job, parties)
    key = parties["b"].export_key()
    restored = mpc.PsiParty.restore(job.job_id, items["b"], mpc.PsiMode.CARDINALITY, key)
    assert _answer(engine, job, restored, "b", 1, answers) == answers["b"][1]
    assert _answer(engine, job, restored, "b", 3, answers) == answers["b"][3]
    with pytest.raises(mpc.errors.PsiError):
        mpc.PsiParty.restore(job.job_id, items["b"], mpc.PsiMode.CARDINALITY, b"\xff" * 32)
    outcome = engine.compute(job, answers)
    expected = len(set.intersection(*(set(items[w]) for w in names)))
    assert outcome.values == {"size": [float(expected)]} and outcome.cohort == 4


def test_malformed_points_are_refused(engine: PsiEngineJob) -> None:
    job = _job(["a", "b", "c"])
    good = _payload(mpc.PsiParty(job.job_id, ["x", "y"], mpc.PsiMode.CARDINALITY).blinded())
    points = good["points"]
    assert isinstance(points, list)
    off_curve = base64.b64encode(b"\x01" * 31 + b"\x80").decode()  # not a canonical point
    small_order = base64.b64encode(bytes(32)).decode()
    cases: dict[str, dict[str, JsonValue]] = {
        "not in the group": {"points": [points[0], off_curve]},
        "small order": {"points": [small_order]},
        "too short": {"points": [base64.b64encode(b"\x05" * 16).decode()]},
        "not base64": {"points": ["%" * 44]},
        "duplicate": {"points": [points[0], points[0]]},
        "empty": {"points": []},
        "extra member": {**good, "items": ["x"]},
        "not a list": {"points": points[0]},
    }
    for case, payload in cases.items():
        with pytest.raises(PayloadError):
            engine.payload_digest(job, "a", 1, payload)
            pytest.fail(case)
    with pytest.raises(PayloadError, match="no round 4"):
        engine.payload_digest(job, "a", 4, good)
    with pytest.raises(PayloadError, match="no round"):
        engine.payload_digest(job, "mallory", 1, good)


def test_a_set_not_blinded_on_the_ring_or_revoked_is_left_out(engine: PsiEngineJob) -> None:
    names = ["a", "b", "c", "d", "e"]
    items = _sets(random.Random(11), names)
    job = _job(names, participants=["a", "b", "c", "d"])  # e's consent was withdrawn
    parties = {who: mpc.PsiParty(job.job_id, items[who], mpc.PsiMode.CARDINALITY) for who in names}
    answers = _run_ring(engine, job, parties)
    # in round 2, c is handed b's set and posts it back unblinded
    answers["c"][2] = {"points": engine.material(job, "c", 2, answers)["points"]}  # type: ignore[index]
    outcome = engine.compute(job, answers)
    assert set(outcome.left_out) == {"b", "e"}
    assert "did not blind" in outcome.left_out["b"]
    expected = len(set.intersection(*(set(items[w]) for w in ["a", "c", "d"])))
    assert outcome.values == {"size": [float(expected)]} and outcome.cohort == 3


def test_too_few_sets_and_differencing_are_refused(engine: PsiEngineJob) -> None:
    names = ["a", "b", "c", "d"]
    items = _sets(random.Random(5), names)
    job = _job(names)
    parties = {who: mpc.PsiParty(job.job_id, items[who], mpc.PsiMode.CARDINALITY) for who in names}
    answers = _run_ring(engine, job, parties)
    incomplete = {who: dict(rounds) for who, rounds in answers.items()}
    del incomplete["a"][3], incomplete["b"][3]  # the chains of c and d broken: 2 sets left
    with pytest.raises(ReleaseRefused, match="minimum cohort is 3"):
        engine.compute(job, incomplete)
    engine.compute(job, answers)  # released over a, b, c, d
    # the same group asks again over a, b, c: the difference would isolate d
    again = _job(names[:3])
    parties = {w: mpc.PsiParty(again.job_id, items[w], mpc.PsiMode.CARDINALITY) for w in names[:3]}
    with pytest.raises(ReleaseRefused, match="solved"):
        engine.compute(again, _run_ring(engine, again, parties))
