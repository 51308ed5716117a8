"""core: signing keys, private halves encrypted at rest.

Revision ID: core_0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "core_0001"
down_revision = None
branch_labels = ("core",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "core_signing_keys",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("algorithm", sa.String(20), nullable=False),
        sa.Column("public_key", sa.LargeBinary, nullable=False),
        sa.Column("encrypted_private_key", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("core_signing_keys")
