"""exchange: the web console's sessions (docs/console.md).

Revision ID: exchange_0006_console_sessions
Revises: exchange_0005_risk
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "exchange_0006_console_sessions"
down_revision = "exchange_0005_risk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """One row a signed-in browser: keyed by the hash of its cookie, the token encrypted."""
    op.create_table(
        "exchange_console_sessions",
        sa.Column("id_hash", sa.LargeBinary(32), primary_key=True),
        sa.Column("identity", sa.String(200), nullable=False, index=True),
        sa.Column("role", sa.String(40), nullable=False),
        sa.Column("token", sa.LargeBinary, nullable=False),
        sa.Column("certificate", sa.LargeBinary(32), nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("last_seen", sa.String(40), nullable=False),
        sa.Column("expires_at", sa.String(40), nullable=False, index=True),
    )


def downgrade() -> None:
    """Drop the sessions (every browser signs in again)."""
    op.drop_table("exchange_console_sessions")
