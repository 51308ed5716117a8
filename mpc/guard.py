"""The release guard: what may leave a computation.

It refuses a result over fewer contributors than the strictest minimum cohort
(the policy's and every consent's), any per-enterprise value, a cohort that
differs from an earlier cohort of the same requester on the same question by
fewer than that minimum (differencing), and a total that the (n, k) dominance
rule suppresses — that verdict is computed inside MPC (see
:mod:`mpc.mpc_jobs`), so a policy that demands it makes ``auto`` choose MPC.
Optional differential privacy adds Laplace or Gaussian noise from OpenDP's
samplers and charges the epsilon to every consent involved, refusing once a
consent's budget would be exceeded.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import opendp.prelude as dp
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import format_rfc3339, utcnow
from core.db import Database
from mpc._tables import DpSpendRow, ReleaseRow
from mpc.errors import (
    CohortTooSmallError,
    DifferencingError,
    DominanceError,
    EngineChoiceError,
    IndividualValueError,
    PrivacyBudgetExhaustedError,
)

__all__ = [
    "ConsentTerms",
    "DominanceRule",
    "DominanceVerdict",
    "DpMechanism",
    "DpPolicy",
    "Engine",
    "ReleaseApproval",
    "ReleaseGuard",
    "ReleasePolicy",
    "ReleaseRequest",
    "choose_engine",
]

logger = logging.getLogger(__name__)

HARD_MIN_COHORT = 2
"""No policy may go below this: one contributor's result is its own value."""


class Engine(enum.Enum):
    """Which privacy-compute engine runs a job."""

    HE = "he"
    MPC = "mpc"
    AUTO = "auto"


class DpMechanism(enum.Enum):
    """OpenDP mechanisms the guard can apply."""

    LAPLACE = "laplace"
    GAUSSIAN = "gaussian"


@dataclass(frozen=True)
class DominanceRule:
    """Suppress a total when its ``n`` largest contributors exceed ``k`` percent of it."""

    n: int
    k: float

    def __post_init__(self) -> None:
        if self.n < 1 or not (0 < self.k <= 100):
            raise ValueError("dominance needs n >= 1 and 0 < k <= 100")


@dataclass(frozen=True)
class DpPolicy:
    """Noise for every released value: ``epsilon`` per release, ``delta`` for Gaussian."""

    mechanism: DpMechanism
    epsilon: float
    delta: float = 1e-6

    def __post_init__(self) -> None:
        if not (0 < self.epsilon <= 10) or not (0 < self.delta < 1e-3):
            raise ValueError("epsilon must be in (0, 10] and delta in (0, 1e-3)")


@dataclass(frozen=True)
class ReleasePolicy:
    """The policy's release terms."""

    min_cohort: int = 5
    dominance: tuple[DominanceRule, ...] = ()
    dp: DpPolicy | None = None

    def __post_init__(self) -> None:
        if self.min_cohort < HARD_MIN_COHORT:
            raise ValueError(f"min_cohort must be at least {HARD_MIN_COHORT}")


@dataclass(frozen=True)
class ConsentTerms:
    """What one contributor's consent says about releases of its data."""

    consent_id: str
    contributor: str
    min_cohort: int = HARD_MIN_COHORT
    epsilon_budget: float | None = None


@dataclass(frozen=True)
class ReleaseRequest:
    """One result a requester asks for, with the terms that govern it."""

    job_id: str
    requester: str
    question: str
    policy: ReleasePolicy
    consents: tuple[ConsentTerms, ...] = ()

    @property
    def min_cohort(self) -> int:
        """The strictest of the policy's and the consents' minimum cohorts."""
        return max([self.policy.min_cohort, *(c.min_cohort for c in self.consents)])


@dataclass(frozen=True)
class ReleaseApproval:
    """The guard's approval of one job's cohort (also stored, for the custodian)."""

    job_id: str
    contributors: frozenset[str]
    min_cohort: int


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
    """Approves cohorts, checks dominance verdicts, and adds charged DP noise."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def approve(
        self,
        request: ReleaseRequest,
        contributors: frozenset[str],
        *,
        result_labels: Sequence[str] = (),
        per_contributor: bool = False,
        session: Session | None = None,
    ) -> ReleaseApproval:
        """Approve releasing a result over ``contributors`` and remember the cohort.

        With ``session`` the approval is written inside the caller's
        transaction (the key custodian's, so approval and decryption commit
        together); otherwise in a transaction of its own.

        Raises:
            IndividualValueError: a per-enterprise result, or a label naming a contributor.
            CohortTooSmallError: fewer contributors than the strictest minimum.
            DifferencingError: too close to an earlier cohort of the same question.
        """
        minimum = request.min_cohort
        if per_contributor:
            raise IndividualValueError("per-enterprise values are never released")
        named = sorted(label for label in result_labels if label in contributors)
        if named:
            raise IndividualValueError(f"the result is labelled with contributors {named}")
        if len(contributors) < minimum:
            raise CohortTooSmallError(
                f"{len(contributors)} contributors, the minimum cohort is {minimum}",
                cohort=len(contributors),
                minimum=minimum,
            )
        if session is None:
            with self._db.write() as own:
                return self._remember(own, request, contributors, minimum)
        return self._remember(session, request, contributors, minimum)

    @staticmethod
    def _remember(
        session: Session, request: ReleaseRequest, contributors: frozenset[str], minimum: int
    ) -> ReleaseApproval:
        earlier = session.execute(
            select(ReleaseRow).where(
                ReleaseRow.requester == request.requester,
                ReleaseRow.question == request.question,
            )
        ).scalars()
        for row in earlier:
            if row.job_id == request.job_id:
                raise DifferencingError(f"job {request.job_id!r} was already released")
            cohort = frozenset(json.loads(row.cohort_json))
            differ = len(cohort ^ contributors)
            if 0 < differ < minimum:
                raise DifferencingError(
                    f"the cohort differs from release {row.job_id!r} by {differ} "
                    f"contributors, fewer than the minimum {minimum}"
                )
        session.add(
            ReleaseRow(
                job_id=request.job_id,
                requester=request.requester,
                question=request.question,
                cohort_json=json.dumps(sorted(contributors)),
                min_cohort=minimum,
                approved_at=format_rfc3339(utcnow()),
            )
        )
        logger.info("release of job %s approved (cohort %d)", request.job_id, len(contributors))
        return ReleaseApproval(request.job_id, contributors, minimum)

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
        return ReleaseApproval(row.job_id, frozenset(json.loads(row.cohort_json)), row.min_cohort)

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

    def check_budget(self, request: ReleaseRequest) -> None:
        """Refuse early (before anything is decrypted) when a budget cannot cover the release.

        Raises:
            PrivacyBudgetExhaustedError: a consent's budget would be exceeded.
        """
        if request.policy.dp is None:
            return
        with self._db.read() as session:
            _check_budgets(session, request, request.policy.dp.epsilon)

    def add_noise(
        self, request: ReleaseRequest, values: Sequence[float], *, sensitivity: float
    ) -> tuple[float, ...]:
        """Noise ``values`` per the policy's DP terms and charge every consent's budget.

        ``sensitivity`` is the L1 (Laplace) or L2 (Gaussian) sensitivity of the
        whole vector. Without DP terms the values come back unchanged.

        Raises:
            PrivacyBudgetExhaustedError: a consent's budget would be exceeded (nothing charged).
            ValueError: a non-positive sensitivity.
        """
        terms = request.policy.dp
        if terms is None:
            return tuple(values)
        if not (sensitivity > 0 and math.isfinite(sensitivity)):
            raise ValueError("sensitivity must be a positive finite number")
        measurement = _measurement(terms, sensitivity, len(values))
        with self._db.write() as session:
            _check_budgets(session, request, terms.epsilon)
            for consent in request.consents:
                if consent.epsilon_budget is None:
                    continue
                row = session.get(DpSpendRow, consent.consent_id)
                if row is None:
                    session.add(DpSpendRow(consent_id=consent.consent_id, spent=terms.epsilon))
                else:
                    row.spent += terms.epsilon
            noisy = measurement([float(v) for v in values])
        return tuple(float(v) for v in noisy)


def _check_budgets(session: Session, request: ReleaseRequest, epsilon: float) -> None:
    for consent in request.consents:
        if consent.epsilon_budget is None:
            continue
        row = session.get(DpSpendRow, consent.consent_id)
        spent = 0.0 if row is None else row.spent
        if spent + epsilon > consent.epsilon_budget + 1e-12:
            raise PrivacyBudgetExhaustedError(
                f"consent {consent.consent_id!r} has {consent.epsilon_budget - spent:g} "
                f"of its epsilon budget left, the release needs {epsilon:g}",
                consent_id=consent.consent_id,
            )


def _measurement(terms: DpPolicy, sensitivity: float, size: int) -> dp.Measurement:
    """The OpenDP measurement whose privacy loss at ``sensitivity`` is at most epsilon."""
    dp.enable_features("contrib")
    domain = dp.vector_domain(dp.atom_domain(T=float, nan=False), size=size)
    if terms.mechanism is DpMechanism.LAPLACE:

        def laplace(scale: float) -> dp.Measurement:
            return dp.m.make_laplace(domain, dp.l1_distance(T=float), scale=scale)

        scale = dp.binary_search_param(laplace, d_in=sensitivity, d_out=terms.epsilon)
        return laplace(scale)

    def gaussian(scale: float) -> dp.Measurement:
        base = dp.m.make_gaussian(domain, dp.l2_distance(T=float), scale=scale)
        return dp.c.make_fix_delta(dp.c.make_zCDP_to_approxDP(base), terms.delta)

    scale = dp.binary_search_param(gaussian, d_in=sensitivity, d_out=(terms.epsilon, terms.delta))
    return gaussian(scale)
