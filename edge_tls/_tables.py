"""The edge PKI's tables (migration branch ``edge_tls``).

Times are RFC 3339 strings, like the rest of ibx; serials are stored as
lower-case hex so they fit any database's column types.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base

__all__ = [
    "MIGRATIONS",
    "AuthorityRow",
    "BootstrapTokenRow",
    "CertificateRow",
    "ReadingBatchRow",
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
"""The ``edge_tls`` Alembic branch."""


class AuthorityRow(Base):
    """The root and issuing CA: certificate and AES-GCM-encrypted PKCS#8 key."""

    __tablename__ = "edge_tls_authorities"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    encrypted_key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[str] = mapped_column(String(40))


class CertificateRow(Base):
    """Every certificate the issuing CA signed, and its revocation state."""

    __tablename__ = "edge_tls_certificates"
    __table_args__ = (Index("ix_edge_tls_certificates_identity", "enterprise", "device"),)

    serial_hex: Mapped[str] = mapped_column(String(42), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    enterprise: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    device: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    subject_uri: Mapped[str | None] = mapped_column(String(400), nullable=True)
    not_before: Mapped[str] = mapped_column(String(40))
    not_after: Mapped[str] = mapped_column(String(40))
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    revocation_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)


class BootstrapTokenRow(Base):
    """A one-time enrolment token, stored only as its SHA-256."""

    __tablename__ = "edge_tls_bootstrap_tokens"

    token_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    enterprise: Mapped[str] = mapped_column(String(128))
    device: Mapped[str] = mapped_column(String(128), index=True)
    created_at: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[str] = mapped_column(String(40))
    used_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    used_serial_hex: Mapped[str | None] = mapped_column(String(42), nullable=True)


class ReadingBatchRow(Base):
    """One sealed batch: ciphertext only, plus its SHA-256 (also on the ledger)."""

    __tablename__ = "edge_tls_reading_batches"
    __table_args__ = (
        Index("ix_edge_tls_reading_batches_device_time", "enterprise", "device", "received_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    enterprise: Mapped[str] = mapped_column(String(128), index=True)
    device: Mapped[str] = mapped_column(String(128))
    certificate_serial_hex: Mapped[str] = mapped_column(String(42))
    sha256: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[str] = mapped_column(String(40))
