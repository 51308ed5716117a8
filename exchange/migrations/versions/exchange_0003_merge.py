"""Join the two exchange branches of issue 11 (admin certificates, idempotency keys).

Revision ID: exchange_0003_merge
Revises: exchange_0002_admin_certs, exchange_0002_idempotency
"""

from __future__ import annotations

revision = "exchange_0003_merge"
down_revision = ("exchange_0002_admin_certs", "exchange_0002_idempotency")
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing to change: both parents' tables stay as they are."""


def downgrade() -> None:
    """Nothing to change."""
