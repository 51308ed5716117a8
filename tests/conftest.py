"""Shared fixtures: real databases in temporary directories, real runtimes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from core.db import Database
from exchange.runtime import MIGRATION_BRANCHES, Runtime
from exchange.settings import Settings

if TYPE_CHECKING:
    from tests.demo_world import DemoRun

SHARED = Path(__file__).resolve().parents[2] / "shared"
VECTORS = SHARED / "vectors"
RISK_RULES = Path(__file__).resolve().parent / "risk_rules.toml"
os.environ.setdefault("IBX_RISK_RULES", str(RISK_RULES))
"""Every runtime and ``ibx serve`` in the suite evaluates these rules (see the file)."""


def vectors_dir(name: str) -> Path:
    """A folder of published test vectors, or skip (fail under CI=true) if absent."""
    path = VECTORS / name
    if not path.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"test vectors {path} are missing under CI=true")
        pytest.skip(f"test vectors {path} are not present on this machine")
    return path


_MIGRATED: list[Path] = []
"""The empty database every package's migrations made, once per test process."""


def _migrated_template() -> Path:
    """A SQLite file that every migration branch has run on, and nothing else."""
    if not _MIGRATED:
        import atexit
        import shutil
        import tempfile

        from core.db import migrate

        folder = tempfile.mkdtemp(prefix="ibx-migrated-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        path = Path(folder) / "ibx.db"
        database = Database(f"sqlite:///{path}")
        migrate(database, MIGRATION_BRANCHES)
        with database.engine.begin() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        database.dispose()
        _MIGRATED.append(path)
    return _MIGRATED[0]


def migrated_database(path: Path) -> Path:
    """``path`` made a copy of the migrated empty database (the migrations run once per
    process, not once per test: they cost more than everything else a fresh deployment
    does); returns it. The deployment made on it still generates its own keys."""
    import shutil

    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_migrated_template(), path)
    return path


def _premigrated(settings: Settings) -> Settings:
    """``settings``, their default SQLite file already holding the migrated tables."""
    if settings.database_url is None and not (settings.data_dir / "ibx.db").exists():
        migrated_database(settings.data_dir / "ibx.db")
    return settings


def initialised(data_dir: Path, **settings: object) -> Path:
    """``data_dir`` made a deployment, as ``ibx --data-dir DIR init`` does; returns it."""
    made = _premigrated(Settings(data_dir=data_dir, **settings))  # type: ignore[arg-type]
    Runtime.initialise(made).close()
    return data_dir


@pytest.fixture
def cli_data_dir(tmp_path: Path) -> Path:
    """``tmp_path/data``, initialised: the data dir CLI tests pass as ``--data-dir``."""
    return initialised(tmp_path / "data")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a fresh data dir with a SQLite file."""
    return Settings(data_dir=tmp_path / "data", ledger_origin="test.ibx.localhost/ledger")


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    """A real runtime: migrated SQLite database, master key file, ledger."""
    rt = Runtime.initialise(_premigrated(settings))
    yield rt
    rt.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A migrated SQLite database with every package's tables."""
    database = Database(f"sqlite:///{migrated_database(tmp_path / 'test.db')}")
    yield database
    database.dispose()


def _postgres_binary(name: str) -> str | None:
    import shutil

    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real, throwaway PostgreSQL cluster on a free port; yields a server URL prefix.

    Skips where the server binaries are absent (fails under CI=true, whose
    .ci/run installs Debian's postgresql package when they are missing).
    """
    import shutil
    import tempfile
    import time

    initdb, postgres = _postgres_binary("initdb"), _postgres_binary("postgres")
    if not initdb or not postgres:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL server binaries are missing under CI=true")
        pytest.skip("PostgreSQL server binaries (initdb, postgres) are not installed")
    import psycopg

    from tests.server import free_port

    base = Path(tempfile.mkdtemp(prefix="ibx-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(base, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = base / "data"
    subprocess.run(
        [*as_user, initdb, "-D", str(data), "-U", "ibx", "--auth=trust", "-E", "UTF8", "--no-sync"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            *as_user,
            postgres,
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(base),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            psycopg.connect(f"host=127.0.0.1 port={port} user=ibx dbname=postgres").close()
            break
        except psycopg.OperationalError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start") from None
            time.sleep(0.2)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _stop_postgres(server, data)
        shutil.rmtree(base, ignore_errors=True)


def _stop_postgres(server: subprocess.Popen[bytes], data: Path) -> None:
    """PostgreSQL's fast shutdown (SIGINT to the postmaster, whose PID is the first line of
    postmaster.pid): runuser, on a SIGTERM of its own, would wait two seconds and SIGKILL."""
    import signal

    try:
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGINT)
    except (OSError, ValueError, IndexError):
        server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the throwaway server (SQLAlchemy URL)."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    host, port = postgres_server.split(":")
    with psycopg.connect(
        f"host={host} port={port} user=ibx dbname=postgres", autocommit=True
    ) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://ibx@{postgres_server}/{name}"


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """``make demo``'s story, run once for the whole session (about 35 s): what it printed
    and left (``tests/demo_world.py``). Read it; never change its files (the console's
    world serves a copy). ``IBX_TEST_DEMO_DIR`` reuses a kept run (local iteration only)."""
    from tests.demo_world import demo_run_in

    return demo_run_in(tmp_path_factory.mktemp("demo"))
