"""The database: SQLAlchemy 2 engine, sessions and Alembic migrations.

SQLite (a file in the data dir, WAL mode, ``synchronous=FULL``) is the default;
any SQLAlchemy URL works, PostgreSQL is tested. Each package owns its tables and
its migration branch (``<package>/migrations/versions``, branch label = package
name); :func:`migrate` upgrades every branch it is given to its head.

Transactions are explicit: :meth:`Database.write` starts a transaction that
holds the write lock from its first statement (``BEGIN IMMEDIATE`` on SQLite),
so a read-then-write inside it can never fail with a stale snapshot;
:meth:`Database.read` starts an ordinary one. :meth:`Database.lookups` is for
reads of one statement each (the lookups every HTTP request makes): on SQLite
it sends no ``BEGIN``/``ROLLBACK`` around them, since a statement outside a
transaction is its own consistent snapshot.
"""

from __future__ import annotations

import logging
import re
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Select, create_engine, event, text
from sqlalchemy.engine import Compiled, Dialect, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from core.errors import ConfigurationError

__all__ = ["MIGRATIONS", "Base", "Database", "migrate"]

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
"""core's own migration branch (signing keys)."""

SQLITE_POOL_SIZE = 64
"""Connections kept per SQLite engine (and as many again on demand)."""


class Base(DeclarativeBase):
    """Declarative base shared by every package's tables."""


class Database:
    """An engine plus session factories with explicit read and write transactions."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        """Connect lazily to ``url``.

        Raises:
            ConfigurationError: the URL cannot be parsed or its driver is missing.
        """
        try:
            parsed = make_url(url)
        except Exception as exc:  # sqlalchemy raises ArgumentError for bad URLs
            raise ConfigurationError(f"database URL cannot be parsed: {exc}") from exc
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            # More pooled connections than threads that may wait for the write lock (the
            # server's 40 worker threads and the pipeline's): a writer that needs a second
            # connection while holding the lock (a group commit reading an identity) must
            # never wait behind threads that hold every connection waiting for that lock.
            kwargs["pool_size"] = SQLITE_POOL_SIZE
            kwargs["max_overflow"] = SQLITE_POOL_SIZE
            if parsed.database in (None, "", ":memory:"):
                raise ConfigurationError(
                    "an in-memory SQLite database cannot be shared; use a file"
                )
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except Exception as exc:
            raise ConfigurationError(f"cannot create database engine: {exc}") from exc
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._plans: dict[int, _Plan] = {}

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction holds the write lock; commits on success.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the transaction failed and was rolled back.
        """
        with self._sessions() as session, session.begin():
            if self.is_sqlite:
                session.connection(execution_options={"ibx_begin": "BEGIN IMMEDIATE"})
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reads (one consistent snapshot); rolled back at the end."""
        with self._sessions() as session:
            yield session
            session.rollback()

    @contextmanager
    def lookups(self) -> Iterator[Connection]:
        """A Core connection for reads of one statement each, each its own snapshot.

        On SQLite no ``BEGIN``/``ROLLBACK`` is sent: a statement outside a
        transaction reads one consistent snapshot of its own, so a single-statement
        read loses nothing and saves two round trips through the driver. Reads that
        must agree with each other belong in one :meth:`read`. Never write through
        it (on SQLite each statement would commit on its own). Other databases get
        an ordinary transaction, rolled back at the end.
        """
        with self.engine.connect() as connection:
            if self.is_sqlite:
                connection.execution_options(ibx_begin="")  # in place, on this connection only
            yield connection

    def fetch(self, statement: Select[Any], params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row of a one-statement read; each row has its columns as attributes.

        On SQLite the statement is compiled once (keyed by the statement object:
        pass module-level statements, not one built per call) and run straight on
        a pooled driver connection outside any transaction — its own consistent
        snapshot — without SQLAlchemy's per-execution machinery (tens of
        microseconds less a query; every HTTP request makes a few). A statement
        that needs that machinery (an expanding ``IN`` list), and every other
        database, goes through :meth:`lookups`. Never write through it.
        """
        plan = self._plan(statement) if self.is_sqlite else None
        if plan is None:
            with self.lookups() as connection:
                return list(connection.execute(statement, params or {}))
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(plan.sql, plan.arguments(params or {}))
                return [plan.row(values) for values in cursor.fetchall()]
            finally:
                cursor.close()
        finally:
            raw.close()  # back to the pool (its reset is a no-op outside a transaction)

    def _plan(self, statement: Select[Any]) -> _Plan | None:
        plan = self._plans.get(id(statement))
        if plan is None or plan.statement is not statement:
            if len(self._plans) >= _MAX_PLANS:  # statements built per call: do not grow
                self._plans.clear()
            plan = _Plan.compile(statement, self.engine.dialect)
            self._plans[id(statement)] = plan
        return plan if plan.sql else None

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


_MAX_PLANS = 512


@dataclass(frozen=True)
class _Plan:
    """A read compiled for the driver: its SQL, parameter order, type processors, row type.

    ``sql`` is empty for a statement SQLAlchemy must expand at execution time.
    """

    statement: Select[Any]
    """Kept, so that its ``id`` cannot be reused while the plan is cached."""
    sql: str
    compiled: Compiled
    order: tuple[str, ...]
    binds: Mapping[str, Callable[[Any], Any]]
    results: tuple[Callable[[Any], Any] | None, ...]
    """One processor (or None) per column; empty when no column needs one."""
    row_type: Callable[..., Any]

    @classmethod
    def compile(cls, statement: Select[Any], dialect: Dialect) -> _Plan:
        compiled = statement.compile(dialect=dialect)
        keys = [column.key or f"column_{n}" for n, column in enumerate(statement.selected_columns)]
        row_type = namedtuple("Row", keys, rename=True)  # type: ignore[misc]
        if compiled.post_compile_params or compiled.positiontup is None:
            return cls(statement, "", compiled, (), {}, (), row_type)
        binds = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                binds[name] = processor
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in statement.selected_columns
        )
        if not any(results):
            results = ()  # the common case: the driver's values as they are
        return cls(
            statement,
            compiled.string,
            compiled,
            tuple(compiled.positiontup),
            binds,
            results,
            row_type,
        )

    def arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        values = self.compiled.construct_params(dict(params))
        assert values is not None  # given parameters, SQLAlchemy always builds them
        return tuple(
            self.binds[name](values[name]) if name in self.binds else values[name]
            for name in self.order
        )

    def row(self, values: Sequence[Any]) -> Any:
        if self.results:
            values = [
                process(value) if process is not None else value
                for process, value in zip(self.results, values, strict=True)
            ]
        return self.row_type(*values)


def _configure_sqlite(engine: Engine) -> None:
    """WAL, durable commits, a busy timeout, and transactions that SQLAlchemy controls.

    pysqlite's own transaction handling starts transactions lazily and never for
    SELECT; the recipe from SQLAlchemy's documentation turns it off and emits
    BEGIN ourselves, so a write transaction can take the lock first.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        begin = conn.get_execution_options().get("ibx_begin", "BEGIN")
        if begin:  # "": Database.lookups, one statement at a time outside a transaction
            conn.exec_driver_sql(begin)


def migrate(db: Database, version_locations: Sequence[Path]) -> None:
    """Upgrade every migration branch found in ``version_locations`` to its head.

    When the database already stands at every head (the common case: each CLI
    command opens it), this costs one query and Alembic is not even imported.

    Raises:
        ConfigurationError: a location does not exist.
    """
    for location in version_locations:
        if not (location / "versions").is_dir():
            raise ConfigurationError(f"no migrations at {location / 'versions'}")
    heads = _declared_heads(version_locations)
    if heads is not None and heads == _applied_revisions(db):
        return
    from alembic import command  # noqa: PLC0415 - only when there is something to upgrade
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option(
        "version_locations", " ".join(str(loc / "versions") for loc in version_locations)
    )
    config.set_main_option("path_separator", "space")
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")
    logger.debug("database migrated (%d branches)", len(version_locations))


_REVISION = re.compile(r"^revision\s*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
_DOWN = re.compile(r"^down_revision\s*=\s*(.+)$", re.MULTILINE)
_QUOTED = re.compile(r"[\"']([^\"']+)[\"']")


def _declared_heads(version_locations: Sequence[Path]) -> frozenset[str] | None:
    """The head revisions the migration files declare, read as text (None: not sure)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for location in version_locations:
        for script in sorted((location / "versions").glob("*.py")):
            source = script.read_text(encoding="utf-8")
            revision, down = _REVISION.search(source), _DOWN.search(source)
            if revision is None or down is None:
                return None  # not a form we parse: let Alembic decide
            revisions.add(revision.group(1))
            parents.update(_QUOTED.findall(down.group(1)))
    return frozenset(revisions - parents)


def _applied_revisions(db: Database) -> frozenset[str] | None:
    """The revisions recorded in ``alembic_version`` (None: no such table yet)."""
    try:
        with db.engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version"))
            return frozenset(str(row[0]) for row in rows)
    except SQLAlchemyError:  # a fresh database has no such table: migrate it
        return None
