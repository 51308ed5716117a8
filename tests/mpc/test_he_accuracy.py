"""The documented accuracy of every HE statistic, against numpy and exact fractions.

The precision contract is in the docstring of ``mpc/he.py`` and in
docs/mpc.md, *Precision*. Two layers of tests:

* the exact-integer codec (quantise, split into limbs, sum, join, finalize)
  with 1 to 1,000 contributors, without encryption: BFV adds integers
  exactly while no sum reaches T/2, which ``LimbLayout`` guarantees and
  ``test_limb_sums_never_reach_half_the_plaintext_modulus`` checks;
* every statistic end to end through real TenSEAL encryption, the
  aggregator and the key custodian, with hypothesis drawing values, cohort
  sizes and bounds across the documented ranges (few examples: an HE job
  costs about 5 ms per contributor plus the key).

The reference is the exact result of the float64 inputs (``Fraction``);
numpy's float64 answer is checked alongside.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc import (
    HeAggregator,
    HeContributor,
    HeJobSpec,
    HeOperation,
    HeResult,
    KeyCustodian,
    RegressionInput,
    ReleaseGuard,
    ReleasePolicy,
    ReleaseRequest,
    ReleaseSubject,
    he_query,
)
from mpc._exact import limb_bits_for
from mpc._he_encode import encode
from mpc._he_finalize import finalize
from mpc.hazmat import he as raw

HE_SETTINGS = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
"""Each example uses fresh job ids and fresh contributor names, so the fixtures' state is shared
harmlessly and no two releases to the guard overlap in contributors."""

SUBJECT = ReleaseSubject("energy", ("kwh",))
BOUND_EXPONENTS = st.integers(min_value=-3, max_value=12)


def _names(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"e{tag}-{i:04d}" for i in range(n)]


def _run(
    custodian: KeyCustodian,
    guard: ReleaseGuard,
    spec: HeJobSpec,
    inputs: dict[str, Any],
) -> HeResult:
    job = custodian.create_job(spec)
    agg = HeAggregator(job)
    encryptor = HeContributor(job)
    for who, values in inputs.items():
        agg.add(encryptor.encrypt(who, values))
    # a requester group of its own: these tests are about accuracy, not release history;
    # approve + release (not finish_job): the raw result, before histogram suppression
    request = ReleaseRequest(
        spec.job_id, "sub-brain", f"group-{spec.job_id}", SUBJECT, ReleasePolicy(min_cohort=2)
    )
    guard.approve(request, he_query(SUBJECT, spec, agg.contributors))
    return custodian.release(agg.aggregate())


def _job(operation: HeOperation) -> str:
    return f"acc-{operation.value}-{uuid.uuid4().hex[:10]}"


def _exact_variance(column: Sequence[float]) -> tuple[Fraction, Fraction]:
    xs = [Fraction(x) for x in column]
    n = len(xs)
    mean = sum(xs, Fraction(0)) / n
    return mean, sum(((x - mean) ** 2 for x in xs), Fraction(0)) / n


def _close_values(draw: st.DrawFn, n: int, length: int, bound: float) -> np.ndarray:
    """Values of magnitude up to the bound whose spread goes down to 1e-6 of their mean."""
    magnitude = bound * draw(st.sampled_from([1.0, 0.5, 1e-3, 1e-6]))
    spread = magnitude * draw(st.sampled_from([1.0, 1e-3, 1e-6]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    sign = draw(st.sampled_from([1.0, -1.0]))
    centre = sign * (magnitude - spread)
    data = centre + rng.uniform(-spread, spread, size=(n, length))
    return np.clip(data, -bound, bound)


# -- the exact-integer codec, 1 to 1,000 contributors ------------------------------------


@st.composite
def _variance_cases(draw: st.DrawFn) -> tuple[HeJobSpec, np.ndarray]:
    bound = 10.0 ** draw(BOUND_EXPONENTS)
    n = draw(st.sampled_from([1, 2, 3, 17, 250, 1000]))
    spec = HeJobSpec("codec-var", HeOperation.VARIANCE, length=2, bound=bound)
    return spec, _close_values(draw, n, 2, bound)


def _plain_sum(spec: HeJobSpec, rows: dict[str, Any]) -> list[int]:
    """What BFV's exact addition returns for these contributions' payload slots."""
    payloads = [encode(spec, who, values) for who, values in rows.items()]
    return [int(sum(int(p[i]) for p in payloads)) for i in range(spec.payload_length)]


@given(case=_variance_cases())
@settings(max_examples=40, deadline=None)
def test_exact_variance_codec_matches_fractions_for_1_to_1000_contributors(
    case: tuple[HeJobSpec, np.ndarray],
) -> None:
    spec, data = case
    n = data.shape[0]
    rows = {f"c{i}": data[i].tolist() for i in range(n)}
    result = finalize(spec, _plain_sum(spec, rows), n)
    for column in range(spec.length):
        mean, variance = _exact_variance(data[:, column].tolist())
        got_mean, got_var = result.values[column], result.values[spec.length + column]
        assert abs(Fraction(got_mean) - mean) <= 4e-30 * spec.bound + abs(mean) * 2**-52
        if variance == 0:
            assert got_var <= 1e-58 * spec.bound**2
        else:
            assert abs(Fraction(got_var) - variance) <= variance * Fraction(1, 10**9)
            assert got_var == pytest.approx(np.var(data[:, column]), rel=1e-6)


def test_limb_sums_never_reach_half_the_plaintext_modulus() -> None:
    half = (raw.BFV_PLAIN_MODULUS - 1) // 2
    for max_contributors in (2, 3, 1000, 10_000, 1_000_000):
        bits = limb_bits_for(max_contributors)
        assert max_contributors * ((1 << bits) - 1) <= half
        assert max_contributors * ((1 << (bits + 1)) - 1) > half  # the widest that fits
    for bound in (1e12, 2.0**39, 1e-3):
        spec = HeJobSpec("limbs", HeOperation.VARIANCE, bound=bound)
        limits = spec.layout.slot_limits(1)
        for value in (bound, -bound, bound * (1 - 2**-53), bound / 3):
            limbs = encode(spec, "top", [value])  # the largest magnitudes a value can give
            assert all(abs(int(v)) <= limit for v, limit in zip(limbs, limits, strict=True))
    # at a power-of-two bound the top limbs are used: the widths are tight, not generous
    assert encode(spec_top := HeJobSpec("t", HeOperation.VARIANCE, bound=2.0**39), "t", [2.0**39])[
        spec_top.layout.limbs_of(100) - 1
    ] == 2 ** (100 - 1 - spec_top.layout.limb_bits * (spec_top.layout.limbs_of(100) - 1))
    assert max(spec.layout.slot_limits(spec.max_contributors)) <= half


@st.composite
def _regression_cases(draw: st.DrawFn) -> tuple[HeJobSpec, list[RegressionInput]]:
    bound = 10.0 ** draw(BOUND_EXPONENTS)
    features = draw(st.integers(1, 3))
    parts = draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offset = draw(st.sampled_from([0.0, 0.5, 0.999]))  # features far from zero: ill-conditioned
    spec = HeJobSpec("codec-reg", HeOperation.LINEAR_REGRESSION, length=features, bound=bound)
    beta = rng.uniform(-1, 1, features + 1)
    inputs = []
    for _ in range(parts):
        rows = int(rng.integers(features + 1, 12))
        x = bound * (offset + (1 - offset) * rng.uniform(-0.5, 0.5, (rows, features))) / 2
        noise = rng.normal(0, 1e-3 * bound, rows)
        y = np.clip(beta[0] * bound / 4 + x @ beta[1:] / 2 + noise, -bound, bound)
        inputs.append(RegressionInput(tuple(map(tuple, x.tolist())), tuple(y.tolist())))
    return spec, inputs


def _exact_least_squares(inputs: Sequence[RegressionInput], features: int) -> list[Fraction]:
    d = features + 1
    gram = [[Fraction(0)] * d for _ in range(d)]
    rhs = [Fraction(0)] * d
    for part in inputs:
        for row, y in zip(part.x, part.y, strict=True):
            design = [Fraction(1), *(Fraction(v) for v in row)]
            for i in range(d):
                rhs[i] += design[i] * Fraction(y)
                for j in range(d):
                    gram[i][j] += design[i] * design[j]
    return _gauss_jordan(gram, rhs)


def _gauss_jordan(matrix: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """An independent exact solver (full reduction), raising ValueError when singular."""
    d = len(rhs)
    rows = [[*row, b] for row, b in zip(matrix, rhs, strict=True)]
    for col in range(d):
        pivot = max(range(col, d), key=lambda r: abs(rows[r][col]))
        if rows[pivot][col] == 0:
            raise ValueError("singular")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        rows[col] = [v / rows[col][col] for v in rows[col]]
        for r in range(d):
            if r != col and rows[r][col] != 0:
                factor = rows[r][col]
                rows[r] = [a - factor * b for a, b in zip(rows[r], rows[col], strict=True)]
    return [row[d] for row in rows]


@given(case=_regression_cases())
@settings(max_examples=25, deadline=None)
def test_exact_regression_codec_matches_the_exact_least_squares(
    case: tuple[HeJobSpec, list[RegressionInput]],
) -> None:
    spec, inputs = case
    rows = {f"c{i}": part for i, part in enumerate(inputs)}
    try:
        expected = _exact_least_squares(inputs, spec.length)
    except ValueError:
        return  # a singular draw: nothing to compare
    result = finalize(spec, _plain_sum(spec, rows), len(inputs))
    design = np.vstack([np.hstack([np.ones((len(p.y), 1)), np.array(p.x)]) for p in inputs])
    condition = min(float(np.linalg.cond(design.T @ design)), 1e300)  # inf when near-singular
    # quantisation at 2^-99 of the bound moves the solution by about cond · 2^-99 relative
    scale = max(abs(e) for e in expected) or Fraction(1)
    tolerance = scale * Fraction(max(condition, 1.0) * 2.0**-90 + 2.0**-50)
    for got, want in zip(result.values, expected, strict=True):
        assert abs(Fraction(got) - want) <= tolerance


# -- every statistic through TenSEAL, the aggregator and the custodian -----------------


@st.composite
def _linear_cases(draw: st.DrawFn) -> tuple[float, np.ndarray]:
    bound = 10.0 ** draw(BOUND_EXPONENTS)
    n = draw(st.integers(2, 5))
    length = draw(st.integers(1, 4))
    return bound, _close_values(draw, n, length, bound)


@given(case=_linear_cases(), operation=st.sampled_from([HeOperation.SUM, HeOperation.MEAN]))
@HE_SETTINGS
def test_sum_and_mean_are_within_2_to_the_minus_45_of_n_times_the_bound(
    custodian: KeyCustodian,
    guard: ReleaseGuard,
    case: tuple[float, np.ndarray],
    operation: HeOperation,
) -> None:
    bound, data = case
    n, length = data.shape
    spec = HeJobSpec(_job(operation), operation, length=length, bound=bound)
    result = _run(custodian, guard, spec, dict(zip(_names(n), data.tolist(), strict=True)))
    exact = [sum((Fraction(v) for v in data[:, c]), Fraction(0)) for c in range(length)]
    tolerance = 2.0**-45 * n * bound
    if operation is HeOperation.MEAN:
        exact = [s / n for s in exact]
        tolerance /= n
        assert np.allclose(result.values, data.mean(axis=0), rtol=0, atol=2 * tolerance)
    for got, want in zip(result.values, exact, strict=True):
        assert abs(Fraction(got) - want) <= Fraction(tolerance)


@given(case=_linear_cases(), seed=st.integers(0, 2**32 - 1))
@HE_SETTINGS
def test_weighted_sum_is_within_2_to_the_minus_45_of_the_weighted_bound(
    custodian: KeyCustodian, guard: ReleaseGuard, case: tuple[float, np.ndarray], seed: int
) -> None:
    bound, data = case
    n, length = data.shape
    names = _names(n)
    weights = np.asarray(np.random.default_rng(seed).uniform(0.5, 2.0, size=n), dtype=float)
    spec = HeJobSpec(
        _job(HeOperation.WEIGHTED_SUM),
        HeOperation.WEIGHTED_SUM,
        length=length,
        bound=bound,
        weights=tuple(zip(names, weights.tolist(), strict=True)),
    )
    result = _run(custodian, guard, spec, dict(zip(names, data.tolist(), strict=True)))
    tolerance = Fraction(2.0**-45 * bound * float(np.abs(weights).sum()))
    for column in range(length):
        exact = sum(
            (Fraction(w) * Fraction(v) for w, v in zip(weights, data[:, column], strict=True)),
            Fraction(0),
        )
        assert abs(Fraction(result.values[column]) - exact) <= tolerance
    assert np.allclose(result.values, weights @ data, rtol=1e-12, atol=float(tolerance) * 2)


@given(case=_linear_cases())
@HE_SETTINGS
def test_variance_is_exact_to_float64_rounding(
    custodian: KeyCustodian, guard: ReleaseGuard, case: tuple[float, np.ndarray]
) -> None:
    bound, data = case
    n, length = data.shape
    spec = HeJobSpec(_job(HeOperation.VARIANCE), HeOperation.VARIANCE, length=length, bound=bound)
    result = _run(custodian, guard, spec, dict(zip(_names(n), data.tolist(), strict=True)))
    for column in range(length):
        mean, variance = _exact_variance(data[:, column].tolist())
        assert abs(Fraction(result.values[column]) - mean) <= 4e-30 * bound + abs(mean) * 2**-52
        got = Fraction(result.values[length + column])
        assert abs(got - variance) <= variance * Fraction(1, 10**9) + Fraction(1e-58 * bound**2)
    assert np.allclose(result.values[length:], data.var(axis=0), rtol=1e-6, atol=0)


@st.composite
def _count_cases(draw: st.DrawFn) -> np.ndarray:
    n = draw(st.integers(2, 5))
    length = draw(st.integers(1, 6))
    top = draw(st.sampled_from([10, 10_000, raw.BFV_PLAIN_MODULUS // 2 // 10_000]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.integers(0, top, size=(n, length), endpoint=True)


@given(counts=_count_cases())
@HE_SETTINGS
def test_count_is_exact(custodian: KeyCustodian, guard: ReleaseGuard, counts: np.ndarray) -> None:
    n, length = counts.shape
    spec = HeJobSpec(_job(HeOperation.COUNT), HeOperation.COUNT, length=length)
    result = _run(
        custodian, guard, spec, dict(zip(_names(n), counts.astype(float).tolist(), strict=True))
    )
    assert result.values == tuple(float(v) for v in counts.sum(axis=0))


@st.composite
def _histogram_cases(draw: st.DrawFn) -> tuple[tuple[float, ...], list[list[float]]]:
    edges = sorted(set(draw(st.lists(st.floats(-1e12, 1e12), min_size=2, max_size=8))))
    if len(edges) < 2:
        edges = [0.0, 1.0]
    n = draw(st.integers(2, 4))
    records = [
        draw(st.lists(st.sampled_from([*edges, *(e / 2 for e in edges), 0.0, 5e11]), max_size=30))
        for _ in range(n)
    ]
    return tuple(edges), records


@given(case=_histogram_cases())
@HE_SETTINGS
def test_histogram_is_exact(
    custodian: KeyCustodian, guard: ReleaseGuard, case: tuple[tuple[float, ...], list[list[float]]]
) -> None:
    bins, records = case
    spec = HeJobSpec(_job(HeOperation.HISTOGRAM), HeOperation.HISTOGRAM, bins=bins)
    result = _run(custodian, guard, spec, dict(zip(_names(len(records)), records, strict=True)))
    everything = np.array([v for part in records for v in part], dtype=float)
    expected, _ = np.histogram(everything, bins=np.array(bins))
    assert result.values == tuple(float(v) for v in expected)


@given(case=_regression_cases())
@HE_SETTINGS
def test_linear_regression_is_the_exact_least_squares_solution(
    custodian: KeyCustodian, guard: ReleaseGuard, case: tuple[HeJobSpec, list[RegressionInput]]
) -> None:
    template, inputs = case
    if len(inputs) < 2:
        inputs = [*inputs, inputs[0]]
    try:
        expected = _exact_least_squares(inputs, template.length)
    except ValueError:
        return
    spec = HeJobSpec(
        _job(HeOperation.LINEAR_REGRESSION),
        HeOperation.LINEAR_REGRESSION,
        length=template.length,
        bound=template.bound,
    )
    result = _run(custodian, guard, spec, dict(zip(_names(len(inputs)), inputs, strict=True)))
    design = np.vstack([np.hstack([np.ones((len(p.y), 1)), np.array(p.x)]) for p in inputs])
    condition = min(float(np.linalg.cond(design.T @ design)), 1e300)
    scale = max(abs(e) for e in expected) or Fraction(1)
    tolerance = scale * Fraction(max(condition, 1.0) * 2.0**-90 + 2.0**-50)
    for got, want in zip(result.values, expected, strict=True):
        assert abs(Fraction(got) - want) <= tolerance
    if condition < 1e8:
        target = np.concatenate([np.array(p.y) for p in inputs])
        lstsq, *_ = np.linalg.lstsq(design, target, rcond=None)
        assert np.allclose(result.values, lstsq, rtol=1e-6, atol=1e-6 * float(scale))


# -- the findings of the outside review (issue 9), each attacked ------------------------

LARGE_CLOSE = [
    # (centre, spread, bound): catastrophic cancellation of E[x²] − mean² before
    (1e9, 1e3, 1e10),
    (9e11, 9e5, 1e12),
    (1e6, 1.0, 2e6),
    (1e-3, 1e-9, 1e-2),
]


@pytest.mark.parametrize(("centre", "spread", "bound"), LARGE_CLOSE, ids=str)
def test_variance_of_large_close_values_is_exact(
    custodian: KeyCustodian, guard: ReleaseGuard, centre: float, spread: float, bound: float
) -> None:
    data = centre + np.random.default_rng(5).uniform(-spread, spread, size=(6, 3))
    spec = HeJobSpec(_job(HeOperation.VARIANCE), HeOperation.VARIANCE, length=3, bound=bound)
    result = _run(custodian, guard, spec, dict(zip(_names(6), data.tolist(), strict=True)))
    for column in range(3):
        _, variance = _exact_variance(data[:, column].tolist())
        got = result.values[3 + column]
        assert abs(Fraction(got) - variance) <= variance * Fraction(1, 10**9), (got, variance)
    assert np.allclose(result.values[3:], data.var(axis=0), rtol=1e-9, atol=0)


LARGE_BOUND_CASES = [
    # (operation, length): every slot near the bound 1e12, 12 honest contributors
    (HeOperation.VARIANCE, 3),  # before: bound²·n overflowed the check slot's precision
    (HeOperation.SUM, 4),
    (HeOperation.MEAN, 4096),  # no check slot: the range check alone
    (HeOperation.WEIGHTED_SUM, 2),
    (HeOperation.LINEAR_REGRESSION, 2),  # before: XᵀX ≈ 1e24·rows drowned the check slot
]


@pytest.mark.parametrize(
    ("operation", "length"), LARGE_BOUND_CASES, ids=[op.value for op, _ in LARGE_BOUND_CASES]
)
def test_a_large_bound_never_accuses_an_honest_contributor(
    custodian: KeyCustodian, guard: ReleaseGuard, operation: HeOperation, length: int
) -> None:
    n, bound = 12, 1e12
    names = _names(n)
    rng = np.random.default_rng(9)
    data = np.clip(bound * (1 - rng.uniform(0, 1e-6, size=(n, length))), -bound, bound)
    data[::2] *= -1
    weights = tuple((name, 3.0) for name in names)
    spec = HeJobSpec(
        _job(operation), operation, length=length, bound=bound, weights=weights, max_rows=100
    )
    inputs: dict[str, Any]
    if operation is HeOperation.LINEAR_REGRESSION:
        inputs = {}
        for i, name in enumerate(names):
            x = bound * (1 - rng.uniform(0, 1e-3, size=(8, length)))
            y = np.clip(0.5 * x.sum(axis=1) / length + i, -bound, bound)
            inputs[name] = RegressionInput(tuple(map(tuple, x.tolist())), tuple(y.tolist()))
    else:
        inputs = dict(zip(names, data.tolist(), strict=True))
    result = _run(custodian, guard, spec, inputs)  # before: AggregateIntegrityError, "another key"
    assert result.cohort == n
    if operation is HeOperation.VARIANCE:
        assert np.allclose(result.values[length:], data.var(axis=0), rtol=1e-9, atol=0)
    elif operation is HeOperation.SUM:
        assert np.allclose(result.values, data.sum(axis=0), rtol=0, atol=2.0**-45 * n * bound)


@pytest.mark.slow
def test_variance_over_1000_contributors_through_he(
    custodian: KeyCustodian, guard: ReleaseGuard
) -> None:
    n, bound = 1000, 1e12
    data = 9.99e11 + np.random.default_rng(3).uniform(-1e6, 1e6, size=(n, 2))
    spec = HeJobSpec(_job(HeOperation.VARIANCE), HeOperation.VARIANCE, length=2, bound=bound)
    result = _run(custodian, guard, spec, dict(zip(_names(n), data.tolist(), strict=True)))
    for column in range(2):
        _, variance = _exact_variance(data[:, column].tolist())
        assert abs(Fraction(result.values[2 + column]) - variance) <= variance * Fraction(1, 10**9)


def test_variance_through_he_with_many_contributors(
    custodian: KeyCustodian, guard: ReleaseGuard
) -> None:
    """The unmarked, smaller version of the 1,000-contributor run."""
    n = 60
    data = -4.2e8 + np.random.default_rng(4).uniform(-420.0, 420.0, size=(n, 1))
    spec = HeJobSpec(_job(HeOperation.VARIANCE), HeOperation.VARIANCE, bound=1e9)
    result = _run(custodian, guard, spec, dict(zip(_names(n), data.tolist(), strict=True)))
    _, variance = _exact_variance(data[:, 0].tolist())
    assert abs(Fraction(result.values[1]) - variance) <= variance * Fraction(1, 10**9)
    assert math.isclose(result.values[0], float(data.mean()), rel_tol=1e-15)
