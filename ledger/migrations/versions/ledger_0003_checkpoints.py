"""ledger: the checkpoints served to witnesses and the cosignatures they brought back.

Revision ID: ledger_0003
Revises: ledger_0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ledger_0003"
down_revision = "ledger_0002"
branch_labels = None
depends_on = None

_SIZE = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_checkpoints",
        sa.Column("size", _SIZE, primary_key=True, autoincrement=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("stored_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "ledger_cosignatures",
        sa.Column("size", _SIZE, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("key_id", sa.LargeBinary(4), primary_key=True),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_cosignatures")
    op.drop_table("ledger_checkpoints")
