"""mpc: HE public contexts in a table of their own.

A key row changes state (released, destroyed) once or twice per job; with the
~465 kB public context in the same row every change rewrote it. The public
context never changes, so it moves to ``mpc_he_public``.

Revision ID: mpc_0002
Revises: mpc_0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "mpc_0002"
down_revision = "mpc_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mpc_he_public",
        sa.Column("job_id", sa.String(200), primary_key=True),
        sa.Column("public_context", sa.LargeBinary, nullable=False),
    )
    op.execute(
        "INSERT INTO mpc_he_public (job_id, public_context) "
        "SELECT job_id, public_context FROM mpc_he_keys"
    )
    with op.batch_alter_table("mpc_he_keys") as batch:
        batch.drop_column("public_context")


def downgrade() -> None:
    with op.batch_alter_table("mpc_he_keys") as batch:
        batch.add_column(sa.Column("public_context", sa.LargeBinary, nullable=True))
    op.execute(
        "UPDATE mpc_he_keys SET public_context = (SELECT p.public_context FROM mpc_he_public p "
        "WHERE p.job_id = mpc_he_keys.job_id)"
    )
    op.drop_table("mpc_he_public")
