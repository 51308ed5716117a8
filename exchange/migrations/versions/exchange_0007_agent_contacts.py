"""exchange: when each enterprise's data agent last polled (an index row, not a signed fact).

Revision ID: exchange_0007_agent_contacts
Revises: exchange_0006_console_sessions
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "exchange_0007_agent_contacts"
down_revision = "exchange_0006_console_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """One row an enterprise: its agent's first and latest poll of ``/v1/agent/tasks``."""
    op.create_table(
        "exchange_agent_contacts",
        sa.Column("enterprise", sa.String(128), primary_key=True),
        sa.Column("last_contact_at", sa.String(40), nullable=False),
        sa.Column("first_contact_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    """Drop the contacts (the console shows 'never' until the agents poll again)."""
    op.drop_table("exchange_agent_contacts")
