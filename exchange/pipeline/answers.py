"""The data agents' side of a job: their tasks, and their signed contributions and refusals.

Every statement is verified before anything is stored: it is of the right
kind, for this job and this round, by the calling enterprise, which the
decision included, signed by that enterprise's *registered* key, and (a
contribution) states the engine's hash of the payload it carries. A
statement that fails is refused (403) and the refusal logged. The exchange
keeps exactly one answer per (job, enterprise, round): the same statement
again is ignored (``False``), another for an answered round is refused (409).
Each accepted answer is a ledger entry (``pipeline.contribution`` or
``pipeline.refusal``, actor: the enterprise) in the transaction that stores it;
a PSI contribution that is handed on names the participant it is handed to
(``"to": {"enterprise": successor}``), which checks it before blinding it.

An HE contribution may also come in the binary form of
:mod:`exchange.pipeline.frames` (:meth:`AnswerDesk.contribute_framed`): the
same checks, its hash taken over the body as received. Long polls look for
tasks through a shared snapshot of who is pending (:mod:`exchange.pipeline.pending`),
and the ledger evidence served with tasks keeps its proofs
(:class:`exchange.pipeline.evidence.EvidenceCache`).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.canonical import JsonValue, canonical_bytes
from core.clock import format_rfc3339, utcnow
from core.events import Event
from core.keys import Ed25519PublicKey
from exchange.identities import IdentityError, Role, Status
from exchange.pipeline.engine import EngineJob, JobContext, PayloadError
from exchange.pipeline.entries import ContributionEntry, RefusalEntry
from exchange.pipeline.errors import (
    AnswerConflictError,
    InvalidPayloadError,
    JobNotFoundError,
    NotCollectingError,
    StatementRefusedError,
)
from exchange.pipeline.evidence import EvidenceCache
from exchange.pipeline.frames import FramedContribution
from exchange.pipeline.jobs import JobRecord, JobState
from exchange.pipeline.pending import PendingIndex
from exchange.pipeline.psi_job import PsiEngineJob, psi_successor
from exchange.pipeline.request import EngineName
from exchange.pipeline.statements import (
    CONTRIBUTION_KIND,
    REFUSAL_KIND,
    AgentStatement,
    StatementError,
)
from exchange.pipeline.tables import AnswerRow, JobRow, ParticipantRow
from exchange.witnessing import served_note

if TYPE_CHECKING:
    from exchange.pipeline.service import Pipeline

__all__ = ["PENDING_MAX_AGE", "AnswerDesk"]

logger = logging.getLogger(__name__)

PENDING_MAX_AGE = 0.5
"""Seconds the shared pending snapshot is reused while nothing happens in this process
(other workers' jobs are seen within that)."""


@dataclass(frozen=True)
class _Part:
    """A participant's row as read."""

    enterprise: str
    state: str


class _LazyAnswers(Mapping[str, Mapping[int, Mapping[str, JsonValue]]]):
    """A job's authenticated payloads, read from the database on first use."""

    def __init__(self, desk: AnswerDesk, job_id: str) -> None:
        self._desk = desk
        self._job_id = job_id
        self._loaded: dict[str, dict[int, Mapping[str, JsonValue]]] | None = None

    def _all(self) -> dict[str, dict[int, Mapping[str, JsonValue]]]:
        if self._loaded is None:
            self._loaded = self._desk.payloads(self._job_id)
        return self._loaded

    def __getitem__(self, key: str) -> Mapping[int, Mapping[str, JsonValue]]:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


class AnswerDesk:
    """Tasks out, verified answers in (see the module docstring)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._runtime = pipeline.runtime
        self.pending = PendingIndex(
            pipeline.runtime.db, lambda: pipeline.signal.generation, max_age=PENDING_MAX_AGE
        )
        """Who may have a task now (a shared snapshot for the long polls' re-looks)."""
        self.evidence = EvidenceCache(
            lambda: pipeline.runtime.ledger,
            served=lambda note: served_note(pipeline.runtime, note),
        )
        """The ledger evidence served with tasks (immutable proofs kept)."""

    # -- tasks ----------------------------------------------------------------------------

    def tasks(self, enterprise: str) -> list[dict[str, JsonValue]]:
        """The rounds ``enterprise``'s agent should answer now, oldest job first."""
        with self._runtime.db.read() as session:
            rows = session.execute(
                select(JobRow, ParticipantRow)
                .join(ParticipantRow, ParticipantRow.job_id == JobRow.job_id)
                .where(
                    ParticipantRow.enterprise == enterprise,
                    ParticipantRow.state == "pending",
                    JobRow.state == JobState.COLLECTING.value,
                )
                .order_by(JobRow.created_at, JobRow.job_id)
            ).all()
            jobs = [(JobRecord.of(job), part.dataset, part.consent_id) for job, part in rows]
            answered: dict[str, set[int]] = {}
            if jobs:
                for job_id, round_no in session.execute(
                    select(AnswerRow.job_id, AnswerRow.round).where(
                        AnswerRow.enterprise == enterprise,
                        AnswerRow.job_id.in_([j.job_id for j, _, _ in jobs]),
                    )
                ):
                    answered.setdefault(job_id, set()).add(round_no)
        tasks: list[dict[str, JsonValue]] = []
        for job, dataset, consent_id in jobs:
            try:
                engine = self._pipeline.engine(job.decision.engine)
                context = self._pipeline.context(job)
                rounds = engine.rounds(context)
                done = answered.get(job.job_id, set())
                open_round = next((r for r in range(1, rounds + 1) if r not in done), None)
                if open_round is None:
                    continue
                material = engine.material(
                    context, enterprise, open_round, _LazyAnswers(self, job.job_id)
                )
            except Exception as exc:
                logger.warning("job %s: no task for %s: %s", job.job_id, enterprise, exc)
                continue
            if material is None:
                continue
            tasks.append(
                {
                    "job_id": job.job_id,
                    "round": open_round,
                    "decision_index": job.decision_index,
                    "engine": job.decision.engine.value,
                    "request": job.decision.request.to_dict(),
                    "dataset": dataset,
                    "consent_id": consent_id,
                    "deadline": format_rfc3339(job.deadline),
                    "material": dict(material),
                }
            )
        return tasks

    def tasks_if_pending(self, enterprise: str) -> list[dict[str, JsonValue]]:
        """:meth:`tasks`, after a look at the shared :attr:`pending` snapshot (a long
        poll's re-look: an enterprise pending nowhere has no task, no query needed)."""
        if enterprise not in self.pending.pending():
            return []
        return self.tasks(enterprise)

    def payloads(self, job_id: str) -> dict[str, dict[int, Mapping[str, JsonValue]]]:
        """Every stored contribution payload of ``job_id``: enterprise → round → payload."""
        out: dict[str, dict[int, Mapping[str, JsonValue]]] = {}
        with self._runtime.db.read() as session:
            rows = session.execute(
                select(AnswerRow.enterprise, AnswerRow.round, AnswerRow.payload).where(
                    AnswerRow.job_id == job_id, AnswerRow.kind == "contribution"
                )
            )
            for enterprise, round_no, payload in rows:
                if payload is not None:
                    out.setdefault(enterprise, {})[round_no] = json.loads(payload)
        return out

    # -- answers --------------------------------------------------------------------------

    def contribute(self, enterprise: str, job_id: str, body: Mapping[str, JsonValue]) -> bool:
        """Accept a signed contribution; False when it is the same statement again.

        Raises:
            StatementRefusedError: unsigned, wrongly signed, malformed, for another job,
                round or enterprise, not a participant, or the hash is not the payload's.
            JobNotFoundError: no such job.
            AnswerConflictError: another answer for this round is already stored.
            NotCollectingError: the job no longer collects (or the enterprise was withdrawn).
            InvalidPayloadError: the payload does not have the job's shape.
        """
        payload = body.get("payload")
        if not isinstance(payload, dict):
            raise self._refused(enterprise, job_id, "a contribution carries a payload object")
        statement, signature, job, part = self._verified(
            enterprise,
            job_id,
            body,
            CONTRIBUTION_KIND,
            allowed={"statement", "signature", "payload"},
        )

        def digest_of(engine: EngineJob, context: JobContext) -> tuple[str, bytes]:
            digest = engine.payload_digest(context, enterprise, statement.round, payload)
            return digest, json.dumps(payload, separators=(",", ":")).encode()

        return self._accept(statement, signature, job, part, digest_of)

    def contribute_framed(self, enterprise: str, job_id: str, framed: FramedContribution) -> bool:
        """Accept a binary HE contribution (:mod:`exchange.pipeline.frames`); False when it
        is the same statement again. Its payload hash is SHA-256 of the body as received.

        Raises:
            StatementRefusedError: as for :meth:`contribute`.
            JobNotFoundError: no such job.
            AnswerConflictError: another answer for this round is already stored.
            NotCollectingError: the job no longer collects (or the enterprise was withdrawn).
            InvalidPayloadError: not an HE job, or the body is not framed chunks.
        """
        body: dict[str, JsonValue] = {
            "statement": dict(framed.statement),
            "signature": framed.signature,
        }
        statement, signature, job, part = self._verified(
            enterprise, job_id, body, CONTRIBUTION_KIND, allowed={"statement", "signature"}
        )

        def digest_of(engine: EngineJob, context: JobContext) -> tuple[str, bytes]:
            if job.decision.engine is not EngineName.HE:
                raise PayloadError(
                    f"a binary contribution holds HE ciphertexts; {job_id} runs on "
                    f"{job.decision.engine.value}: send its payload as JSON"
                )
            payload = framed.payload()  # splits the frames: PayloadError when not framed
            return framed.digest, json.dumps(payload, separators=(",", ":")).encode()

        return self._accept(statement, signature, job, part, digest_of)

    def _accept(
        self,
        statement: AgentStatement,
        signature: str,
        job: JobRecord,
        part: _Part,
        digest_of: Callable[[EngineJob, JobContext], tuple[str, bytes]],
    ) -> bool:
        """Store a verified statement's contribution once its payload hash is checked.

        Raises:
            AnswerConflictError: another answer for this round is already stored.
            NotCollectingError: the job no longer collects.
            StatementRefusedError: the round is not open, or the hash is not the payload's.
            InvalidPayloadError: ``digest_of`` found the payload of the wrong shape.
        """
        enterprise, job_id = statement.enterprise, job.job_id
        if self._already(job_id, statement, signature):
            return False
        self._collecting(job_id, job.state.value, part)
        engine = self._pipeline.engine(job.decision.engine)
        context = self._pipeline.context(job)
        self._round_open(engine, context, enterprise, statement)
        try:
            digest, stored = digest_of(engine, context)
        except PayloadError as exc:
            raise InvalidPayloadError(str(exc)) from exc
        assert statement.payload_sha256 is not None  # a contribution states it
        if not hmac.compare_digest(digest, statement.payload_sha256):
            raise self._refused(
                enterprise, job_id, "the statement's payload_sha256 is not the payload's hash"
            )
        handed_to = None
        if isinstance(engine, PsiEngineJob):  # the successor checks what it is handed
            handed_to = psi_successor(context, enterprise, statement.round)
        return self._store(
            job,
            statement,
            signature,
            payload=stored,
            digest=digest,
            rounds=engine.rounds(context),
            handed_to=handed_to,
        )

    def refuse(self, enterprise: str, job_id: str, body: Mapping[str, JsonValue]) -> bool:
        """Record a signed refusal; False when it is the same statement again.

        Raises:
            StatementRefusedError: as for :meth:`contribute`.
            JobNotFoundError: no such job.
            AnswerConflictError: another answer for this round is already stored.
            NotCollectingError: the job no longer collects.
        """
        statement, signature, job, part = self._verified(
            enterprise, job_id, body, REFUSAL_KIND, allowed={"statement", "signature"}
        )
        if self._already(job_id, statement, signature):
            return False
        self._collecting(job.job_id, job.state.value, part)
        return self._store(job, statement, signature, payload=None, digest=None, rounds=0)

    def _refused(self, enterprise: str, job_id: str, why: str) -> StatementRefusedError:
        logger.warning("refused a statement of %s for %s: %s", enterprise, job_id, why)
        return StatementRefusedError(why)

    def _verified(
        self,
        enterprise: str,
        job_id: str,
        body: Mapping[str, JsonValue],
        kind: str,
        *,
        allowed: set[str],
    ) -> tuple[AgentStatement, str, JobRecord, _Part]:
        unexpected = sorted(set(body) - allowed)
        if unexpected:
            raise self._refused(enterprise, job_id, f"unexpected member(s) {unexpected}")
        raw, signature = body.get("statement"), body.get("signature")
        if not isinstance(raw, dict):
            raise self._refused(enterprise, job_id, "no statement")
        if not isinstance(signature, str) or not signature:
            raise self._refused(enterprise, job_id, "the statement is not signed")
        try:
            statement = AgentStatement.from_dict(raw)
        except StatementError as exc:
            raise self._refused(enterprise, job_id, f"malformed statement: {exc}") from exc
        if statement.kind != kind:
            raise self._refused(enterprise, job_id, f"expected a {kind} statement")
        if statement.job_id != job_id:
            raise self._refused(enterprise, job_id, f"the statement is for {statement.job_id}")
        if statement.enterprise != enterprise:
            raise self._refused(
                enterprise, job_id, f"the statement is {statement.enterprise}'s, not the caller's"
            )
        key = self._registered_key(enterprise)
        if key is None or not statement.verify(key, signature):
            raise self._refused(
                enterprise,
                job_id,
                f"the signature does not verify under {enterprise}'s registered key",
            )
        try:
            job = self._pipeline.jobs.get(job_id)
        except JobNotFoundError:
            raise self._refused(enterprise, job_id, "no such job") from None
        with self._runtime.db.read() as session:
            row = session.get(ParticipantRow, (job_id, enterprise))
            part = None if row is None else _Part(row.enterprise, row.state)
        if part is None:
            raise self._refused(enterprise, job_id, f"{enterprise} is not a participant")
        return statement, signature, job, part

    def _registered_key(self, enterprise: str) -> Ed25519PublicKey | None:
        try:
            identity = self._runtime.identities.get(enterprise)
        except IdentityError:
            return None
        if identity.role is not Role.ENTERPRISE or identity.status is not Status.ACTIVE:
            return None
        return identity.public_key

    def _already(self, job_id: str, statement: AgentStatement, signature: str) -> bool:
        """True for the same statement again; raises for another one for the round.

        Raises:
            AnswerConflictError: another statement answered this round.
        """
        with self._runtime.db.read() as session:
            row = session.get(AnswerRow, (job_id, statement.enterprise, statement.round))
            return row is not None and _same(row, statement, signature)

    @staticmethod
    def _collecting(job_id: str, state: str, part: _Part | ParticipantRow) -> None:
        """Raises:
        NotCollectingError: the job no longer collects, or the participant left it.
        """
        if state != JobState.COLLECTING.value:
            raise NotCollectingError(f"job {job_id} is {state}, no longer collecting", state=state)
        if part.state in ("withdrawn", "refused"):
            raise NotCollectingError(
                f"{part.enterprise} no longer takes part in {job_id} ({part.state})", state=state
            )

    def _round_open(
        self, engine: EngineJob, context: JobContext, enterprise: str, statement: AgentStatement
    ) -> None:
        rounds = engine.rounds(context)
        if statement.round > rounds:
            raise self._refused(
                enterprise, context.job_id, f"round {statement.round} of a {rounds}-round job"
            )
        answers = _LazyAnswers(self, context.job_id)
        if engine.material(context, enterprise, statement.round, answers) is None:
            raise self._refused(enterprise, context.job_id, f"round {statement.round} is not open")

    def _store(
        self,
        job: JobRecord,
        statement: AgentStatement,
        signature: str,
        *,
        payload: bytes | None,
        digest: str | None,
        rounds: int,
        handed_to: str | None = None,
    ) -> bool:
        runtime = self._runtime
        enterprise = statement.enterprise
        contribution = statement.kind == CONTRIBUTION_KIND

        def work(session: Session) -> int | None:
            existing = session.get(AnswerRow, (job.job_id, enterprise, statement.round))
            if existing is not None and _same(existing, statement, signature):
                return None
            row = session.get(JobRow, job.job_id)
            part = session.get(ParticipantRow, (job.job_id, enterprise))
            assert row is not None and part is not None
            self._collecting(job.job_id, row.state, part)
            model = ContributionEntry if contribution else RefusalEntry
            entry = model.model_validate(
                {
                    "job_id": job.job_id,
                    "enterprise": enterprise,
                    "round": statement.round,
                    "statement": statement.to_dict(),
                    "signature": signature,
                    # lets that enterprise read the entry (own scope):
                    "to": None if handed_to is None else {"enterprise": handed_to},
                }
            )
            recorded = runtime.ledger.record(
                Event(model.TYPE, enterprise, entry.payload()), session=session
            )
            session.add(
                AnswerRow(
                    job_id=job.job_id,
                    enterprise=enterprise,
                    round=statement.round,
                    kind="contribution" if contribution else "refusal",
                    statement_json=canonical_bytes(statement.to_dict()).decode(),
                    signature=signature,
                    payload=payload,
                    payload_sha256=digest,
                    ledger_index=recorded.index,
                    received_at=format_rfc3339(utcnow()),
                )
            )
            if not contribution:
                part.state = "refused"
            elif statement.round >= rounds:
                part.state = "contributed"
            session.flush()
            return _pending(session, job.job_id)

        try:
            pending = self._pipeline.group.run(work)
            if pending is None:
                return False
        except IntegrityError:  # a concurrent copy of the same answer won the race
            if self._already(job.job_id, statement, signature):
                return False
            raise AnswerConflictError(
                f"{enterprise} already answered round {statement.round} of {job.job_id}"
            ) from None
        logger.info(
            "job %s: %s %s round %d",
            job.job_id,
            enterprise,
            "contributed" if contribution else "refused",
            statement.round,
        )
        self._pipeline.signal.notify()
        if pending == 0:
            self._pipeline.all_answered(job.job_id)
        return True


def _same(row: AnswerRow, statement: AgentStatement, signature: str) -> bool:
    """Whether the stored answer is this statement; raises when it is another.

    Raises:
        AnswerConflictError: another statement answered the round.
    """
    if row.statement_json == canonical_bytes(statement.to_dict()).decode() and hmac.compare_digest(
        row.signature.encode(), signature.encode()
    ):
        return True
    raise AnswerConflictError(
        f"{statement.enterprise} already answered round {statement.round} of {statement.job_id} "
        "with another statement"
    )


def _pending(session: Session, job_id: str) -> int:
    count = session.execute(
        select(func.count())
        .select_from(ParticipantRow)
        .where(ParticipantRow.job_id == job_id, ParticipantRow.state == "pending")
    ).scalar_one()
    return int(count)
