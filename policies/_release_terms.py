"""The release terms of a policy version: what may leave a computation, per classification.

A policy pack's ``data.json`` holds them under ``vocab.release``::

    "release": {
      "min_cohort": {"general": 3, "important": 5, "core": 5},
      "order_statistics": {"general": "exact", "important": "dp", "core": "refuse"},
      "order_dp_epsilon": 1.0,
      "coarsen_step": 1.0,                       (only needed for "coarsen")
      "dominance": [{"n": 1, "k": 85}],
      "dominance_classifications": ["core"],     (optional; default: every classification)
      "epsilon_budget_per_consent": 10.0
    }

``dominance`` rules always govern a ``dominance_check``; they also govern sums
and means of the classifications in ``dominance_classifications`` (those run
on MPC, which can check them). :class:`ReleaseTerms` is plain data: the
exchange turns it into the privacy-compute package's release policy
(``policies`` imports only ``core``).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

from core.canonical import JsonValue
from policies.errors import PolicyInputError

__all__ = ["OrderStatistics", "ReleaseTerms", "release_terms_of"]

DEFAULT_MIN_COHORT = 5
"""A classification the release terms do not name gets this minimum cohort."""


class OrderStatistics(enum.StrEnum):
    """How min, max, median and quartiles of a classification leave a computation."""

    REFUSE = "refuse"
    EXACT = "exact"
    DP = "dp"
    COARSEN = "coarsen"


@dataclass(frozen=True)
class ReleaseTerms:
    """The release terms for one classification under one policy version.

    ``dominance`` are ``(n, k)`` rules: the ``n`` largest contributors may
    make up at most ``k`` percent of a released total. ``dominance_on_sums``
    says whether they govern this classification's sums and means too (not
    only ``dominance_check``). ``policy_version`` is the hash of the version
    they were read from.
    """

    classification: str
    min_cohort: int
    order_statistics: OrderStatistics
    order_dp_epsilon: float
    dominance: tuple[tuple[int, float], ...]
    dominance_on_sums: bool
    epsilon_budget_per_consent: float | None
    policy_version: str
    coarsen_step: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.min_cohort, bool) or self.min_cohort < 2:
            raise PolicyInputError("release terms: min_cohort must be an integer of at least 2")
        if not (math.isfinite(self.order_dp_epsilon) and self.order_dp_epsilon > 0):
            raise PolicyInputError("release terms: order_dp_epsilon must be positive")
        if self.order_statistics is OrderStatistics.COARSEN and not (
            self.coarsen_step is not None and self.coarsen_step > 0
        ):
            raise PolicyInputError("release terms: coarsened order statistics need coarsen_step")
        budget = self.epsilon_budget_per_consent
        if budget is not None and not (math.isfinite(budget) and budget > 0):
            raise PolicyInputError("release terms: epsilon_budget_per_consent must be positive")

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form (kept with a job, so it is judged by the terms it was authorized under)."""
        return {
            "classification": self.classification,
            "min_cohort": self.min_cohort,
            "order_statistics": self.order_statistics.value,
            "order_dp_epsilon": self.order_dp_epsilon,
            "dominance": [[n, k] for n, k in self.dominance],
            "dominance_on_sums": self.dominance_on_sums,
            "epsilon_budget_per_consent": self.epsilon_budget_per_consent,
            "policy_version": self.policy_version,
            "coarsen_step": self.coarsen_step,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, JsonValue]) -> ReleaseTerms:
        """Inverse of :meth:`to_dict`.

        Raises:
            PolicyInputError: malformed terms.
        """
        try:
            dominance = obj["dominance"]
            assert isinstance(dominance, list)
            budget = obj.get("epsilon_budget_per_consent")
            step = obj.get("coarsen_step")
            return cls(
                classification=str(obj["classification"]),
                min_cohort=int(str(obj["min_cohort"])),
                order_statistics=OrderStatistics(str(obj["order_statistics"])),
                order_dp_epsilon=float(str(obj["order_dp_epsilon"])),
                dominance=tuple(_rule(r) for r in dominance),
                dominance_on_sums=bool(obj["dominance_on_sums"]),
                epsilon_budget_per_consent=None if budget is None else float(str(budget)),
                policy_version=str(obj["policy_version"]),
                coarsen_step=None if step is None else float(str(step)),
            )
        except (KeyError, ValueError, AssertionError, TypeError) as exc:
            raise PolicyInputError(f"release terms: {exc}") from exc


def _rule(value: JsonValue) -> tuple[int, float]:
    if isinstance(value, dict):
        n, k = value.get("n"), value.get("k")
    elif isinstance(value, list) and len(value) == 2:
        n, k = value
    else:
        raise PolicyInputError("a dominance rule is {n, k}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PolicyInputError("a dominance rule's n is a positive integer")
    if isinstance(k, bool) or not isinstance(k, int | float) or not 0 < k <= 100:
        raise PolicyInputError("a dominance rule's k is a percentage in (0, 100]")
    return n, float(k)


def _per_class(value: JsonValue | None, classification: str) -> JsonValue | None:
    """A per-classification member: a mapping by classification, or one value for all."""
    if isinstance(value, dict):
        return value.get(classification)
    return value


def release_terms_of(
    vocabulary: Mapping[str, JsonValue], classification: str, *, version: str
) -> ReleaseTerms:
    """The release terms for ``classification`` in a pack's vocabulary.

    A pack without ``vocab.release`` gets the strict defaults: a minimum
    cohort of :data:`DEFAULT_MIN_COHORT`, order statistics refused, no
    dominance rule, no per-consent budget.

    Raises:
        PolicyInputError: the release terms are malformed.
    """
    release = vocabulary.get("release")
    if release is None:
        release = {}
    if not isinstance(release, dict):
        raise PolicyInputError("vocab.release must be an object")
    min_cohort = _per_class(release.get("min_cohort"), classification)
    order = _per_class(release.get("order_statistics"), classification)
    epsilon = release.get("order_dp_epsilon", 1.0)
    step = _per_class(release.get("coarsen_step"), classification)
    rules = release.get("dominance") or []
    applies = release.get("dominance_classifications")
    budget = release.get("epsilon_budget_per_consent")
    if not isinstance(rules, list):
        raise PolicyInputError("vocab.release.dominance must be a list of {n, k}")
    if applies is not None and not isinstance(applies, list):
        raise PolicyInputError("vocab.release.dominance_classifications must be a list")
    try:
        return ReleaseTerms(
            classification=classification,
            min_cohort=DEFAULT_MIN_COHORT if min_cohort is None else int(str(min_cohort)),
            order_statistics=OrderStatistics(str(order or "refuse")),
            order_dp_epsilon=float(str(epsilon)),
            dominance=tuple(_rule(r) for r in rules),
            dominance_on_sums=applies is None or classification in applies,
            epsilon_budget_per_consent=None if budget is None else float(str(budget)),
            policy_version=version,
            coarsen_step=None if step is None else float(str(step)),
        )
    except ValueError as exc:
        raise PolicyInputError(f"vocab.release: {exc}") from exc
