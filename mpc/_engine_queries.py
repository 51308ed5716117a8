"""The release description of each engine's job: what the requester would learn, over whom.

The key custodian builds an HE job's :class:`~mpc.release_query.ReleaseQuery`
from the job's own spec (its operation, public weights and bin edges), so a
caller cannot describe a weighted sum as a plain one; MPC callers build
theirs from the job spec and the cohort the parties agreed on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from fractions import Fraction

from mpc.he import HeJobSpec, HeOperation
from mpc.mpc_spec import MpcJobSpec, MpcStatistic
from mpc.release_query import ReleaseQuery, ReleaseSubject, StatisticKind

__all__ = ["he_query", "mpc_query", "mpc_statistics"]

logger = logging.getLogger(__name__)

_HE_KINDS = {
    HeOperation.COUNT: StatisticKind.COUNT,
    HeOperation.SUM: StatisticKind.SUM,
    HeOperation.MEAN: StatisticKind.MEAN,
    HeOperation.VARIANCE: StatisticKind.VARIANCE,
    HeOperation.HISTOGRAM: StatisticKind.HISTOGRAM,
    HeOperation.WEIGHTED_SUM: StatisticKind.WEIGHTED_SUM,
    HeOperation.LINEAR_REGRESSION: StatisticKind.REGRESSION,
}

_MPC_KINDS = {
    MpcStatistic.COUNT: StatisticKind.COUNT,
    MpcStatistic.SUM: StatisticKind.SUM,
    MpcStatistic.MEAN: StatisticKind.MEAN,
    MpcStatistic.VARIANCE: StatisticKind.VARIANCE,
    MpcStatistic.MIN: StatisticKind.MIN,
    MpcStatistic.MAX: StatisticKind.MAX,
    MpcStatistic.MEDIAN: StatisticKind.MEDIAN,
    MpcStatistic.QUARTILES: StatisticKind.QUANTILES,
}


def he_query(subject: ReleaseSubject, spec: HeJobSpec, contributors: Iterable[str]) -> ReleaseQuery:
    """What an HE job over ``contributors`` releases, weights and bin edges included.

    Raises:
        ValueError: no contributors, or a zero weight.
        InvalidContributionError: a weighted sum without a weight for a contributor.
    """
    names = sorted(contributors)
    parameters: list[tuple[str, str]] = [("length", str(spec.length))]
    if spec.operation is HeOperation.HISTOGRAM:
        parameters.append(("bins", ",".join(repr(b) for b in spec.bins)))
    if spec.operation is HeOperation.WEIGHTED_SUM:
        weights = {name: Fraction(spec.weight_of(name)) for name in names}
        return ReleaseQuery.weighted(subject, weights, parameters)
    return ReleaseQuery.uniform(subject, (_HE_KINDS[spec.operation],), names, parameters)


def mpc_query(
    subject: ReleaseSubject, spec: MpcJobSpec, contributors: Iterable[str]
) -> ReleaseQuery:
    """What an MPC job's statistics over ``contributors`` release.

    Raises:
        ValueError: no contributors or no statistics.
    """
    return ReleaseQuery.uniform(subject, mpc_statistics(spec), sorted(contributors))


def mpc_statistics(spec: MpcJobSpec) -> tuple[StatisticKind, ...]:
    """The kinds of the statistics an MPC job releases (to check a policy before it runs)."""
    return tuple(_MPC_KINDS[stat] for stat in spec.statistics)
