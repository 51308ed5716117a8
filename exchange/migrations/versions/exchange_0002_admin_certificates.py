"""exchange: administrators' client certificates (their second factor).

Revision ID: exchange_0002_admin_certs
Revises: exchange_0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "exchange_0002_admin_certs"
down_revision = "exchange_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchange_admin_certificates",
        sa.Column("serial_hex", sa.String(42), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("not_before", sa.String(40), nullable=False),
        sa.Column("not_after", sa.String(40), nullable=False),
        sa.Column("revoked_at", sa.String(40), nullable=True),
        sa.Column("revocation_reason", sa.String(32), nullable=True),
    )
    op.create_index("ix_exchange_admin_certificates_name", "exchange_admin_certificates", ["name"])


def downgrade() -> None:
    op.drop_table("exchange_admin_certificates")
