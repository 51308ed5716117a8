"""Pipeline steps 3-5: policy decision, consent check and the decision on the ledger.

:meth:`Authorizer.authorize` resolves the request's datasets (ids, or every
dataset of an industry's enterprises holding all the fields), then in ONE
write transaction: checks and counts the consents (``consent.use``), asks
the policy once per distinct (domain, classification) with the cohort the
consents give, applies the minimum cohort (the strictest of the policy's
release terms and the consents'), and records the ``pipeline.decision``
entry with the job and participant rows. A refusal rolls everything back;
nothing reaches an engine or an agent before that transaction commits.

Concurrent decisions are committed in groups (:class:`GroupCommit`): each
decision runs in its own savepoint of one shared transaction, so a burst of
requesters pays for one durable commit (one fsync) instead of one each, and
a refused decision rolls back only its own savepoint.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

import consent
from consent import ConsentRecord, ConsentRequest, ConsentUse, CoverageReport, Dataset
from core.clock import format_rfc3339
from core.db import Database
from core.events import Event
from exchange.access import domain_of
from exchange.identities import Identity, Role
from exchange.pipeline.entries import DenialEntry
from exchange.pipeline.errors import InvalidComputeRequestError, RequestRefusedError
from exchange.pipeline.jobs import JobState, JobView, move_event
from exchange.pipeline.preview import Covered, NotCovered, PolicyCheck, RequestPreview
from exchange.pipeline.request import ComputeRequest, EngineName, InvalidRequestError
from exchange.pipeline.statements import (
    DECISION_EVENT,
    DecisionRecord,
    LeftOut,
    Participant,
    new_job_id,
)
from exchange.pipeline.tables import JobRow, ParticipantRow
from policies import Decision, ReleaseTerms, Subject

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from exchange.runtime import Runtime

__all__ = ["Authorization", "Authorizer", "GroupCommit", "StartAtOnce"]

logger = logging.getLogger(__name__)

_STRICTNESS = {"general": 0, "important": 1, "core": 2}
_GROUP_THREAD = "pipeline-group-commit"
_DENIAL_REASONS = frozenset({"policy", "consent", "cohort"})
_MAX_INDUSTRY_DATASETS = 100_000
_JOBS = cast(Table, JobRow.__table__)
_PARTICIPANTS = cast(Table, ParticipantRow.__table__)

StartAtOnce = Callable[[DecisionRecord, ReleaseTerms], bool]
"""Starts a job's engine inside its decision's transaction; True when it started."""


@dataclass(frozen=True)
class _Verdict:
    """What the policy and the consents' minimums decided for a cohort."""

    policy_version: str
    minimum: int


@dataclass(frozen=True)
class _Plan:
    """A request resolved ahead of the write lock (:meth:`Authorizer._plan`)."""

    datasets: list[Dataset]
    engine: EngineName
    terms: ReleaseTerms
    consent_request: ConsentRequest
    by_id: dict[str, Dataset]
    judge: Callable[..., _Verdict]
    ahead: CoverageReport
    min_of_classes: int


@dataclass(frozen=True)
class Authorization:
    """An authorized job: its decision as on the ledger and the terms it is released under."""

    decision: DecisionRecord
    terms: ReleaseTerms
    decision_index: int
    collect_until: datetime
    created_at: str = ""
    """The job row's ``created_at`` (RFC 3339), as recorded."""
    state: str = "authorized"
    """``collecting`` when the engine started in the decision's own transaction."""

    def log(self) -> None:
        """Say (once committed) that the job is authorized."""
        decision = self.decision
        logger.info(
            "job %s authorized for %s: %s on %s, %d participants",
            decision.job_id,
            decision.requester,
            decision.request.operation.value,
            decision.engine.value,
            len(decision.participants),
        )

    def view(self) -> JobView:
        """The job's view as it was committed: ``authorized``, nothing answered yet."""
        decision = self.decision
        return JobView(
            job_id=decision.job_id,
            state=self.state,
            reason=None,
            requester=decision.requester,
            operation=decision.request.operation.value,
            engine=decision.engine.value,
            created_at=self.created_at,
            deadline=format_rfc3339(decision.deadline),
            updated_at=self.created_at,
            participants=len(decision.participants),
            contributed=0,
            refused=0,
            min_cohort=decision.min_cohort,
            decision_index=self.decision_index,
            result_index=None,
        )


class GroupCommit:
    """Runs write units of concurrent callers in shared transactions, one savepoint each.

    A caller's unit either commits with its group or raises to that caller
    alone (its savepoint rolled back). One thread commits; callers wait on
    their own result. With no contention a group is one unit.
    """

    def __init__(self, runtime: Runtime, *, max_group: int = 64) -> None:
        self._runtime = runtime
        self._queue: queue.SimpleQueue[_Unit] = queue.SimpleQueue()
        self._max = max_group
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._turns = _ProcessTurns.for_database(runtime.db)

    def run(self, work: Callable[[Session], Any]) -> Any:
        """Run ``work(session)`` inside a group's transaction; return its result once committed.

        Raises:
            Exception: whatever ``work`` raised, or the group's commit failure.
        """
        unit = _Unit(work)
        self._ensure_thread()
        self._queue.put(unit)
        unit.done.wait()
        if unit.error is not None:
            raise unit.error
        return unit.result

    def submit(self, work: Callable[[Session], Any]) -> Future[Any]:
        """Queue ``work`` for the next group; the future resolves once the group committed
        (its result) or with what ``work`` or the commit raised. For an event loop:
        ``await asyncio.wrap_future(...)`` holds no thread while the group runs.
        """
        unit = _Unit(work, future=Future())
        self._ensure_thread()
        self._queue.put(unit)
        assert unit.future is not None
        return unit.future

    def run_later(
        self, work: Callable[[Session], Any], *, then: Callable[[], None] | None = None
    ) -> None:
        """Queue ``work`` for the next group and return at once; ``then()`` runs (in the
        committing thread) once the group committed with it. A failure is logged.
        """
        unit = _Unit(work, then=then, waited=False)
        self._ensure_thread()
        self._queue.put(unit)

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=_GROUP_THREAD, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            units = [self._queue.get()]
            while len(units) < self._max:
                try:
                    units.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(units)

    def _commit(self, units: Sequence[_Unit]) -> None:
        ok: list[_Unit] = []
        runtime = self._runtime
        try:
            with (
                self._turns,
                runtime.db.write() as session,
                runtime.ledger.batch(session) as batch,
            ):
                for unit in units:
                    mark = batch.mark()
                    try:
                        with session.begin_nested():
                            unit.result = unit.work(session)
                        ok.append(unit)
                    except Exception as exc:
                        batch.rollback_to(mark)  # its entries go with its savepoint
                        unit.error = exc
        except Exception as exc:
            for unit in ok:
                unit.error = exc
        for unit in units:
            if unit.future is not None:
                if unit.error is not None:
                    unit.future.set_exception(unit.error)
                else:
                    unit.future.set_result(unit.result)
            elif unit.waited:
                unit.done.set()
            elif unit.error is not None:
                logger.error("a queued write failed: %s", unit.error)
            elif unit.then is not None:
                try:
                    unit.then()
                except Exception:
                    logger.exception("after a queued write")


class _ProcessTurns:
    """The group commits of the processes of one SQLite file take turns on a file lock.

    SQLite lets a writer that finds the database locked sleep and retry (its
    busy handler sleeps up to 100 ms at a time), so two ``ibx serve`` workers'
    group commits would wait on each other in long sleeps. Blocking on an
    exclusive ``flock`` instead wakes the next process the moment the other's
    commit ends. Without ``fcntl`` (or on another database) it does nothing.
    """

    def __init__(self, path: str | None) -> None:
        self._path = path
        self._fd: int | None = None

    @classmethod
    def for_database(cls, db: Database) -> _ProcessTurns:
        """The turns of ``db``'s file (none for a database that is not an SQLite file)."""
        name = db.url.database if db.is_sqlite else None
        if not name or name == ":memory:" or fcntl is None:
            return cls(None)
        return cls(f"{Path(name).resolve()}.group-lock")

    def __enter__(self) -> None:
        if self._path is None or fcntl is None:
            return
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *_exc: object) -> None:
        if self._fd is not None and fcntl is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class _Unit:
    __slots__ = ("done", "error", "future", "result", "then", "waited", "work")

    def __init__(
        self,
        work: Callable[[Session], Any],
        *,
        then: Callable[[], None] | None = None,
        waited: bool = True,
        future: Future[Any] | None = None,
    ) -> None:
        self.work = work
        self.future = future
        self.then = then
        self.waited = waited
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class Authorizer:
    """Decides compute requests and records the decisions (see the module docstring)."""

    def __init__(
        self, runtime: Runtime, group: GroupCommit, *, compute_margin: Callable[[int], float]
    ) -> None:
        self._runtime = runtime
        self._margin = compute_margin
        self._group = group

    # -- resolving the data ---------------------------------------------------------------

    def _datasets(self, request: ComputeRequest) -> list[Dataset]:
        """The selected datasets, one per owner, each holding every field.

        Raises:
            UnknownDatasetError: a named dataset is not registered.
            InvalidComputeRequestError: a named dataset lacks a field, or two share an owner.
            RequestRefusedError: an industry with no dataset holding the fields.
        """
        runtime = self._runtime
        catalog = runtime.consents.catalog
        if request.datasets:
            found = catalog.many(request.datasets)
            chosen = [found[d] for d in sorted(found)]
            owners: set[str] = set()
            for dataset in chosen:
                missing = sorted(set(request.fields) - set(dataset.fields))
                if missing:
                    raise InvalidComputeRequestError(
                        f"dataset {dataset.dataset_id} has no field(s) {', '.join(missing)}"
                    )
                if dataset.owner in owners:
                    raise InvalidComputeRequestError(
                        f"two selected datasets belong to {dataset.owner}: an enterprise "
                        "contributes one dataset to a job"
                    )
                owners.add(dataset.owner)
            return chosen
        assert request.industry is not None  # ComputeRequest: datasets or an industry
        enterprises = runtime.identities.names(role=Role.ENTERPRISE, industry=request.industry)
        listed = catalog.search(limit=_MAX_INDUSTRY_DATASETS, owners=enterprises)
        per_owner: dict[str, Dataset] = {}
        for dataset in listed:  # by id: each owner's first dataset holding every field
            if set(request.fields) <= set(dataset.fields) and dataset.owner not in per_owner:
                per_owner[dataset.owner] = dataset
        if not per_owner:
            raise RequestRefusedError(
                f"no dataset of an enterprise of {request.industry} holds "
                f"{', '.join(request.fields)}",
                reason="cohort",
            )
        return sorted(per_owner.values(), key=lambda d: d.dataset_id)

    # -- deciding -------------------------------------------------------------------------

    def authorize(
        self,
        requester: Identity,
        request: ComputeRequest,
        *,
        now: datetime | None = None,
        check_engine: Callable[[EngineName], object] | None = None,
        authz: Event | None = None,
        start: StartAtOnce | None = None,
    ) -> Authorization:
        """Decide ``request`` for ``requester`` and record the decision with the job.

        ``check_engine`` is called with the resolved engine before anything is
        recorded (it raises when the engine cannot run here). ``authz``, the
        route's own ``authz.decision`` entry (:attr:`exchange.access.Grant.pending`),
        is recorded in the decision's transaction, just before it; when the
        request is refused or fails, it is recorded on its own (a refused
        request leaves its record too). ``start``, when given, is called with
        the decision and the terms inside the decision's transaction; when it
        returns True (the engine started: its start needs nothing kept, as MPC
        and PSI) the job is recorded ``collecting`` at once, its
        ``pipeline.job`` move in the same transaction.

        Raises:
            InvalidComputeRequestError: the engine cannot compute the operation under the
                policy, or the selection is malformed.
            EngineUnavailableError: (from ``check_engine``) the engine is not installed.
            UnknownDatasetError: a named dataset is not registered.
            RequestRefusedError: the policy denies, or too few owners' consents cover it.
            ledger.LedgerError: the decision could not be recorded (nothing was).
        """
        try:
            unit = self.prepare(
                requester, request, now=now, check_engine=check_engine, authz=authz, start=start
            )
            authorization: Authorization = self._group.run(unit)
        except BaseException:
            if authz is not None:
                self.record_alone(authz)
            raise
        authorization.log()
        return authorization

    def prepare(
        self,
        requester: Identity,
        request: ComputeRequest,
        *,
        now: datetime | None = None,
        check_engine: Callable[[EngineName], object] | None = None,
        authz: Event | None = None,
        start: StartAtOnce | None = None,
    ) -> Callable[[Session], Authorization]:
        """The part of :meth:`authorize` ahead of the write lock; returns the decision's unit
        for the group commit (:meth:`GroupCommit.run` or :meth:`GroupCommit.submit`).
        The caller records ``authz`` alone (:meth:`record_alone`) when this or the unit
        raises.

        Raises:
            InvalidComputeRequestError: as :meth:`authorize`.
            EngineUnavailableError: as :meth:`authorize`.
            UnknownDatasetError: as :meth:`authorize`.
            RequestRefusedError: the policy or the cohort refused it (ahead of the lock).
        """
        try:
            return self._authorize(
                requester, request, now=now, check_engine=check_engine, authz=authz, start=start
            )
        except RequestRefusedError as exc:
            self._record_denial(requester, request, exc)
            raise

    def record_alone(self, event: Event) -> None:
        """Record ``event`` in a group commit of its own (a refused request's authz entry).

        Raises:
            ledger.LedgerError: it could not be recorded.
        """
        ledger = self._runtime.ledger
        self._group.run(lambda session: ledger.record(event, session=session))

    def _record_denial(
        self, requester: Identity, request: ComputeRequest, refusal: RequestRefusedError
    ) -> None:
        """Record the refusal on the ledger (``pipeline.denial``): a denied request is a
        security-relevant fact (the risk rules count them per requester). From the group's
        own thread (a refusal under the lock) it joins the next group instead of waiting.
        A failure to record is logged; the refusal stands either way."""
        entry = DenialEntry(
            requester=requester.name,
            reason=refusal.reason if refusal.reason in _DENIAL_REASONS else "policy",
            detail=(str(refusal) or refusal.title)[:2000],
            request_sha256=request.digest(),
        )
        event = Event(entry.TYPE, requester.name, entry.payload(), subjects=(requester.name,))
        ledger = self._runtime.ledger
        try:
            if threading.current_thread().name == _GROUP_THREAD:
                self._group.run_later(lambda session: ledger.record(event, session=session))
            else:
                self._group.run(lambda session: ledger.record(event, session=session))
        except Exception as exc:
            logger.error("could not record the refusal of %s's request: %s", requester.name, exc)

    def _plan(
        self,
        requester: Identity,
        request: ComputeRequest,
        *,
        check_engine: Callable[[EngineName], object] | None,
    ) -> _Plan:
        """Everything ahead of the write lock: the data, the engine, the consents checked.

        Raises:
            InvalidComputeRequestError: as :meth:`authorize`.
            EngineUnavailableError: as :meth:`authorize`.
            UnknownDatasetError: as :meth:`authorize`.
            RequestRefusedError: an industry with no dataset holding the fields.
        """
        runtime = self._runtime
        datasets = self._datasets(request)
        classes = sorted({d.classification.value for d in datasets}, key=_STRICTNESS.__getitem__)
        strictest = classes[-1]
        terms_of = {c: runtime.policy.release_terms(c) for c in classes}
        dominance = any(t.dominance and t.dominance_on_sums for t in terms_of.values())
        try:
            engine = request.engine_for(dominance=dominance)
        except InvalidRequestError as exc:
            raise InvalidComputeRequestError(str(exc)) from exc
        if check_engine is not None:
            check_engine(engine)
        terms = terms_of[strictest]
        consent_request = ConsentRequest(
            requester=requester.name,
            purpose=request.purpose,
            operation=request.operation,
            engine=consent.Engine(engine.value),
            datasets=tuple(d.dataset_id for d in datasets),
            fields=request.fields,
        )
        first_of_class: dict[str, str] = {}
        for dataset in datasets:
            first_of_class.setdefault(dataset.classification.value, dataset.dataset_id)
        by_id = {d.dataset_id: d for d in datasets}
        min_of_classes = max(t.min_cohort for t in terms_of.values())
        judge = functools.partial(
            self._judge,
            requester,
            request,
            engine=engine,
            first_of_class=first_of_class,
            terms=terms,
            min_of_classes=min_of_classes,
        )
        # Ahead of the lock: the consent check (receipts verified, or known verified).
        ahead = runtime.consents.check_ahead(consent_request, datasets=by_id)
        return _Plan(datasets, engine, terms, consent_request, by_id, judge, ahead, min_of_classes)

    def preview(
        self,
        requester: Identity,
        request: ComputeRequest,
        *,
        check_engine: Callable[[EngineName], object] | None = None,
    ) -> RequestPreview:
        """What :meth:`authorize` would decide for ``request`` now, and why; nothing recorded.

        The same steps as a submission up to the write lock (the data, the engine,
        the consent check, the policy at the cohort the consents give, the
        minimum cohort), so a refusal here carries the very reason and detail the
        submission's 403 would. Nothing is written: no decision, no consent use,
        no denial entry, no job; no agent hears of it. (A consent revoked or used
        up between a preview and a submission is seen by the submission.)

        Raises:
            InvalidComputeRequestError: as :meth:`authorize`.
            EngineUnavailableError: as :meth:`authorize`.
            UnknownDatasetError: as :meth:`authorize`.
        """
        try:
            plan = self._plan(requester, request, check_engine=check_engine)
        except RequestRefusedError as exc:  # an industry without a dataset holding the fields
            return RequestPreview.refused_early(exc.reason, str(exc))
        chosen = plan.ahead.chosen()
        trace: list[tuple[str, str, Decision]] = []
        refusal: RequestRefusedError | None = None
        verdict: _Verdict | None = None
        try:
            verdict = plan.judge(plan.ahead, chosen, trace=trace)
        except RequestRefusedError as exc:
            refusal = exc
        minimum, consent_minimums = _minimum(plan.min_of_classes, chosen)
        dataset_of = {d.owner: d.dataset_id for d in plan.datasets}
        return RequestPreview(
            allowed=refusal is None,
            reason=None if refusal is None else refusal.reason,
            detail=None if refusal is None else str(refusal),
            engine=plan.engine.value,
            classification=plan.terms.classification,
            policy_version=verdict.policy_version if verdict is not None else None,
            policy=tuple(
                PolicyCheck(classification, dataset_id, d.allow, d.reasons, d.version)
                for classification, dataset_id, d in trace
            ),
            cohort=len(chosen),
            min_cohort=minimum,
            policy_min_cohort=plan.min_of_classes,
            consent_min_cohorts=tuple(consent_minimums),
            covered=tuple(
                Covered(owner, dataset_of[owner], r.consent_id, r.signed.receipt.min_cohort)
                for owner, r in sorted(chosen.items())
            ),
            left_out=tuple(
                NotCovered(o.owner, dataset_of.get(o.owner), o.reason)
                for o in _left_out(plan.ahead, chosen)
            ),
        )

    def _authorize(
        self,
        requester: Identity,
        request: ComputeRequest,
        *,
        now: datetime | None,
        check_engine: Callable[[EngineName], object] | None,
        authz: Event | None,
        start: StartAtOnce | None,
    ) -> Callable[[Session], Authorization]:
        runtime = self._runtime
        plan = self._plan(requester, request, check_engine=check_engine)
        datasets, engine, terms, judge, ahead = (
            plan.datasets,
            plan.engine,
            plan.terms,
            plan.judge,
            plan.ahead,
        )
        consent_request, by_id = plan.consent_request, plan.by_id
        consents = runtime.consents
        job_id = new_job_id()
        # The policy decision at the cohort the consents give. A refusal here is final.
        planned = judge(ahead, ahead.chosen())

        def unit(session: Session) -> Authorization:
            if authz is not None:
                runtime.ledger.record(authz, session=session)
            # Under the lock: each chosen consent re-read (revocation, validity, use count);
            # when one no longer stands, the whole check again, as if nothing was ahead.
            use = consents.use_checked(ahead, decision_id=job_id, session=session)
            verdict = planned
            if use is None:
                use = consents.use(
                    consent_request, decision_id=job_id, session=session, datasets=by_id
                )
                try:
                    verdict = judge(use.report, use.used)
                except RequestRefusedError as exc:
                    self._record_denial(requester, request, exc)
                    raise
            return self._record(
                session,
                requester,
                request,
                engine=engine,
                job_id=job_id,
                datasets=datasets,
                use=use,
                verdict=verdict,
                terms=terms,
                now=now,
                start=start,
            )

        return unit

    def _judge(
        self,
        requester: Identity,
        request: ComputeRequest,
        report: CoverageReport,
        chosen: dict[str, ConsentRecord],
        *,
        engine: EngineName,
        first_of_class: dict[str, str],
        terms: ReleaseTerms,
        min_of_classes: int,
        trace: list[tuple[str, str, Decision]] | None = None,
    ) -> _Verdict:
        """The policy's decision at the cohort ``chosen`` gives, and the minimum cohort.

        ``trace``, when given, receives each policy decision asked (classification,
        dataset id, decision), the denying one last.

        Raises:
            RequestRefusedError: the policy denies, or the cohort is below the minimum.
        """
        runtime = self._runtime
        cohort = len(chosen)
        subject = Subject(requester.name, requester.role.value, requester.industry)
        domain = domain_of(requester)
        version: str | None = None
        for classification, dataset_id in sorted(first_of_class.items()):
            decision = runtime.policy.decide(
                subject,
                "compute",
                f"dataset:{dataset_id}",
                {
                    "domain": domain,
                    "classification": classification,
                    "purpose": request.purpose.value,
                    "engine": engine.value,
                    "operation": request.operation.value,
                    "cohort": cohort,
                },
            )
            if trace is not None:
                trace.append((classification, dataset_id, decision))
            if not decision.allow:
                raise RequestRefusedError(
                    f"the policy denies {requester.name} {request.operation.value} on "
                    f"{classification} data: {'; '.join(decision.reasons)}",
                    reason="policy",
                )
            version = version or decision.version
        minimum, consent_minimums = _minimum(min_of_classes, chosen)
        if cohort < minimum:
            raise RequestRefusedError(
                _cohort_refusal(cohort, minimum, terms, min_of_classes, consent_minimums)
                + _left_out_summary(report, chosen),
                reason="cohort",
            )
        return _Verdict(version or terms.policy_version, minimum)

    def _record(
        self,
        session: Session,
        requester: Identity,
        request: ComputeRequest,
        *,
        engine: EngineName,
        job_id: str,
        datasets: Sequence[Dataset],
        use: ConsentUse,
        verdict: _Verdict,
        terms: ReleaseTerms,
        now: datetime | None,
        start: StartAtOnce | None,
    ) -> Authorization:
        """Record the decision and write the job's rows (in ``session``).

        Raises:
            ledger.LedgerError: the decision could not be recorded.
        """
        runtime = self._runtime
        chosen = use.used
        minimum = verdict.minimum
        at = now or runtime.consents.now()
        deadline = at + timedelta(seconds=request.parameters.deadline_seconds)
        collect_until = deadline - timedelta(
            seconds=self._margin(request.parameters.deadline_seconds)
        )
        by_owner = {d.owner: d for d in datasets}
        participants = tuple(
            Participant(
                enterprise=owner,
                dataset=by_owner[owner].dataset_id,
                consent_id=record.consent_id,
                receipt_sha256=record.signed.receipt_hash(),
                min_cohort=record.signed.receipt.min_cohort,
                public_key=record.signed.receipt.public_key,
            )
            for owner, record in sorted(chosen.items())
        )
        record = DecisionRecord(
            job_id=job_id,
            requester=requester.name,
            request=request,
            engine=engine,
            policy_version=verdict.policy_version,
            participants=participants,
            left_out=_left_out(use.report, chosen),
            min_cohort=minimum,
            decided_at=at,
            deadline=deadline,
        )
        payload = record.to_payload()
        recorded = runtime.ledger.record(
            Event(DECISION_EVENT, requester.name, payload), session=session
        )
        stamp = format_rfc3339(at)
        opened = start is not None and start(record, terms)
        state = JobState.COLLECTING.value if opened else JobState.AUTHORIZED.value
        connection = session.connection()
        connection.execute(
            insert(_JOBS),
            {
                "job_id": job_id,
                "requester": requester.name,
                "engine": engine.value,
                "operation": request.operation.value,
                "state": state,
                "reason": None,
                "request_json": json.dumps(request.to_dict()),
                "decision_json": json.dumps(payload),
                "terms_json": json.dumps(terms.to_dict()),
                "classification": terms.classification,
                "decision_index": recorded.index,
                "created_at": stamp,
                "deadline": format_rfc3339(deadline),
                "deadline_ts": deadline.timestamp(),
                "collect_until_ts": collect_until.timestamp(),
                "updated_at": stamp,
                "result_json": None,
                "result_sha256": None,
                "result_index": None,
                "min_cohort": minimum,
            },
        )
        connection.execute(
            insert(_PARTICIPANTS),
            [
                {
                    "job_id": job_id,
                    "enterprise": p.enterprise,
                    "dataset": p.dataset,
                    "consent_id": p.consent_id,
                    "receipt_sha256": p.receipt_sha256,
                    "state": "pending",
                }
                for p in participants
            ],
        )
        if opened:
            runtime.ledger.record(
                move_event(job_id, requester.name, "authorized", JobState.COLLECTING, None),
                session=session,
            )
        return Authorization(record, terms, recorded.index, collect_until, stamp, state)


def _minimum(min_of_classes: int, chosen: dict[str, ConsentRecord]) -> tuple[int, list[int]]:
    """The minimum cohort (the strictest of the policy's and the chosen consents') and the
    consents' own minimums, largest first."""
    consent_minimums = sorted({r.signed.receipt.min_cohort for r in chosen.values()}, reverse=True)
    return max([min_of_classes, *consent_minimums]), consent_minimums


def _cohort_refusal(
    cohort: int,
    minimum: int,
    terms: ReleaseTerms,
    policy_minimum: int,
    consent_minimums: Sequence[int],
) -> str:
    consents = (
        f"consents: up to {consent_minimums[0]}" if consent_minimums else "consents: none cover"
    )
    return (
        f"cohort {cohort} is below the minimum of {minimum} "
        f"(policy {terms.classification}: {policy_minimum}; {consents})"
    )


def _left_out(report: CoverageReport, chosen: dict[str, ConsentRecord]) -> tuple[LeftOut, ...]:
    out = []
    for owner in report.owners:
        if owner in chosen:
            continue
        refusals = report.refusals.get(owner, ())
        if report.covering.get(owner):  # covered, but its consent demands a larger cohort
            # (any other consent of the owner's refused, e.g. revoked, is not why it is out)
            reason = "min_cohort: its consent requires a larger cohort than this job has"
        elif refusals:
            reason = f"{refusals[0].reason}: {refusals[0].error}"
        else:
            reason = f"no_consent: {owner} has no consent for this request"
        out.append(LeftOut(owner, reason[:500]))
    return tuple(out)


def _left_out_summary(report: CoverageReport, chosen: dict[str, ConsentRecord]) -> str:
    left = _left_out(report, chosen)
    if not left:
        return ""
    shown = "; ".join(f"{o.owner}: {o.reason.split(':', 1)[0]}" for o in left[:10])
    more = f"; and {len(left) - 10} more" if len(left) > 10 else ""
    return f"; left out: {shown}{more}"
