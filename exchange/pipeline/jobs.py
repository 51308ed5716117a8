"""Jobs: their states, every change on the ledger, and the views requesters read.

States (``docs/pipeline.md``): ``authorized`` → ``collecting`` → ``computing``
→ ``released``; or ``refused``, ``failed``, ``cancelled``. Terminal states
never change. Each change is a conditional ``UPDATE ... WHERE state IN
(...)`` together with its ``pipeline.job`` ledger entry (payload names the
requester, so the requester can read it), in one transaction: two workers
can never both move a job, e.g. both start computing it.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from core.canonical import JsonValue
from core.clock import format_rfc3339, parse_rfc3339, utcnow
from core.db import Database
from core.events import Event, EventRecorder
from exchange.pipeline.entries import (
    ContributionEntry,
    JobEntry,
    RefusalEntry,
    ResultEntry,
    WithdrawalEntry,
)
from exchange.pipeline.errors import JobNotFoundError
from exchange.pipeline.statements import DecisionRecord
from exchange.pipeline.tables import JobRow, ParticipantRow
from policies import ReleaseTerms

__all__ = [
    "CONTRIBUTION_EVENT",
    "JOB_EVENT",
    "REFUSAL_EVENT",
    "RESULT_EVENT",
    "TERMINAL",
    "WITHDRAWAL_EVENT",
    "JobRecord",
    "JobState",
    "JobStore",
    "JobView",
    "move_event",
]

logger = logging.getLogger(__name__)

JOB_EVENT = JobEntry.TYPE
CONTRIBUTION_EVENT = ContributionEntry.TYPE
REFUSAL_EVENT = RefusalEntry.TYPE
WITHDRAWAL_EVENT = WithdrawalEntry.TYPE
RESULT_EVENT = ResultEntry.TYPE


class JobState(enum.StrEnum):
    """A job's state."""

    AUTHORIZED = "authorized"
    COLLECTING = "collecting"
    COMPUTING = "computing"
    RELEASED = "released"
    REFUSED = "refused"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobState.RELEASED, JobState.REFUSED, JobState.FAILED, JobState.CANCELLED})
"""States a job never leaves."""

LIVE = (JobState.AUTHORIZED, JobState.COLLECTING, JobState.COMPUTING)


@dataclass(frozen=True)
class JobRecord:
    """A job's row, read once."""

    job_id: str
    requester: str
    state: JobState
    reason: str | None
    decision: DecisionRecord
    terms: ReleaseTerms
    decision_index: int
    created_at: datetime
    deadline: datetime
    deadline_ts: float
    collect_until_ts: float
    updated_at: datetime
    min_cohort: int
    result: dict[str, JsonValue] | None
    result_sha256: str | None
    result_index: int | None

    @classmethod
    def of(cls, row: JobRow) -> JobRecord:
        """The record of a row."""
        return cls(
            job_id=row.job_id,
            requester=row.requester,
            state=JobState(row.state),
            reason=row.reason,
            decision=_decision_of(row.decision_json),
            terms=_terms_of(row.terms_json),
            decision_index=row.decision_index,
            created_at=parse_rfc3339(row.created_at),
            deadline=parse_rfc3339(row.deadline),
            deadline_ts=row.deadline_ts,
            collect_until_ts=row.collect_until_ts,
            updated_at=parse_rfc3339(row.updated_at),
            min_cohort=row.min_cohort,
            result=json.loads(row.result_json) if row.result_json else None,
            result_sha256=row.result_sha256,
            result_index=row.result_index,
        )


@functools.lru_cache(maxsize=1024)
def _decision_of(text: str) -> DecisionRecord:
    """A stored decision, parsed once per distinct text (every answer reads its job)."""
    return DecisionRecord.from_payload(json.loads(text))


@functools.lru_cache(maxsize=1024)
def _terms_of(text: str) -> ReleaseTerms:
    return ReleaseTerms.from_dict(json.loads(text))


@dataclass(frozen=True)
class JobView:
    """What a requester (or an auditor) sees of a job."""

    job_id: str
    state: str
    reason: str | None
    requester: str
    operation: str
    engine: str
    created_at: str
    deadline: str
    updated_at: str
    participants: int
    contributed: int
    refused: int
    min_cohort: int
    decision_index: int
    result_index: int | None

    def to_dict(self) -> dict[str, JsonValue]:
        """The job view of ``docs/pipeline.md``."""
        return {
            "job_id": self.job_id,
            "state": self.state,
            "reason": self.reason,
            "requester": self.requester,
            "operation": self.operation,
            "engine": self.engine,
            "created_at": self.created_at,
            "deadline": self.deadline,
            "updated_at": self.updated_at,
            "participants": self.participants,
            "contributed": self.contributed,
            "refused": self.refused,
            "min_cohort": self.min_cohort,
            "decision_index": self.decision_index,
            "result_index": self.result_index,
        }


_JOBS = cast(Table, JobRow.__table__)
_STATE_OF = select(_JOBS.c.state, _JOBS.c.requester).where(_JOBS.c.job_id == bindparam("job_id"))
_MOVE = (
    update(_JOBS)
    .where(_JOBS.c.job_id == bindparam("b_job_id"), _JOBS.c.state == bindparam("b_before"))
    .values(
        state=bindparam("b_to"), reason=bindparam("b_reason"), updated_at=bindparam("b_updated_at")
    )
)


def move_event(job_id: str, requester: str, before: str, to: JobState, reason: str | None) -> Event:
    """The ``pipeline.job`` entry of a move from ``before`` to ``to``."""
    entry = JobEntry.model_validate(
        {
            "job_id": job_id,
            "requester": requester,
            "from": before,
            "state": to.value,
            "reason": reason,
        }
    )
    return Event(JOB_EVENT, "exchange", entry.payload())


class JobStore:
    """Reads jobs and moves them between states, each move on the ledger."""

    def __init__(self, db: Database, recorder: EventRecorder) -> None:
        self._db = db
        self._recorder = recorder

    # -- reading --------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord:
        """The job ``job_id``.

        Raises:
            JobNotFoundError: no such job.
        """
        with self._db.read() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise JobNotFoundError(f"no job {job_id}")
            return JobRecord.of(row)

    def view(self, job_id: str) -> JobView:
        """The view of ``job_id``.

        Raises:
            JobNotFoundError: no such job.
        """
        with self._db.read() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                raise JobNotFoundError(f"no job {job_id}")
            return self._views(session, [row])[0]

    def views(self, *, requester: str | None, after: str | None, limit: int) -> list[JobView]:
        """Up to ``limit`` job views with ids after ``after`` (of ``requester`` when given)."""
        with self._db.read() as session:
            query = select(JobRow).order_by(JobRow.job_id).limit(limit)
            if requester is not None:
                query = query.where(JobRow.requester == requester)
            if after is not None:
                query = query.where(JobRow.job_id > after)
            rows = list(session.execute(query).scalars())
            return self._views(session, rows)

    @staticmethod
    def _views(session: Session, rows: Sequence[JobRow]) -> list[JobView]:
        ids = [r.job_id for r in rows]
        counts: dict[str, dict[str, int]] = {i: {} for i in ids}
        if ids:
            grouped = session.execute(
                select(ParticipantRow.job_id, ParticipantRow.state, func.count())
                .where(ParticipantRow.job_id.in_(ids))
                .group_by(ParticipantRow.job_id, ParticipantRow.state)
            )
            for job_id, state, count in grouped:
                counts[job_id][state] = int(count)
        return [
            JobView(
                job_id=r.job_id,
                state=r.state,
                reason=r.reason,
                requester=r.requester,
                operation=r.operation,
                engine=r.engine,
                created_at=r.created_at,
                deadline=r.deadline,
                updated_at=r.updated_at,
                participants=sum(counts[r.job_id].values()),
                contributed=counts[r.job_id].get("contributed", 0),
                refused=counts[r.job_id].get("refused", 0),
                min_cohort=r.min_cohort,
                decision_index=r.decision_index,
                result_index=r.result_index,
            )
            for r in rows
        ]

    def due(self, now: float) -> tuple[list[str], list[str]]:
        """Jobs whose collection ended (collecting, past ``collect_until``) and live jobs
        past their deadline, by id."""
        with self._db.read() as session:
            collecting = session.execute(
                select(JobRow.job_id).where(
                    JobRow.state == JobState.COLLECTING.value, JobRow.collect_until_ts <= now
                )
            ).scalars()
            ended = list(collecting)
            late = session.execute(
                select(JobRow.job_id).where(
                    JobRow.state.in_([s.value for s in LIVE]), JobRow.deadline_ts <= now
                )
            ).scalars()
            return ended, list(late)

    def in_state(self, state: JobState) -> list[str]:
        """Every job in ``state``, by id."""
        with self._db.read() as session:
            return list(
                session.execute(
                    select(JobRow.job_id).where(JobRow.state == state.value).order_by(JobRow.job_id)
                ).scalars()
            )

    # -- moving ---------------------------------------------------------------------------

    def move(
        self,
        job_id: str,
        *,
        source: Iterable[JobState],
        to: JobState,
        reason: str | None = None,
        session: Session | None = None,
    ) -> bool:
        """Move ``job_id`` from one of ``source`` to ``to`` and record it; False when the job
        was in none of them (another worker or path moved it first).

        Raises:
            ledger.LedgerError: the change could not be recorded (nothing changed).
        """
        if session is None:
            with self._db.write() as own:
                return self.move(job_id, source=source, to=to, reason=reason, session=own)
        sources = [s.value for s in source]
        connection = session.connection()
        found = connection.execute(_STATE_OF, {"job_id": job_id}).first()
        if found is None or found.state not in sources:
            return False
        before, requester = found.state, found.requester
        done = connection.execute(
            _MOVE,
            {
                "b_job_id": job_id,
                "b_before": before,
                "b_to": to.value,
                "b_reason": reason,
                "b_updated_at": format_rfc3339(utcnow()),
            },
        )
        if done.rowcount != 1:
            return False
        self._recorder.record(move_event(job_id, requester, before, to, reason), session=session)
        logger.info(
            "job %s: %s -> %s%s", job_id, before, to.value, f" ({reason})" if reason else ""
        )
        return True
