"""mpc: HE job keys (secret halves encrypted at rest), approved releases, DP spend.

Revision ID: mpc_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "mpc_0001"
down_revision = None
branch_labels = ("mpc",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mpc_he_keys",
        sa.Column("job_id", sa.String(200), primary_key=True),
        sa.Column("scheme", sa.String(10), nullable=False),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("key_fingerprint", sa.String(64), nullable=False),
        sa.Column("public_context", sa.LargeBinary, nullable=False),
        sa.Column("encrypted_secret", sa.LargeBinary, nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("destroyed_at", sa.String(40), nullable=True),
    )
    op.create_table(
        "mpc_releases",
        sa.Column("job_id", sa.String(200), primary_key=True),
        sa.Column("requester", sa.String(200), nullable=False, index=True),
        sa.Column("question", sa.String(500), nullable=False),
        sa.Column("cohort_json", sa.Text, nullable=False),
        sa.Column("min_cohort", sa.Integer, nullable=False),
        sa.Column("approved_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "mpc_dp_spend",
        sa.Column("consent_id", sa.String(200), primary_key=True),
        sa.Column("spent", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mpc_dp_spend")
    op.drop_table("mpc_releases")
    op.drop_table("mpc_he_keys")
