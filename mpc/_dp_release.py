"""Differentially private releases: the noise, the budgets they charge, the answers kept.

The release guard (:mod:`mpc.guard`) delegates here. A noisy release always
charges ε to every consent (its own budget, or the policy's default) and to
the requester group's budget for the dataset, all or nothing, in the
transaction that stores the answer; the same question (query fingerprint
and noise terms) asked again gets the stored answer and is charged nothing.
Noise and selection are OpenDP's: Laplace or Gaussian for values
(:func:`noisy_answer`), the private quantile for order statistics from
counts opened in MPC (:func:`order_answer`, :mod:`mpc.dp_order`).
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import opendp.prelude as dp
from sqlalchemy.orm import Session

from core.canonical import canonical_bytes
from core.db import Database
from mpc._release_history import ReleaseHistory
from mpc._tables import DpSpendRow
from mpc.dp_order import DpOrderPolicy, OrderCounts, select_quantiles
from mpc.errors import PrivacyBudgetExhaustedError, ReleaseDescriptionError
from mpc.release_query import ReleaseQuery, StatisticKind

if TYPE_CHECKING:
    from mpc.guard import ReleaseRequest

__all__ = [
    "LEVELS",
    "DpMechanism",
    "DpPolicy",
    "check_budget",
    "noisy_answer",
    "order_answer",
]

logger = logging.getLogger(__name__)


class DpMechanism(enum.Enum):
    """OpenDP mechanisms the guard can apply."""

    LAPLACE = "laplace"
    GAUSSIAN = "gaussian"


@dataclass(frozen=True)
class DpPolicy:
    """Noise for every released value: ``epsilon`` per release, ``delta`` for Gaussian.

    A release with noise always charges a budget: each consent's own, or
    ``consent_budget`` for a consent that sets none, and the requester
    group's ``group_budget`` per dataset.
    """

    mechanism: DpMechanism
    epsilon: float
    delta: float = 1e-6
    consent_budget: float = 5.0
    group_budget: float = 20.0

    def __post_init__(self) -> None:
        if not (0 < self.epsilon <= 10) or not (0 < self.delta < 1e-3):
            raise ValueError("epsilon must be in (0, 10] and delta in (0, 1e-3)")
        if not (self.consent_budget >= self.epsilon and self.group_budget >= self.epsilon):
            raise ValueError("the default budgets must cover at least one release")

    def terms(self) -> str:
        """The noise terms as canonical text (part of a repeated question's key)."""
        return canonical_bytes(
            {"mechanism": self.mechanism.value, "epsilon": self.epsilon, "delta": self.delta}
        ).decode()


def check_budget(
    db: Database, request: ReleaseRequest, query: ReleaseQuery, bound: float | None
) -> None:
    """Refuse when a budget cannot cover the release (see ``ReleaseGuard.check_budget``).

    Raises:
        PrivacyBudgetExhaustedError: a consent's or the group's budget would be exceeded.
        ValueError: the policy's order-statistics grid does not fit ``bound``.
    """
    checks: list[tuple[DpPolicy | DpOrderPolicy, str]] = []
    if request.policy.dp is not None:
        checks.append((request.policy.dp, request.policy.dp.terms()))
    order = request.policy.order_dp
    if order is not None and bound is not None and query.order_statistics:
        checks.append((order, order.terms(order.grid(bound))))
    with db.read() as session:
        for terms, text in checks:
            key = ReleaseHistory.answer_key(request.adversary, query.fingerprint(), text)
            if ReleaseHistory.answer(session, key) is None:
                _check_budgets(session, request, terms)


def order_answer(  # noqa: PLR0917 - the release's parts
    db: Database,
    request: ReleaseRequest,
    terms: DpOrderPolicy,
    query: ReleaseQuery,
    counts: OrderCounts,
    bound: float,
) -> tuple[tuple[float, ...], ...]:
    """DP order statistics (see ``ReleaseGuard.release_dp_order_statistics``).

    Raises:
        ReleaseDescriptionError: counts for another grid or cohort, or a repeated
            question answered in another shape.
        PrivacyBudgetExhaustedError: a budget would be exceeded (nothing charged).
        ValueError: the policy's grid does not fit ``bound``.
    """
    kinds = query.order_statistics
    grid = terms.grid(bound)
    if counts.candidates != grid or counts.cohort != len(query.contributors):
        raise ReleaseDescriptionError(
            "the order counts were not computed over the policy's grid and the query's cohort"
        )
    shape = [len(LEVELS[kind]) for kind in kinds]
    key = ReleaseHistory.answer_key(request.adversary, query.fingerprint(), terms.terms(grid))
    with db.write() as session:
        earlier = ReleaseHistory.answer(session, key)
        if earlier is not None:
            if len(earlier) != sum(shape):
                raise ReleaseDescriptionError(
                    "this question was answered before with another number of values"
                )
            logger.info("job %s: a repeated question, the earlier answer", request.job_id)
            chosen = earlier
        else:
            _check_budgets(session, request, terms)
            _charge(session, request, query, terms.epsilon)
            levels = [level for kind in kinds for level in LEVELS[kind]]
            chosen = select_quantiles(counts, levels, terms.epsilon)
            ReleaseHistory.store_answer(session, key, request.adversary, request.job_id, chosen)
            logger.info(
                "job %s: %d DP order statistics released to %s (epsilon %g)",
                request.job_id,
                len(levels),
                request.adversary,
                terms.epsilon,
            )
    out: list[tuple[float, ...]] = []
    start = 0
    for size in shape:
        out.append(tuple(chosen[start : start + size]))
        start += size
    return tuple(out)


def noisy_answer(
    db: Database,
    request: ReleaseRequest,
    query: ReleaseQuery,
    values: Sequence[float],
    sensitivity: float,
) -> tuple[float, ...]:
    """Noisy values (see ``ReleaseGuard.add_noise``).

    Raises:
        PrivacyBudgetExhaustedError: a budget would be exceeded (nothing charged).
        ReleaseDescriptionError: the same question was answered with another number
            of values.
        ValueError: a non-positive sensitivity.
    """
    terms = request.policy.dp
    if terms is None:
        return tuple(values)
    if not (sensitivity > 0 and math.isfinite(sensitivity)):
        raise ValueError("sensitivity must be a positive finite number")
    key = ReleaseHistory.answer_key(request.adversary, query.fingerprint(), terms.terms())
    with db.write() as session:
        earlier = ReleaseHistory.answer(session, key)
        if earlier is not None:
            if len(earlier) != len(values):
                raise ReleaseDescriptionError(
                    "this question was answered before with another number of values"
                )
            logger.info("job %s: a repeated question, the earlier answer", request.job_id)
            return earlier
        _check_budgets(session, request, terms)
        _charge(session, request, query, terms.epsilon)
        measurement = _measurement(terms, sensitivity, len(values))
        noisy = tuple(float(v) for v in measurement([float(v) for v in values]))
        ReleaseHistory.store_answer(session, key, request.adversary, request.job_id, noisy)
    return noisy


LEVELS = {
    StatisticKind.MIN: (0.0,),
    StatisticKind.MAX: (1.0,),
    StatisticKind.MEDIAN: (0.5,),
    StatisticKind.QUANTILES: (0.25, 0.5, 0.75),
}
"""The quantile levels of each order statistic (MPC's quantiles are quartiles)."""


def _check_budgets(
    session: Session, request: ReleaseRequest, terms: DpPolicy | DpOrderPolicy
) -> None:
    epsilon = terms.epsilon
    for consent in request.consents:
        budget = terms.consent_budget if consent.epsilon_budget is None else consent.epsilon_budget
        row = session.get(DpSpendRow, consent.consent_id)
        spent = 0.0 if row is None else row.spent
        if spent + epsilon > budget + 1e-12:
            raise PrivacyBudgetExhaustedError(
                f"consent {consent.consent_id!r} has {budget - spent:g} "
                f"of its epsilon budget left, the release needs {epsilon:g}",
                consent_id=consent.consent_id,
            )
    dataset = request.subject.dataset
    spent = ReleaseHistory.group_spent(session, request.adversary, dataset)
    if spent + epsilon > terms.group_budget + 1e-12:
        raise PrivacyBudgetExhaustedError(
            f"{request.adversary} has {terms.group_budget - spent:g} of its epsilon budget "
            f"for {dataset!r} left, the release needs {epsilon:g}",
            consent_id="",
        )


def _charge(session: Session, request: ReleaseRequest, query: ReleaseQuery, epsilon: float) -> None:
    """Add ``epsilon`` to every consent's spend and the group's for the dataset."""
    for consent in request.consents:
        row = session.get(DpSpendRow, consent.consent_id)
        if row is None:
            session.add(DpSpendRow(consent_id=consent.consent_id, spent=epsilon))
        else:
            row.spent += epsilon
    ReleaseHistory.charge_group(session, request.adversary, query.subject.dataset, epsilon)


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
