"""mpc: the reduced forms are stored as a snapshot plus a log of releases since.

Writing the whole form on every approval cost up to a megabyte per release
(1,000 contributors at half rank); an approval now appends one row of
weights, and the form is snapshotted every 32 rank-adding releases.

Revision ID: mpc_0004
Revises: mpc_0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import json
from fractions import Fraction

import sqlalchemy as sa
from alembic import op

revision = "mpc_0004"
down_revision = "mpc_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mpc_disclosure_log",
        sa.Column("tracker_key", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("weights_json", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Fold every log into its snapshot first: a form behind its releases would be unsafe."""
    from mpc._disclosure import LinearTracker  # noqa: PLC0415 - only this step needs it

    bind = op.get_bind()
    trackers = bind.execute(
        sa.text(
            "SELECT tracker_key, prime, columns_json, pivots_json, matrix FROM "
            "mpc_disclosure_trackers"
        )
    ).all()
    for key, prime, columns, pivots, matrix in trackers:
        form = LinearTracker.from_parts(prime, json.loads(columns), json.loads(pivots), matrix)
        logged = bind.execute(
            sa.text(
                "SELECT weights_json FROM mpc_disclosure_log WHERE tracker_key = :key "
                "AND position >= :rank ORDER BY position"
            ),
            {"key": key, "rank": form.rank},
        ).scalars()
        for weights in logged:
            form = form.with_row({str(n): Fraction(str(w)) for n, w in json.loads(weights)})
        bind.execute(
            sa.text(
                "UPDATE mpc_disclosure_trackers SET columns_json = :columns, "
                "pivots_json = :pivots, matrix = :matrix WHERE tracker_key = :key"
            ),
            {
                "columns": json.dumps(list(form.columns)),
                "pivots": json.dumps(list(form.pivots)),
                "matrix": form.to_bytes(),
                "key": key,
            },
        )
    op.drop_table("mpc_disclosure_log")
