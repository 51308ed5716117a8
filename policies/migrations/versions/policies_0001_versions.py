"""policies: versions, their Casbin lines, the active pointer.

Revision ID: policies_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "policies_0001"
down_revision = None
branch_labels = ("policies",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policies_versions",
        sa.Column("hash", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("proposed_by", sa.String(128), nullable=False),
        sa.Column("proposed_at", sa.String(40), nullable=False),
        sa.Column("tests_passed", sa.Boolean, nullable=True),
        sa.Column("test_report", sa.Text, nullable=True),
        sa.Column("tested_by", sa.String(128), nullable=True),
        sa.Column("tested_at", sa.String(40), nullable=True),
        sa.Column("approved_by", sa.String(128), nullable=True),
        sa.Column("approved_at", sa.String(40), nullable=True),
        sa.Column("activated_by", sa.String(128), nullable=True),
        sa.Column("activated_at", sa.String(40), nullable=True),
    )
    op.create_table(
        "policies_casbin_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(64), nullable=False, index=True),
        sa.Column("ptype", sa.String(255), nullable=False),
        sa.Column("v0", sa.String(255), nullable=True),
        sa.Column("v1", sa.String(255), nullable=True),
        sa.Column("v2", sa.String(255), nullable=True),
        sa.Column("v3", sa.String(255), nullable=True),
        sa.Column("v4", sa.String(255), nullable=True),
        sa.Column("v5", sa.String(255), nullable=True),
    )
    op.create_table(
        "policies_active",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("activated_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("policies_active")
    op.drop_table("policies_casbin_rules")
    op.drop_table("policies_versions")
