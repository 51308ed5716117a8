"""exchange: stored answers of POSTs sent with an Idempotency-Key.

Revision ID: exchange_0002_idempotency
Revises: exchange_0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "exchange_0002_idempotency"
down_revision = "exchange_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "exchange_idempotency",
        sa.Column("entry", sa.LargeBinary(32), primary_key=True),
        sa.Column("request_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("content_type", sa.String(128), nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_exchange_idempotency_created_at", "exchange_idempotency", ["created_at"])


def downgrade() -> None:
    op.drop_table("exchange_idempotency")
