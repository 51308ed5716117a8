"""Transactionally consistent database snapshots, and putting them back.

SQLite: the online backup API (``sqlite3.Connection.backup`` in one step)
copies the database as of one read transaction; under WAL, writers carry on
while it runs and none of their later commits is in the copy. The copy is
turned into a self-contained rollback-journal file.

PostgreSQL: a REPEATABLE READ transaction exports its snapshot
(``pg_export_snapshot()``); ``pg_dump --snapshot`` dumps exactly that
snapshot and the ledger head is read in it too, so the manifest describes the
dump, not a moment before or after it. Restore runs ``pg_restore`` into an
empty database.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

import ledger
from core.db import Database
from exchange.backup.errors import BackupError, BackupTargetError, UnsupportedDatabaseError

__all__ = [
    "DatabaseSnapshot",
    "check_restore_target",
    "database_kind",
    "restore_database",
    "snapshot_database",
]

logger = logging.getLogger(__name__)

SQLITE_FILE = "ibx.db"
PG_DUMP_FILE = "ibx.pgdump"


@dataclass(frozen=True)
class DatabaseSnapshot:
    """A snapshot file and the ledger head inside it."""

    kind: str
    path: Path
    head: ledger.TreeHead


def database_kind(url: str) -> str:
    """``sqlite`` or ``postgresql``.

    Raises:
        UnsupportedDatabaseError: any other kind of database.
    """
    backend = make_url(url).get_backend_name()
    if backend in ("sqlite", "postgresql"):
        return backend
    raise UnsupportedDatabaseError(
        f"ibx backup snapshots SQLite and PostgreSQL databases, not {backend}; "
        "back this database up with its own tools",
        backend=backend,
    )


def snapshot_database(url: str, staging: Path) -> DatabaseSnapshot:
    """Copy the database at ``url`` into ``staging`` as of one transaction.

    Raises:
        UnsupportedDatabaseError: neither SQLite nor PostgreSQL, or pg_dump is missing.
        BackupError: the copy failed or is damaged.
    """
    kind = database_kind(url)
    if kind == "sqlite":
        return _snapshot_sqlite(url, staging / SQLITE_FILE)
    return _snapshot_postgresql(url, staging / PG_DUMP_FILE)


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise UnsupportedDatabaseError(
            "an in-memory SQLite database has nothing to back up", backend="sqlite"
        )
    return Path(database)


def _snapshot_sqlite(url: str, dest: Path) -> DatabaseSnapshot:
    source_path = _sqlite_path(url)
    if not source_path.is_file():
        raise BackupError(f"no database at {source_path}")
    try:
        source = sqlite3.connect(source_path, timeout=30)
        target = sqlite3.connect(dest)
        try:
            source.execute("PRAGMA busy_timeout=30000")
            source.backup(target)  # pages=-1: the whole file in one read transaction
        finally:
            source.close()
        try:
            target.execute("PRAGMA journal_mode=DELETE")
            check = target.execute("PRAGMA quick_check").fetchone()
        finally:
            target.close()
    except sqlite3.Error as exc:
        raise BackupError(f"SQLite snapshot of {source_path} failed: {exc}") from exc
    if check is None or check[0] != "ok":
        raise BackupError(f"the SQLite snapshot of {source_path} fails quick_check: {check}")
    head = _read_head(Database(f"sqlite:///{dest}"))
    # Reading through Database switched the copy to WAL; make it one self-contained file again.
    with sqlite3.connect(dest) as again:
        again.execute("PRAGMA journal_mode=DELETE")
    again.close()
    return DatabaseSnapshot("sqlite", dest, head)


def _read_head(db: Database) -> ledger.TreeHead:
    try:
        return ledger.SqlLedgerBackend(db).head()
    except (ledger.LedgerError, SQLAlchemyError) as exc:
        raise BackupError(f"cannot read the ledger head from the snapshot: {exc}") from exc
    finally:
        db.dispose()


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """The URL as pg_dump and pg_restore take it (no ``+driver``), and their environment.

    A password goes in ``PGPASSWORD``, never on the command line where ``ps`` shows it.
    """
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    bare = parsed.set(drivername="postgresql", password=None)
    return bare.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise UnsupportedDatabaseError(
            f"backing up or restoring PostgreSQL needs {name} on PATH "
            "(install the PostgreSQL client tools of the server's major version)",
            backend="postgresql",
        )
    return found


@contextmanager
def _exported_snapshot(url: str) -> Iterator[str]:
    """A REPEATABLE READ transaction held open; yields its exported snapshot id."""
    db = Database(url)
    try:
        with db.engine.connect() as plain:
            conn = plain.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
                yield str(snapshot)
    finally:
        db.dispose()


def _head_in_snapshot(url: str, snapshot: str) -> ledger.TreeHead:
    db = Database(url)

    @event.listens_for(db.engine, "begin")
    def _join(conn: Any) -> None:
        conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")

    return _read_head(db)


def _snapshot_postgresql(url: str, dest: Path) -> DatabaseSnapshot:
    pg_dump = _tool("pg_dump")
    dbname, env = _libpq(url)
    try:
        with _exported_snapshot(url) as snapshot:
            head = _head_in_snapshot(url, snapshot)
            done = subprocess.run(  # noqa: S603 - a fixed tool and our own arguments
                [
                    pg_dump,
                    "--format=custom",
                    "--no-owner",
                    "--no-privileges",
                    f"--snapshot={snapshot}",
                    f"--file={dest}",
                    f"--dbname={dbname}",
                ],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot open a snapshot of the PostgreSQL database: {exc}") from exc
    if done.returncode != 0:
        raise BackupError(f"pg_dump failed: {done.stderr.strip().splitlines()[-1:]}")
    return DatabaseSnapshot("postgresql", dest, head)


def check_restore_target(kind: str, database_url: str | None) -> None:
    """Refuse, before anything is extracted, a database target that cannot take the snapshot.

    Raises:
        BackupTargetError: no PostgreSQL URL given, or that database is not empty.
        BackupError: the target database cannot be reached.
    """
    if kind == "sqlite":
        return
    if database_url is None or database_kind(database_url) != "postgresql":
        raise BackupTargetError(
            "this backup holds a PostgreSQL dump: give the empty database to restore it into "
            "in IBX_DATABASE_URL (or --database-url)",
        )
    db = Database(database_url)
    try:
        with db.engine.connect() as conn:
            tables = conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()")
            ).scalar_one()
    except SQLAlchemyError as exc:
        raise BackupError(f"cannot reach the target database: {exc}") from exc
    finally:
        db.dispose()
    if tables:
        raise BackupTargetError(
            f"the target database already has {tables} tables; restore into an empty database",
        )


def restore_database(kind: str, member: Path, data_dir: Path, database_url: str | None) -> str:
    """Put a snapshot back; returns the URL of the restored database.

    SQLite goes to ``<data_dir>/ibx.db``. PostgreSQL goes into ``database_url``,
    which must name an empty database.

    Raises:
        BackupTargetError: no PostgreSQL URL given, or that database is not empty.
        UnsupportedDatabaseError: pg_restore is missing.
        BackupError: pg_restore failed.
    """
    if kind == "sqlite":
        dest = data_dir / SQLITE_FILE
        member.replace(dest)
        dest.chmod(0o600)
        return f"sqlite:///{dest}"
    check_restore_target(kind, database_url)
    assert database_url is not None  # checked above
    pg_restore = _tool("pg_restore")
    dbname, env = _libpq(database_url)
    done = subprocess.run(  # noqa: S603 - a fixed tool and our own arguments
        [
            pg_restore,
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={dbname}",
            str(member),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BackupError(f"pg_restore failed: {done.stderr.strip().splitlines()[-1:]}")
    return database_url
