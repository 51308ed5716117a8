"""ledger: the Fabric shipper's progress per channel, chaincode, log and mode (status only:
the entry table is the outbox, and the channel is the truth on restart).

Revision ID: ledger_0005
Revises: ledger_0004
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "ledger_0005"
down_revision = "ledger_0004"
branch_labels = None
depends_on = None

_SIZE = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_fabric_outbox",
        sa.Column("channel", sa.String(250), primary_key=True),
        sa.Column("chaincode", sa.String(250), primary_key=True),
        sa.Column("log", sa.String(200), primary_key=True),
        sa.Column("mode", sa.String(10), primary_key=True),
        sa.Column("shipped_size", _SIZE, nullable=False),
        sa.Column("shipped_root", sa.LargeBinary(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_attempt", sa.String(40), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ledger_fabric_outbox")
