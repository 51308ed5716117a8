"""What a release is computed over: never a label, always the exact description.

A :class:`ReleaseQuery` names the dataset, the fields, the row filters, the
statistics and the exact contributor set with each contributor's weight. The
release guard tracks releases by it (:mod:`mpc._disclosure`), fingerprints it
to recognise a repeated question (the same noisy answer comes back), and
stores it with the approval so the enterprise and auditors can see what was
computed over their data.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from core.canonical import canonical_bytes

__all__ = ["ReleaseQuery", "ReleaseSubject", "StatisticKind"]

logger = logging.getLogger(__name__)

_MAX_NAME = 200


class StatisticKind(enum.Enum):
    """What a release computes; linear ones are weighted sums over the contributors."""

    COUNT = "count"
    SUM = "sum"
    MEAN = "mean"
    WEIGHTED_SUM = "weighted_sum"
    VARIANCE = "variance"
    HISTOGRAM = "histogram"
    REGRESSION = "regression"
    MIN = "min"
    MAX = "max"
    MEDIAN = "median"
    QUANTILES = "quantiles"

    @property
    def is_order(self) -> bool:
        """Min, max, median and quantiles: each is one contributor's value."""
        return self in _ORDER


_ORDER = frozenset(
    {StatisticKind.MIN, StatisticKind.MAX, StatisticKind.MEDIAN, StatisticKind.QUANTILES}
)


def _name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_NAME:
        raise ValueError(f"{what} must be a non-empty name of at most {_MAX_NAME} characters")
    return value


@dataclass(frozen=True)
class ReleaseSubject:
    """The data a release reads: dataset, fields, row filters and their classification.

    ``filters`` are ``(field, condition)`` pairs (e.g. ``("period", "2026-Q3")``);
    they are kept in sorted order, so the same filters written in another
    order describe the same subject. The guard treats a contributor's value
    under any filter as the same unknown (ADR 0006), so filters never let a
    requester escape the differencing check; they do tell a repeated
    question from a new one (another period is another question).
    """

    dataset: str
    fields: tuple[str, ...]
    filters: tuple[tuple[str, str], ...] = ()
    classification: str = "internal"

    def __post_init__(self) -> None:
        _name(self.dataset, "dataset")
        _name(self.classification, "classification")
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise ValueError("a release reads at least one field, each named once")
        for name in self.fields:
            _name(name, "field")
        for pair in self.filters:
            if len(pair) != 2 or not isinstance(pair[1], str):
                raise ValueError("a filter is a (field, condition) pair of strings")
            _name(pair[0], "filter field")
        object.__setattr__(self, "filters", tuple(sorted(self.filters)))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (part of the query's canonical description)."""
        return {
            "dataset": self.dataset,
            "fields": list(self.fields),
            "filters": [list(pair) for pair in self.filters],
            "classification": self.classification,
        }


def _fraction(value: Fraction | float | int) -> Fraction:
    if isinstance(value, bool):
        raise ValueError("a weight is a number")
    fraction = Fraction(value)  # a float's exact binary value
    if fraction == 0:
        raise ValueError("a zero weight leaves a contributor out while counting it in")
    return fraction


@dataclass(frozen=True)
class ReleaseQuery:
    """One release: its subject, statistics, and every contributor with its weight.

    ``weights`` are ``(contributor, weight)`` pairs sorted by contributor;
    a plain count, sum or mean has weight 1 for everyone (a mean's ``1/n``
    does not change which combinations can be solved). ``parameters`` are
    the statistic's public parameters (histogram edges, quantile levels),
    as ``(name, value)`` strings.
    """

    subject: ReleaseSubject
    statistics: tuple[StatisticKind, ...]
    weights: tuple[tuple[str, Fraction], ...]
    parameters: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.subject, ReleaseSubject):
            raise ValueError("a release is described by a ReleaseSubject, not a label")
        if not self.statistics or len(set(self.statistics)) != len(self.statistics):
            raise ValueError("a release computes at least one statistic, each once")
        names = [name for name, _ in self.weights]
        if not names or len(set(names)) != len(names):
            raise ValueError("a release has contributors, each named once")
        for name, weight in self.weights:
            _name(name, "contributor")
            if not isinstance(weight, Fraction) or weight == 0:
                raise ValueError("weights are non-zero Fractions")
        object.__setattr__(self, "weights", tuple(sorted(self.weights)))
        object.__setattr__(self, "parameters", tuple(sorted(self.parameters)))

    @classmethod
    def uniform(
        cls,
        subject: ReleaseSubject,
        statistics: Iterable[StatisticKind],
        contributors: Iterable[str],
        parameters: Iterable[tuple[str, str]] = (),
    ) -> ReleaseQuery:
        """Every contributor weighs the same (count, sum, mean, variance, histogram, ...).

        Raises:
            ValueError: no contributors or statistics, or a malformed name.
        """
        return cls(
            subject,
            tuple(statistics),
            tuple((name, Fraction(1)) for name in contributors),
            tuple(parameters),
        )

    @classmethod
    def weighted(
        cls,
        subject: ReleaseSubject,
        weights: Mapping[str, Fraction | float | int],
        parameters: Iterable[tuple[str, str]] = (),
    ) -> ReleaseQuery:
        """A weighted sum with public per-contributor weights.

        Raises:
            ValueError: no contributors, a zero or non-numeric weight.
        """
        return cls(
            subject,
            (StatisticKind.WEIGHTED_SUM,),
            tuple((name, _fraction(w)) for name, w in weights.items()),
            tuple(parameters),
        )

    @property
    def contributors(self) -> frozenset[str]:
        """Who the release is computed over."""
        return frozenset(name for name, _ in self.weights)

    @property
    def linear(self) -> bool:
        """Whether any statistic is a linear combination of the contributors' values."""
        return any(not kind.is_order for kind in self.statistics)

    @property
    def order_statistics(self) -> tuple[StatisticKind, ...]:
        """The order statistics among the release's statistics."""
        return tuple(kind for kind in self.statistics if kind.is_order)

    def weight_share(self) -> float:
        """The largest contributor's share of the total absolute weight."""
        magnitudes = [abs(w) for _, w in self.weights]
        return float(max(magnitudes) / sum(magnitudes))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready canonical form (weights as exact ``numerator/denominator`` strings)."""
        return {
            "subject": self.subject.to_dict(),
            "statistics": sorted(kind.value for kind in self.statistics),
            "weights": [[name, f"{w.numerator}/{w.denominator}"] for name, w in self.weights],
            "parameters": [list(pair) for pair in self.parameters],
        }

    def fingerprint(self) -> str:
        """Hex SHA-256 of the RFC 8785 form: the same question has the same fingerprint."""
        return hashlib.sha256(canonical_bytes(self.to_dict())).hexdigest()
