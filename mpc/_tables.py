"""The tables mpc owns (created by ``mpc/migrations/versions/mpc_000*``)."""

from __future__ import annotations

from sqlalchemy import Float, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

__all__ = ["DpSpendRow", "HeKeyRow", "HePublicRow", "ReleaseRow"]


class HeKeyRow(Base):
    """One HE job's key: the secret half encrypted under the master key until destroyed."""

    __tablename__ = "mpc_he_keys"

    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    scheme: Mapped[str] = mapped_column(String(10))
    spec_json: Mapped[str] = mapped_column(Text)
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    encrypted_secret: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    state: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[str] = mapped_column(String(40))
    destroyed_at: Mapped[str | None] = mapped_column(String(40), nullable=True)


class HePublicRow(Base):
    """One HE job's public context, apart from the key row whose state changes."""

    __tablename__ = "mpc_he_public"

    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    public_context: Mapped[bytes] = mapped_column(LargeBinary)


class ReleaseRow(Base):
    """A release the guard approved: the cohort of one result of one question."""

    __tablename__ = "mpc_releases"

    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    requester: Mapped[str] = mapped_column(String(200), index=True)
    question: Mapped[str] = mapped_column(String(500))
    cohort_json: Mapped[str] = mapped_column(Text)
    min_cohort: Mapped[int] = mapped_column(Integer)
    approved_at: Mapped[str] = mapped_column(String(40))


class DpSpendRow(Base):
    """Epsilon spent so far under one consent."""

    __tablename__ = "mpc_dp_spend"

    consent_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    spent: Mapped[float] = mapped_column(Float)
