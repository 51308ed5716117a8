"""The tables mpc owns (created by ``mpc/migrations/versions/mpc_000*``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

__all__ = [
    "DpSpendRow",
    "GroupSpendRow",
    "HeKeyRow",
    "HePublicRow",
    "ReleaseRow",
    "ReleasedAnswerRow",
    "TrackerLogRow",
    "TrackerRow",
]


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
    """A release the guard approved: what it was computed over, for whom, who was left out.

    ``query_json`` is the release's canonical description (subject, statistics,
    contributors and weights) and ``left_out_json`` who was left out and why:
    the enterprise and auditors read them; the requester only gets counts.
    """

    __tablename__ = "mpc_releases"

    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    requester: Mapped[str] = mapped_column(String(200), index=True)
    adversary: Mapped[str] = mapped_column(String(200), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    query_json: Mapped[str] = mapped_column(Text)
    cohort_json: Mapped[str] = mapped_column(Text)
    left_out_json: Mapped[str] = mapped_column(Text)
    min_cohort: Mapped[int] = mapped_column(Integer)
    approved_at: Mapped[str] = mapped_column(String(40))


class TrackerRow(Base):
    """The reduced form of every weight vector released to one group about one field.

    ``matrix`` holds the last snapshot's free part, ``len(pivots) × (len(columns)
    − len(pivots))`` little-endian uint32 entries of the field modulo ``prime``
    (loaded only when the process has no current copy); the releases since are
    in ``mpc_disclosure_log``; ``stamp`` changes on every write, so a cached
    copy is used only while it is still the stored one.
    """

    __tablename__ = "mpc_disclosure_trackers"

    tracker_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    adversary: Mapped[str] = mapped_column(String(200), index=True)
    dataset: Mapped[str] = mapped_column(String(200))
    field: Mapped[str] = mapped_column(String(200))
    prime: Mapped[int] = mapped_column(BigInteger)
    columns_json: Mapped[str] = mapped_column(Text)
    pivots_json: Mapped[str] = mapped_column(Text)
    matrix: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    releases: Mapped[int] = mapped_column(Integer)
    stamp: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(40))


class TrackerLogRow(Base):
    """A rank-adding release since the form's last snapshot: its weights, in order."""

    __tablename__ = "mpc_disclosure_log"

    tracker_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    weights_json: Mapped[str] = mapped_column(Text)


class ReleasedAnswerRow(Base):
    """A noisy answer already given to a group: the same question gets it again."""

    __tablename__ = "mpc_released_answers"

    answer_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    adversary: Mapped[str] = mapped_column(String(200), index=True)
    job_id: Mapped[str] = mapped_column(String(200))
    values_json: Mapped[str] = mapped_column(Text)
    released_at: Mapped[str] = mapped_column(String(40))


class GroupSpendRow(Base):
    """Epsilon a requester group has spent on one dataset."""

    __tablename__ = "mpc_group_spend"

    budget_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    adversary: Mapped[str] = mapped_column(String(200), index=True)
    dataset: Mapped[str] = mapped_column(String(200))
    spent: Mapped[float] = mapped_column(Float)


class DpSpendRow(Base):
    """Epsilon spent so far under one consent."""

    __tablename__ = "mpc_dp_spend"

    consent_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    spent: Mapped[float] = mapped_column(Float)
