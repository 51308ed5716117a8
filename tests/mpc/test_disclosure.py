"""The reduced form the guard keeps, and a property-based adversary against the guard.

The adversary issues sequences of releases over random cohorts and weights
through the real guard (SQLite, stored reduced forms) and, after every
approved release, tries to solve for one contributor's value, or a
difference of two, by exact Gaussian elimination over the rationals
(fractions.Fraction: an implementation independent of the guard's F_p one).
Any solvable value among the approved answers fails the test; so does a
refusal that the exact solver cannot justify.
"""

from __future__ import annotations

import uuid
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from mpc import (
    ReleaseGuard,
    ReleasePolicy,
    ReleaseQuery,
    ReleaseRequest,
    ReleaseSubject,
    StatisticKind,
)
from mpc._disclosure import Disclosure, LinearTracker, _is_prime, random_prime
from mpc._tables import TrackerLogRow
from mpc.errors import LinearDisclosureError, WeightShareError

SUBJECT = ReleaseSubject("energy", ("kwh",))
NAMES = [f"e{i}" for i in range(7)]


def _rank(rows: list[list[Fraction]]) -> int:
    """Rank over the rationals by Gaussian elimination (exact)."""
    matrix = [row[:] for row in rows]
    rank, columns = 0, len(matrix[0]) if matrix else 0
    for col in range(columns):
        pivot = next((r for r in range(rank, len(matrix)) if matrix[r][col] != 0), None)
        if pivot is None:
            continue
        matrix[rank], matrix[pivot] = matrix[pivot], matrix[rank]
        for r in range(len(matrix)):
            if r != rank and matrix[r][col] != 0:
                factor = matrix[r][col] / matrix[rank][col]
                matrix[r] = [a - factor * b for a, b in zip(matrix[r], matrix[rank], strict=True)]
        rank += 1
    return rank


def _solvable(rows: list[list[Fraction]]) -> list[str]:
    """Every single value and pairwise difference the released rows pin down."""
    if not rows:
        return []
    base = _rank(rows)
    n = len(rows[0])
    found = []
    for i in range(n):
        unit = [Fraction(int(k == i)) for k in range(n)]
        if _rank([*rows, unit]) == base:
            found.append(NAMES[i])
        for j in range(i + 1, n):
            diff = [Fraction(int(k == i) - int(k == j)) for k in range(n)]
            if _rank([*rows, diff]) == base:
                found.append(f"{NAMES[i]}-{NAMES[j]}")
    return found


def test_random_primes_are_primes_of_31_bits() -> None:
    primes = {random_prime() for _ in range(20)}
    assert len(primes) > 1
    assert all(2**30 <= p < 2**31 and _is_prime(p) for p in primes)
    assert not _is_prime(2**31 - 3) and _is_prime(2**31 - 1)


def test_the_form_is_reduced_and_round_trips() -> None:
    tracker = LinearTracker.empty()
    rng = np.random.default_rng(7)
    for _ in range(6):
        cohort = rng.choice(40, size=12, replace=False)
        tracker = tracker.with_row({f"e{i}": Fraction(int(rng.integers(1, 9))) for i in cohort})
    rows, pivots = tracker.dense(), list(tracker.pivots)
    assert tracker.rank == 6 and all(int(v) == 1 for v in rows[range(6), pivots])
    assert np.count_nonzero(rows[:, pivots]) == 6  # 0 at every other pivot column
    assert tracker.free_part.shape == (6, len(tracker.columns) - 6)
    back = LinearTracker.from_parts(
        tracker.prime, tracker.columns, tracker.pivots, tracker.to_bytes()
    )
    assert np.array_equal(back.dense(), rows) and back.columns == tracker.columns
    with pytest.raises(ValueError, match="expected"):
        LinearTracker.from_parts(tracker.prime, tracker.columns, tracker.pivots, b"\0" * 8)


def test_adding_a_known_fact_changes_nothing() -> None:
    tracker = LinearTracker.empty().with_row({"a": Fraction(1), "b": Fraction(1)})
    again = tracker.with_row({"a": Fraction(1, 2), "b": Fraction(1, 2)})
    assert again.rank == 1 and again.disclosure() is None


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 1}], ("c",)),
        ([{"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 1, "d": 1}], ("c", "d")),
        ([{"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 2, "c": 4}], ("c",)),
        ([{"a": 1, "b": 1}, {"b": 1, "c": 1}, {"a": 1, "c": 1}], ("a",)),
        ([{"a": 1, "b": 1, "c": 1}, {"c": 1, "d": 1, "e": 1}, {"e": 1, "f": 1, "a": 1}], None),
    ],
    ids=["difference-by-one", "swap", "weights", "three-chain", "safe"],
)
def test_disclosures_found_in_the_reduced_form(rows, expected) -> None:
    tracker = LinearTracker.empty()
    for row in rows:
        tracker = tracker.with_row({k: Fraction(v) for k, v in row.items()})
    found = tracker.disclosure()
    if expected is None:
        assert found is None
    else:
        assert found is not None and len(found.contributors) == len(expected)


def test_a_disclosure_names_one_or_two() -> None:
    with pytest.raises(ValueError, match="one contributor or a pair"):
        Disclosure(("a", "b", "c"))


_cohorts = st.lists(st.sampled_from(NAMES), min_size=2, max_size=len(NAMES), unique=True)
_weights = st.lists(st.integers(1, 4), min_size=len(NAMES), max_size=len(NAMES))
_release = st.tuples(_cohorts, _weights)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(releases=st.lists(_release, min_size=1, max_size=12))
def test_property_no_approved_sequence_lets_anyone_solve_one_value(
    guard: ReleaseGuard, releases: list[tuple[list[str], list[int]]]
) -> None:
    group = f"adversary-{uuid.uuid4().hex}"
    policy = ReleasePolicy(min_cohort=2, max_weight_share=1.0)
    approved: list[list[Fraction]] = []
    for index, (cohort, weights) in enumerate(releases):
        row = {name: Fraction(weights[NAMES.index(name)]) for name in cohort}
        query = ReleaseQuery(SUBJECT, (StatisticKind.WEIGHTED_SUM,), tuple(row.items()))
        request = ReleaseRequest(f"{group}-{index}", "sub-brain", group, SUBJECT, policy)
        vector = [row.get(name, Fraction(0)) for name in NAMES]
        try:
            guard.approve(request, query)
        except LinearDisclosureError:
            # a refusal must be justified: the exact solver finds what it would expose
            assert _solvable([*approved, vector]), f"refused without cause: {cohort} {row}"
            continue
        approved.append(vector)
        assert _solvable(approved) == [], f"approved answers expose {_solvable(approved)}"


def test_weights_beyond_the_policy_share_never_reach_the_tracker(guard) -> None:
    request = ReleaseRequest("w1", "sub-brain", "g", SUBJECT, ReleasePolicy(min_cohort=5))
    heavy = {name: (9.0 if name == "e0" else 1.0) for name in NAMES[:5]}
    with pytest.raises(WeightShareError):
        guard.approve(request, ReleaseQuery.weighted(SUBJECT, heavy))


def test_a_cold_read_rebuilds_the_form_from_snapshot_and_log(guard: ReleaseGuard) -> None:
    """40 rank-adding releases: a snapshot at 32, 8 in the log; a new process sees all."""
    policy = ReleasePolicy(min_cohort=5)
    for k in range(40):
        cohort = [f"b{k}-{i}" for i in range(5)]
        request = ReleaseRequest(f"s{k}", "sb", "g", SUBJECT, policy)
        guard.approve(request, ReleaseQuery.uniform(SUBJECT, (StatisticKind.SUM,), cohort))
    with guard._db.read() as session:
        warm = guard._history.tracker(session, "g", "energy", "kwh").tracker
        restarted = ReleaseGuard(guard._db)
        cold = restarted._history.tracker(session, "g", "energy", "kwh").tracker
        logged = session.execute(select(func.count()).select_from(TrackerLogRow)).scalar()
    assert logged == 8 and cold.rank == warm.rank == 40
    assert cold.columns == warm.columns and np.array_equal(cold.dense(), warm.dense())
    for k in (3, 37):  # one block in the snapshot, one in the log
        one_more = [f"b{k}-{i}" for i in range(5)] + [f"x{k}"]
        query = ReleaseQuery.uniform(SUBJECT, (StatisticKind.SUM,), one_more)
        with pytest.raises(LinearDisclosureError):
            restarted.approve(ReleaseRequest(f"t{k}", "sb", "g", SUBJECT, policy), query)
        # the same release is fine for a group that never saw the block
        restarted.approve(ReleaseRequest(f"u{k}", "sb", "other", SUBJECT, policy), query)
