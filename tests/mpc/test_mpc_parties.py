"""Three real party processes talking TLS: a benchmarking round, bad shares, and a deadline."""

from __future__ import annotations

import datetime as dt
import os
import ssl
import statistics
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509

from mpc import (
    DominanceRule,
    MpcDeployment,
    MpcJobSpec,
    MpcRunner,
    MpcStatistic,
    RunnerConfig,
    SealedShare,
    ShareDealer,
    party_name,
)
from mpc.errors import CohortTooSmallError, DeploymentError, PartyTimeoutError

NOW = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> MpcDeployment:
    return MpcDeployment.create(tmp_path_factory.mktemp("mpc"), now=dt.datetime.now(dt.UTC))


def test_party_certificates_carry_the_names_mpyc_checks(deployment) -> None:
    for index in range(3):
        config = deployment.party_dir(index) / ".config"
        cert = x509.load_pem_x509_certificate((config / f"party_{index}.crt").read_bytes())
        assert cert.subject.rfc4514_string() == f"CN={party_name(index)}"
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [f"MPyC party {index}"]
        assert (config / f"party_{index}.key").stat().st_mode & 0o077 == 0
        assert (config / f"party_{index}.box").stat().st_mode & 0o077 == 0
        # the same check MPyC's client side makes (ssl default context + server_hostname)
        ctx = ssl.create_default_context(cafile=str(config / "mpyc_ca.crt"))
        ctx.load_cert_chain(config / f"party_{index}.crt", config / f"party_{index}.key")
    assert MpcDeployment.from_dir(deployment.base_dir).box_public_keys == deployment.box_public_keys
    with pytest.raises(DeploymentError):
        MpcDeployment.from_dir(deployment.base_dir / "nowhere")
    with pytest.raises(DeploymentError, match="honest majority"):
        MpcDeployment.create(deployment.base_dir / "two", parties=2, now=NOW)


def test_benchmarking_round_with_three_processes(deployment) -> None:
    values = np.random.default_rng(5).uniform(100, 900, 12)
    spec = MpcJobSpec(
        "job-bench",
        statistics=(MpcStatistic.MEAN, MpcStatistic.MEDIAN, MpcStatistic.QUARTILES),
        percentile_ranks=True,
        dominance=(DominanceRule(1, 85),),
    )
    dealer = ShareDealer(spec.job_id, deployment.box_public_keys, deployment.threshold)
    dealt = [
        dealer.deal(f"ent-{i:02d}", float(v), with_rank_key=True) for i, v in enumerate(values)
    ]
    result = MpcRunner(deployment, RunnerConfig(deadline=120)).run(spec, dealt)
    assert result.cohort == 12 and result.dropped == ()
    assert result.statistic(MpcStatistic.MEAN)[0] == pytest.approx(values.mean(), rel=2**-15)
    assert result.statistic(MpcStatistic.MEDIAN)[0] == pytest.approx(np.median(values), abs=2**-14)
    assert result.dominance.dominated == (False,)
    assert result.bytes_sent > 0
    for d, v in zip(dealt, values, strict=True):
        assert d.rank_key is not None
        expected = 100 * np.sum(values < v) / 11
        assert d.rank_key.percentile(result.rank_tags) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("mean", "sigma"),
    [
        (1e12, 1e6),
        # the other magnitudes across real parties under `make test-slow`; every one of them
        # is checked against the exact statistic in process by tests/mpc/test_mpc_accuracy.py
        pytest.param(1e-3, 1e-9, marks=pytest.mark.slow),
        pytest.param(-4e4, 0.04, marks=pytest.mark.slow),
    ],
    ids=["1e12±1e6", "1e-3±1e-9", "-4e4±0.04"],
)
def test_exact_statistics_at_extreme_magnitudes_with_three_processes(
    deployment, mean, sigma
) -> None:
    """Every statistic is the exact statistic of the quantised inputs, across real parties."""
    values = [float(v) for v in np.random.default_rng(3).normal(mean, sigma, 8)]
    spec = MpcJobSpec(
        f"job-x{abs(mean):g}",
        statistics=tuple(MpcStatistic),
        percentile_ranks=True,
        dominance=(DominanceRule(2, 50.0),),
        bound=abs(mean) * 10,
    )
    dealer = ShareDealer.for_job(spec, deployment.box_public_keys, deployment.threshold)
    dealt = dealer.deal_all([(f"ent-{i}", v) for i, v in enumerate(values)], with_rank_keys=True)
    result = MpcRunner(deployment, RunnerConfig(deadline=120)).run(spec, dealt)
    q = spec.encoding.resolution
    quantised = [round(Fraction(v) / q) * q for v in values]
    expected: dict[MpcStatistic, list[Fraction]] = {
        MpcStatistic.COUNT: [Fraction(8)],
        MpcStatistic.SUM: [sum(quantised, Fraction(0))],
        MpcStatistic.MEAN: [statistics.mean(quantised)],
        MpcStatistic.VARIANCE: [statistics.pvariance(quantised)],
        MpcStatistic.MIN: [min(quantised)],
        MpcStatistic.MAX: [max(quantised)],
        MpcStatistic.MEDIAN: [statistics.median(quantised)],
        MpcStatistic.QUARTILES: statistics.quantiles(quantised, n=4),
    }
    for stat, want in expected.items():
        assert result.statistic(stat) == tuple(float(w) for w in want), stat
    assert result.statistic(MpcStatistic.VARIANCE)[0] == pytest.approx(np.var(values), rel=1e-6)
    top_two = sum(sorted(quantised)[-2:])
    assert result.dominance.dominated == (top_two * 100 > sum(quantised) * 50,)
    for d, v in zip(dealt, quantised, strict=True):
        assert d.rank_key is not None
        below = sum(1 for w in quantised if w < v)
        assert d.rank_key.percentile(result.rank_tags) == pytest.approx(100 * below / 7)


def test_bad_shares_are_dropped_by_name_and_small_cohorts_fail(deployment) -> None:
    spec = MpcJobSpec("job-bad", statistics=(MpcStatistic.SUM,), min_cohort=3)
    dealer = ShareDealer(spec.job_id, deployment.box_public_keys, deployment.threshold)
    dealt = [dealer.deal(f"ent-{i}", 10.0 * (i + 1)) for i in range(4)]
    stale = ShareDealer("job-old", deployment.box_public_keys, 1).deal("ent-stale", 5.0)
    broken = dealt[3]
    tampered = type(broken)(
        "ent-3",
        (SealedShare("ent-3", 0, b"\x01" * 90), *broken.envelopes[1:]),
    )
    runner = MpcRunner(deployment, RunnerConfig(deadline=120))
    result = runner.run(spec, [*dealt[:3], tampered, stale])
    assert result.statistic(MpcStatistic.SUM) == pytest.approx((60.0,), abs=1e-3)
    dropped = dict(result.dropped)
    assert set(dropped) == {"ent-3", "ent-stale"}
    assert "ent-3" in dropped["ent-3"] and "job-old" in dropped["ent-stale"]
    with pytest.raises(CohortTooSmallError, match="fewer than the minimum cohort 3"):
        runner.run(MpcJobSpec("job-small", statistics=(MpcStatistic.SUM,)), [tampered, stale])


def test_a_silent_party_fails_the_job_and_leaves_no_process(deployment) -> None:
    script = Path(__file__).with_name("_stalling_party.py")
    config = RunnerConfig(deadline=2, party_command=(sys.executable, str(script)))
    runner = MpcRunner(deployment, config)
    spec = MpcJobSpec("job-stall", statistics=(MpcStatistic.SUM,))
    dealer = ShareDealer(spec.job_id, deployment.box_public_keys, deployment.threshold)
    dealt = [dealer.deal(f"ent-{i}", 1.0) for i in range(3)]
    with pytest.raises(PartyTimeoutError, match="did not answer within 2 s") as info:
        runner.run(spec, dealt)
    assert 2 in info.value.parties
    assert len(runner.last_pids) == 3
    for pid in runner.last_pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_parties_started_as_ibx_mpc_party(deployment) -> None:
    ibx = str(Path(sys.executable).parent / "ibx")
    runner = MpcRunner(deployment, RunnerConfig(deadline=120, party_command=(ibx, "mpc", "party")))
    spec = MpcJobSpec("job-cli", statistics=(MpcStatistic.SUM, MpcStatistic.MAX))
    dealer = ShareDealer(spec.job_id, deployment.box_public_keys, deployment.threshold)
    result = runner.run(spec, [dealer.deal(f"ent-{i}", float(i)) for i in range(5)])
    assert result.statistic(MpcStatistic.SUM) == pytest.approx((10.0,), abs=1e-3)
    assert result.statistic(MpcStatistic.MAX) == pytest.approx((4.0,), abs=1e-3)


def test_recreating_a_deployment_never_keeps_a_wider_mode_on_a_private_key(tmp_path) -> None:
    first = MpcDeployment.create(tmp_path / "mpc", now=dt.datetime.now(dt.UTC))
    key = first.party_dir(0) / ".config" / "party_0.key"
    key.chmod(0o644)  # an operator's mistake, or a file left by another tool
    MpcDeployment.create(tmp_path / "mpc", now=dt.datetime.now(dt.UTC))
    assert key.stat().st_mode & 0o077 == 0
