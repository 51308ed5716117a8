"""Shared fixtures: real databases in temporary directories, real runtimes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.db import Database
from exchange.runtime import MIGRATION_BRANCHES, Runtime
from exchange.settings import Settings

SHARED = Path(__file__).resolve().parents[2] / "shared"
VECTORS = SHARED / "vectors"


def vectors_dir(name: str) -> Path:
    """A folder of published test vectors, or skip (fail under CI=true) if absent."""
    path = VECTORS / name
    if not path.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"test vectors {path} are missing under CI=true")
        pytest.skip(f"test vectors {path} are not present on this machine")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh data dir with a SQLite file."""
    return Settings(data_dir=tmp_path / "data", ledger_origin="test.ibx.localhost/ledger")


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A real runtime: migrated SQLite database, master key file, ledger."""
    rt = Runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database with every package's tables."""
    from core.db import migrate

    database = Database(f"sqlite:///{tmp_path / 'test.db'}")
    migrate(database, MIGRATION_BRANCHES)
    yield database
    database.dispose()
