"""edge_tls: CA keys, issued certificates, bootstrap tokens, sealed reading batches.

Revision ID: edge_tls_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "edge_tls_0001"
down_revision = None
branch_labels = ("edge_tls",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edge_tls_authorities",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("certificate_der", sa.LargeBinary, nullable=False),
        sa.Column("encrypted_key", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "edge_tls_certificates",
        sa.Column("serial_hex", sa.String(42), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("enterprise", sa.String(128), nullable=True),
        sa.Column("device", sa.String(128), nullable=True),
        sa.Column("subject_uri", sa.String(400), nullable=True),
        sa.Column("not_before", sa.String(40), nullable=False),
        sa.Column("not_after", sa.String(40), nullable=False),
        sa.Column("certificate_der", sa.LargeBinary, nullable=False),
        sa.Column("revoked_at", sa.String(40), nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
    )
    op.create_index("ix_edge_tls_certificates_enterprise", "edge_tls_certificates", ["enterprise"])
    op.create_index("ix_edge_tls_certificates_device", "edge_tls_certificates", ["device"])
    op.create_table(
        "edge_tls_bootstrap_tokens",
        sa.Column("token_hash", sa.LargeBinary, primary_key=True),
        sa.Column("enterprise", sa.String(128), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("expires_at", sa.String(40), nullable=False),
        sa.Column("used_at", sa.String(40), nullable=True),
        sa.Column("used_serial_hex", sa.String(42), nullable=True),
    )
    op.create_index("ix_edge_tls_bootstrap_tokens_device", "edge_tls_bootstrap_tokens", ["device"])
    op.create_table(
        "edge_tls_reading_batches",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("enterprise", sa.String(128), nullable=False),
        sa.Column("device", sa.String(128), nullable=False),
        sa.Column("certificate_serial_hex", sa.String(42), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
    )
    op.create_index(
        "ix_edge_tls_reading_batches_enterprise", "edge_tls_reading_batches", ["enterprise"]
    )


def downgrade() -> None:
    op.drop_table("edge_tls_reading_batches")
    op.drop_table("edge_tls_bootstrap_tokens")
    op.drop_table("edge_tls_certificates")
    op.drop_table("edge_tls_authorities")
