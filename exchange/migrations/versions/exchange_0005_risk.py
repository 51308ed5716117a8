"""exchange: the risk watch's cursor (the next ledger index its rules evaluate).

Revision ID: exchange_0005_risk
Revises: exchange_0004_pipeline
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "exchange_0005_risk"
down_revision = "exchange_0004_pipeline"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """One row: the next index to evaluate (0: the whole ledger so far, once)."""
    cursor = op.create_table(
        "audit_risk_cursor",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("next_index", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=True),
    )
    op.bulk_insert(cursor, [{"id": 1, "next_index": 0, "updated_at": None}])


def downgrade() -> None:
    """Drop the cursor."""
    op.drop_table("audit_risk_cursor")
