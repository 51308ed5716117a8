"""The MPC program in a one-party MPyC runtime (fast): statistics, dominance and ranks vs numpy."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import numpy as np
import pytest
from nacl.public import PrivateKey

from mpc import DealtInput, DominanceRule, MpcJobSpec, MpcStatistic, ShareDealer
from mpc._program import run_single_process
from mpc.sharing import OpenedInput, open_envelopes

KEY = PrivateKey.generate()


def _inputs(
    values: Sequence[float], *, ranks: bool = False, job: str = "job-1p", bound: float = 1e12
) -> tuple[list[DealtInput], list[OpenedInput]]:
    spec = MpcJobSpec(job, percentile_ranks=ranks, bound=bound)
    dealer = ShareDealer.for_job(spec, [bytes(KEY.public_key)], threshold=0)
    dealt = [
        dealer.deal(f"ent-{i:02d}", float(v), with_rank_key=ranks) for i, v in enumerate(values)
    ]
    opened, refused = open_envelopes(spec, 0, bytes(KEY), [d.envelopes[0] for d in dealt])
    assert not refused
    return dealt, opened


@pytest.mark.parametrize("n", [7, 12], ids=["odd", "even"])
def test_statistics_match_numpy(n) -> None:
    values = np.random.default_rng(n).uniform(-500, 5000, n)
    _, opened = _inputs(values, bound=1e4)
    spec = MpcJobSpec("job-1p", statistics=tuple(MpcStatistic), bound=1e4)  # resolution 1e-14
    outcome = run_single_process(spec, opened)
    got = outcome["statistics"]
    assert got["count"] == [n]
    assert got["sum"][0] == pytest.approx(values.sum(), rel=1e-12)
    assert got["mean"][0] == pytest.approx(values.mean(), rel=1e-12)
    assert got["variance"][0] == pytest.approx(values.var(), rel=1e-12)
    assert got["min"][0] == values.min()
    assert got["max"][0] == values.max()
    assert got["median"][0] == pytest.approx(np.median(values), rel=1e-15)
    quartiles = statistics.quantiles(values.tolist(), n=4)
    assert got["quartiles"] == pytest.approx(quartiles, rel=1e-12)


def test_dominance_is_decided_on_hidden_values() -> None:
    rules = (DominanceRule(1, 85), DominanceRule(2, 90))
    spec = MpcJobSpec("job-1p", statistics=(), dominance=rules)
    _, spread = _inputs([10, 12, 9, 11, 14])
    assert run_single_process(spec, spread)["dominated"] == [False, False]
    _, one_giant = _inputs([1000, 12, 9, 11, 14])  # 1000/1046 > 85%
    assert run_single_process(spec, one_giant)["dominated"] == [True, True]
    _, two_big = _inputs([500, 480, 30, 20, 10])  # top1 48% ; top2 94% > 90%
    assert run_single_process(spec, two_big)["dominated"] == [False, True]


def test_each_contributor_finds_only_its_own_rank() -> None:
    values = [40.0, 10.0, 30.0, 20.0, 50.0]
    dealt, opened = _inputs(values, ranks=True)
    spec = MpcJobSpec("job-1p", statistics=(MpcStatistic.MEDIAN,), percentile_ranks=True)
    outcome = run_single_process(spec, opened)
    tags = [int(t) for t in outcome["rank_tags"]]
    ranks = [d.rank_key.percentile(tags) for d in dealt if d.rank_key]
    assert ranks == [75.0, 0.0, 50.0, 25.0, 100.0]
    assert "ent-00" not in str(outcome["rank_tags"])


def test_too_few_valid_contributions_fail_the_job() -> None:
    _, opened = _inputs([1.0, 2.0, 3.0])
    spec = MpcJobSpec("job-1p", min_cohort=3)
    outcome = run_single_process(spec, opened[:2], {"ent-02": "contributor 'ent-02': malformed"})
    assert "fewer than the minimum cohort 3" in outcome["error"]
    assert outcome["dropped"] == {"ent-02": "contributor 'ent-02': malformed"}
    assert "statistics" not in outcome


def test_job_spec_checks_its_encoding_and_round_trips() -> None:
    spec = MpcJobSpec(
        "job-spec",
        statistics=(MpcStatistic.MEAN, MpcStatistic.QUARTILES),
        percentile_ranks=True,
        dominance=(DominanceRule(2, 66.7),),
        bound=2.5e6,
    )
    assert MpcJobSpec.from_dict(spec.to_dict()) == spec
    assert spec.encoding.resolution_exponent == 7 - 18  # 10^7 is the first power >= 2.5e6
    assert spec.dominance_fractions()[0].as_integer_ratio() == (667, 10)
    for bad, match in (
        ({"statistics": (MpcStatistic.MEAN, MpcStatistic.MEAN)}, "named twice"),
        ({"bound": 0.0}, "bound must be between"),
        ({"bound": float("nan")}, "bound must be between"),
        ({"bound": 1e31}, "bound must be between"),
        ({"dominance": (DominanceRule(1, 1.2345678901234567e-10),)}, "too many digits"),
    ):
        with pytest.raises(ValueError, match=match):
            MpcJobSpec("job-spec", **bad)
    with pytest.raises(ValueError, match="malformed MPC job spec"):
        MpcJobSpec.from_dict({k: v for k, v in spec.to_dict().items() if k != "bound"})
