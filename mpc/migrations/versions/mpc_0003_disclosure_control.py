"""mpc: releases tracked by what they are computed over, per requester group.

``mpc_releases`` loses the free-text ``question`` and gains the requester
group (``adversary``), the query's fingerprint and canonical description,
and who was left out (for the enterprise and auditors). New tables hold the
reduced form of the released weight vectors per group and field, the noisy
answers already given, and each group's epsilon spend per dataset.

Earlier rows keep their cohort; their group is their requester and their
description is empty (``{}``), so they take no part in the new linear check:
the reduced forms start empty (ADR 0006).

Revision ID: mpc_0003
Revises: mpc_0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "mpc_0003"
down_revision = "mpc_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("mpc_releases") as batch:
        batch.add_column(sa.Column("adversary", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("fingerprint", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("query_json", sa.Text, nullable=False, server_default="{}"))
        batch.add_column(sa.Column("left_out_json", sa.Text, nullable=False, server_default="[]"))
    op.execute("UPDATE mpc_releases SET adversary = requester")
    with op.batch_alter_table("mpc_releases") as batch:
        batch.drop_column("question")
        batch.create_index("ix_mpc_releases_adversary", ["adversary"])
    op.create_table(
        "mpc_disclosure_trackers",
        sa.Column("tracker_key", sa.String(64), primary_key=True),
        sa.Column("adversary", sa.String(200), nullable=False, index=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("field", sa.String(200), nullable=False),
        sa.Column("prime", sa.BigInteger, nullable=False),
        sa.Column("columns_json", sa.Text, nullable=False),
        sa.Column("pivots_json", sa.Text, nullable=False),
        sa.Column("matrix", sa.LargeBinary, nullable=False),
        sa.Column("releases", sa.Integer, nullable=False),
        sa.Column("stamp", sa.String(32), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "mpc_released_answers",
        sa.Column("answer_key", sa.String(64), primary_key=True),
        sa.Column("adversary", sa.String(200), nullable=False, index=True),
        sa.Column("job_id", sa.String(200), nullable=False),
        sa.Column("values_json", sa.Text, nullable=False),
        sa.Column("released_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "mpc_group_spend",
        sa.Column("budget_key", sa.String(64), primary_key=True),
        sa.Column("adversary", sa.String(200), nullable=False, index=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("spent", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mpc_group_spend")
    op.drop_table("mpc_released_answers")
    op.drop_table("mpc_disclosure_trackers")
    with op.batch_alter_table("mpc_releases") as batch:
        batch.drop_index("ix_mpc_releases_adversary")
        batch.add_column(sa.Column("question", sa.String(500), nullable=False, server_default=""))
    op.execute("UPDATE mpc_releases SET question = fingerprint")
    with op.batch_alter_table("mpc_releases") as batch:
        batch.drop_column("left_out_json")
        batch.drop_column("query_json")
        batch.drop_column("fingerprint")
        batch.drop_column("adversary")
