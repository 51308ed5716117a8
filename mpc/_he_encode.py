"""Enterprise-side encoding: a contributor's values as the slots the job's scheme sums.

Pure functions of the public job spec, run by the enterprise before it
encrypts (:class:`mpc.he.HeContributor`); they validate the input and name
the contributor in every refusal. See :mod:`mpc._he_spec` for the three
encodings and docs/adr/0007-he-accuracy.md for why.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Sequence

import numpy as np

from mpc._exact import quantise
from mpc._he_spec import HeJobSpec, HeOperation, RegressionInput
from mpc.errors import (
    InvalidContributionError,
    NonNumericValueError,
    ValueOutOfRangeError,
    VectorLengthError,
)
from mpc.hazmat import he as raw

__all__ = ["encode"]

logger = logging.getLogger(__name__)

_BFV_HALF = raw.BFV_PLAIN_MODULUS // 2


def encode(spec: HeJobSpec, who: str, values: Sequence[object] | RegressionInput) -> list[float]:
    """The payload slots of ``who``'s values (check slots are added by :meth:`HeJobSpec.pack`).

    Raises:
        NonNumericValueError: a value that is not a finite number.
        ValueOutOfRangeError: a value beyond the job's bound (or the BFV range),
            or a regression with more rows than the job allows.
        VectorLengthError: a vector of the wrong length.
        InvalidContributionError: input of the wrong shape for the operation, or
            a weighted sum without a weight for ``who``.
    """
    op = spec.operation
    if op is HeOperation.LINEAR_REGRESSION:
        if not isinstance(values, RegressionInput):
            raise InvalidContributionError("a regression needs RegressionInput", contributor=who)
        return _regression(spec, who, values)
    if isinstance(values, RegressionInput):
        raise InvalidContributionError("expected a vector of numbers", contributor=who)
    numbers = [_finite(v, who) for v in values]
    if op is HeOperation.HISTOGRAM:
        counts, _ = np.histogram(np.asarray(numbers, dtype=float), bins=np.asarray(spec.bins))
        _check_bfv(spec, who, counts.tolist())
        return [float(c) for c in counts]
    if len(numbers) != spec.length:
        raise VectorLengthError(
            f"has {len(numbers)} values, the job expects {spec.length}", contributor=who
        )
    if op is HeOperation.COUNT:
        if any(not n.is_integer() or n < 0 for n in numbers):
            raise ValueOutOfRangeError("counts must be non-negative integers", contributor=who)
        _check_bfv(spec, who, numbers)
        return numbers
    _check_bound(spec, who, numbers)
    if op is HeOperation.VARIANCE:
        exponent = spec.quantum_exponent
        quantised = [quantise(n, exponent) for n in numbers]
        return [
            float(limb) for limb in spec.layout.split([*quantised, *(q * q for q in quantised)])
        ]
    # a weighted sum's public weight is applied here, exactly as the custodian
    # would (it moves no trust: a contributor picks its own values anyway), so
    # the custodian only adds: a CKKS multiplication by a plaintext rescales and
    # TenSEAL then misreads the scale by (prime - 2^40)/2^40, about 1.3e-7
    weight, shift = spec.weight_of(who), spec.ckks_shift
    return [math.ldexp(n * weight, shift) for n in numbers]


def _check_bfv(spec: HeJobSpec, who: str, numbers: Sequence[float]) -> None:
    limit = _BFV_HALF // spec.max_contributors
    if any(n > limit for n in numbers):
        raise ValueOutOfRangeError(
            f"a count exceeds {limit}, which could wrap the BFV sum", contributor=who
        )


def _regression(spec: HeJobSpec, who: str, data: RegressionInput) -> list[float]:
    """Local XᵀX (upper triangle) and Xᵀy of the quantised rows, as exact integers."""
    if len(data.x) != len(data.y) or not data.y:
        raise VectorLengthError("x and y need the same, non-zero number of rows", contributor=who)
    if len(data.y) > spec.max_rows:
        raise ValueOutOfRangeError(
            f"has {len(data.y)} rows, the job allows {spec.max_rows}", contributor=who
        )
    if any(len(row) != spec.length for row in data.x):
        raise VectorLengthError(f"each row needs {spec.length} features", contributor=who)
    exponent = spec.quantum_exponent
    columns: list[list[int]] = [[1] * len(data.y)]
    for feature in range(spec.length):
        column = [_finite(row[feature], who) for row in data.x]
        _check_bound(spec, who, column)
        columns.append([quantise(v, exponent) for v in column])
    target = [_finite(v, who) for v in data.y]
    _check_bound(spec, who, target)
    y = [quantise(v, exponent) for v in target]
    gram = [sum(map(operator.mul, columns[i], columns[j])) for i, j in spec.gram_entries]
    moments = [sum(map(operator.mul, column, y)) for column in columns]
    return [float(limb) for limb in spec.layout.split([*gram, *moments])]


def _check_bound(spec: HeJobSpec, who: str, numbers: Sequence[float]) -> None:
    if any(abs(n) > spec.bound for n in numbers):
        raise ValueOutOfRangeError(f"a value exceeds the bound {spec.bound:g}", contributor=who)


def _finite(value: object, contributor: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise NonNumericValueError(f"{value!r} is not a number", contributor=contributor)
    number = float(value)
    if not math.isfinite(number):
        raise NonNumericValueError(f"{number!r} is not finite", contributor=contributor)
    return number
