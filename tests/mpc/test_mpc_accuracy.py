"""The documented accuracy of every MPC statistic, proved against exact fractions and numpy.

Inputs span magnitudes 1e-3…1e12 and spreads from 1e-6 of the mean up to
the mean itself; the job's bound is the largest magnitude times up to 1e5
(a requester's rough guess). Every statistic must be

* exactly the statistic of the quantised inputs (``round(x / q)·q``, ``q``
  the job's resolution), rounded once to a float: the program computes on
  exact integers; and
* within the guarantee ``docs/mpc.md`` (*Accuracy*) states, against the
  exact statistic of the float inputs (Python's ``statistics`` on
  :class:`~fractions.Fraction` values): sum ``n·q/2``, mean ``q/2``,
  variance ``σ·q + q²/4`` (so 1e-6 relative whenever σ ≥ 1e-6·|mean|),
  order statistics ``q/2``, count, dominance and ranks exact.

The one-party MPyC runtime runs the very program the parties run
(:func:`mpc._program.run_single_process`). Set ``IBX_ACCURACY_OUT`` to a
file path to get the worst observed errors as JSON (the figures in
``docs/mpc.md``).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterator, Sequence
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey

from mpc import DominanceRule, MpcJobSpec, MpcStatistic, ShareDealer
from mpc._program import PartyOutcome, run_single_process
from mpc.sharing import DealtInput, open_envelopes

KEY = PrivateKey.generate()
SUMS = (MpcStatistic.COUNT, MpcStatistic.SUM, MpcStatistic.MEAN, MpcStatistic.VARIANCE)
ORDER = (MpcStatistic.MIN, MpcStatistic.MAX, MpcStatistic.MEDIAN, MpcStatistic.QUARTILES)
WORST: dict[str, dict[str, float]] = {}
"""Per statistic: the largest relative error seen against the float inputs' exact statistic,
and the largest error as a fraction of the documented guarantee."""


@pytest.fixture(scope="module", autouse=True)
def _report_worst() -> Iterator[None]:
    yield
    out = os.environ.get("IBX_ACCURACY_OUT")
    if out:
        with open(out, "w", encoding="utf-8") as fh:  # noqa: PTH123 - a test report
            json.dump(dict(sorted(WORST.items())), fh, indent=2)


def _note(name: str, got: float, exact: Fraction, guarantee: Fraction) -> None:
    error = abs(Fraction(got) - exact)
    worst = WORST.setdefault(name, {"relative": 0.0, "of_guarantee": 0.0})
    if exact != 0:
        worst["relative"] = max(worst["relative"], float(error / abs(exact)))
    if guarantee:
        worst["of_guarantee"] = max(worst["of_guarantee"], float(error / guarantee))


@st.composite
def cohorts(draw: st.DrawFn, max_n: int) -> tuple[list[float], float]:
    """Values around ``±10^m`` (m in −3…12) with a relative spread of 1e-6…1, and a bound."""
    n = draw(st.integers(min_value=2, max_value=max_n))
    magnitude = 10.0 ** draw(st.floats(min_value=-3, max_value=12))
    sign = draw(st.sampled_from([1.0, -1.0]))
    spread = 10.0 ** draw(st.floats(min_value=-6, max_value=0))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    rng = np.random.default_rng(seed)
    z = rng.uniform(-1.0, 1.0, n)
    if n > 1 and z.std() > 0:
        z = (z - z.mean()) / z.std()  # σ of the cohort ≈ spread · |mean|
    values = [float(v) for v in sign * magnitude * (1.0 + spread * z)]
    slack = 10.0 ** draw(st.floats(min_value=0, max_value=5))
    bound = max(abs(v) for v in values) * slack
    return values, bound


def _run(
    values: Sequence[float],
    bound: float,
    stats: tuple[MpcStatistic, ...],
    *,
    ranks: bool = False,
    dominance: tuple[DominanceRule, ...] = (),
) -> tuple[MpcJobSpec, list[DealtInput], PartyOutcome]:
    spec = MpcJobSpec(
        "job-acc",
        statistics=stats,
        percentile_ranks=ranks,
        dominance=dominance,
        min_cohort=2,
        bound=bound,
    )
    dealer = ShareDealer.for_job(spec, [bytes(KEY.public_key)], threshold=0)
    dealt = dealer.deal_all(
        [(f"ent-{i:04d}", v) for i, v in enumerate(values)], with_rank_keys=ranks
    )
    opened, refused = open_envelopes(spec, 0, bytes(KEY), [d.envelopes[0] for d in dealt])
    assert not refused
    outcome = run_single_process(spec, opened)
    assert "error" not in outcome, outcome
    return spec, dealt, outcome


def _quantised(spec: MpcJobSpec, values: Sequence[float]) -> list[Fraction]:
    q = spec.encoding.resolution
    return [round(Fraction(v) / q) * q for v in values]


def _ulp(x: Fraction) -> Fraction:
    return Fraction(math.ulp(float(x))) if x else Fraction(0)


def _check_sums(values: list[float], bound: float) -> None:
    spec, _, outcome = _run(values, bound, SUMS)
    got = {k: v[0] for k, v in outcome["statistics"].items()}
    n = len(values)
    q = spec.encoding.resolution
    exact = [Fraction(v) for v in values]
    quantised = _quantised(spec, values)
    # 1. exact arithmetic: the statistic of the quantised inputs, rounded once
    assert got["count"] == n
    assert got["sum"] == float(sum(quantised))
    assert got["mean"] == float(statistics.mean(quantised))
    assert got["variance"] == float(statistics.pvariance(quantised))
    # 2. the documented guarantees against the float inputs
    true_sum, true_mean = sum(exact, Fraction(0)), statistics.mean(exact)
    true_var = statistics.pvariance(exact)
    sigma = Fraction(math.sqrt(true_var))
    guarantees = {
        "sum": n * q / 2 + _ulp(true_sum),
        "mean": q / 2 + _ulp(true_mean),
        "variance": sigma * q * Fraction(1001, 1000) + q * q / 4 + _ulp(true_var),
    }
    for name, truth in (("sum", true_sum), ("mean", true_mean), ("variance", true_var)):
        assert abs(Fraction(got[name]) - truth) <= guarantees[name], name
        _note(name, got[name], truth, guarantees[name])
    # 3. the target against numpy: 1e-6 relative while σ ≥ 1e-6·|mean|
    array = np.array(values)
    if sigma >= abs(true_mean) * Fraction(1, 10**6):
        assert got["variance"] == pytest.approx(array.var(), rel=1e-6)
        assert abs(Fraction(got["variance"]) - true_var) <= true_var / 10**6
    assert got["mean"] == pytest.approx(array.mean(), rel=1e-9)
    assert got["sum"] == pytest.approx(math.fsum(values), rel=1e-9, abs=n * float(q))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cohort=cohorts(max_n=300))
def test_count_sum_mean_variance_are_exact_to_the_resolution(
    cohort: tuple[list[float], float],
) -> None:
    _check_sums(*cohort)


@pytest.mark.parametrize(
    ("mean", "sigma"),
    [(1e12, 1e6), (-1e12, 1e6), (1e-3, 1e-9), (5.0, 5e-6), (1e6, 1e6)],
    ids=["1e12±1e6", "-1e12±1e6", "1e-3±1e-9", "5±5e-6", "1e6±1e6"],
)
@pytest.mark.parametrize("n", [2, 1000])
def test_sums_at_the_extremes_of_magnitude_spread_and_cohort(
    mean: float, sigma: float, n: int
) -> None:
    rng = np.random.default_rng(n)
    values = [float(v) for v in rng.normal(mean, sigma, n)]
    _check_sums(values, bound=max(abs(v) for v in values) * 1e3)


def _check_order(
    values: list[float], bound: float, rules: tuple[DominanceRule, ...], *, ranks: bool
) -> None:
    spec, dealt, outcome = _run(values, bound, ORDER, ranks=ranks, dominance=rules)
    got = outcome["statistics"]
    n = len(values)
    q = spec.encoding.resolution
    quantised = _quantised(spec, values)
    exact = sorted(Fraction(v) for v in values)
    expected_q = {
        "min": [min(quantised)],
        "max": [max(quantised)],
        "median": [statistics.median(quantised)],
        "quartiles": statistics.quantiles(quantised, n=4),  # 'exclusive', exact on Fractions
    }
    expected_true = {
        "min": [exact[0]],
        "max": [exact[-1]],
        "median": [statistics.median(exact)],
        "quartiles": statistics.quantiles(exact, n=4),
    }
    for name, want in expected_q.items():
        assert got[name] == [float(w) for w in want], name
        for value, truth in zip(got[name], expected_true[name], strict=True):
            # with n = 2 Python's exclusive quartiles extrapolate: weights 5/4 and −1/4
            slack = q * 3 / 4 if name == "quartiles" and n == 2 else q / 2
            assert abs(Fraction(value) - truth) <= slack + _ulp(truth), name
            _note(name, value, truth, slack + _ulp(truth))
    array = np.array(values)
    assert got["min"][0] == pytest.approx(array.min(), rel=1e-12, abs=float(q))
    assert got["max"][0] == pytest.approx(array.max(), rel=1e-12, abs=float(q))
    assert got["median"][0] == pytest.approx(np.median(array), rel=1e-12, abs=float(q))
    # dominance: exactly the verdict on the quantised values
    ordered = sorted(quantised)
    total = sum(quantised)
    verdicts = [
        sum(ordered[n - min(rule.n, n) :]) * 100 > Fraction(repr(rule.k)) * total for rule in rules
    ]
    assert outcome.get("dominated", []) == verdicts
    if ranks:
        tags = [int(t) for t in outcome["rank_tags"]]
        assert sorted(tags) == sorted(d.rank_key.tag for d in dealt if d.rank_key)
        for d, v in zip(dealt, quantised, strict=True):
            assert d.rank_key is not None
            below = sum(1 for w in quantised if w < v)
            ties = sum(1 for w in quantised if w == v) - 1
            pct = d.rank_key.percentile(tags)
            assert 100 * below / (n - 1) <= pct <= 100 * (below + ties) / (n - 1) + 1e-9


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cohort=cohorts(max_n=12),
    rules=st.lists(
        st.builds(
            DominanceRule,
            st.integers(min_value=1, max_value=4),
            st.sampled_from([50.0, 66.7, 85.0, 90.0, 99.99, 100.0]),
        ),
        max_size=2,
    ),
    ranks=st.booleans(),
)
def test_order_statistics_dominance_and_ranks_are_exact_to_the_resolution(
    cohort: tuple[list[float], float], rules: list[DominanceRule], ranks: bool
) -> None:
    values, bound = cohort
    _check_order(values, bound, tuple(rules), ranks=ranks)


def test_dominance_is_decided_exactly_at_the_threshold() -> None:
    """A top contributor at exactly k% is not dominant; one resolution step more is."""
    rules = (DominanceRule(1, 85.0),)
    at = [85.0, 5.0, 5.0, 5.0]  # 85 / 100 = 85 %: not above
    _check_order(at, 100.0, rules, ranks=False)
    above = [math.nextafter(85.0, 100.0), 5.0, 5.0, 5.0]  # 100·top − 85·total = 15·ε > 0
    spec, _, outcome = _run(above, 100.0, (MpcStatistic.MAX,), dominance=rules)
    assert spec.encoding.resolution == Fraction(1, 10**16)
    assert outcome["dominated"] == [True]


def test_order_statistics_at_the_extremes() -> None:
    rng = np.random.default_rng(7)
    for mean, sigma in ((1e12, 1e6), (1e-3, 1e-9), (-3e7, 30.0)):
        values = [float(v) for v in rng.normal(mean, sigma, 9)]
        _check_order(values, abs(mean) * 10, (DominanceRule(2, 70.0),), ranks=True)


def test_one_contributor_is_never_a_cohort() -> None:
    """1 contributor: the statistic would be its value; min_cohort is at least 2."""
    with pytest.raises(ValueError, match="min_cohort must be at least 2"):
        MpcJobSpec("job-1", min_cohort=1)
    spec = MpcJobSpec("job-1", statistics=SUMS, min_cohort=2, bound=10.0)
    dealt = ShareDealer.for_job(spec, [bytes(KEY.public_key)], 0).deal("ent-alone", 3.0)
    opened, _ = open_envelopes(spec, 0, bytes(KEY), list(dealt.envelopes))
    outcome = run_single_process(spec, opened)
    assert "fewer than the minimum cohort 2" in outcome["error"]
    assert "statistics" not in outcome


@pytest.mark.slow
def test_every_statistic_over_1000_contributors() -> None:
    rng = np.random.default_rng(1000)
    values = [float(v) for v in rng.normal(1e9, 1e3, 1000)]
    _check_order(values, 1e10, (DominanceRule(3, 50.0),), ranks=True)
