"""The precision each engine guarantees for a released value, and the value printed to it.

A float64 result such as ``0.16666666666666666`` claims seventeen digits; an
MPC mean over inputs of resolution ``1e-6`` guarantees about seven of them.
Each released value is rounded to the decimal place of its guarantee (the
largest power of ten not above the guaranteed absolute error, or above the
float's own spacing when the guarantee is finer than float64); a value whose
guarantee is float64 itself keeps 15 significant digits. JSON stays numbers:
a rounded float, or an integer for counts.

The guarantees are the ones docs/mpc.md documents ("Accuracy (measured)" and
the HE "Precision" section); the printed value is within the guarantee plus
half a unit of its last printed digit of the exact statistic.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from mpc.he import HeJobSpec, HeOperation
from mpc.mpc_spec import MpcEncoding, MpcStatistic

__all__ = ["Precision", "he_precisions", "mpc_precision"]

logger = logging.getLogger(__name__)

FLOAT_DIGITS = 15
"""Significant decimal digits every float64 holds exactly through a round trip."""

HE_CKKS_ERROR = 2.0**-45
"""CKKS sums are within ``2^-45·n·bound`` (docs/mpc.md, HE "Precision")."""

HE_VARIANCE_RELATIVE = 1e-9
"""HE variances are within ``1e-9`` relative (docs/mpc.md, HE "Precision")."""


@dataclass(frozen=True)
class Precision:
    """What a released value is printed with.

    ``error`` is the guaranteed absolute error (``None``: the engine's result
    is as good as float64, so only float noise is cut); ``integer`` marks an
    exact count.
    """

    error: float | None = None
    integer: bool = False

    def __post_init__(self) -> None:
        if self.error is not None and not (math.isfinite(self.error) and self.error > 0):
            raise ValueError(f"a guaranteed error must be a positive finite number: {self.error}")

    def decimals(self, value: float) -> int:
        """Decimal places to print ``value`` with (negative: round to tens, hundreds…).

        With a guaranteed error ``e``: the decimal place of ``max(e, ulp(value))``
        (a resolution finer than float64 keeps the float as it is). Without
        one: 15 significant digits.
        """
        if self.error is None:
            if value == 0 or not math.isfinite(value):
                return FLOAT_DIGITS
            return FLOAT_DIGITS - 1 - math.floor(math.log10(abs(value)))
        error = max(self.error, math.ulp(value)) if math.isfinite(value) else self.error
        return -math.floor(math.log10(error))

    def printed(self, value: float) -> float | int | None:
        """``value`` as it is printed: rounded, an integer for a count, None for NaN."""
        if math.isnan(value):
            return None
        if not math.isfinite(value):
            return value
        if self.integer:
            return round(value)
        rounded = round(value, self.decimals(value))
        return rounded + 0.0  # no "-0.0"


def mpc_precision(
    statistic: MpcStatistic,
    value: float,
    *,
    bound: float,
    cohort: int,
    exact_order: bool,
) -> Precision:
    """The printed precision of one MPC statistic (docs/mpc.md "Accuracy (measured)").

    ``q`` is the job's resolution ``10^(ceil(log10 bound) − 18)``: a sum is
    within ``n·q/2``, a mean, min, max and median within ``q/2``, quartiles
    within ``q/2`` (``3q/4`` for two contributors), a variance within
    ``σ·q + q²/4``. Order statistics released as DP grid points or coarsened
    to a step are those points: only float noise is cut.

    Raises:
        ValueError: ``bound`` outside what an MPC job accepts.
    """
    q = float(MpcEncoding(bound).resolution)
    if statistic is MpcStatistic.COUNT:
        return Precision(integer=True)
    if statistic is MpcStatistic.SUM:
        return Precision(max(cohort, 1) * q / 2)
    if statistic is MpcStatistic.VARIANCE:
        sigma = math.sqrt(max(value, 0.0))
        return Precision(sigma * q + q * q / 4)
    if statistic is MpcStatistic.MEAN:
        return Precision(q / 2)
    if not exact_order:
        return Precision()
    if statistic is MpcStatistic.QUARTILES and cohort == 2:
        return Precision(3 * q / 4)
    return Precision(q / 2)


def he_precisions(spec: HeJobSpec, values: Sequence[float], *, cohort: int) -> list[Precision]:
    """The printed precision of each value of an HE result (docs/mpc.md HE "Precision").

    Counts and histograms are exact integers; a sum is within ``2^-45·n·bound``,
    a mean within ``2^-45·bound``, a weighted sum within ``2^-45·Σ|w|·bound``;
    a variance job's means are exact to float64 and its variances within
    ``1e-9`` relative; regression coefficients are the exact least squares of
    the quantised rows, rounded once (float64).
    """
    operation = spec.operation
    if operation in (HeOperation.COUNT, HeOperation.HISTOGRAM):
        return [Precision(integer=True)] * len(values)
    if operation is HeOperation.SUM:
        return [Precision(HE_CKKS_ERROR * max(cohort, 1) * spec.bound)] * len(values)
    if operation is HeOperation.MEAN:
        return [Precision(HE_CKKS_ERROR * spec.bound)] * len(values)
    if operation is HeOperation.WEIGHTED_SUM:
        total = sum(abs(w) for _, w in spec.weights) or 1.0
        return [Precision(HE_CKKS_ERROR * total * spec.bound)] * len(values)
    if operation is HeOperation.VARIANCE:
        means = [Precision()] * spec.length
        variances = [
            Precision(HE_VARIANCE_RELATIVE * abs(v)) if v != 0 and math.isfinite(v) else Precision()
            for v in values[spec.length :]
        ]
        return means + variances
    return [Precision()] * len(values)
