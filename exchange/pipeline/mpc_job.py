"""The MPC engine of the pipeline: sealed shares from the agents, parties as local processes.

Each participant's agent is handed the job's :class:`mpc.MpcJobSpec`, the
compute parties' box keys and the Shamir threshold (:meth:`MpcEngineJob.material`),
deals its one value with :class:`mpc.ShareDealer` and posts ``{"shares":
[SealedShare dicts]}``: one envelope per party, each sealed to that party's
key, so the exchange relays them unread. When the job computes, ``ibx serve``
runs the deployment's parties (``<data dir>/mpc``) as local processes with
:class:`mpc.MpcRunner`, within the job's remaining time, and passes the
outcome through the release guard exactly as ``ibx mpc run`` does: the
dominance rules, the cohort and differencing checks (``approve``), and order
statistics only as the policy lets them out (exactly, coarsened, or a grid
candidate chosen with differential privacy). An exact order statistic the
policy refuses is refused in :meth:`MpcEngineJob.start`, before any agent is
asked for a share.

Operations: ``percentile_rank`` → median and quartiles with each
contributor's rank; ``quantiles`` → median and quartiles; ``min_max`` → min
and max; ``dominance_check`` → the sum under the policy's (n, k) dominance
rules; ``sum`` and ``mean`` (when the policy's dominance rule moved them to
MPC) → that statistic under the same rules, with the policy's differential
privacy when it has some. Dominance rules apply to totals only, not to order
statistics.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, cast

import mpc
from consent import Operation
from core.canonical import JsonValue, canonical_sha256
from core.clock import utcnow
from exchange.pipeline.engine import (
    Answers,
    JobContext,
    Outcome,
    PayloadError,
    ReleaseRefused,
)
from exchange.pipeline.request import EngineName
from mpc.errors import CohortTooSmallError, ReleaseRefusedError

if TYPE_CHECKING:
    from exchange.runtime import Runtime

__all__ = ["MAX_ENVELOPE_BYTES", "RENEW_BEFORE", "MpcEngineJob", "mpc_engine", "mpc_spec_for"]

logger = logging.getLogger(__name__)

MAX_ENVELOPE_BYTES = 4096
"""Largest sealed share accepted (a real one is a few hundred bytes)."""

RENEW_BEFORE = timedelta(days=2)
"""The parties' TLS certificates are renewed when they expire sooner than this."""

_ORDER = frozenset(
    {
        mpc.MpcStatistic.MIN,
        mpc.MpcStatistic.MAX,
        mpc.MpcStatistic.MEDIAN,
        mpc.MpcStatistic.QUARTILES,
    }
)
_TOTALS = frozenset({mpc.MpcStatistic.SUM, mpc.MpcStatistic.MEAN})

_STATISTICS: Mapping[Operation, tuple[tuple[mpc.MpcStatistic, ...], bool]] = {
    Operation.PERCENTILE_RANK: ((mpc.MpcStatistic.MEDIAN, mpc.MpcStatistic.QUARTILES), True),
    Operation.QUANTILES: ((mpc.MpcStatistic.MEDIAN, mpc.MpcStatistic.QUARTILES), False),
    Operation.MIN_MAX: ((mpc.MpcStatistic.MIN, mpc.MpcStatistic.MAX), False),
    Operation.DOMINANCE_CHECK: ((mpc.MpcStatistic.SUM,), False),
    Operation.SUM: ((mpc.MpcStatistic.SUM,), False),
    Operation.MEAN: ((mpc.MpcStatistic.MEAN,), False),
}
"""What each operation the MPC engine runs computes, and whether it ranks the contributors."""


def mpc_spec_for(job: JobContext) -> mpc.MpcJobSpec:
    """The job's MPC spec: the operation's statistics under the job's release terms.

    The bound is the request's; the minimum cohort the strictest of the
    decision's and the release terms'; dominance rules (for totals only) and
    the order-statistics grid (under DP order release) are the policy's.

    Raises:
        ValueError: an operation MPC does not compute, or terms the spec refuses.
    """
    request = job.decision.request
    try:
        statistics, ranks = _STATISTICS[request.operation]
    except KeyError:
        raise ValueError(f"the MPC engine does not compute {request.operation.value}") from None
    policy = job.release.policy
    bound = request.parameters.bound
    ordered = any(s in _ORDER for s in statistics)
    return mpc.MpcJobSpec(
        job.job_id,
        statistics,
        percentile_ranks=ranks,
        dominance=policy.dominance if any(s in _TOTALS for s in statistics) else (),
        min_cohort=max(job.decision.min_cohort, job.release.min_cohort),
        bound=bound,
        order_candidates=policy.order_dp.grid(bound)
        if ordered and policy.order_dp is not None
        else (),
    )


@dataclass(frozen=True)
class _Envelopes:
    """One contributor's envelopes, one per party (checked)."""

    enterprise: str
    shares: tuple[mpc.SealedShare, ...]


class MpcEngineJob:
    """The MPC engine (see the module docstring); one instance serves every MPC job."""

    engine = EngineName.MPC

    def __init__(
        self,
        deployment: mpc.MpcDeployment,
        guard: mpc.ReleaseGuard,
        *,
        party_command: tuple[str, ...] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """An engine running ``deployment``'s parties, releasing through ``guard``.

        ``party_command`` starts one party (default: this interpreter's
        ``-m mpc._party_main``).
        """
        self._deployment = deployment
        self._guard = guard
        self._party_command = party_command
        self._clock = clock

    def _current_deployment(self) -> mpc.MpcDeployment:
        """The deployment, its certificates renewed first when they are about to expire
        (a long-running ``ibx serve`` keeps computing past the 30 days of one issue)."""
        if self._deployment.certificates_expire() - self._clock() <= RENEW_BEFORE:
            self._deployment = _deployment(self._deployment.base_dir, self._clock())
        return self._deployment

    # -- EngineJob -------------------------------------------------------------

    def start(self, job: JobContext) -> None:
        """Check the spec; refuse order statistics the policy refuses before any share is dealt.

        Raises:
            ReleaseRefused: the policy lets none of the job's order statistics out exactly
                and neither coarsens them nor releases them with differential privacy.
            ValueError: an operation MPC does not compute, or an unusable spec.
        """
        spec = mpc_spec_for(job)
        try:
            self._guard.check_order_statistics(job.release, mpc.mpc_statistics(spec))
        except ReleaseRefusedError as exc:
            raise ReleaseRefused(f"{exc.title}: {exc}") from exc

    def rounds(self, job: JobContext) -> int:
        """One round: each agent posts its sealed shares once."""
        return 1

    def material(
        self, job: JobContext, enterprise: str, round_no: int, answers: Answers
    ) -> Mapping[str, JsonValue] | None:
        """The spec, the parties' box keys (base64), the threshold and whether ranks are dealt.

        Raises:
            ValueError: a round other than 1, or an operation MPC does not compute.
        """
        if round_no != 1:
            raise ValueError("an MPC job has one round")
        spec = mpc_spec_for(job)
        dep = self._deployment
        return {
            "spec": cast(JsonValue, spec.to_dict()),
            "box_public_keys": [base64.b64encode(k).decode() for k in dep.box_public_keys],
            "threshold": dep.threshold,
            "ranks": spec.percentile_ranks,
        }

    def payload_digest(
        self, job: JobContext, enterprise: str, round_no: int, payload: Mapping[str, JsonValue]
    ) -> str:
        """SHA-256 of the payload's RFC 8785 form, once its shape is checked.

        The payload is ``{"shares": [...]}`` with exactly one sealed share per
        party, each naming ``enterprise`` as its contributor.

        Raises:
            PayloadError: another round, another shape, a share of another contributor,
                a party missing or named twice, or an oversized share.
        """
        if round_no != 1:
            raise PayloadError("an MPC job has one round")
        self._envelopes(enterprise, payload)
        return canonical_sha256(dict(payload)).hex()

    def compute(self, job: JobContext, answers: Answers) -> Outcome:
        """Run the parties on the authenticated shares and pass the release step.

        Raises:
            ReleaseRefused: the cohort is below the minimum (before or after the parties
                dropped a share), the dominance rule suppresses the total, the release
                would difference an earlier one, an exact order statistic is refused,
                or a privacy budget is spent.
            PartyError: a party failed or did not finish within the job's remaining time.
            TimeoutError: the job's deadline has passed.
        """
        try:
            return self._compute(job, answers)
        except ReleaseRefusedError as exc:
            raise ReleaseRefused(f"{exc.title}: {exc}") from exc

    def end(self, job_id: str) -> None:
        """Delete the job's files in every party's directory (sealed shares, outcome, log)."""
        for index in range(self._deployment.parties):
            jobs = self._deployment.party_dir(index) / "jobs"
            for suffix in (".json", ".out.json", ".log"):
                (jobs / f"{job_id}{suffix}").unlink(missing_ok=True)

    # -- inside ----------------------------------------------------------------

    def _envelopes(self, enterprise: str, payload: Mapping[str, JsonValue]) -> _Envelopes:
        if set(payload) != {"shares"}:
            raise PayloadError('an MPC payload is {"shares": [sealed share, ...]}')
        raw = payload["shares"]
        parties = self._deployment.parties
        if not isinstance(raw, list) or len(raw) != parties:
            raise PayloadError(
                f"an MPC payload holds exactly one sealed share per party ({parties})"
            )
        shares: list[mpc.SealedShare] = []
        for item in raw:
            if not isinstance(item, dict) or set(item) != {"contributor", "party", "blob"}:
                raise PayloadError("a sealed share is {contributor, party, blob}")
            party, blob, contributor = item["party"], item["blob"], item["contributor"]
            if isinstance(party, bool) or not isinstance(party, int) or not 0 <= party < parties:
                raise PayloadError(f"a sealed share names party 0 to {parties - 1}")
            if contributor != enterprise:
                raise PayloadError(
                    f"a sealed share names contributor {contributor!r}, not {enterprise!r}"
                )
            if not isinstance(blob, str) or len(blob) > MAX_ENVELOPE_BYTES * 4 // 3 + 4:
                raise PayloadError(
                    f"a sealed share is base64 of at most {MAX_ENVELOPE_BYTES} bytes"
                )
            try:
                sealed = base64.b64decode(blob, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise PayloadError("a sealed share's blob is not base64") from exc
            if not sealed:
                raise PayloadError("a sealed share is empty")
            shares.append(mpc.SealedShare(enterprise, party, sealed))
        if sorted(s.party for s in shares) != list(range(parties)):
            raise PayloadError("each party needs exactly one sealed share")
        return _Envelopes(enterprise, tuple(sorted(shares, key=lambda s: s.party)))

    def _dealt(
        self, job: JobContext, answers: Answers, left_out: dict[str, str]
    ) -> list[mpc.DealtInput]:
        dealt = []
        for enterprise in sorted(job.participants):
            payload = answers.get(enterprise, {}).get(1)
            if payload is None:
                continue
            try:
                envelopes = self._envelopes(enterprise, payload)
            except PayloadError as exc:
                left_out[enterprise] = str(exc)
                continue
            dealt.append(mpc.DealtInput(enterprise, envelopes.shares))
        return dealt

    def _compute(self, job: JobContext, answers: Answers) -> Outcome:
        spec = mpc_spec_for(job)
        request = job.release
        guard = self._guard
        policy = request.policy
        left_out: dict[str, str] = {}
        dealt = self._dealt(job, answers, left_out)
        names = [d.contributor for d in dealt]
        if len(names) < request.min_cohort:
            raise CohortTooSmallError(
                f"{len(names)} contributions, the minimum cohort is {request.min_cohort}",
                cohort=len(names),
                minimum=request.min_cohort,
            )
        guard.check_order_statistics(request, mpc.mpc_statistics(spec))
        guard.check_budget(request, mpc.mpc_query(request.subject, spec, names), bound=spec.bound)
        remaining = (job.decision.deadline - self._clock()).total_seconds()
        if remaining <= 0:
            raise TimeoutError(f"job {job.job_id}: its deadline passed before the parties ran")
        config = mpc.RunnerConfig(deadline=remaining)
        if self._party_command is not None:
            config = mpc.RunnerConfig(deadline=remaining, party_command=self._party_command)
        result = mpc.MpcRunner(self._current_deployment(), config).run(spec, dealt)
        if spec.dominance:
            guard.check_dominance(policy, result.dominance)
        left_out.update(result.dropped)
        kept = frozenset(names) - set(left_out)
        query = mpc.mpc_query(request.subject, spec, kept)
        guard.approve(request, query, left_out=left_out)
        values: dict[str, list[float]] = {}
        epsilon: float | None = None
        for name, opened in result.statistics:
            stat = mpc.MpcStatistic(name)
            if stat in _ORDER:
                values[name] = list(guard.release_order_statistics(request, opened))
            elif stat in _TOTALS and policy.dp is not None:
                # one contributor moves a sum by at most 2·bound (a mean by that over n)
                sensitivity = (
                    2 * spec.bound / (result.cohort if stat is mpc.MpcStatistic.MEAN else 1)
                )
                values[name] = list(
                    guard.add_noise(request, query, opened, sensitivity=sensitivity)
                )
                epsilon = policy.dp.epsilon
            else:
                values[name] = [float(v) for v in opened]
        if result.order_counts is not None:
            released = guard.release_dp_order_statistics(
                request, query, result.order_counts, bound=spec.bound
            )
            order_names = [s.value for s in spec.statistics if s in _ORDER]
            values.update(zip(order_names, (list(v) for v in released), strict=True))
            assert policy.order_dp is not None  # counts are opened only under DP order release
            epsilon = policy.order_dp.epsilon
        shares: dict[str, Mapping[str, JsonValue]] = {}
        if spec.percentile_ranks:
            tags: list[JsonValue] = [int(t) for t in result.rank_tags]
            shares = {who: {"rank_tags": tags} for who in sorted(kept)}
        logger.info(
            "MPC job %s released over %d contributors (%d left out)",
            job.job_id,
            result.cohort,
            len(left_out),
        )
        return Outcome(
            cohort=result.cohort, values=values, epsilon=epsilon, shares=shares, left_out=left_out
        )


def _deployment(base: Path, now: datetime | None = None) -> mpc.MpcDeployment:
    """``base``'s deployment: created when missing, its TLS certificates renewed when they are
    about to expire (the box keys stay, so shares already sealed still open); under a lock,
    so two workers do it once.

    Raises:
        DeploymentError: a deployment that is there but incomplete.
    """
    at = now or utcnow()
    if (base / "box_public_keys").is_file():
        found = mpc.MpcDeployment.from_dir(base)
        if found.certificates_expire() - at > RENEW_BEFORE:
            return found
    base.mkdir(parents=True, exist_ok=True)
    with (base.parent / ".mpc.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (base / "box_public_keys").is_file():
                return mpc.MpcDeployment.create(base, now=at)
            found = mpc.MpcDeployment.from_dir(base)
            if found.certificates_expire() - at <= RENEW_BEFORE:
                found.renew_certificates(now=at)
            return found
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def mpc_engine(runtime: Runtime) -> MpcEngineJob:
    """The MPC engine of ``runtime`` (an :class:`exchange.runtime.Runtime`).

    Its deployment is ``<data dir>/mpc``, created on first use as
    ``ibx mpc deploy`` would (three parties on this host), its certificates
    renewed when they are about to expire.

    Raises:
        DeploymentError: the deployment directory is incomplete.
    """
    return MpcEngineJob(_deployment(runtime.data_dir / "mpc"), runtime.release_guard)
