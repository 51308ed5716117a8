"""What an MPC job computes, how it encodes the inputs, and what it returns.

Each contributor provides one value. The requester learns only the named
statistics (and the dominance verdict); with ``percentile_ranks`` each
contributor also learns its own rank: the parties sort (value, secret random
tag) pairs and open only the tags, which only their owners can recognise.

**Encoding.** A job declares ``bound``, the largest magnitude a value may
have (as an HE job does). Its resolution is the power of ten
``q = 10^(ceil(log10 bound) − 18)``, so ``bound·1e-18 ≤ q < bound·1e-17``;
each enterprise rounds its value to the nearest multiple of ``q`` and shares
the integer ``value / q`` (at most about ``10^18 < 2^60`` in magnitude). The
parties then compute on exact integers, open only the integer aggregate each
released statistic needs, and turn it into a value with exact fractions.
The only error is that rounding (see ``docs/mpc.md``, *Accuracy*).
"""

from __future__ import annotations

import enum
import itertools
import math
from dataclasses import dataclass, field
from fractions import Fraction

from mpc.dp_order import MAX_ORDER_CANDIDATES, OrderCounts
from mpc.guard import DominanceRule, DominanceVerdict
from mpc.hazmat import shamir

__all__ = [
    "DEFAULT_BOUND",
    "MAX_BOUND",
    "MIN_BOUND",
    "MpcEncoding",
    "MpcJobSpec",
    "MpcResult",
    "MpcStatistic",
]

DEFAULT_BOUND = 1e12
"""Default largest magnitude of an input: resolution ``1e-6``."""

MIN_BOUND = 1e-30
MAX_BOUND = 1e30
"""Bounds a job may declare (results and squares stay within float range)."""

_DIGITS = 18
"""Decimal digits between the bound and the resolution (``10^18 < 2^60``)."""


def _ceil_log10(value: Fraction) -> int:
    """The least integer ``t`` with ``10^t >= value`` (exact, for ``value > 0``)."""
    t = math.ceil(math.log10(value))
    while Fraction(10) ** t < value:
        t += 1
    while Fraction(10) ** (t - 1) >= value:
        t -= 1
    return t


def _dominance_fraction(k: float) -> Fraction:
    """The threshold percentage ``k`` as the decimal it is written as (``85.3 -> 853/10``)."""
    return Fraction(repr(float(k)))


@dataclass(frozen=True)
class MpcEncoding:
    """How a job's inputs become exact integers: a magnitude bound and its resolution.

    ``bound`` is the largest magnitude of an input; the resolution is the
    power of ten ``10^(ceil(log10 bound) − 18)``.
    """

    bound: float = DEFAULT_BOUND

    def __post_init__(self) -> None:
        if isinstance(self.bound, bool) or not isinstance(self.bound, int | float):
            raise ValueError("bound must be a number")
        if not math.isfinite(self.bound) or not MIN_BOUND <= self.bound <= MAX_BOUND:
            raise ValueError(f"bound must be between {MIN_BOUND:g} and {MAX_BOUND:g}")

    @property
    def resolution_exponent(self) -> int:
        """``e`` with resolution ``10^e``: ``ceil(log10 bound) − 18``.

        The bound is read as the decimal it is written as (``1e-2`` is 1/100,
        not the binary float just above it), so a power of ten gets its own
        exponent; values may still reach the float bound itself.
        """
        return _ceil_log10(Fraction(repr(float(self.bound)))) - _DIGITS

    @property
    def resolution(self) -> Fraction:
        """The quantum every input is rounded to (exact)."""
        return Fraction(10) ** self.resolution_exponent

    def quantise(self, value: int | float | Fraction) -> int:
        """The integer ``round(value / resolution)`` that is shared for ``value``.

        Raises:
            ValueError: not finite, or beyond the bound.
        """
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("value is not finite")
        exact = Fraction(value)
        if abs(exact) > Fraction(self.bound):
            raise ValueError(f"exceeds the job's bound ±{self.bound:g}")
        encoded = round(exact / self.resolution)
        assert abs(encoded) < 1 << shamir.VALUE_MAGNITUDE_BITS  # by construction of the resolution
        return encoded


class MpcStatistic(enum.Enum):
    """Distribution summaries the parties can compute on hidden values."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    VARIANCE = "variance"
    MIN = "min"
    MAX = "max"
    MEDIAN = "median"
    QUARTILES = "quartiles"


@dataclass(frozen=True)
class MpcJobSpec:
    """An MPC job: statistics to release, ranks to return, dominance rules to check.

    ``min_cohort`` is checked by the parties after refused contributions are
    dropped: below it the job fails rather than computing on fewer.
    ``bound`` is the largest magnitude of an input; it sets the job's
    resolution (:attr:`resolution`), and dealers refuse values beyond it.
    With ``order_candidates`` (a differentially private policy's public grid,
    :meth:`mpc.dp_order.DpOrderPolicy.grid`) the parties never open an
    order statistic: they open, per candidate, how many values lie below and
    above it, for the release guard to choose from (:class:`MpcResult`'s
    ``order_counts``).
    """

    job_id: str
    statistics: tuple[MpcStatistic, ...] = (MpcStatistic.MEAN,)
    percentile_ranks: bool = False
    dominance: tuple[DominanceRule, ...] = ()
    min_cohort: int = 3
    bound: float = DEFAULT_BOUND
    order_candidates: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.job_id or len(self.job_id) > 200 or "/" in self.job_id:
            raise ValueError("job_id must be a non-empty name without '/' (max 200 characters)")
        if self.min_cohort < 2:
            raise ValueError("min_cohort must be at least 2")
        if not self.statistics and not self.percentile_ranks and not self.dominance:
            raise ValueError("the job computes nothing")
        if len(set(self.statistics)) != len(self.statistics):
            raise ValueError("a statistic is named twice")
        encoding = MpcEncoding(self.bound)  # checks the bound
        if self.order_candidates:
            if not 2 <= len(self.order_candidates) <= MAX_ORDER_CANDIDATES:
                raise ValueError(f"an order grid has 2 to {MAX_ORDER_CANDIDATES} candidates")
            quantised = [encoding.quantise(c) for c in self.order_candidates]
            if any(a >= b for a, b in itertools.pairwise(quantised)):
                raise ValueError("order candidates must increase by more than the resolution")
        for rule in self.dominance:
            k = _dominance_fraction(rule.k)
            # 100·den·(top n) − num·total is compared in SecInt(SUM_BITS): both terms
            # stay below 2^(VALUE_MAGNITUDE_BITS + 20) times these factors.
            width = (100 * k.denominator + k.numerator).bit_length()
            if width + shamir.VALUE_MAGNITUDE_BITS + 21 >= shamir.SUM_BITS:
                raise ValueError(f"dominance threshold {rule.k!r} has too many digits")

    @property
    def encoding(self) -> MpcEncoding:
        """The job's input encoding (from :attr:`bound`)."""
        return MpcEncoding(self.bound)

    def dominance_fractions(self) -> tuple[Fraction, ...]:
        """Each rule's ``k`` percent as an exact decimal fraction."""
        return tuple(_dominance_fraction(rule.k) for rule in self.dominance)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (sent to every party)."""
        return {
            "job_id": self.job_id,
            "statistics": [s.value for s in self.statistics],
            "percentile_ranks": self.percentile_ranks,
            "dominance": [[r.n, r.k] for r in self.dominance],
            "min_cohort": self.min_cohort,
            "bound": self.bound,
            "order_candidates": list(self.order_candidates),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> MpcJobSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: a malformed spec.
        """
        try:
            stats = data["statistics"]
            rules = data["dominance"]
            bound = data["bound"]
            grid = data.get("order_candidates", [])
            if not isinstance(stats, list) or not isinstance(rules, list):
                raise TypeError("statistics and dominance must be lists")
            if not isinstance(grid, list) or not all(
                isinstance(c, int | float) and not isinstance(c, bool) for c in grid
            ):
                raise TypeError("order_candidates must be a list of numbers")
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise TypeError("bound must be a number")
            return cls(
                job_id=str(data["job_id"]),
                statistics=tuple(MpcStatistic(s) for s in stats),
                percentile_ranks=bool(data["percentile_ranks"]),
                dominance=tuple(DominanceRule(int(n), float(k)) for n, k in rules),
                min_cohort=int(str(data["min_cohort"])),
                bound=float(bound),
                order_candidates=tuple(float(c) for c in grid),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed MPC job spec: {exc}") from exc


@dataclass(frozen=True)
class MpcResult:
    """What the parties agreed on and released.

    ``statistics`` maps a statistic's name to its values (quartiles have
    three); ``rank_tags`` lists the contributors' secret tags in ascending
    order of their values (each finds its own with its :class:`RankKey`);
    ``dropped`` names contributors whose input was refused, with
    the reason. ``order_counts`` (a job with ``order_candidates``) are for
    the release guard only, never for the requester. ``bytes_sent`` (all
    parties) and ``peak_party_rss`` (the largest party's peak resident set,
    bytes) are operational figures.
    """

    job_id: str
    cohort: int
    statistics: tuple[tuple[str, tuple[float, ...]], ...]
    rank_tags: tuple[int, ...] = ()
    dominance: DominanceVerdict = field(default_factory=lambda: DominanceVerdict((), ()))
    dropped: tuple[tuple[str, str], ...] = ()
    order_counts: OrderCounts | None = None
    bytes_sent: int = 0
    peak_party_rss: int = 0

    def statistic(self, stat: MpcStatistic) -> tuple[float, ...]:
        """The values of one statistic.

        Raises:
            KeyError: the job did not compute it.
        """
        return dict(self.statistics)[stat.value]
