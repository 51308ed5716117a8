"""Order statistics under differential privacy: counts from MPC, a candidate chosen by OpenDP.

The attacks: the exact median (a distinctive value off the grid) must never
come out; neither an opened exact value nor counts over a grid other than
the policy's may pass the guard; budgets are charged and refuse when spent;
asking again returns the stored answer at no cost.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Sequence

import numpy as np
import opendp.prelude as dp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey
from typer.testing import CliRunner

from exchange.cli import app
from exchange.runtime import Runtime
from exchange.settings import Settings
from mpc import (
    ConsentTerms,
    DpOrderPolicy,
    MpcDeployment,
    MpcJobSpec,
    MpcRunner,
    MpcStatistic,
    OrderCounts,
    OrderRelease,
    ReleaseGuard,
    ReleasePolicy,
    ReleaseQuery,
    ReleaseRequest,
    ReleaseSubject,
    RunnerConfig,
    ShareDealer,
    StatisticKind,
    industry_group,
    mpc_query,
)
from mpc._program import run_single_process
from mpc._tables import DpSpendRow
from mpc.dp_order import select_quantiles
from mpc.errors import (
    OrderStatisticError,
    PrivacyBudgetExhaustedError,
    ReleaseDescriptionError,
)
from mpc.sharing import open_envelopes

KEY = PrivateKey.generate()
GROUP = industry_group("battery")
BOUND = 1e3
TERMS = DpOrderPolicy(epsilon=1.0, candidates=21, lower=0, upper=100)
GRID = TERMS.grid(BOUND)  # 0, 5, 10, ..., 100
# a distinctive exact median, far from every grid point
COHORT_VALUES = (12.5, 20.25, 31.0, 33.75, 37.123456, 41.5, 44.0, 58.0, 63.5)
EXACT_MEDIAN = 37.123456
# a larger cohort with two values exactly on a candidate (ties count as neither below nor above)
SPREAD = (*(float(v) for v in np.random.default_rng(7).normal(48.0, 12.0, 25)), 40.0, 40.0)


@functools.cache
def _opened_counts(
    values: tuple[float, ...], grid: tuple[float, ...] = GRID
) -> dict[str, list[int]]:
    """What the parties open for ``values`` (one-party MPyC runtime): the order counts only."""
    spec = MpcJobSpec(
        "dp-1p", (MpcStatistic.MEDIAN,), bound=BOUND, order_candidates=tuple(grid), min_cohort=2
    )
    dealer = ShareDealer.for_job(spec, [bytes(KEY.public_key)], threshold=0)
    dealt = [dealer.deal(f"ent-{i:02d}", float(v)) for i, v in enumerate(values)]
    opened, refused = open_envelopes(spec, 0, bytes(KEY), [d.envelopes[0] for d in dealt])
    assert not refused
    outcome = run_single_process(spec, opened)
    assert "median" not in outcome["statistics"]  # never opened
    counts: dict[str, list[int]] = outcome["order_counts"]
    return counts


def _counts(values: Sequence[float], grid: tuple[float, ...] = GRID) -> OrderCounts:
    opened = _opened_counts(tuple(values), grid)
    return OrderCounts(tuple(grid), tuple(opened["below"]), tuple(opened["above"]), len(values))


def _subject(period: str = "2026-Q3") -> ReleaseSubject:
    return ReleaseSubject("energy", ("kwh",), (("period", period),))


def _request(
    job: str,
    subject: ReleaseSubject,
    terms: DpOrderPolicy = TERMS,
    consents: tuple[ConsentTerms, ...] = (),
) -> ReleaseRequest:
    policy = ReleasePolicy(min_cohort=3, order_statistics=OrderRelease.DP, order_dp=terms)
    return ReleaseRequest(job, "sub-brain-a", GROUP, subject, policy, consents)


def _median_query(subject: ReleaseSubject, n: int = len(COHORT_VALUES)) -> ReleaseQuery:
    names = [f"ent-{i:02d}" for i in range(n)]
    return ReleaseQuery.uniform(subject, (StatisticKind.MEDIAN,), names)


def test_the_parties_open_only_counts_at_the_grid() -> None:
    opened = _opened_counts(SPREAD)
    assert opened["below"] == [sum(v < c for v in SPREAD) for c in GRID]
    assert opened["above"] == [sum(v > c for v in SPREAD) for c in GRID]
    assert "37.12" not in str(_opened_counts(COHORT_VALUES))  # the exact median is not opened
    assert "candidates" in repr(_counts(SPREAD)) and "[" not in repr(_counts(SPREAD))


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(-30, 130), min_size=1, max_size=40),
    grid=st.lists(st.integers(-20, 120), min_size=2, max_size=12, unique=True),
    alpha=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]),
)
def test_opendp_scores_the_surrogate_as_it_scores_the_data(values, grid, alpha) -> None:
    """The surrogate dataset has OpenDP's own score at every candidate, ties included."""
    grid = sorted(grid)
    counts = OrderCounts(
        tuple(float(c) for c in grid),
        tuple(sum(v < c for v in values) for c in grid),
        tuple(sum(v > c for v in values) for c in grid),
        len(values),
    )
    dp.enable_features("contrib")

    def scores(data: list[int], candidates: list[int]) -> list[int]:
        domain = dp.vector_domain(dp.atom_domain(T=int), size=len(data))
        score = dp.t.make_quantile_score_candidates(
            domain, dp.symmetric_distance(), candidates, alpha
        )
        return list(score(data))

    surrogate = counts.surrogate()
    assert surrogate == sorted(surrogate) and len(surrogate) == len(values)
    assert scores(surrogate, [2 * j for j in range(len(grid))]) == scores(values, grid)


def test_a_released_median_is_a_candidate_that_concentrates_as_epsilon_grows() -> None:
    counts = _counts(SPREAD)
    true = float(np.median(SPREAD))
    draws = {eps: np.array(select_quantiles(counts, (0.5,) * 400, eps * 400)) for eps in (5, 0.05)}
    for drawn in draws.values():
        assert set(drawn.tolist()) <= set(GRID)
    near = {eps: float(np.mean(np.abs(drawn - true) <= 5)) for eps, drawn in draws.items()}
    # epsilon 5: the score gap to any candidate beyond the median's neighbours is >= 10
    assert near[5] > 0.95, near
    # epsilon 0.05: close to uniform over 21 candidates (about 2/21 within one step)
    assert near[0.05] < 0.5, near
    assert np.std(draws[0.05]) > 15 > 3 > np.std(draws[5])


def test_the_exact_median_never_leaves_under_dp(guard: ReleaseGuard) -> None:
    counts = _counts(COHORT_VALUES)
    terms = DpOrderPolicy(8.0, 21, lower=0, upper=100, consent_budget=8, group_budget=400)
    released = []
    for i in range(40):  # forty different questions: forty fresh draws
        subject = _subject(f"2026-W{i:02d}")
        request = _request(f"j-{i}", subject, terms)
        query = _median_query(subject)
        guard.approve(request, query)
        (median,) = guard.release_dp_order_statistics(request, query, counts, bound=BOUND)
        released.append(median[0])
    assert set(released) <= set(GRID)
    assert EXACT_MEDIAN not in released
    assert abs(float(np.median(released)) - EXACT_MEDIAN) < 5  # yet useful at epsilon 8
    # an opened exact value is refused under a DP policy, whatever the caller does
    request = _request("j-exact", _subject())
    with pytest.raises(OrderStatisticError, match="never leaves"):
        guard.release_order_statistics(request, [EXACT_MEDIAN])
    # counts over a finer grid than the policy's (one that holds the value) are refused
    finer = tuple(sorted({*GRID, EXACT_MEDIAN}))
    sneaky = OrderCounts(
        finer,
        tuple(sum(v < c for v in COHORT_VALUES) for c in finer),
        tuple(sum(v > c for v in COHORT_VALUES) for c in finer),
        len(COHORT_VALUES),
    )
    with pytest.raises(ReleaseDescriptionError, match="policy's grid"):
        guard.release_dp_order_statistics(request, _median_query(_subject()), sneaky, bound=BOUND)
    with pytest.raises(ReleaseDescriptionError, match="cohort"):  # counts of another cohort
        guard.release_dp_order_statistics(
            request, _median_query(_subject(), n=5), counts, bound=BOUND
        )


def test_budgets_are_charged_and_refuse_when_spent(guard: ReleaseGuard) -> None:
    counts = _counts(COHORT_VALUES)
    terms = DpOrderPolicy(epsilon=0.4, candidates=21, lower=0, upper=100, group_budget=1.0)
    consents = (ConsentTerms("c-a", "ent-00", epsilon_budget=1.0), ConsentTerms("c-b", "ent-01"))
    for i in range(2):
        subject = _subject(f"p{i}")
        request = _request(f"j{i}", subject, terms, consents)
        guard.check_budget(request, _median_query(subject), bound=BOUND)
        guard.release_dp_order_statistics(request, _median_query(subject), counts, bound=BOUND)
    with guard._db.read() as session:
        spent = {row.consent_id: row.spent for row in session.query(DpSpendRow)}
    assert spent == pytest.approx({"c-a": 0.8, "c-b": 0.8})
    third = _subject("p2")
    request = _request("j2", third, terms, consents)
    with pytest.raises(PrivacyBudgetExhaustedError, match="c-a"):
        guard.check_budget(request, _median_query(third), bound=BOUND)  # before any share
    with pytest.raises(PrivacyBudgetExhaustedError, match="c-a"):
        guard.release_dp_order_statistics(request, _median_query(third), counts, bound=BOUND)
    # the group's budget (1.0 for the dataset) is spent too, even with no consent
    with pytest.raises(PrivacyBudgetExhaustedError, match="industry:battery"):
        guard.release_dp_order_statistics(
            _request("j3", third, terms), _median_query(third), counts, bound=BOUND
        )


def test_a_repeated_question_gets_the_same_answer_and_costs_nothing(guard: ReleaseGuard) -> None:
    counts = _counts(COHORT_VALUES)
    terms = DpOrderPolicy(epsilon=0.05, candidates=21, lower=0, upper=100, consent_budget=0.05)
    consents = (ConsentTerms("c-a", "ent-00"),)
    subject = _subject()
    query = ReleaseQuery.uniform(
        subject,
        (StatisticKind.MEDIAN, StatisticKind.QUANTILES, StatisticKind.MIN),
        [f"ent-{i:02d}" for i in range(len(COHORT_VALUES))],
    )
    answers = {
        guard.release_dp_order_statistics(
            _request(f"j{i}", subject, terms, consents), query, counts, bound=BOUND
        )
        for i in range(15)
    }
    assert len(answers) == 1  # at epsilon 0.05 fresh draws would differ
    (answer,) = answers
    assert [len(a) for a in answer] == [1, 3, 1]
    with guard._db.read() as session:
        row = session.get(DpSpendRow, "c-a")
        assert row is not None and row.spent == pytest.approx(0.05)
    other = ReleaseQuery.uniform(subject, (StatisticKind.MAX,), query.contributors)
    with pytest.raises(PrivacyBudgetExhaustedError):  # a new question is charged
        guard.release_dp_order_statistics(
            _request("k", subject, terms, consents), other, counts, bound=BOUND
        )


def test_policy_terms_are_checked() -> None:
    with pytest.raises(ValueError, match="order_dp"):
        ReleasePolicy(order_statistics=OrderRelease.DP)
    with pytest.raises(ValueError, match="order_dp"):
        ReleasePolicy(order_dp=TERMS)
    for bad in (
        {"epsilon": 0.0},
        {"epsilon": 1.0, "candidates": 1},
        {"epsilon": 1.0, "candidates": 257},
        {"epsilon": 1.0, "lower": 5.0, "upper": 5.0},
        {"epsilon": 6.0},  # more than the default consent budget of one release
    ):
        with pytest.raises(ValueError):
            DpOrderPolicy(**bad)  # type: ignore[arg-type]
    assert DpOrderPolicy(1.0, candidates=5).grid(2.0) == (-2.0, -1.0, 0.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="exceeds the bound"):
        TERMS.grid(50.0)
    with pytest.raises(ValueError, match="inconsistent"):
        OrderCounts((0.0, 1.0), (2, 1), (0, 0), 2)
    with pytest.raises(ValueError, match="resolution"):  # candidates the parties cannot tell apart
        MpcJobSpec("j", (MpcStatistic.MEDIAN,), bound=1.0, order_candidates=(0.0, 1e-20))
    spec = MpcJobSpec("j", (MpcStatistic.MEDIAN,), bound=BOUND, order_candidates=GRID)
    assert MpcJobSpec.from_dict(spec.to_dict()) == spec


def test_a_dp_median_with_three_processes(tmp_path, guard: ReleaseGuard) -> None:
    deployment = MpcDeployment.create(tmp_path / "mpc", now=dt.datetime.now(dt.UTC))
    terms = DpOrderPolicy(8.0, 11, lower=0, upper=100, consent_budget=8)
    spec = MpcJobSpec(
        "job-dp-3",
        (MpcStatistic.MEAN, MpcStatistic.MEDIAN),
        bound=BOUND,
        order_candidates=terms.grid(BOUND),
    )
    dealer = ShareDealer.for_job(spec, deployment.box_public_keys, deployment.threshold)
    dealt = [dealer.deal(f"ent-{i:02d}", v) for i, v in enumerate(COHORT_VALUES)]
    result = MpcRunner(deployment, RunnerConfig(deadline=120)).run(spec, dealt)
    assert dict(result.statistics).keys() == {"mean"}  # the median was never opened
    assert result.order_counts is not None
    subject = _subject()
    request = _request(spec.job_id, subject, terms)
    query = mpc_query(subject, spec, [d.contributor for d in dealt])
    guard.approve(request, query)
    (median,) = guard.release_dp_order_statistics(request, query, result.order_counts, bound=BOUND)
    assert median[0] in terms.grid(BOUND) and median[0] != EXACT_MEDIAN


def test_ibx_mpc_run_releases_dp_order_statistics_and_charges_the_budget(tmp_path) -> None:
    data = tmp_path / "data"
    Runtime.initialise(Settings(data_dir=data)).close()  # what `ibx init` does
    values = tmp_path / "values.json"
    values.write_text(json.dumps({f"ent-{i}": v for i, v in enumerate(COHORT_VALUES)}))
    base = ["--data-dir", str(data), "mpc", "run", "--input", str(values), "--bound", "100"]
    dp_args = ["--epsilon", "2", "--grid", "0:80", "--candidates", "9", "--budget", "2"]
    runner = CliRunner()
    first = runner.invoke(app, [*base, "--stat", "median", "--stat", "quartiles", *dp_args])
    assert first.exit_code == 0, first.output
    released = json.loads(first.output)
    grid = {10.0 * j for j in range(9)}
    assert released["epsilon"] == 2.0 and len(released["statistics"]["quartiles"]) == 3
    assert {*released["statistics"]["median"], *released["statistics"]["quartiles"]} <= grid
    # a new question is refused before any party starts: every budget is spent
    before = sorted((data / "mpc").rglob("*.json"))
    spent = runner.invoke(app, [*base, "--stat", "min", *dp_args])
    assert isinstance(spent.exception, PrivacyBudgetExhaustedError), spent.output
    assert sorted((data / "mpc").rglob("*.json")) == before  # no job file written
    both = runner.invoke(app, [*base, "--stat", "median", "--epsilon", "1", "--coarsen-step", "1"])
    assert both.exit_code == 2 and "one of --epsilon" in both.output
