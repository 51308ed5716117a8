"""edge_tls: an index for the per-device upload quota (device's batches by time).

Revision ID: edge_tls_0002
Revises: edge_tls_0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

revision = "edge_tls_0002"
down_revision = "edge_tls_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_edge_tls_reading_batches_device_time",
        "edge_tls_reading_batches",
        ["enterprise", "device", "received_at"],
    )
    op.create_index(
        "ix_edge_tls_certificates_identity", "edge_tls_certificates", ["enterprise", "device"]
    )


def downgrade() -> None:
    op.drop_index("ix_edge_tls_certificates_identity", table_name="edge_tls_certificates")
    op.drop_index("ix_edge_tls_reading_batches_device_time", table_name="edge_tls_reading_batches")
