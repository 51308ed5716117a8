"""The release step's inputs: the policy's terms as the guard's policy, and each job's context.

The policy decision point hands out :class:`policies.ReleaseTerms` (plain
data, per classification); here they become :class:`mpc.ReleasePolicy` for
one request on one engine, and with the participants whose consent still
holds, the :class:`mpc.ReleaseRequest` the release guard judges:

* the minimum cohort is the strictest of the policy's and every
  participant's consent;
* DP budgets are charged per consent (``epsilon_budget_per_consent``);
* differencing is judged against everything released to the requester's
  group (:func:`mpc.industry_group` of the requester's industry). Every
  pipeline release reads one subject, ``pipeline``, whatever datasets it
  selects: an enterprise's value of a field is one unknown whichever of its
  datasets it comes from, so two selections that differ by one enterprise
  are caught (the selection is a filter, which tells a repeated question
  from a new one without letting it escape the check).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable

import mpc
from consent import Operation
from exchange.pipeline.engine import JobContext
from exchange.pipeline.request import ComputeRequest, EngineName
from exchange.pipeline.statements import DecisionRecord, Participant
from policies import OrderStatistics, ReleaseTerms

__all__ = ["RELEASE_SUBJECT", "job_context", "release_policy", "release_subject"]

logger = logging.getLogger(__name__)

RELEASE_SUBJECT = "pipeline"
"""The guard's dataset name for every pipeline release (see the module docstring)."""

_SUMS = frozenset({Operation.SUM, Operation.MEAN})
_MAX_SELECTION = 180


def release_policy(
    terms: ReleaseTerms, request: ComputeRequest, engine: EngineName
) -> mpc.ReleasePolicy:
    """The guard's policy for ``request`` on ``engine`` under ``terms``.

    Dominance rules govern a ``dominance_check``, and sums and means on MPC
    where the terms say so (HE cannot check them, so those never run on HE).
    ``parameters.epsilon`` adds Laplace noise to the values and sets the
    epsilon of differentially private order statistics.

    Raises:
        ValueError: terms the guard cannot use (e.g. an epsilon over 10).
    """
    op = request.operation
    rules: tuple[mpc.DominanceRule, ...] = ()
    if op is Operation.DOMINANCE_CHECK or (
        op in _SUMS and engine is EngineName.MPC and terms.dominance_on_sums
    ):
        rules = tuple(mpc.DominanceRule(n, k) for n, k in terms.dominance)
    epsilon = request.parameters.epsilon
    dp = None if epsilon is None else mpc.DpPolicy(mpc.DpMechanism.LAPLACE, epsilon)
    order = terms.order_statistics
    if order is OrderStatistics.EXACT:
        return mpc.ReleasePolicy(
            min_cohort=terms.min_cohort,
            dominance=rules,
            dp=dp,
            order_statistics=mpc.OrderRelease.EXACT,
            exact_order_classifications=frozenset({terms.classification}),
        )
    if order is OrderStatistics.DP:
        return mpc.ReleasePolicy(
            min_cohort=terms.min_cohort,
            dominance=rules,
            dp=dp,
            order_statistics=mpc.OrderRelease.DP,
            order_dp=mpc.DpOrderPolicy(epsilon or terms.order_dp_epsilon, candidates=33),
        )
    if order is OrderStatistics.COARSEN:
        return mpc.ReleasePolicy(
            min_cohort=terms.min_cohort,
            dominance=rules,
            dp=dp,
            order_statistics=mpc.OrderRelease.COARSEN,
            coarsen_step=terms.coarsen_step,
        )
    return mpc.ReleasePolicy(min_cohort=terms.min_cohort, dominance=rules, dp=dp)


def release_subject(request: ComputeRequest, classification: str) -> mpc.ReleaseSubject:
    """What a pipeline release reads: the fields of subject :data:`RELEASE_SUBJECT`, the
    selection (datasets or industry) as a filter.

    Raises:
        ValueError: a field name the guard refuses.
    """
    if request.industry is not None:
        selection = f"industry:{request.industry}"
    else:
        selection = "datasets:" + ",".join(sorted(request.datasets))
        if len(selection) > _MAX_SELECTION:
            digest = hashlib.sha256(selection.encode()).hexdigest()
            selection = f"datasets-sha256:{digest}"
    return mpc.ReleaseSubject(
        RELEASE_SUBJECT, request.fields, (("selection", selection),), classification
    )


def job_context(
    decision: DecisionRecord,
    terms: ReleaseTerms,
    *,
    requester_industry: str | None,
    participants: Iterable[Participant] | None = None,
) -> JobContext:
    """The engine's view of one job: the decision and the release request.

    ``participants`` are those whose consent still holds (default: all the
    decision's); only their consents' terms are in the release request.

    Raises:
        ValueError: terms or a subject the guard cannot use.
    """
    included = tuple(decision.participants if participants is None else participants)
    policy = release_policy(terms, decision.request, decision.engine)
    consents = tuple(
        mpc.ConsentTerms(
            p.consent_id,
            p.enterprise,
            min_cohort=max(2, p.min_cohort),
            epsilon_budget=terms.epsilon_budget_per_consent,
        )
        for p in included
    )
    release = mpc.ReleaseRequest(
        decision.job_id,
        decision.requester,
        mpc.industry_group(requester_industry or "platform"),
        release_subject(decision.request, terms.classification),
        policy,
        consents,
    )
    return JobContext(
        decision=decision,
        release=release,
        classification=terms.classification,
        participants=tuple(p.enterprise for p in included),
    )
