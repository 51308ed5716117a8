"""The release guard: what may leave a computation.

The adversary is the requester's *group* (``ReleaseRequest.adversary``: by
default every sub-brain of one industry, :func:`industry_group`): whatever
was released to one member is known to all. Every release is described by
what it is computed over (:class:`~mpc.release_query.ReleaseQuery`), never
by a label, and the guard refuses:

* a result over fewer contributors than the strictest minimum cohort (the
  policy's and every consent's), and any per-enterprise value;
* a weighted release where one contributor's weight is more than the
  policy's share of the total (by default twice an equal share at the
  minimum cohort);
* a linear release (count, sum, mean, weighted sum, histogram, variance,
  regression) that, with everything already released to the group about
  the same field, lets one contributor's value, a difference of two, or an
  aggregate over fewer than the minimum cohort be solved exactly, whatever
  the chain of releases (:mod:`mpc._disclosure`; the reduced form is stored
  in the approval's transaction);
* an exact order statistic (min, max, median, quartiles: each is one
  contributor's value) unless the policy releases it with differential
  privacy (OpenDP's quantile mechanism over a public grid,
  :mod:`mpc.dp_order`), coarsens it, or allows it exactly for the data's
  classification;
* a total that the (n, k) dominance rule suppresses — computed inside MPC;
  an engine that cannot check dominance (HE) is never used for such a
  policy (:func:`choose_engine`, and the key custodian refuses it).

Differential privacy adds OpenDP noise (or, for order statistics, lets
OpenDP choose a grid candidate from counts opened in MPC) and always
charges a budget: every consent's (its own, or the policy's default) and
the group's per dataset. The same question asked again returns the stored
noisy answer and charges nothing, so averaging repeated answers gains
nothing. Histogram bins with fewer than the minimum cohort are suppressed.
The requester learns how many contributors were left out; who and why stay
in the approval row.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from core.clock import format_rfc3339, utcnow
from core.db import Database
from mpc import _dp_release as _dp
from mpc._disclosure import LinearTracker
from mpc._dp_release import DpMechanism, DpPolicy
from mpc._release_history import ReleaseHistory, TrackerSlot
from mpc._tables import ReleaseRow
from mpc.dp_order import DpOrderPolicy, OrderCounts
from mpc.errors import (
    CohortTooSmallError,
    DifferencingError,
    DominanceError,
    EngineChoiceError,
    IndividualValueError,
    LinearDisclosureError,
    OrderStatisticError,
    ReleaseDescriptionError,
    WeightShareError,
)
from mpc.release_query import ReleaseQuery, ReleaseSubject, StatisticKind

__all__ = [
    "HARD_MIN_COHORT",
    "ConsentTerms",
    "DominanceRule",
    "DominanceVerdict",
    "DpMechanism",
    "DpPolicy",
    "Engine",
    "OrderRelease",
    "ReleaseApproval",
    "ReleaseGuard",
    "ReleasePolicy",
    "ReleaseRequest",
    "choose_engine",
    "industry_group",
]

logger = logging.getLogger(__name__)

HARD_MIN_COHORT = 2
"""No policy may go below this: one contributor's result is its own value."""


class Engine(enum.Enum):
    """Which privacy-compute engine runs a job."""

    HE = "he"
    MPC = "mpc"
    AUTO = "auto"


class OrderRelease(enum.Enum):
    """How a policy lets order statistics (min, max, median, quartiles) out."""

    REFUSE = "refuse"
    """Never (the default): each is one contributor's value."""
    COARSEN = "coarsen"
    """Rounded to the policy's ``coarsen_step``."""
    EXACT = "exact"
    """Exactly, for the classifications in ``exact_order_classifications`` only."""
    DP = "dp"
    """A grid candidate chosen by OpenDP's quantile mechanism (``order_dp``); never exact."""


@dataclass(frozen=True)
class DominanceRule:
    """Suppress a total when its ``n`` largest contributors exceed ``k`` percent of it."""

    n: int
    k: float

    def __post_init__(self) -> None:
        if self.n < 1 or not (0 < self.k <= 100):
            raise ValueError("dominance needs n >= 1 and 0 < k <= 100")


@dataclass(frozen=True)
class ReleasePolicy:
    """The policy's release terms.

    ``max_weight_share`` bounds one contributor's share of a weighted
    release's total absolute weight (default: twice an equal share at the
    minimum cohort, ``2 / min_cohort``). ``order_statistics`` says how min,
    max, median and quartiles leave: never (default), with differential
    privacy on the terms of ``order_dp``, rounded to ``coarsen_step``, or
    exactly for ``exact_order_classifications``.
    """

    min_cohort: int = 5
    dominance: tuple[DominanceRule, ...] = ()
    dp: DpPolicy | None = None
    max_weight_share: float | None = None
    order_statistics: OrderRelease = OrderRelease.REFUSE
    coarsen_step: float | None = None
    exact_order_classifications: frozenset[str] = frozenset()
    order_dp: DpOrderPolicy | None = None

    def __post_init__(self) -> None:
        if self.min_cohort < HARD_MIN_COHORT:
            raise ValueError(f"min_cohort must be at least {HARD_MIN_COHORT}")
        if self.max_weight_share is not None and not (0 < self.max_weight_share <= 1):
            raise ValueError("max_weight_share must be in (0, 1]")
        step = self.coarsen_step
        if self.order_statistics is OrderRelease.COARSEN and not (
            step is not None and math.isfinite(step) and step > 0
        ):
            raise ValueError("coarsened order statistics need a positive coarsen_step")
        if self.order_statistics is OrderRelease.EXACT and not self.exact_order_classifications:
            raise ValueError("exact order statistics need the classifications that allow them")
        if (self.order_statistics is OrderRelease.DP) != (self.order_dp is not None):
            raise ValueError("order_dp sets the terms of, and only of, OrderRelease.DP")

    @property
    def weight_share_limit(self) -> float:
        """The largest share of the total weight one contributor may have."""
        if self.max_weight_share is not None:
            return self.max_weight_share
        return min(1.0, 2 / self.min_cohort)


@dataclass(frozen=True)
class ConsentTerms:
    """What one contributor's consent says about releases of its data."""

    consent_id: str
    contributor: str
    min_cohort: int = HARD_MIN_COHORT
    epsilon_budget: float | None = None


def industry_group(industry: str) -> str:
    """The default adversary group: every sub-brain of ``industry`` (they share results).

    Raises:
        ValueError: an empty industry name.
    """
    if not industry:
        raise ValueError("an industry group needs the industry's name")
    return f"industry:{industry}"


@dataclass(frozen=True)
class ReleaseRequest:
    """One result a requester asks for, with the terms that govern it.

    ``adversary`` is the group the requester belongs to, computed by the
    caller from a documented rule (:func:`industry_group` by default): the
    guard treats every release to the group as known to each member.
    ``subject`` is what the result reads (dataset, fields, filters).
    """

    job_id: str
    requester: str
    adversary: str
    subject: ReleaseSubject
    policy: ReleasePolicy
    consents: tuple[ConsentTerms, ...] = ()

    def __post_init__(self) -> None:
        if not self.job_id or not self.requester or not self.adversary:
            raise ValueError("a release request names its job, requester and requester group")
        if not isinstance(self.subject, ReleaseSubject):
            raise ValueError("a release is described by a ReleaseSubject, not a label")
        if not isinstance(self.policy, ReleasePolicy):
            raise ValueError("a release request carries its ReleasePolicy")

    @property
    def min_cohort(self) -> int:
        """The strictest of the policy's and the consents' minimum cohorts."""
        return max([self.policy.min_cohort, *(c.min_cohort for c in self.consents)])


@dataclass(frozen=True)
class ReleaseApproval:
    """The guard's approval of one job's cohort (also stored, for the custodian).

    ``left_out`` is how many contributors were left out: the requester may
    learn that count, never who or why (the approval row keeps the detail
    for the enterprise and auditors).
    """

    job_id: str
    contributors: frozenset[str]
    min_cohort: int
    left_out: int = 0
    fingerprint: str = ""


@dataclass(frozen=True)
class DominanceVerdict:
    """Per rule, whether the hidden total is dominated (computed inside MPC)."""

    rules: tuple[DominanceRule, ...]
    dominated: tuple[bool, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.rules) != len(self.dominated):
            raise ValueError("one verdict per dominance rule")


def choose_engine(policy: ReleasePolicy, requested: Engine) -> Engine:
    """The engine that runs a job under ``policy``.

    Raises:
        EngineChoiceError: HE requested where the policy needs comparisons (dominance).
    """
    needs_mpc = bool(policy.dominance)
    if requested is Engine.AUTO:
        return Engine.MPC if needs_mpc else Engine.HE
    if requested is Engine.HE and needs_mpc:
        raise EngineChoiceError(
            "the policy applies the (n, k) dominance rule, which needs comparisons on hidden "
            "values: use the mpc engine (or auto)"
        )
    return requested


class ReleaseGuard:
    """Approves releases against the group's history, checks dominance, adds charged DP noise."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._history = ReleaseHistory()

    def approve(
        self,
        request: ReleaseRequest,
        query: ReleaseQuery,
        *,
        left_out: Mapping[str, str] | None = None,
        result_labels: Sequence[str] = (),
        per_contributor: bool = False,
        session: Session | None = None,
    ) -> ReleaseApproval:
        """Approve releasing ``query``'s result to the request's group, and remember it.

        ``left_out`` maps each contributor left out of the job to the reason
        (kept in the approval row; the approval carries only the count). With
        ``session`` the approval, the group's reduced forms and the row are
        written inside the caller's transaction (the key custodian's, so
        approval and decryption commit together); otherwise in one of its own.

        Raises:
            ReleaseDescriptionError: the query reads another subject than the request's,
                or counts a left-out contributor in.
            IndividualValueError: a per-enterprise result, or a label naming a contributor.
            CohortTooSmallError: fewer contributors than the strictest minimum.
            WeightShareError: one contributor's weight is too large a share.
            OrderStatisticError: an exact order statistic the policy does not allow.
            DifferencingError: the job was already released.
            LinearDisclosureError: with everything released to the group, the release
                pins down one contributor's value, a difference of two, or an aggregate
                over fewer than the minimum cohort.
        """
        left = dict(left_out or {})
        minimum = self._check(request, query, left, result_labels, per_contributor)
        if session is None:
            with self._db.write() as own:
                return self._remember(own, request, query, left, minimum)
        return self._remember(session, request, query, left, minimum)

    @staticmethod
    def _check(
        request: ReleaseRequest,
        query: ReleaseQuery,
        left_out: Mapping[str, str],
        result_labels: Sequence[str],
        per_contributor: bool,
    ) -> int:
        if query.subject != request.subject:
            raise ReleaseDescriptionError("the release reads another subject than requested")
        contributors = query.contributors
        if contributors & set(left_out):
            raise ReleaseDescriptionError("a contributor is both counted in and left out")
        if per_contributor:
            raise IndividualValueError("per-enterprise values are never released")
        if any(label in contributors for label in result_labels):
            raise IndividualValueError("the result is labelled with a contributor's name")
        minimum = request.min_cohort
        if len(contributors) < minimum:
            raise CohortTooSmallError(
                f"{len(contributors)} contributors, the minimum cohort is {minimum}",
                cohort=len(contributors),
                minimum=minimum,
            )
        share, limit = query.weight_share(), request.policy.weight_share_limit
        if share > limit + 1e-12:
            raise WeightShareError(
                f"one contributor carries {share:.0%} of the release's total weight, "
                f"more than the policy's {limit:.0%}",
                share=share,
                limit=limit,
            )
        ReleaseGuard.check_order_statistics(request, query.statistics)
        return minimum

    def _remember(
        self,
        session: Session,
        request: ReleaseRequest,
        query: ReleaseQuery,
        left_out: Mapping[str, str],
        minimum: int,
    ) -> ReleaseApproval:
        if session.get(ReleaseRow, request.job_id) is not None:
            raise DifferencingError(f"job {request.job_id!r} was already released")
        if query.linear:
            self._track(session, request, query, minimum)
        fingerprint = query.fingerprint()
        session.add(
            ReleaseRow(
                job_id=request.job_id,
                requester=request.requester,
                adversary=request.adversary,
                fingerprint=fingerprint,
                query_json=json.dumps(query.to_dict()),
                cohort_json=json.dumps(sorted(query.contributors)),
                left_out_json=json.dumps(sorted([who, why] for who, why in left_out.items())),
                min_cohort=minimum,
                approved_at=format_rfc3339(utcnow()),
            )
        )
        logger.info(
            "release of job %s to %s approved (cohort %d, %d left out)",
            request.job_id,
            request.adversary,
            len(query.contributors),
            len(left_out),
        )
        return ReleaseApproval(
            request.job_id, query.contributors, minimum, len(left_out), fingerprint
        )

    def _track(
        self, session: Session, request: ReleaseRequest, query: ReleaseQuery, minimum: int
    ) -> None:
        """Add the query's weight vector to the group's form for every field it reads."""
        weights = dict(query.weights)
        updates: list[tuple[TrackerSlot, LinearTracker]] = []
        for name in query.subject.fields:
            slot = self._history.tracker(session, request.adversary, query.subject.dataset, name)
            after = slot.tracker.with_row(weights)
            disclosed = after.disclosure()
            small = after.smallest_support()
            if disclosed is not None or (small is not None and small < minimum):
                what = (
                    disclosed.describe()
                    if disclosed is not None
                    else f"an aggregate over {small} contributors, below the minimum {minimum}"
                )
                logger.info(
                    "release of job %s to %s refused: it would disclose %s of %s.%s",
                    request.job_id,
                    request.adversary,
                    what,
                    query.subject.dataset,
                    name,
                )
                raise LinearDisclosureError(
                    f"with the {slot.releases} earlier releases to {request.adversary} about "
                    f"{query.subject.dataset}.{name}, this release would let {what} be solved",
                    releases=slot.releases,
                )
            updates.append((slot, after))
        for slot, after in updates:
            self._history.store_tracker(session, slot, after, weights)

    def approval(self, job_id: str, *, session: Session | None = None) -> ReleaseApproval | None:
        """The stored approval of ``job_id``, if any (read in ``session`` when given)."""
        if session is None:
            with self._db.read() as own:
                return self._stored(own, job_id)
        return self._stored(session, job_id)

    @staticmethod
    def _stored(session: Session, job_id: str) -> ReleaseApproval | None:
        row = session.get(ReleaseRow, job_id)
        if row is None:
            return None
        return ReleaseApproval(
            row.job_id,
            frozenset(json.loads(row.cohort_json)),
            row.min_cohort,
            len(json.loads(row.left_out_json)),
            row.fingerprint,
        )

    @staticmethod
    def check_dominance(policy: ReleasePolicy, verdict: DominanceVerdict) -> None:
        """Refuse a total the policy's dominance rules suppress.

        Raises:
            DominanceError: a rule is dominated, or the verdict misses a rule of the policy.
        """
        for rule in policy.dominance:
            if rule not in verdict.rules:
                raise DominanceError(f"no verdict for dominance rule n={rule.n}, k={rule.k:g}")
            if verdict.dominated[verdict.rules.index(rule)]:
                raise DominanceError(
                    f"the {rule.n} largest contributors make up more than {rule.k:g}% of the total"
                )

    @staticmethod
    def check_order_statistics(
        request: ReleaseRequest, statistics: Iterable[StatisticKind]
    ) -> None:
        """Refuse exact order statistics the policy does not let out (call before computing).

        Raises:
            OrderStatisticError: an exact min, max, median or quantile, and the policy
                neither coarsens them nor allows them for the data's classification.
        """
        if not any(kind.is_order for kind in statistics):
            return
        policy = request.policy
        classification = request.subject.classification
        if policy.order_statistics in (OrderRelease.COARSEN, OrderRelease.DP):
            return
        if (
            policy.order_statistics is OrderRelease.EXACT
            and classification in policy.exact_order_classifications
        ):
            logger.warning("job %s: exact order statistics released by policy", request.job_id)
            return
        raise OrderStatisticError(_ORDER_REFUSAL.format(classification=classification))

    @staticmethod
    def release_order_statistics(
        request: ReleaseRequest, values: Sequence[float]
    ) -> tuple[float, ...]:
        """The order statistics ``values`` as the policy lets them out.

        Raises:
            OrderStatisticError: the policy does not let exact order statistics of this
                classification out (under ``OrderRelease.DP`` an opened value never
                leaves: the job must open only counts, see
                :meth:`release_dp_order_statistics`).
        """
        policy = request.policy
        if policy.order_statistics is OrderRelease.DP:
            raise OrderStatisticError(
                "the policy releases order statistics with differential privacy only: "
                "an exact value never leaves"
            )
        if policy.order_statistics is OrderRelease.COARSEN:
            assert policy.coarsen_step is not None  # checked by ReleasePolicy
            step = policy.coarsen_step
            return tuple(float(round(v / step) * step) for v in values)
        classification = request.subject.classification
        if (
            policy.order_statistics is OrderRelease.EXACT
            and classification in policy.exact_order_classifications
        ):
            return tuple(float(v) for v in values)
        raise OrderStatisticError(_ORDER_REFUSAL.format(classification=classification))

    @staticmethod
    def suppress_small_bins(
        request: ReleaseRequest, counts: Sequence[float]
    ) -> tuple[float | None, ...]:
        """Histogram counts with every bin under the minimum cohort suppressed (None).

        A bin of 1 to ``min_cohort - 1`` contributors is suppressed; when only
        one bin would be, the next smallest non-zero bin is too, so the
        suppressed count cannot be recovered from the cohort size.
        """
        minimum = request.min_cohort
        out: list[float | None] = [float(c) for c in counts]
        small = [i for i, c in enumerate(counts) if 0 < c < minimum]
        if len(small) == 1:
            rest = [(c, i) for i, c in enumerate(counts) if c > 0 and i not in small]
            if rest:
                small.append(min(rest)[1])
        for i in small:
            out[i] = None
        return tuple(out)

    def check_budget(
        self, request: ReleaseRequest, query: ReleaseQuery, *, bound: float | None = None
    ) -> None:
        """Refuse early (before anything is decrypted) when a budget cannot cover the release.

        A question already answered with noise costs nothing (its answer is reused).
        With ``bound`` (an MPC job's) the differentially private order statistics
        of ``query`` are checked too, against the policy's grid for that bound.

        Raises:
            PrivacyBudgetExhaustedError: a consent's or the group's budget would be exceeded.
            ValueError: the policy's order-statistics grid does not fit ``bound``.
        """
        _dp.check_budget(self._db, request, query, bound)

    def release_dp_order_statistics(
        self, request: ReleaseRequest, query: ReleaseQuery, counts: OrderCounts, *, bound: float
    ) -> tuple[tuple[float, ...], ...]:
        """The query's order statistics, each a grid candidate chosen by OpenDP; budgets charged.

        ``counts`` are what the MPC parties opened for the policy's grid at the
        job's ``bound`` (never the values themselves). One tuple per order
        statistic of the query, in its order (quartiles have three values).
        The same question (query fingerprint, epsilon and grid) asked again by
        the group gets the stored answer and is charged nothing.

        Raises:
            OrderStatisticError: the policy does not release order statistics with DP.
            ReleaseDescriptionError: the counts are for another grid or cohort than the
                policy's and the query's, or the question was answered before in
                another shape.
            PrivacyBudgetExhaustedError: a consent's or the group's budget would be
                exceeded (nothing charged).
            ValueError: the policy's grid does not fit ``bound``.
        """
        terms = request.policy.order_dp
        if request.policy.order_statistics is not OrderRelease.DP or terms is None:
            raise OrderStatisticError("the policy does not release DP order statistics")
        return _dp.order_answer(self._db, request, terms, query, counts, bound)

    def add_noise(
        self,
        request: ReleaseRequest,
        query: ReleaseQuery,
        values: Sequence[float],
        *,
        sensitivity: float,
    ) -> tuple[float, ...]:
        """Noise ``values`` per the policy's DP terms and charge the budgets.

        ``sensitivity`` is the L1 (Laplace) or L2 (Gaussian) sensitivity of the
        whole vector. The same question (same query fingerprint and noise
        terms) asked again by the same group returns the answer it got the
        first time and charges nothing. Without DP terms the values come back
        unchanged.

        Raises:
            PrivacyBudgetExhaustedError: a consent's or the group's budget would be
                exceeded (nothing charged).
            ReleaseDescriptionError: the same question was answered with another number
                of values.
            ValueError: a non-positive sensitivity.
        """
        return _dp.noisy_answer(self._db, request, query, values, sensitivity)


_ORDER_REFUSAL = (
    "an exact minimum, maximum, median or quantile is one contributor's value: the "
    "policy must release order statistics with differential privacy, coarsen them, or "
    "allow them exactly for {classification!r} data"
)
