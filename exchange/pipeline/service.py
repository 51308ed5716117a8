"""The pipeline, composed: submit, the agents' tasks and answers, compute, release, sweep.

:class:`Pipeline` is what the routes call (one per runtime):

* :meth:`Pipeline.submit` authorizes and records (:mod:`~exchange.pipeline.authorize`),
  then starts the job's engine off the request path; the job opens for
  collection once started.
* :meth:`Pipeline.tasks`, :meth:`Pipeline.contribute`, :meth:`Pipeline.refuse` serve
  the data agents (:mod:`~exchange.pipeline.answers` verifies each statement).
* The last answer claims the job for computing at once (``collecting`` →
  ``computing`` is a conditional update, so only one worker computes it); the
  sweeper (:meth:`Pipeline.sweep`) ends collection at the deadline minus a
  compute margin and fails any job still live at its deadline.
* :meth:`Pipeline.compute` re-checks every participant's consent (a withdrawn
  one's answers are deleted, ``pipeline.withdrawal``), runs the engine with its
  release step, stores the result (``pipeline.result``) and the shares.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from starlette.concurrency import run_in_threadpool

from core.canonical import JsonValue, canonical_sha256
from core.clock import utcnow
from core.events import Event
from exchange.identities import Identity, Role
from exchange.pipeline.answers import AnswerDesk
from exchange.pipeline.authorize import Authorization, Authorizer, GroupCommit
from exchange.pipeline.engine import EngineJob, JobContext, Outcome, ReleaseRefused
from exchange.pipeline.engines import build_engine
from exchange.pipeline.entries import ResultEntry, WithdrawalEntry
from exchange.pipeline.errors import JobNotFoundError, JobStateError, ResultNotReadyError
from exchange.pipeline.jobs import (
    RESULT_EVENT,
    TERMINAL,
    WITHDRAWAL_EVENT,
    JobRecord,
    JobState,
    JobStore,
    JobView,
)
from exchange.pipeline.preview import RequestPreview
from exchange.pipeline.release import job_context
from exchange.pipeline.request import ComputeRequest, EngineName
from exchange.pipeline.signal import TaskSignal
from exchange.pipeline.statements import DecisionRecord
from exchange.pipeline.tables import AnswerRow, JobRow, ParticipantRow, ShareRow
from exchange.runtime import Runtime
from policies import ReleaseTerms

__all__ = ["Pipeline", "PipelineConfig"]

logger = logging.getLogger(__name__)

_WITHDRAWING = frozenset({"revoked", "expired", "not_yet_valid"})
_STARTS_AT_ONCE = frozenset({EngineName.MPC, EngineName.PSI})


@dataclass(frozen=True)
class PipelineConfig:
    """How the pipeline paces jobs.

    ``compute_margin`` is the part of a job's deadline kept for computing:
    collection ends ``min(margin_max, margin_share · deadline_seconds)``
    before the deadline. ``workers`` computes at once per process.
    """

    margin_max: float = 10.0
    margin_share: float = 0.2
    workers: int = 2
    contexts: int = 1024

    def compute_margin(self, deadline_seconds: int) -> float:
        """Seconds before the deadline at which collection ends."""
        return min(self.margin_max, self.margin_share * deadline_seconds)


class Pipeline:
    """The pipeline of one runtime (see the module docstring)."""

    def __init__(self, runtime: Runtime, config: PipelineConfig | None = None) -> None:
        self.runtime = runtime
        self.config = config or PipelineConfig()
        self.jobs = JobStore(runtime.db, runtime.ledger)
        self.signal = TaskSignal()
        self.group = GroupCommit(runtime)
        """Concurrent decisions and answers share transactions (one durable commit a group)."""
        self.authorizer = Authorizer(runtime, self.group, compute_margin=self.config.compute_margin)
        self.desk = AnswerDesk(self)
        self._engines: dict[EngineName, EngineJob] = {}
        self._contexts: OrderedDict[str, JobContext] = OrderedDict()
        self._lock = threading.Lock()
        self._starts = ThreadPoolExecutor(self.config.workers, "pipeline-start")
        self._computes = ThreadPoolExecutor(self.config.workers, "pipeline-compute")
        self._in_flight: set[str] = set()

    # -- engines and contexts -------------------------------------------------------------

    def engine(self, name: EngineName) -> EngineJob:
        """The engine ``name`` (built once).

        Raises:
            EngineUnavailableError: not installed here.
        """
        engine = self._engines.get(name)
        if engine is None:
            engine = build_engine(self.runtime, name)
            self._engines[name] = engine
        return engine

    def context(self, job: JobRecord) -> JobContext:
        """The engine's view of ``job`` with every participant of its decision (cached)."""
        with self._lock:
            cached = self._contexts.get(job.job_id)
            if cached is not None:
                self._contexts.move_to_end(job.job_id)
                return cached
        made = job_context(
            job.decision, job.terms, requester_industry=self._industry(job.requester)
        )
        with self._lock:
            self._contexts[job.job_id] = made
            while len(self._contexts) > self.config.contexts:
                self._contexts.popitem(last=False)
        return made

    def _industry(self, name: str) -> str | None:
        try:
            return self.runtime.identities.get(name).industry
        except Exception:
            return None

    # -- requests -------------------------------------------------------------------------

    def submit(
        self, requester: Identity, request: ComputeRequest, *, authz: Event | None = None
    ) -> JobView:
        """Authorize ``request``, record the decision, and start the job's engine.

        ``authz``: the route's ``authz.decision`` entry, recorded with the decision
        (or alone when the request is refused; see :meth:`Authorizer.authorize`).

        Raises:
            InvalidComputeRequestError: the selection or the engine is not usable.
            EngineUnavailableError: the engine is not installed here.
            UnknownDatasetError: a named dataset is not registered.
            RequestRefusedError: policy, consent or the minimum cohort refused it.
            ledger.LedgerError: the decision could not be recorded.
        """
        authorization = self.authorizer.authorize(
            requester,
            request,
            check_engine=self.engine,
            authz=authz,
            start=functools.partial(self._start_at_once, requester.industry),
        )
        return self._opened(authorization)

    async def submit_async(
        self, requester: Identity, request: ComputeRequest, *, authz: Event | None = None
    ) -> JobView:
        """:meth:`submit` for an event loop: the work ahead of the lock in a worker thread,
        then the group commit awaited without holding a thread (the 201 still only once
        the group that holds the decision committed).

        Raises:
            InvalidComputeRequestError: as :meth:`submit`.
            EngineUnavailableError: as :meth:`submit`.
            UnknownDatasetError: as :meth:`submit`.
            RequestRefusedError: as :meth:`submit`.
            ledger.LedgerError: as :meth:`submit`.
        """
        authorizer = self.authorizer
        try:
            unit = await run_in_threadpool(
                functools.partial(
                    authorizer.prepare,
                    requester,
                    request,
                    check_engine=self.engine,
                    authz=authz,
                    start=functools.partial(self._start_at_once, requester.industry),
                )
            )
            # shielded: a client gone away does not take the unit out of its group
            authorization: Authorization = await asyncio.shield(
                asyncio.wrap_future(self.group.submit(unit))
            )
        except Exception:
            if authz is not None:
                await self.record_alone_async(authz)
            raise
        authorization.log()
        return self._opened(authorization)

    def preview(self, requester: Identity, request: ComputeRequest) -> RequestPreview:
        """What :meth:`submit` would decide for ``request`` now, and why; nothing recorded
        (:meth:`Authorizer.preview`).

        Raises:
            InvalidComputeRequestError: as :meth:`submit`.
            EngineUnavailableError: as :meth:`submit`.
            UnknownDatasetError: as :meth:`submit`.
        """
        return self.authorizer.preview(requester, request, check_engine=self.engine)

    async def record_alone_async(self, event: Event) -> None:
        """Record ``event`` (a refused request's ``authz.decision``) in the next group.

        Raises:
            ledger.LedgerError: it could not be recorded.
        """
        ledger = self.runtime.ledger
        await asyncio.shield(
            asyncio.wrap_future(
                self.group.submit(lambda session: ledger.record(event, session=session))
            )
        )

    def _opened(self, authorization: Authorization) -> JobView:
        """After the commit: tell agents of a job already collecting, or start its engine."""
        if authorization.state == JobState.COLLECTING.value:
            self.signal.notify()  # committed: agents may fetch the task
        else:
            self._schedule(self._starts, self.start, authorization.decision.job_id)
        return authorization.view()

    def _start_at_once(
        self, industry: str | None, decision: DecisionRecord, terms: ReleaseTerms
    ) -> bool:
        """Start an MPC or PSI job inside its decision's transaction (their start keeps
        nothing: it only checks the job); False for HE (its keys are made off the
        request path) or when the check fails (the ordinary start then fails the job
        with the reason)."""
        if decision.engine not in _STARTS_AT_ONCE:
            return False
        try:
            made = job_context(decision, terms, requester_industry=industry)
            self.engine(decision.engine).start(made)
        except Exception as exc:
            logger.info("job %s: not started with its decision: %s", decision.job_id, exc)
            return False
        with self._lock:
            self._contexts[decision.job_id] = made
            while len(self._contexts) > self.config.contexts:
                self._contexts.popitem(last=False)
        return True

    def _schedule(self, pool: ThreadPoolExecutor, work: object, job_id: str) -> None:
        key = f"{getattr(work, '__name__', 'work')}:{job_id}"
        with self._lock:
            if key in self._in_flight:
                return
            self._in_flight.add(key)

        def run() -> None:
            try:
                work(job_id)  # type: ignore[operator]
            except Exception:
                logger.exception("job %s: %s failed", job_id, key.split(":", 1)[0])
            finally:
                with self._lock:
                    self._in_flight.discard(key)

        try:
            pool.submit(run)
        except RuntimeError:  # the pool is shut down: the process is stopping
            with self._lock:
                self._in_flight.discard(key)

    def start(self, job_id: str) -> None:
        """Start an authorized job's engine and open it for collection (or fail it)."""
        job = self.jobs.get(job_id)
        if job.state is not JobState.AUTHORIZED:
            return
        try:
            engine = self.engine(job.decision.engine)
            engine.start(self.context(job))
        except Exception as exc:
            logger.warning("job %s: could not start: %s", job_id, exc)
            self.jobs.move(
                job_id,
                source=[JobState.AUTHORIZED],
                to=JobState.FAILED,
                reason=f"the engine could not start: {exc}",
            )
            return
        jobs = self.jobs
        self.group.run_later(  # in the next group commit; agents are told once it committed
            lambda session: jobs.move(
                job_id, source=[JobState.AUTHORIZED], to=JobState.COLLECTING, session=session
            ),
            then=self.signal.notify,
        )

    def cancel(self, requester: Identity, job_id: str) -> JobView:
        """Cancel the caller's own job.

        Raises:
            JobNotFoundError: no such job of the caller's.
            JobStateError: the job is already terminal (its state named).
        """
        job = self.jobs.get(job_id)
        if job.requester != requester.name:
            raise JobNotFoundError(f"no job {job_id}")
        live = [JobState.AUTHORIZED, JobState.COLLECTING, JobState.COMPUTING]
        if not self.jobs.move(
            job_id, source=live, to=JobState.CANCELLED, reason=f"cancelled by {requester.name}"
        ):
            state = self.jobs.get(job_id).state
            raise JobStateError(f"job {job_id} is already {state.value}", state=state.value)
        self._end(job)
        self.signal.notify()
        return self.jobs.view(job_id)

    def view(self, identity: Identity, job_id: str, *, own_only: bool) -> JobView:
        """A job view; own scope sees only its own jobs (another's is not found).

        Raises:
            JobNotFoundError: no such job (or, own scope, another's).
        """
        view = self.jobs.view(job_id)
        if own_only and view.requester != identity.name:
            raise JobNotFoundError(f"no job {job_id}")
        return view

    def result(self, identity: Identity, job_id: str) -> dict[str, JsonValue]:
        """The requester's result, or a participant's own share.

        Raises:
            JobNotFoundError: no such job.
            ResultNotReadyError: the job is not released (its state named).
            JobStateError: never raised for readers; see ResultNotReadyError.
            ForbiddenError: the caller is neither the requester nor a participant.
        """
        from exchange.error_table import ForbiddenError

        job = self.jobs.get(job_id)
        is_requester = job.requester == identity.name
        participant = identity.role is Role.ENTERPRISE and (
            job.decision.participant(identity.name) is not None
        )
        if not is_requester and not participant:
            raise ForbiddenError(
                f"{identity.name} is neither the requester of {job_id} nor a participant"
            )
        if job.state is not JobState.RELEASED or job.result is None:
            raise ResultNotReadyError(
                f"job {job_id} is {job.state.value}, not released"
                + (f": {job.reason}" if job.reason else ""),
                state=job.state.value,
            )
        if is_requester:
            return {
                **job.result,
                "result_sha256": job.result_sha256,
                "result_index": job.result_index,
            }
        with self.runtime.db.read() as session:
            row = session.get(ShareRow, (job_id, identity.name))
            share = json.loads(row.share_json) if row is not None else {}
        return {"job_id": job_id, "enterprise": identity.name, "share": share}

    # -- computing ------------------------------------------------------------------------

    def all_answered(self, job_id: str) -> None:
        """Every participant answered: compute now (off the caller's thread)."""
        self._schedule(self._computes, self.compute, job_id)

    def compute(self, job_id: str) -> None:
        """Claim ``job_id`` (collecting → computing) and run its release step.

        Does nothing when another worker or path claimed it first.
        """
        if not self.jobs.move(job_id, source=[JobState.COLLECTING], to=JobState.COMPUTING):
            return
        job = self.jobs.get(job_id)
        engine: EngineJob | None = None
        try:
            engine = self.engine(job.decision.engine)
            context, answers = self._release_inputs(job)
            contributed = len(answers)
            if contributed < job.min_cohort:
                self._finish(
                    job_id,
                    JobState.FAILED,
                    f"collection ended with {contributed} authenticated contribution(s); the "
                    f"minimum cohort is {job.min_cohort}",
                )
                return
            outcome = engine.compute(context, answers)
        except ReleaseRefused as exc:
            self._finish(job_id, JobState.REFUSED, str(exc))
            return
        except Exception as exc:
            logger.warning("job %s: compute failed: %s: %s", job_id, type(exc).__name__, exc)
            self._finish(job_id, JobState.FAILED, f"{type(exc).__name__}: {exc}")
            return
        finally:
            if engine is not None:
                self._end(job, engine)
            self.signal.notify()
        self._release(job, answers, outcome)

    def _release_inputs(
        self, job: JobRecord
    ) -> tuple[JobContext, dict[str, dict[int, Mapping[str, JsonValue]]]]:
        """Re-check each participant's consent (withdrawing the revoked) and read the
        authenticated payloads of those still in."""
        runtime = self.runtime
        now = runtime.consents.now()
        withdrawn: dict[str, str] = {}
        with runtime.db.read() as session:
            parts = session.execute(
                select(
                    ParticipantRow.enterprise, ParticipantRow.state, ParticipantRow.consent_id
                ).where(ParticipantRow.job_id == job.job_id)
            ).all()
        for enterprise, state, consent_id in parts:
            if state == "withdrawn":
                withdrawn[enterprise] = "withdrawn"
                continue
            status = runtime.consents.get(consent_id).status(now)
            if status in _WITHDRAWING:
                withdrawn[enterprise] = status
        if withdrawn:
            self._withdraw(job, {e: r for e, r in withdrawn.items() if r != "withdrawn"})
        included = [p for p in job.decision.participants if p.enterprise not in withdrawn]
        context = job_context(
            job.decision,
            job.terms,
            requester_industry=self._industry(job.requester),
            participants=included,
        )
        answers: dict[str, dict[int, Mapping[str, JsonValue]]] = {}
        with runtime.db.read() as session:
            rows = session.execute(
                select(AnswerRow).where(
                    AnswerRow.job_id == job.job_id, AnswerRow.kind == "contribution"
                )
            ).scalars()
            for row in rows:
                if row.enterprise in withdrawn or row.payload is None:
                    continue
                answers.setdefault(row.enterprise, {})[row.round] = json.loads(row.payload)
        return context, answers

    def _withdraw(self, job: JobRecord, reasons: Mapping[str, str]) -> None:
        if not reasons:
            return
        runtime = self.runtime
        with runtime.db.write() as session:
            for enterprise, status in sorted(reasons.items()):
                part = session.get(ParticipantRow, (job.job_id, enterprise))
                if part is None or part.state == "withdrawn":
                    continue
                part.state = "withdrawn"
                session.execute(
                    delete(AnswerRow).where(
                        AnswerRow.job_id == job.job_id, AnswerRow.enterprise == enterprise
                    )
                )
                runtime.ledger.record(
                    Event(
                        WITHDRAWAL_EVENT,
                        "exchange",
                        WithdrawalEntry(
                            job_id=job.job_id,
                            requester=job.requester,
                            enterprise=enterprise,
                            consent_id=part.consent_id,
                            reason=f"the consent is {status}",
                        ).payload(),
                    ),
                    session=session,
                )
                logger.info("job %s: %s withdrawn (consent %s)", job.job_id, enterprise, status)

    def _release(self, job: JobRecord, answers: Mapping[str, object], outcome: Outcome) -> None:
        values: dict[str, JsonValue] = {
            name: [None if not math.isfinite(v) else float(v) for v in numbers]
            for name, numbers in outcome.values.items()
        }
        result: dict[str, JsonValue] = {
            "job_id": job.job_id,
            "operation": job.decision.request.operation.value,
            "engine": job.decision.engine.value,
            "cohort": outcome.cohort,
            "values": values,
            "epsilon": outcome.epsilon,
        }
        digest = canonical_sha256(result).hex()
        contributors = sorted(set(answers) - set(outcome.left_out))
        runtime = self.runtime
        with runtime.db.write() as session:
            row = session.get(JobRow, job.job_id)
            if row is None or row.state != JobState.COMPUTING.value:
                logger.warning(
                    "job %s: released result discarded (job is %s)", job.job_id, row and row.state
                )
                return
            recorded = runtime.ledger.record(
                Event(
                    RESULT_EVENT,
                    "exchange",
                    ResultEntry(
                        job_id=job.job_id,
                        requester=job.requester,
                        result_sha256=digest,
                        cohort=outcome.cohort,
                        contributors=tuple(contributors),
                    ).payload(),
                ),
                session=session,
            )
            row.result_json = json.dumps(result)
            row.result_sha256 = digest
            row.result_index = recorded.index
            for enterprise, share in outcome.shares.items():
                session.add(
                    ShareRow(job_id=job.job_id, enterprise=enterprise, share_json=json.dumps(share))
                )
            session.flush()
            self.jobs.move(
                job.job_id, source=[JobState.COMPUTING], to=JobState.RELEASED, session=session
            )

    def _finish(self, job_id: str, state: JobState, reason: str) -> None:
        self.jobs.move(job_id, source=[JobState.COMPUTING], to=state, reason=reason[:2000])

    def _end(self, job: JobRecord, engine: EngineJob | None = None) -> None:
        try:
            (engine or self.engine(job.decision.engine)).end(job.job_id)
        except Exception as exc:
            logger.warning("job %s: could not end the engine's job: %s", job.job_id, exc)

    # -- time -----------------------------------------------------------------------------

    def sweep(self, now: datetime | None = None) -> None:
        """Fail live jobs past their deadline; end collection of jobs past it minus the margin."""
        at = (now or utcnow()).timestamp()
        ended, late = self.jobs.due(at)
        for job_id in late:
            live = [JobState.AUTHORIZED, JobState.COLLECTING, JobState.COMPUTING]
            if self.jobs.move(
                job_id, source=live, to=JobState.FAILED, reason="the deadline passed"
            ):
                self._end(self.jobs.get(job_id))
                self.signal.notify()
        for job_id in ended:
            if job_id not in late:
                self._schedule(self._computes, self.compute, job_id)

    def recover(self) -> None:
        """At start-up: fail jobs left computing by a previous process; start authorized ones."""
        for job_id in self.jobs.in_state(JobState.COMPUTING):
            if self.jobs.move(
                job_id,
                source=[JobState.COMPUTING],
                to=JobState.FAILED,
                reason="the exchange restarted while computing",
            ):
                self._end(self.jobs.get(job_id))
        for job_id in self.jobs.in_state(JobState.AUTHORIZED):
            self._schedule(self._starts, self.start, job_id)

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until no start or compute of this process is in flight (tests, shutdown)."""
        import time

        until = time.monotonic() + timeout
        while time.monotonic() < until:
            with self._lock:
                if not self._in_flight:
                    return
            time.sleep(0.01)

    def close(self) -> None:
        """Stop taking work; wait for what runs."""
        self._starts.shutdown(wait=True, cancel_futures=True)
        self._computes.shutdown(wait=True, cancel_futures=True)

    def terminal(self, job_id: str) -> bool:
        """Whether ``job_id`` has reached a terminal state."""
        return self.jobs.get(job_id).state in TERMINAL
