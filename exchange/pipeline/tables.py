"""The pipeline's tables (exchange's Alembic branch, revision ``exchange_0004_pipeline``).

``pipeline_jobs``          one row per authorized job: its state, the decision (as on the
                           ledger) and the release terms it was authorized under, the result
``pipeline_participants``  one row per (job, enterprise): dataset, consent, state
``pipeline_answers``       one row per (job, enterprise, round): the signed statement, the
                           payload an authenticated contribution carries, its ledger index
``pipeline_shares``        what one participant alone may read of a released job

Rows index the signed, ledgered statements; the ledger entries are the authority.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

__all__ = ["AnswerRow", "JobRow", "ParticipantRow", "ShareRow"]


class JobRow(Base):
    """An authorized job."""

    __tablename__ = "pipeline_jobs"
    __table_args__ = (
        Index("ix_pipeline_jobs_requester", "requester", "job_id"),
        Index("ix_pipeline_jobs_state_deadline", "state", "deadline_ts"),
    )

    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    requester: Mapped[str] = mapped_column(String(128))
    engine: Mapped[str] = mapped_column(String(8))
    operation: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_json: Mapped[str] = mapped_column(Text)
    decision_json: Mapped[str] = mapped_column(Text)
    terms_json: Mapped[str] = mapped_column(Text)
    classification: Mapped[str] = mapped_column(String(16))
    decision_index: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[str] = mapped_column(String(40))
    deadline: Mapped[str] = mapped_column(String(40))
    deadline_ts: Mapped[float] = mapped_column(Float)
    collect_until_ts: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[str] = mapped_column(String(40))
    result_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    result_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    min_cohort: Mapped[int] = mapped_column(Integer)


class ParticipantRow(Base):
    """One enterprise included in a job by the decision."""

    __tablename__ = "pipeline_participants"
    __table_args__ = (Index("ix_pipeline_participants_enterprise_state", "enterprise", "state"),)

    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    enterprise: Mapped[str] = mapped_column(String(128), primary_key=True)
    dataset: Mapped[str] = mapped_column(String(128))
    consent_id: Mapped[str] = mapped_column(String(40))
    receipt_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    """``pending``, ``contributed``, ``refused`` or ``withdrawn``."""


class AnswerRow(Base):
    """One agent's signed answer for one round: a contribution (with payload) or a refusal."""

    __tablename__ = "pipeline_answers"

    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    enterprise: Mapped[str] = mapped_column(String(128), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    statement_json: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(128))
    payload: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """The payload's JSON (UTF-8), None for a refusal or once withdrawn."""
    payload_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ledger_index: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[str] = mapped_column(String(40))


class ShareRow(Base):
    """What one participant alone may read of its job's result (e.g. rank tags)."""

    __tablename__ = "pipeline_shares"

    job_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    enterprise: Mapped[str] = mapped_column(String(128), primary_key=True)
    share_json: Mapped[str] = mapped_column(Text)
