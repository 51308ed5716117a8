"""ledger: entries, perfect-subtree nodes and the head row.

Revision ID: ledger_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "ledger_0001"
down_revision = None
branch_labels = ("ledger",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column(
            "idx",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("leaf_input", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_ledger_entries_type", "ledger_entries", ["type"])
    op.create_index("ix_ledger_entries_actor", "ledger_entries", ["actor"])
    op.create_table(
        "ledger_nodes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    head = op.create_table(
        "ledger_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("size", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
        sa.Column("root", sa.LargeBinary, nullable=False),
        sa.Column("checkpoint", sa.Text, nullable=False),
        sa.Column("version", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
    )
    op.bulk_insert(
        head,
        [
            {
                "id": 1,
                "size": 0,
                "root": hashlib.sha256(b"").digest(),
                "checkpoint": "",
                "version": 0,
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("ledger_head")
    op.drop_table("ledger_nodes")
    op.drop_index("ix_ledger_entries_actor", "ledger_entries")
    op.drop_index("ix_ledger_entries_type", "ledger_entries")
    op.drop_table("ledger_entries")
