"""consent: dataset catalog, grants, scope, nonces, uses.

Revision ID: consent_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "consent_0001"
down_revision = None
branch_labels = ("consent",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consent_datasets",
        sa.Column("dataset_id", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("fields", sa.Text, nullable=False),
        sa.Column("classification", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_index("ix_consent_datasets_owner", "consent_datasets", ["owner"])
    op.create_table(
        "consent_grants",
        sa.Column("consent_id", sa.String(40), primary_key=True),
        sa.Column("enterprise", sa.String(128), nullable=False),
        sa.Column("requester_key", sa.String(300), nullable=False),
        sa.Column("receipt", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
        sa.Column("receipt_hash", sa.String(64), nullable=False),
        sa.Column("valid_from", sa.String(40), nullable=False),
        sa.Column("valid_until", sa.String(40), nullable=False),
        sa.Column("use_limit", sa.Integer, nullable=True),
        sa.Column("use_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("accepted_at", sa.String(40), nullable=False),
        sa.Column("ledger_index", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.String(40), nullable=True),
        sa.Column("revocation", sa.LargeBinary, nullable=True),
        sa.Column("revocation_signature", sa.LargeBinary, nullable=True),
        sa.Column("revocation_ledger_index", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_consent_grants_enterprise", "consent_grants", ["enterprise"])
    op.create_table(
        "consent_scope",
        sa.Column(
            "consent_id",
            sa.String(40),
            sa.ForeignKey("consent_grants.consent_id"),
            primary_key=True,
        ),
        sa.Column("dataset", sa.String(128), primary_key=True),
        sa.Column("field", sa.String(64), primary_key=True),
        sa.Column("requester_key", sa.String(300), nullable=False),
    )
    op.create_index(
        "ix_consent_scope_dataset_requester", "consent_scope", ["dataset", "requester_key"]
    )
    op.create_table(
        "consent_nonces",
        sa.Column("enterprise", sa.String(128), primary_key=True),
        sa.Column("nonce", sa.String(90), primary_key=True),
        sa.Column("consent_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("accepted_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "consent_uses",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("consent_id", sa.String(40), nullable=False),
        sa.Column("enterprise", sa.String(128), nullable=False),
        sa.Column("decision_id", sa.String(128), nullable=False),
        sa.Column("job_id", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("time", sa.String(40), nullable=False),
        sa.Column("ledger_index", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_consent_uses_consent_id", "consent_uses", ["consent_id"])
    op.create_index("ix_consent_uses_enterprise", "consent_uses", ["enterprise"])
    op.create_index("ix_consent_uses_decision_id", "consent_uses", ["decision_id"])


def downgrade() -> None:
    for table in (
        "consent_uses",
        "consent_nonces",
        "consent_scope",
        "consent_grants",
        "consent_datasets",
    ):
        op.drop_table(table)
