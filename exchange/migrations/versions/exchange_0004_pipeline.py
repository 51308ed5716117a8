"""exchange: the pipeline's jobs, participants, agents' answers and participants' shares.

Revision ID: exchange_0004_pipeline
Revises: exchange_0003_merge
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "exchange_0004_pipeline"
down_revision = "exchange_0003_merge"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_jobs",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("requester", sa.String(128), nullable=False),
        sa.Column("engine", sa.String(8), nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("request_json", sa.Text, nullable=False),
        sa.Column("decision_json", sa.Text, nullable=False),
        sa.Column("terms_json", sa.Text, nullable=False),
        sa.Column("classification", sa.String(16), nullable=False),
        sa.Column("decision_index", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("deadline", sa.String(40), nullable=False),
        sa.Column("deadline_ts", sa.Float, nullable=False),
        sa.Column("collect_until_ts", sa.Float, nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.Column("result_json", sa.Text, nullable=True),
        sa.Column("result_sha256", sa.String(64), nullable=True),
        sa.Column("result_index", sa.BigInteger, nullable=True),
        sa.Column("min_cohort", sa.Integer, nullable=False),
    )
    op.create_index("ix_pipeline_jobs_requester", "pipeline_jobs", ["requester", "job_id"])
    op.create_index("ix_pipeline_jobs_state_deadline", "pipeline_jobs", ["state", "deadline_ts"])
    op.create_table(
        "pipeline_participants",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("enterprise", sa.String(128), primary_key=True),
        sa.Column("dataset", sa.String(128), nullable=False),
        sa.Column("consent_id", sa.String(40), nullable=False),
        sa.Column("receipt_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
    )
    op.create_index(
        "ix_pipeline_participants_enterprise_state",
        "pipeline_participants",
        ["enterprise", "state"],
    )
    op.create_table(
        "pipeline_answers",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("enterprise", sa.String(128), primary_key=True),
        sa.Column("round", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("statement_json", sa.Text, nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=True),
        sa.Column("payload_sha256", sa.String(64), nullable=True),
        sa.Column("ledger_index", sa.BigInteger, nullable=False),
        sa.Column("received_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "pipeline_shares",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column("enterprise", sa.String(128), primary_key=True),
        sa.Column("share_json", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pipeline_shares")
    op.drop_table("pipeline_answers")
    op.drop_table("pipeline_participants")
    op.drop_table("pipeline_jobs")
