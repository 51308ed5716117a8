"""consent's tables (Alembic branch ``consent``).

``consent_datasets``  the dataset catalog: id, owner, fields, classification (metadata only)
``consent_grants``    one row per accepted receipt: the signed bytes, the signature, state
``consent_scope``     one row per (consent, dataset, field), with the requester key, so
                      ``covering_consents`` is an index range scan on (dataset, requester_key)
``consent_nonces``    every accepted nonce per enterprise (grants and revocations): replays
``consent_uses``      each decision or job that relied on a consent, and its ledger index
"""

from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

__all__ = ["DatasetRow", "GrantRow", "NonceRow", "ScopeRow", "UseRow"]


class DatasetRow(Base):
    """A registered dataset."""

    __tablename__ = "consent_datasets"

    dataset_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    fields: Mapped[str] = mapped_column(Text)  # JSON list, sorted
    classification: Mapped[str] = mapped_column(String(16))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[str] = mapped_column(String(40))


class GrantRow(Base):
    """An accepted consent receipt and its state."""

    __tablename__ = "consent_grants"

    consent_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    enterprise: Mapped[str] = mapped_column(String(128), index=True)
    requester_key: Mapped[str] = mapped_column(String(300))
    receipt: Mapped[bytes] = mapped_column(LargeBinary)  # RFC 8785 bytes, as signed
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    receipt_hash: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[str] = mapped_column(String(40))
    valid_until: Mapped[str] = mapped_column(String(40))
    use_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    use_count: Mapped[int] = mapped_column(Integer, default=0)
    accepted_at: Mapped[str] = mapped_column(String(40))
    ledger_index: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    revocation: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    revocation_signature: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    revocation_ledger_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class ScopeRow(Base):
    """One (dataset, field) a consent covers, keyed for lookups by dataset and requester."""

    __tablename__ = "consent_scope"
    __table_args__ = (Index("ix_consent_scope_dataset_requester", "dataset", "requester_key"),)

    consent_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("consent_grants.consent_id"), primary_key=True
    )
    dataset: Mapped[str] = mapped_column(String(128), primary_key=True)
    field: Mapped[str] = mapped_column(String(64), primary_key=True)
    requester_key: Mapped[str] = mapped_column(String(300))


class NonceRow(Base):
    """A nonce an enterprise has used."""

    __tablename__ = "consent_nonces"

    enterprise: Mapped[str] = mapped_column(String(128), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(90), primary_key=True)
    consent_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    accepted_at: Mapped[str] = mapped_column(String(40))


class UseRow(Base):
    """A decision or job that relied on a consent."""

    __tablename__ = "consent_uses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consent_id: Mapped[str] = mapped_column(String(40), index=True)
    enterprise: Mapped[str] = mapped_column(String(128), index=True)
    decision_id: Mapped[str] = mapped_column(String(128), index=True)
    job_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))  # "decision" or "job"
    time: Mapped[str] = mapped_column(String(40))
    ledger_index: Mapped[int] = mapped_column(BigInteger)
