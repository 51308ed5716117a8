"""The MPC engine with real party processes: agents deal sealed shares, the engine releases.

The "agent" side here is what ``ibx agent`` does with the task's material:
:class:`mpc.ShareDealer` seals one share per party; the engine checks the
payload's shape, runs the deployment's three parties (TLS between them) and
passes the outcome through the real release guard.
"""

from __future__ import annotations

import base64
import datetime as dt
import statistics

import numpy as np
import pytest

import mpc
from consent import Operation
from core.canonical import JsonValue, canonical_sha256
from exchange.pipeline.engine import JobContext, PayloadError, ReleaseRefused
from exchange.pipeline.mpc_job import MpcEngineJob, mpc_engine
from exchange.runtime import Runtime
from tests.exchange.pipeline._jobs import job_context

EXACT = mpc.ReleasePolicy(
    min_cohort=3,
    order_statistics=mpc.OrderRelease.EXACT,
    exact_order_classifications=frozenset({"internal"}),
)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> mpc.MpcDeployment:
    return mpc.MpcDeployment.create(tmp_path_factory.mktemp("mpc"), now=dt.datetime.now(dt.UTC))


@pytest.fixture
def engine(deployment: mpc.MpcDeployment, runtime: Runtime) -> MpcEngineJob:
    return MpcEngineJob(deployment, runtime.release_guard)


def _deal(
    engine: MpcEngineJob, job: JobContext, enterprise: str, value: float
) -> tuple[dict[str, JsonValue], mpc.RankKey | None]:
    """What an agent posts for ``value``, from the task's material alone."""
    material = engine.material(job, enterprise, 1, {})
    assert material is not None
    spec_obj = material["spec"]
    keys = material["box_public_keys"]
    threshold = material["threshold"]
    assert isinstance(spec_obj, dict) and isinstance(keys, list) and isinstance(threshold, int)
    spec = mpc.MpcJobSpec.from_dict(dict(spec_obj))
    dealer = mpc.ShareDealer.for_job(spec, [base64.b64decode(str(k)) for k in keys], threshold)
    dealt = dealer.deal(enterprise, value, with_rank_key=bool(material["ranks"]))
    payload: dict[str, JsonValue] = {"shares": [e.to_dict() for e in dealt.envelopes]}  # type: ignore[misc]
    return payload, dealt.rank_key


def test_benchmarking_round_median_quartiles_and_each_own_rank(engine: MpcEngineJob) -> None:
    names = [f"ent-{i}" for i in range(6)]
    values = [float(v) for v in np.random.default_rng(12).uniform(50, 950, len(names))]
    job = job_context(Operation.PERCENTILE_RANK, [*names, "ent-replay"], EXACT)
    engine.start(job)
    answers: dict[str, dict[int, dict[str, JsonValue]]] = {}
    keys: dict[str, mpc.RankKey] = {}
    for name, value in zip(names, values, strict=True):
        payload, key = _deal(engine, job, name, value)
        assert engine.payload_digest(job, name, 1, payload) == canonical_sha256(payload).hex()
        assert key is not None
        answers[name], keys[name] = {1: payload}, key
    # a well-formed payload whose shares were dealt for another job: the parties drop it
    other = job_context(Operation.PERCENTILE_RANK, ["ent-replay", *names], EXACT)
    replayed, _ = _deal(engine, other, "ent-replay", 500.0)
    engine.payload_digest(job, "ent-replay", 1, replayed)
    answers["ent-replay"] = {1: replayed}

    outcome = engine.compute(job, answers)
    engine.end(job.job_id)

    assert outcome.cohort == len(names)
    assert set(outcome.left_out) == {"ent-replay"}
    assert "made for job" in outcome.left_out["ent-replay"]
    assert outcome.values["median"] == pytest.approx([np.median(values)], abs=1e-9)
    expected_q = statistics.quantiles(values, n=4)  # the parties' (exclusive) method
    assert outcome.values["quartiles"] == pytest.approx(expected_q, abs=1e-9)
    assert outcome.values["quartiles"] == pytest.approx(
        list(np.quantile(values, [0.25, 0.5, 0.75], method="weibull")), abs=1e-9
    )
    assert set(outcome.shares) == set(names)  # the replayed contributor gets no rank
    for name, value in zip(names, values, strict=True):
        tags = outcome.shares[name]["rank_tags"]
        assert isinstance(tags, list)
        below = sum(v < value for v in values)
        assert keys[name].percentile([int(str(t)) for t in tags]) == pytest.approx(
            100 * below / (len(names) - 1)
        )
    party_jobs = engine._deployment.party_dir(0) / "jobs"
    assert not list(party_jobs.glob(f"{job.job_id}*"))  # end() removed the sealed shares


def _valid(engine: MpcEngineJob, job: JobContext, who: str) -> dict[str, JsonValue]:
    return _deal(engine, job, who, 10.0)[0]


def test_payloads_of_the_wrong_shape_are_refused(engine: MpcEngineJob) -> None:
    job = job_context(Operation.QUANTILES, ["a", "b", "c"], EXACT)
    good = _valid(engine, job, "a")
    shares = good["shares"]
    assert isinstance(shares, list)
    foreign = _valid(engine, job, "b")["shares"]
    assert isinstance(foreign, list)
    cases: dict[str, dict[str, JsonValue]] = {
        "missing envelope": {"shares": shares[:2]},
        "foreign envelope": {"shares": [shares[0], shares[1], foreign[2]]},
        "party twice": {"shares": [shares[0], shares[1], shares[1]]},
        "extra member": {**good, "note": "x"},
        "not base64": {"shares": [shares[0], shares[1], {**shares[2], "blob": "%%%"}]},
        "party as text": {"shares": [shares[0], shares[1], {**shares[2], "party": "2"}]},
        "oversized": {"shares": [shares[0], shares[1], {**shares[2], "blob": "A" * 8000}]},
        "not a list": {"shares": "abc"},
    }
    for case, payload in cases.items():
        with pytest.raises(PayloadError):
            engine.payload_digest(job, "a", 1, payload)
            pytest.fail(case)
    # the whole payload of another enterprise, posted as this one's
    with pytest.raises(PayloadError, match="contributor 'b'"):
        engine.payload_digest(job, "a", 1, _valid(engine, job, "b"))
    with pytest.raises(PayloadError, match="one round"):
        engine.payload_digest(job, "a", 2, good)
    engine.payload_digest(job, "a", 1, good)


def test_a_wrong_contributor_envelope_is_left_out_at_compute(engine: MpcEngineJob) -> None:
    """Answers that bypassed the digest check (e.g. stored before) are checked again."""
    job = job_context(Operation.MIN_MAX, ["a", "b", "c"], EXACT)
    answers = {w: {1: _valid(engine, job, w)} for w in ("a", "b")}
    answers["c"] = {1: _valid(engine, job, "a")}  # a's shares posted as c's
    with pytest.raises(ReleaseRefused, match="minimum cohort is 3"):
        engine.compute(job, answers)  # refused before any party starts


def test_dominated_total_is_refused(engine: MpcEngineJob) -> None:
    policy = mpc.ReleasePolicy(min_cohort=3, dominance=(mpc.DominanceRule(1, 60.0),))
    names = ["a", "b", "c", "d"]
    job = job_context(Operation.DOMINANCE_CHECK, names, policy)
    engine.start(job)  # a sum: no order statistic to refuse
    values = [10.0, 12.0, 11.0, 900.0]  # d alone is over 60 % of the total
    answers = {w: {1: _deal(engine, job, w, v)[0]} for w, v in zip(names, values, strict=True)}
    with pytest.raises(ReleaseRefused, match="largest contributors"):
        engine.compute(job, answers)
    engine.end(job.job_id)


def test_exact_order_statistics_are_refused_before_any_share(engine: MpcEngineJob) -> None:
    job = job_context(Operation.QUANTILES, ["a", "b", "c"], mpc.ReleasePolicy(min_cohort=3))
    with pytest.raises(ReleaseRefused, match="exact minimum, maximum, median"):
        engine.start(job)


def test_spec_follows_operation_and_policy(engine: MpcEngineJob) -> None:
    dp = mpc.ReleasePolicy(
        min_cohort=4,
        dominance=(mpc.DominanceRule(2, 80.0),),
        order_statistics=mpc.OrderRelease.DP,
        order_dp=mpc.DpOrderPolicy(1.0, candidates=5),
    )
    material = engine.material(job_context(Operation.MIN_MAX, list("abcd"), dp), "a", 1, {})
    assert material is not None
    spec = mpc.MpcJobSpec.from_dict(dict(material["spec"]))  # type: ignore[arg-type]
    assert [s.value for s in spec.statistics] == ["min", "max"]
    assert spec.order_candidates == (-1000.0, -500.0, 0.0, 500.0, 1000.0)
    assert spec.dominance == () and spec.min_cohort == 4 and not spec.percentile_ranks
    material = engine.material(job_context(Operation.MEAN, list("abcd"), dp), "a", 1, {})
    assert material is not None
    spec = mpc.MpcJobSpec.from_dict(dict(material["spec"]))  # type: ignore[arg-type]
    assert spec.dominance == (mpc.DominanceRule(2, 80.0),) and spec.order_candidates == ()
    assert material["threshold"] == 1 and len(material["box_public_keys"]) == 3  # type: ignore[arg-type]


def test_mpc_engine_creates_the_deployment_in_the_data_dir(runtime: Runtime) -> None:
    first = mpc_engine(runtime)
    assert (runtime.data_dir / "mpc" / "box_public_keys").is_file()
    assert mpc_engine(runtime)._deployment.box_public_keys == first._deployment.box_public_keys


def test_dp_order_statistics_leave_as_grid_candidates(engine: MpcEngineJob) -> None:
    policy = mpc.ReleasePolicy(
        min_cohort=3,
        order_statistics=mpc.OrderRelease.DP,
        order_dp=mpc.DpOrderPolicy(1.0, candidates=9),
    )
    names = ["a", "b", "c", "d", "e"]
    job = job_context(Operation.QUANTILES, names, policy)
    engine.start(job)  # DP order release: nothing exact is asked of the parties
    values = [120.0, 340.0, 510.0, 260.0, 790.0]
    answers = {w: {1: _deal(engine, job, w, v)[0]} for w, v in zip(names, values, strict=True)}
    outcome = engine.compute(job, answers)
    engine.end(job.job_id)
    grid = set(mpc.DpOrderPolicy(1.0, candidates=9).grid(1000.0))
    assert len(outcome.values["median"]) == 1 and len(outcome.values["quartiles"]) == 3
    assert set(outcome.values["median"]) | set(outcome.values["quartiles"]) <= grid
    assert outcome.epsilon == 1.0 and outcome.shares == {}


def test_a_mean_under_a_dominance_rule_runs_on_mpc_with_dp_noise(engine: MpcEngineJob) -> None:
    policy = mpc.ReleasePolicy(
        min_cohort=3,
        dominance=(mpc.DominanceRule(1, 60.0),),
        dp=mpc.DpPolicy(mpc.DpMechanism.LAPLACE, 5.0),
    )
    names = ["a", "b", "c", "d"]
    job = job_context(Operation.MEAN, names, policy, bound=100.0)
    engine.start(job)
    values = [40.0, 45.0, 50.0, 55.0]  # no one dominates
    answers = {w: {1: _deal(engine, job, w, v)[0]} for w, v in zip(names, values, strict=True)}
    outcome = engine.compute(job, answers)
    engine.end(job.job_id)
    (mean,) = outcome.values["mean"]
    assert mean != 47.5  # noised (Laplace, scale 2·100/4/5 = 10)
    assert abs(mean - 47.5) < 200
    assert outcome.epsilon == 5.0 and outcome.cohort == 4


def test_certificates_about_to_expire_are_renewed_and_box_keys_kept(runtime: Runtime) -> None:
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=29)
    made = mpc.MpcDeployment.create(runtime.data_dir / "mpc", now=old)
    assert made.certificates_expire() < dt.datetime.now(dt.UTC) + dt.timedelta(days=2)
    renewed = mpc_engine(runtime)._deployment
    assert renewed.certificates_expire() > dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    assert renewed.box_public_keys == made.box_public_keys


def test_a_long_running_engine_renews_the_certificates_before_a_job_runs(
    runtime: Runtime,
) -> None:
    made = mpc.MpcDeployment.create(runtime.data_dir / "mpc", now=dt.datetime.now(dt.UTC))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=29)
    engine = MpcEngineJob(made, runtime.release_guard, clock=lambda: later)
    assert engine._current_deployment().certificates_expire() > later + dt.timedelta(days=29)
    assert engine._current_deployment().box_public_keys == made.box_public_keys
