"""ledger: the subject index (what each entry is about; indexed, never hashed).

Revision ID: ledger_0002
Revises: ledger_0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ledger_0002"
down_revision = "ledger_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_subjects",
        sa.Column("subject", sa.String(200), primary_key=True),
        sa.Column(
            "idx",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("type", sa.String(100), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_subjects")
