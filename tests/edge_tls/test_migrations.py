"""edge_tls_0002 adds the indexes the per-device quota and line revocation read by."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import core
import edge_tls
from core.db import MIGRATIONS, Database


def _config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    locations = (core.MIGRATIONS, edge_tls.MIGRATIONS)
    config.set_main_option("version_locations", " ".join(str(p / "versions") for p in locations))
    config.set_main_option("path_separator", "space")
    config.attributes["connection"] = connection
    return config


def _indexes(connection: sa.Connection, table: str) -> set[str]:
    return {str(index["name"]) for index in sa.inspect(connection).get_indexes(table)}


def test_edge_tls_0002_adds_the_indexes_keeps_batches_and_goes_back(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'e.db'}")
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "edge_tls_0001")
        connection.execute(
            sa.text(
                "INSERT INTO edge_tls_reading_batches (enterprise, device, certificate_serial_hex,"
                " sha256, ciphertext, received_at) VALUES ('e', 'd', 'ab', 'h', :c, 't')"
            ),
            {"c": b"sealed"},
        )
    with db.engine.begin() as connection:
        command.upgrade(_config(connection), "edge_tls_0002")
        assert "ix_edge_tls_reading_batches_device_time" in _indexes(
            connection, "edge_tls_reading_batches"
        )
        assert "ix_edge_tls_certificates_identity" in _indexes(connection, "edge_tls_certificates")
        kept = connection.execute(sa.text("SELECT ciphertext FROM edge_tls_reading_batches"))
        assert kept.scalar_one() == b"sealed"
    with db.engine.begin() as connection:
        command.downgrade(_config(connection), "edge_tls_0001")
        assert "ix_edge_tls_reading_batches_device_time" not in _indexes(
            connection, "edge_tls_reading_batches"
        )
    db.dispose()
