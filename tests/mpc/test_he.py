"""HE recipes against numpy, within the precision stated in mpc/he.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mpc import (
    EncryptedAggregate,
    HeAggregator,
    HeContribution,
    HeContributor,
    HeJobSpec,
    HeOperation,
    KeyCustodian,
    RegressionInput,
    ReleaseGuard,
    ReleasePolicy,
    ReleaseRequest,
    ReleaseSubject,
    he_query,
)
from mpc.errors import (
    AggregateIntegrityError,
    InvalidContributionError,
    NonNumericValueError,
    ReplayedContributionError,
    ValueOutOfRangeError,
    VectorLengthError,
    WrongJobKeyError,
)
from mpc.hazmat import he as raw


def _names(n: int) -> list[str]:
    return [f"ent-{i:03d}" for i in range(n)]


SUBJECT = ReleaseSubject("energy", ("kwh",))


def _request(job_id: str) -> ReleaseRequest:
    """A request from a group of its own: these tests are about HE, not release history."""
    return ReleaseRequest(job_id, "sub-brain", f"group-{job_id}", SUBJECT, ReleasePolicy(3))


def _run(custodian: KeyCustodian, guard: ReleaseGuard, spec: HeJobSpec, inputs: dict[str, Any]):
    job = custodian.create_job(spec)
    agg = HeAggregator(job)
    for who, values in inputs.items():
        agg.add(HeContributor(job).encrypt(who, values))
    guard.approve(_request(spec.job_id), he_query(SUBJECT, spec, agg.contributors))
    return custodian.release(agg.aggregate())


def test_parameters_meet_128_bit_security() -> None:
    assert raw.POLY_MODULUS_DEGREE == 8192
    assert sum(raw.CKKS_COEFF_MOD_BITS) <= raw.MAX_COEFF_MODULUS_BITS_128 == 218
    assert sum(raw.BFV_COEFF_MOD_BITS) <= 218
    t = raw.BFV_PLAIN_MODULUS
    assert t % (2 * raw.POLY_MODULUS_DEGREE) == 1  # batching
    assert all(pow(a, t - 1, t) == 1 for a in (2, 3, 5, 7, 11, 13))  # Fermat-probable prime


def test_public_context_has_no_secret_key() -> None:
    ctx = raw.new_secret_context(raw.HeScheme.CKKS)
    public = raw.load_context(raw.public_bytes(ctx))
    assert ctx.is_private() and not public.is_private()
    assert not public.has_galois_keys()


@pytest.mark.parametrize(
    ("operation", "length"),
    [(HeOperation.SUM, 6), (HeOperation.MEAN, 6), (HeOperation.VARIANCE, 3)],
    ids=["sum", "mean", "variance"],
)
def test_ckks_statistics_match_numpy(custodian, guard, operation, length) -> None:
    rng = np.random.default_rng(7)
    data = rng.uniform(-1e6, 1e6, size=(8, length))
    names = _names(8)
    spec = HeJobSpec(f"job-{operation.value}", operation, length=length)
    result = _run(custodian, guard, spec, dict(zip(names, data.tolist(), strict=True)))
    if operation is HeOperation.SUM:
        expected = data.sum(axis=0)
    elif operation is HeOperation.MEAN:
        expected = data.mean(axis=0)
    else:
        expected = np.concatenate([data.mean(axis=0), data.var(axis=0)])
    got = np.array(result.values)
    tolerance = 1e-6 * 8 + 1e-9 * np.abs(expected)
    if operation is HeOperation.VARIANCE:  # exact sums: float64 rounding only
        tolerance = np.concatenate([tolerance[:length], 1e-12 * expected[length:]])
    assert np.all(np.abs(got - expected) <= tolerance), np.abs(got - expected)
    assert result.cohort == 8


LONG_VECTORS = [
    # (length, ciphertexts per contribution, whether the check slot fits)
    (4095, 1, True),
    (4096, 1, False),  # fills its ciphertext: no check slot, never a second ciphertext
    (5000, 2, True),
]


@pytest.mark.parametrize(("length", "chunks", "check_slot"), LONG_VECTORS, ids=str)
def test_long_vectors_never_need_an_extra_ciphertext(
    custodian, guard, length: int, chunks: int, check_slot: bool
) -> None:
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 1e3, size=(3, length))
    spec = HeJobSpec(f"job-long-{length}", HeOperation.SUM, length=length)
    assert (spec.chunk_count, spec.has_check_slot) == (chunks, check_slot)
    result = _run(custodian, guard, spec, dict(zip(_names(3), data.tolist(), strict=True)))
    assert np.max(np.abs(np.array(result.values) - data.sum(axis=0))) < 1e-5


def test_bfv_count_and_histogram_are_exact(custodian, guard) -> None:
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 10_000, size=(5, 4))
    spec = HeJobSpec("job-count", HeOperation.COUNT, length=4)
    result = _run(custodian, guard, spec, dict(zip(_names(5), counts.tolist(), strict=True)))
    assert result.values == tuple(float(v) for v in counts.sum(axis=0))

    bins = (0.0, 10.0, 20.0, 50.0, 100.0)
    records = {
        name: rng.uniform(0, 100, size=int(rng.integers(5, 40))).tolist() for name in _names(4)
    }
    spec = HeJobSpec("job-hist", HeOperation.HISTOGRAM, bins=bins)
    result = _run(custodian, guard, spec, records)
    expected, _ = np.histogram(np.concatenate(list(records.values())), bins=bins)
    assert result.values == tuple(float(v) for v in expected)


def test_weighted_sum(custodian, guard) -> None:
    names = _names(4)
    weights = (("ent-000", 0.5), ("ent-001", 2.0), ("ent-002", 1.5), ("ent-003", 0.25))
    data = np.array([[10.0, -3.0], [4.0, 8.0], [1000.0, 2.5], [7.0, 7.0]])
    spec = HeJobSpec("job-w", HeOperation.WEIGHTED_SUM, length=2, weights=weights)
    result = _run(custodian, guard, spec, dict(zip(names, data.tolist(), strict=True)))
    w = np.array([w for _, w in weights])
    expected = (w[:, None] * data).sum(axis=0)
    scale = (np.abs(w[:, None] * data)).sum(axis=0)
    assert np.all(np.abs(np.array(result.values) - expected) <= 1e-6 * scale)


def test_linear_regression_returns_only_coefficients(custodian, guard) -> None:
    rng = np.random.default_rng(11)
    beta = np.array([2.0, -1.5, 0.75])  # intercept, two features
    parts = {}
    xs, ys = [], []
    for name in _names(3):
        x = rng.uniform(0, 10, size=(20, 2))
        y = beta[0] + x @ beta[1:] + rng.normal(0, 0.1, size=20)
        parts[name] = RegressionInput(tuple(map(tuple, x.tolist())), tuple(y.tolist()))
        xs.append(x)
        ys.append(y)
    spec = HeJobSpec("job-reg", HeOperation.LINEAR_REGRESSION, length=2, bound=1e3)
    result = _run(custodian, guard, spec, parts)
    design = np.hstack([np.ones((60, 1)), np.vstack(xs)])
    expected, *_ = np.linalg.lstsq(design, np.concatenate(ys), rcond=None)
    assert len(result.values) == 3  # coefficients, not XᵀX or Xᵀy
    assert np.allclose(result.values, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("values", "error"),
    [
        (["12", 3.0], NonNumericValueError),
        ([float("nan"), 1.0], NonNumericValueError),
        ([True, 1.0], NonNumericValueError),
        ([2e6, 1.0], ValueOutOfRangeError),
        ([1.0], VectorLengthError),
        ([1.0, 2.0, 3.0], VectorLengthError),
    ],
    ids=["string", "nan", "bool", "out-of-range", "too-short", "too-long"],
)
def test_bad_input_names_the_contributor(custodian, values, error) -> None:
    job = custodian.create_job(HeJobSpec("job-bad", HeOperation.SUM, length=2))
    with pytest.raises(error, match="ent-bad") as info:
        HeContributor(job).encrypt("ent-bad", values)
    assert info.value.contributor == "ent-bad"


def test_bfv_range_guards_against_wrap_around(custodian) -> None:
    job = custodian.create_job(HeJobSpec("job-wrap", HeOperation.COUNT, max_contributors=10))
    with pytest.raises(ValueOutOfRangeError, match="wrap"):
        HeContributor(job).encrypt("ent-big", [float(raw.BFV_PLAIN_MODULUS // 4)])


def test_aggregator_refuses_other_jobs_replays_and_garbage(custodian) -> None:
    job_a = custodian.create_job(HeJobSpec("job-a", HeOperation.SUM, length=2))
    job_b = custodian.create_job(HeJobSpec("job-b", HeOperation.SUM, length=2))
    agg = HeAggregator(job_b)
    from_a = HeContributor(job_a).encrypt("ent-x", [1.0, 2.0])
    with pytest.raises(WrongJobKeyError, match="ent-x"):
        agg.add(from_a)
    relabelled = type(from_a)("job-b", "ent-x", from_a.key_fingerprint, from_a.chunks)
    with pytest.raises(WrongJobKeyError, match="another public key"):
        agg.add(relabelled)
    good = HeContributor(job_b).encrypt("ent-y", [1.0, 2.0])
    agg.add(good)
    with pytest.raises(ReplayedContributionError, match="ent-y"):
        agg.add(good)
    copied = type(good)("job-b", "ent-z", good.key_fingerprint, good.chunks)
    with pytest.raises(ReplayedContributionError, match="ent-z"):
        agg.add(copied)
    garbage = type(good)("job-b", "ent-g", good.key_fingerprint, (b"not a ciphertext",))
    with pytest.raises(InvalidContributionError, match="ent-g"):
        agg.add(garbage)


FOREIGN_KEY_CASES = [
    # (operation, length, which of the forged contribution's ciphertexts are foreign)
    (HeOperation.SUM, 2, (0,)),  # caught by the check slot
    (HeOperation.MEAN, 4096, (0,)),  # no check slot: caught by the range check
    (HeOperation.SUM, 5000, (0,)),  # a full first ciphertext, honest last one
    (HeOperation.SUM, 5000, (1,)),  # the last ciphertext, holding the check slot
    (HeOperation.WEIGHTED_SUM, 4096, (0,)),  # rescaled by the weight, still noise
    (HeOperation.VARIANCE, 2048, (0,)),  # exact limbs under BFV: 4 ciphertexts, each
    (HeOperation.VARIANCE, 2048, (2,)),  # with its own check slot, all must match exactly
    (HeOperation.VARIANCE, 1, (0,)),  # a single short ciphertext
    (HeOperation.LINEAR_REGRESSION, 2, (0,)),
]


@pytest.mark.parametrize(
    ("operation", "length", "foreign"),
    FOREIGN_KEY_CASES,
    ids=[f"{op.value}-{n}-{f}" for op, n, f in FOREIGN_KEY_CASES],
)
def test_ciphertext_under_another_key_fails_the_integrity_check(
    custodian, guard, operation: HeOperation, length: int, foreign: tuple[int, ...]
) -> None:
    weights = tuple((name, 2.5) for name in [*_names(2), "ent-evil"])
    tag = f"{operation.value}-{length}-{foreign[0]}"
    spec_b = HeJobSpec(f"job-kb-{tag}", operation, length=length, weights=weights)
    spec_a = HeJobSpec(f"job-ka-{tag}", operation, length=length, weights=weights)
    job_a, job_b = custodian.create_job(spec_a), custodian.create_job(spec_b)
    rng = np.random.default_rng(4)
    values: Any = rng.uniform(-1e3, 1e3, length).tolist()
    if operation is HeOperation.LINEAR_REGRESSION:
        x = rng.uniform(-1e3, 1e3, (5, length))
        values = RegressionInput(tuple(map(tuple, x.tolist())), tuple(x.sum(axis=1).tolist()))
    agg = HeAggregator(job_b)
    for name in _names(2):
        agg.add(HeContributor(job_b).encrypt(name, values))
    honest = HeContributor(job_b).encrypt("ent-evil", values).chunks
    other = HeContributor(job_a).encrypt("ent-evil", values).chunks
    chunks = tuple(other[i] if i in foreign else honest[i] for i in range(len(honest)))
    agg.add(HeContribution(spec_b.job_id, "ent-evil", job_b.key_fingerprint, chunks))
    request = _request(spec_b.job_id)
    with pytest.raises(AggregateIntegrityError, match="another key"):
        custodian.finish_job(request, agg.aggregate())
    assert guard.approval(spec_b.job_id) is None  # rolled back with the refusal


def test_custodian_loads_the_bytes_itself_when_given_no_vectors(custodian, guard) -> None:
    spec = HeJobSpec("job-bytes", HeOperation.MEAN, length=3)
    job = custodian.create_job(spec)
    agg = HeAggregator(job)
    for i, name in enumerate(_names(3)):
        agg.add(HeContributor(job).encrypt(name, [float(i), 2.0 * i, -1.0]))
    from_bytes = EncryptedAggregate(spec.job_id, agg.aggregate().contributions)
    assert from_bytes.vectors == ()
    guard.approve(_request(spec.job_id), he_query(SUBJECT, spec, agg.contributors))
    assert custodian.release(from_bytes).values == pytest.approx((1.0, 2.0, -1.0), abs=1e-6)


def test_custodian_refuses_garbage_bytes_naming_the_contributor(custodian, guard) -> None:
    spec = HeJobSpec("job-garbage", HeOperation.SUM, length=1)
    job = custodian.create_job(spec)
    good = [HeContributor(job).encrypt(name, [1.0]) for name in _names(2)]
    garbage = HeContribution(spec.job_id, "ent-g", job.key_fingerprint, (b"not a ciphertext",))
    aggregate = EncryptedAggregate(spec.job_id, (*good, garbage))
    request = _request(spec.job_id)
    with pytest.raises(InvalidContributionError, match="ent-g"):
        custodian.finish_job(request, aggregate)


def test_no_more_contributors_than_the_job_sized_its_sums_for(custodian, guard) -> None:
    """BFV limbs are sized for max_contributors: past it a sum could wrap, so it is refused."""
    spec = HeJobSpec("job-max", HeOperation.VARIANCE, max_contributors=3)
    job = custodian.create_job(spec)
    agg = HeAggregator(job)
    contributions = [HeContributor(job).encrypt(n, [float(i)]) for i, n in enumerate(_names(4))]
    for contribution in contributions[:3]:
        agg.add(contribution)
    with pytest.raises(InvalidContributionError, match="already has its 3 contributors"):
        agg.add(contributions[3])
    # an aggregate assembled without the aggregator is refused by the custodian
    bypass = EncryptedAggregate(spec.job_id, tuple(contributions))
    with pytest.raises(AggregateIntegrityError, match="max_contributors"):
        custodian.finish_job(_request(spec.job_id), bypass)
    assert guard.approval(spec.job_id) is None


def test_a_spec_stored_before_max_rows_still_loads() -> None:
    spec = HeJobSpec("job-old", HeOperation.MEAN, length=3)
    stored = spec.to_dict()
    del stored["max_rows"]
    assert HeJobSpec.from_dict(stored) == spec
