"""What an MPC job computes and what it returns.

Each contributor provides one value. The requester learns only the named
statistics (and the dominance verdict); with ``percentile_ranks`` each
contributor also learns its own rank: the parties sort (value, secret random
tag) pairs and open only the tags, which only their owners can recognise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mpc.guard import DominanceRule, DominanceVerdict

__all__ = ["MpcJobSpec", "MpcResult", "MpcStatistic"]


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
    """

    job_id: str
    statistics: tuple[MpcStatistic, ...] = (MpcStatistic.MEAN,)
    percentile_ranks: bool = False
    dominance: tuple[DominanceRule, ...] = ()
    min_cohort: int = 3

    def __post_init__(self) -> None:
        if not self.job_id or len(self.job_id) > 200 or "/" in self.job_id:
            raise ValueError("job_id must be a non-empty name without '/' (max 200 characters)")
        if self.min_cohort < 2:
            raise ValueError("min_cohort must be at least 2")
        if not self.statistics and not self.percentile_ranks and not self.dominance:
            raise ValueError("the job computes nothing")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (sent to every party)."""
        return {
            "job_id": self.job_id,
            "statistics": [s.value for s in self.statistics],
            "percentile_ranks": self.percentile_ranks,
            "dominance": [[r.n, r.k] for r in self.dominance],
            "min_cohort": self.min_cohort,
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
            assert isinstance(stats, list) and isinstance(rules, list)
            return cls(
                job_id=str(data["job_id"]),
                statistics=tuple(MpcStatistic(s) for s in stats),
                percentile_ranks=bool(data["percentile_ranks"]),
                dominance=tuple(DominanceRule(int(n), float(k)) for n, k in rules),
                min_cohort=int(str(data["min_cohort"])),
            )
        except (KeyError, TypeError, AssertionError) as exc:
            raise ValueError(f"malformed MPC job spec: {exc}") from exc


@dataclass(frozen=True)
class MpcResult:
    """What the parties agreed on and released.

    ``statistics`` maps a statistic's name to its values (quartiles have
    three); ``rank_tags`` lists the contributors' secret tags in ascending
    order of their values (each finds its own with its :class:`RankKey`);
    ``dropped`` names contributors whose input was refused, with
    the reason. ``bytes_sent`` (all parties) and ``peak_party_rss`` (the
    largest party's peak resident set, bytes) are operational figures.
    """

    job_id: str
    cohort: int
    statistics: tuple[tuple[str, tuple[float, ...]], ...]
    rank_tags: tuple[int, ...] = ()
    dominance: DominanceVerdict = field(default_factory=lambda: DominanceVerdict((), ()))
    dropped: tuple[tuple[str, str], ...] = ()
    bytes_sent: int = 0
    peak_party_rss: int = 0

    def statistic(self, stat: MpcStatistic) -> tuple[float, ...]:
        """The values of one statistic.

        Raises:
            KeyError: the job did not compute it.
        """
        return dict(self.statistics)[stat.value]
