"""Differentially private order statistics: OpenDP's quantile mechanism over counts from MPC.

A minimum, maximum, median or quartile is one contributor's value, so under
:attr:`~mpc.guard.OrderRelease.DP` it never leaves exactly. The policy fixes
a public grid of candidates (:class:`DpOrderPolicy`: a range and a number of
points; by default the job's ``[-bound, bound]``). Inside MPC the parties
compare every hidden value with every candidate and open only, per
candidate ``c``, the counts ``#{x < c}`` and ``#{x > c}``
(:class:`OrderCounts`): a cumulative histogram at the grid points, handed to
the release guard inside the exchange and never to the requester.

The guard then selects one candidate per quantile with OpenDP's vetted
mechanism (``make_private_quantile``: ``make_quantile_score_candidates``
then the noisy-max selection). OpenDP's score of a candidate depends on the
data only through those two counts, so the guard runs OpenDP on a
*surrogate* dataset with the same counts relative to surrogate candidates
``0, 2, 4, …`` (a value below the first candidate is ``-1``, one between
candidates ``j`` and ``j+1`` is ``2j+1``, one equal to candidate ``j`` is
``2j``, one above the last is ``2k-1``). The scores are identical, and a
change of one contributor's value moves one surrogate element, so OpenDP's
own privacy map (substitution, symmetric distance 2, the cohort size being
public) bounds the loss: no score or noise is computed here.
Several quantiles of one release share ε evenly under OpenDP's basic
composition, whose map is checked against ε.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import opendp.prelude as dp

from core.canonical import canonical_bytes

__all__ = ["MAX_ORDER_CANDIDATES", "DpOrderPolicy", "OrderCounts", "select_quantiles"]

logger = logging.getLogger(__name__)

MAX_ORDER_CANDIDATES = 256
"""The most grid points one release scores (MPC compares every value with each, twice)."""

_SUBSTITUTION = 2
"""One contributor's value changed: symmetric distance 2 on a dataset of known size."""


def _decimal(value: float) -> Fraction:
    return Fraction(repr(float(value)))


@dataclass(frozen=True)
class DpOrderPolicy:
    """How a policy releases order statistics with differential privacy.

    ``epsilon`` is charged once per release, split evenly over the quantiles
    it selects (min, max and median one each, quartiles three). The grid is
    ``candidates`` evenly spaced points from ``lower`` to ``upper`` (default:
    the job's ``-bound`` and ``bound``); a released value is always one of
    them. A consent without its own budget is charged against
    ``consent_budget``; the requester group against ``group_budget`` per
    dataset (the same budgets as every other noisy release).
    """

    epsilon: float
    candidates: int = 33
    lower: float | None = None
    upper: float | None = None
    consent_budget: float = 5.0
    group_budget: float = 20.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and 0 < self.epsilon <= 10):
            raise ValueError("epsilon must be in (0, 10]")
        if isinstance(self.candidates, bool) or not (2 <= self.candidates <= MAX_ORDER_CANDIDATES):
            raise ValueError(f"the grid needs 2 to {MAX_ORDER_CANDIDATES} candidates")
        ends = [v for v in (self.lower, self.upper) if v is not None]
        if not all(math.isfinite(v) for v in ends):
            raise ValueError("the grid's ends must be finite")
        if self.lower is not None and self.upper is not None and not self.lower < self.upper:
            raise ValueError("the grid's lower end must be below its upper end")
        if not (self.consent_budget >= self.epsilon and self.group_budget >= self.epsilon):
            raise ValueError("the default budgets must cover at least one release")

    def grid(self, bound: float) -> tuple[float, ...]:
        """The public candidates for a job whose values are at most ``bound`` in magnitude.

        Raises:
            ValueError: a non-positive bound, a grid end beyond it, or ends that
                leave no room for distinct candidates.
        """
        if not (math.isfinite(bound) and bound > 0):
            raise ValueError("the bound must be a positive number")
        lo = _decimal(-bound if self.lower is None else self.lower)
        hi = _decimal(bound if self.upper is None else self.upper)
        if lo >= hi:
            raise ValueError("the grid's lower end must be below its upper end")
        if max(abs(lo), abs(hi)) > _decimal(bound):
            raise ValueError(f"the grid [{float(lo):g}, {float(hi):g}] exceeds the bound {bound:g}")
        step = (hi - lo) / (self.candidates - 1)
        points = tuple(float(lo + j * step) for j in range(self.candidates))
        if any(a >= b for a, b in itertools.pairwise(points)):
            raise ValueError("the grid's candidates are not distinct")
        return points

    def terms(self, grid: Sequence[float]) -> str:
        """The noise terms as canonical text, with the grid (part of a repeated question's key)."""
        return canonical_bytes(
            {
                "mechanism": "opendp-private-quantile",
                "epsilon": self.epsilon,
                "candidates": [repr(float(c)) for c in grid],
            }
        ).decode()


@dataclass(frozen=True)
class OrderCounts:
    """Per grid candidate, how many of the cohort's values lie below and above it.

    Opened by the MPC parties for the release guard only (a cumulative
    histogram at the grid points): its repr shows the grid's size, not the
    counts.

    Raises:
        ValueError: counts that no dataset of ``cohort`` values can have.
    """

    candidates: tuple[float, ...]
    below: tuple[int, ...]
    above: tuple[int, ...]
    cohort: int

    def __post_init__(self) -> None:
        k, n = len(self.candidates), self.cohort
        if k < 2 or len(self.below) != k or len(self.above) != k or n < 1:
            raise ValueError("one below and one above count per candidate, over a cohort")
        if any(a >= b for a, b in itertools.pairwise(self.candidates)):
            raise ValueError("the candidates must be increasing")
        for j in range(k):
            lt, gt = self.below[j], self.above[j]
            if lt < 0 or gt < 0 or lt + gt > n:
                raise ValueError("inconsistent order counts")
            if j + 1 < k and self.below[j + 1] < n - gt:
                raise ValueError("inconsistent order counts")

    def __repr__(self) -> str:
        return f"OrderCounts(<{len(self.candidates)} candidates, {self.cohort} values>)"

    def surrogate(self) -> list[int]:
        """A dataset with the same counts relative to the candidates ``0, 2, 4, …``."""
        k, n = len(self.candidates), self.cohort
        data = [-1] * self.below[0]
        for j in range(k):
            equal = n - self.below[j] - self.above[j]
            data += [2 * j] * equal
            if j + 1 < k:
                data += [2 * j + 1] * (self.below[j + 1] - self.below[j] - equal)
        data += [2 * k - 1] * self.above[k - 1]
        return data


def _quantile(size: int, k: int, alpha: float, scale: float) -> dp.Measurement:
    """OpenDP's private quantile over ``size`` values and the candidates ``0, 2, …, 2k−2``."""
    dp.enable_features("contrib")
    return dp.m.make_private_quantile(
        dp.vector_domain(dp.atom_domain(T=int), size=size),
        dp.symmetric_distance(),
        dp.max_divergence(),
        [2 * j for j in range(k)],
        alpha,
        scale,
    )


@functools.lru_cache(maxsize=256)
def _scale(size: int, k: int, alpha: float, epsilon: float) -> float:
    """The noise scale OpenDP needs for ``epsilon`` under one substitution (searched once)."""
    return float(
        dp.binary_search_param(
            lambda s: _quantile(size, k, alpha, s), d_in=_SUBSTITUTION, d_out=epsilon
        )
    )


def select_quantiles(
    counts: OrderCounts, alphas: Sequence[float], epsilon: float
) -> tuple[float, ...]:
    """One candidate per quantile level in ``alphas``, chosen by OpenDP at total ``epsilon``.

    Raises:
        ValueError: no level, a level outside [0, 1], or a non-positive epsilon.
    """
    if not alphas or not all(0 <= a <= 1 for a in alphas):
        raise ValueError("quantile levels must lie in [0, 1]")
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError("epsilon must be positive")
    size, k = counts.cohort, len(counts.candidates)
    share = epsilon / len(alphas)
    parts = [_quantile(size, k, alpha, _scale(size, k, alpha, share)) for alpha in alphas]
    measurement = dp.c.make_composition(parts)
    loss = float(measurement.map(_SUBSTITUTION))  # type: ignore[no-untyped-call]
    if loss > epsilon * (1 + 1e-9):  # OpenDP's own accounting of the whole release
        raise ValueError(f"the composed release would spend {loss} > {epsilon}")
    chosen = measurement(counts.surrogate())
    return tuple(counts.candidates[int(position) // 2] for position in chosen)
