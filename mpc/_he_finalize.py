"""From a decrypted, checked sum to the released values.

Exact jobs (variance, regression) arrive as summed limbs; they are joined
into the exact integer sums and the statistic is computed with
:class:`fractions.Fraction`, then rounded once to float64. So a variance
never suffers the cancellation of ``E[x²] − mean²``, and a regression solves
its normal equations exactly (its only error is the quantisation of the
inputs, at ``2^−99`` of the bound).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from mpc._he_spec import HeJobSpec, HeOperation

__all__ = ["HeResult", "finalize"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeResult:
    """A released result: aggregate values only, with the cohort size."""

    job_id: str
    operation: HeOperation
    values: tuple[float, ...]
    cohort: int


def finalize(spec: HeJobSpec, payload: Sequence[float], cohort: int) -> HeResult:
    """Turn a decrypted sum's payload slots (no check slots) into the released values.

    Raises:
        ValueError: a payload of the wrong length, a cohort below one, or a
            regression whose summed XᵀX is singular.
    """
    if cohort < 1:
        raise ValueError("a result needs at least one contributor")
    if len(payload) != spec.payload_length:
        raise ValueError(f"payload of {len(payload)} slots, expected {spec.payload_length}")
    op = spec.operation
    values: list[float]
    if op in (HeOperation.COUNT, HeOperation.HISTOGRAM):
        values = [float(round(v)) for v in payload]
    elif op in (HeOperation.SUM, HeOperation.MEAN):
        # undo the exact power-of-two scaling (np.ldexp is exact, like math.ldexp)
        sums = np.ldexp(np.asarray(payload, dtype=float), -spec.ckks_shift)
        values = (sums / cohort if op is HeOperation.MEAN else sums).tolist()
    elif op is HeOperation.WEIGHTED_SUM:
        values = np.ldexp(np.asarray(payload, dtype=float), -spec.ckks_shift).tolist()
    elif op is HeOperation.VARIANCE:
        values = _variance(spec, [round(v) for v in payload], cohort)
    else:
        values = _regression(spec, [round(v) for v in payload])
    return HeResult(spec.job_id, op, tuple(values), cohort)


def _variance(spec: HeJobSpec, limb_sums: Sequence[int], n: int) -> list[float]:
    """Means then population variances, exactly: ``(n·Σq² − (Σq)²) / n²`` times the quantum²."""
    sums = spec.layout.join(limb_sums)
    first, second = sums[: spec.length], sums[spec.length :]
    quantum = Fraction(2) ** spec.quantum_exponent
    means = [float(Fraction(s, n) * quantum) for s in first]
    variances = [
        float(Fraction(n * q - s * s, n * n) * quantum * quantum)
        for s, q in zip(first, second, strict=True)
    ]
    return [*means, *variances]


def _regression(spec: HeJobSpec, limb_sums: Sequence[int]) -> list[float]:
    """Solve the summed normal equations exactly.

    With ``D = diag(1, 2^e, …)`` (e the quantum exponent), the real XᵀX is
    ``D·G·D`` and Xᵀy is ``2^e·D·h`` for the integer sums G and h, so the
    coefficients are ``β = 2^e·D⁻¹·G⁻¹·h``: the intercept ``2^e·γ₀``, each
    slope ``γ_a``, where ``G·γ = h``.
    """
    sums = spec.layout.join(limb_sums)
    d = spec.length + 1
    entries = spec.gram_entries
    gram = [[Fraction(0)] * d for _ in range(d)]
    for (i, j), value in zip(entries, sums[: len(entries)], strict=True):
        gram[i][j] = gram[j][i] = Fraction(value)
    rhs = [Fraction(v) for v in sums[len(entries) :]]
    gamma = _solve(gram, rhs)
    quantum = Fraction(2) ** spec.quantum_exponent
    return [float(gamma[0] * quantum), *(float(g) for g in gamma[1:])]


def _solve(matrix: list[list[Fraction]], rhs: list[Fraction]) -> list[Fraction]:
    """Gaussian elimination over the rationals (exact).

    Raises:
        ValueError: the matrix is singular.
    """
    d = len(rhs)
    rows = [[*row, b] for row, b in zip(matrix, rhs, strict=True)]
    for col in range(d):
        pivot = next((r for r in range(col, d) if rows[r][col] != 0), None)
        if pivot is None:
            raise ValueError("the summed XᵀX is singular; no unique regression")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        head = rows[col]
        for r in range(col + 1, d):
            factor = rows[r][col] / head[col]
            if factor:
                rows[r] = [a - factor * b for a, b in zip(rows[r], head, strict=True)]
    solution = [Fraction(0)] * d
    for col in reversed(range(d)):
        known = sum((rows[col][k] * solution[k] for k in range(col + 1, d)), Fraction(0))
        solution[col] = (rows[col][d] - known) / rows[col][col]
    return solution
