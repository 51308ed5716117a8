"""ledger: the subject index by (subject, type), so a lookup of one type of entry about a
subject (the revocation of a consent used ten thousand times) reads only those entries.

Revision ID: ledger_0004
Revises: ledger_0003
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "ledger_0004"
down_revision = "ledger_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_ledger_subjects_subject_type", "ledger_subjects", ["subject", "type", "idx"]
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_subjects_subject_type", table_name="ledger_subjects")
