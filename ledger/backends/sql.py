"""The default ledger backend: three tables in the project database (SQLite or PostgreSQL).

``ledger_entries``  one row per entry: index, leaf input, and type/actor/time for queries
``ledger_nodes``    every perfect subtree hash, keyed ``level << 50 | index`` (~2n rows)
``ledger_head``     one row: size, root, latest signed checkpoint, and a lock counter

An append starts with ``UPDATE ledger_head ... RETURNING``: on SQLite that
statement takes the database write lock, on PostgreSQL the row lock, so
concurrent appenders (threads or processes) queue up and indices stay dense.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, Database
from ledger._merkle import NodeKey
from ledger.backends.base import StoredEntry, SubjectHit, TreeHead
from ledger.errors import LedgerError

__all__ = ["MIGRATIONS", "SqlLedgerBackend"]

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

_LEVEL_SHIFT = 50
_SCAN_BATCH = 50_000


def _node_id(key: NodeKey) -> int:
    return (key[0] << _LEVEL_SHIFT) | key[1]


class LedgerEntryRow(Base):
    """One ledger entry."""

    __tablename__ = "ledger_entries"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(100), index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    time: Mapped[str] = mapped_column(String(40))
    leaf_input: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerNodeRow(Base):
    """One perfect subtree hash (level 0: leaf hashes)."""

    __tablename__ = "ledger_nodes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerSubjectRow(Base):
    """What an entry is about (:attr:`core.events.Event.subjects`): an index, never hashed."""

    __tablename__ = "ledger_subjects"
    __table_args__ = (Index("ix_ledger_subjects_subject_type", "subject", "type", "idx"),)

    subject: Mapped[str] = mapped_column(String(200), primary_key=True)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    type: Mapped[str] = mapped_column(String(100))


class LedgerHeadRow(Base):
    """The single head row."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    checkpoint: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger)


_ENTRIES = cast(Table, LedgerEntryRow.__table__)
_NODES = cast(Table, LedgerNodeRow.__table__)
_SUBJECTS = cast(Table, LedgerSubjectRow.__table__)
_FIND = (
    select(_SUBJECTS.c.subject, _SUBJECTS.c.idx, _SUBJECTS.c.type)
    .where(_SUBJECTS.c.subject.in_(bindparam("subjects", expanding=True)))
    .order_by(_SUBJECTS.c.idx)
)
_FIND_TYPED = _FIND.where(_SUBJECTS.c.type.in_(bindparam("types", expanding=True)))
_COUNT = (
    select(_SUBJECTS.c.subject, func.count())
    .where(
        _SUBJECTS.c.subject.in_(bindparam("subjects", expanding=True)),
        _SUBJECTS.c.type.in_(bindparam("types", expanding=True)),
    )
    .group_by(_SUBJECTS.c.subject)
)


class _SqlWriter:
    """The append lock and one batch's writes, on the raw DB-API cursor of the caller's
    transaction (an append is on every decision's path; SQLAlchemy's statement
    machinery would cost more than the SQL)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        connection = session.connection()
        self._mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        self._cursor = connection.connection.cursor()
        self._cursor.execute(
            "UPDATE ledger_head SET version = version + 1 WHERE id = 1 "
            "RETURNING size, root, checkpoint"
        )
        row = self._cursor.fetchone()
        if row is None:
            raise LedgerError("ledger tables are not initialised; run the migrations")
        self._head = TreeHead(int(row[0]), bytes(row[1]), str(row[2]))

    def head(self) -> TreeHead:
        return self._head

    def close(self) -> None:
        self._cursor.close()

    def nodes(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        wanted = {_node_id(k): k for k in keys}
        if not wanted:
            return {}
        marks = ",".join([self._mark] * len(wanted))
        self._cursor.execute(
            f"SELECT id, hash FROM ledger_nodes WHERE id IN ({marks})",  # noqa: S608 -- only placeholders are interpolated
            tuple(wanted),
        )
        return {wanted[node_id]: bytes(h) for node_id, h in self._cursor.fetchall()}

    def write(
        self, entries: Sequence[StoredEntry], nodes: Mapping[NodeKey, bytes], head: TreeHead
    ) -> None:
        m = self._mark
        cursor = self._cursor
        if entries:
            cursor.executemany(
                f"INSERT INTO ledger_entries (idx, type, actor, time, leaf_input) "  # noqa: S608 -- only placeholders are interpolated
                f"VALUES ({m}, {m}, {m}, {m}, {m})",
                [(e.index, e.type, e.actor, e.time, e.leaf_input) for e in entries],
            )
        subjects = [(s, e.index, e.type) for e in entries for s in dict.fromkeys(e.subjects)]
        if subjects:
            cursor.executemany(
                f"INSERT INTO ledger_subjects (subject, idx, type) VALUES ({m}, {m}, {m})",  # noqa: S608 -- only placeholders are interpolated
                subjects,
            )
        if nodes:
            cursor.executemany(
                f"INSERT INTO ledger_nodes (id, hash) VALUES ({m}, {m})",  # noqa: S608 -- only placeholders are interpolated
                [(_node_id(k), h) for k, h in nodes.items()],
            )
        cursor.execute(
            f"UPDATE ledger_head SET size = {m}, root = {m}, checkpoint = {m} WHERE id = 1",  # noqa: S608 -- only placeholders are interpolated
            (head.size, head.root, head.checkpoint),
        )


def _read_nodes(session: Session, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
    wanted = {_node_id(k): k for k in keys}
    if not wanted:
        return {}
    rows = session.connection().execute(
        select(_NODES.c.id, _NODES.c.hash).where(_NODES.c.id.in_(list(wanted)))
    )
    return {wanted[node_id]: h for node_id, h in rows}


class SqlLedgerBackend:
    """Ledger storage in the project database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @contextmanager
    def writer(self, session: Session | None = None) -> Iterator[_SqlWriter]:
        """Take the append lock in ``session`` or in a new write transaction."""
        if session is not None:
            writer = _SqlWriter(session)
            try:
                yield writer
            finally:
                writer.close()
            return
        with self._db.write() as own:
            writer = _SqlWriter(own)
            try:
                yield writer
            finally:
                writer.close()

    def head(self) -> TreeHead:
        """The latest committed head."""
        with self._db.read() as s:
            row = s.get(LedgerHeadRow, 1)
            if row is None:
                raise LedgerError("ledger tables are not initialised; run the migrations")
            return TreeHead(row.size, row.root, row.checkpoint)

    def nodes(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        """Stored hashes for ``keys`` in one query."""
        with self._db.read() as s:
            return _read_nodes(s, keys)

    def nodes_with_size(self, keys: Iterable[NodeKey]) -> tuple[int, dict[NodeKey, bytes]]:
        """The committed size and the hashes for ``keys`` in one read transaction.

        A proof's hot path: raw DB-API statements, one round trip each.
        """
        wanted = {_node_id(k): k for k in keys}
        placeholder = "?" if self._db.engine.dialect.paramstyle == "qmark" else "%s"
        with self._db.read() as s:
            cursor = s.connection().connection.cursor()
            try:
                cursor.execute("SELECT size FROM ledger_head WHERE id = 1")
                row = cursor.fetchone()
                if row is None:
                    raise LedgerError("ledger tables are not initialised; run the migrations")
                found: dict[NodeKey, bytes] = {}
                if wanted:
                    marks = ",".join([placeholder] * len(wanted))
                    cursor.execute(
                        f"SELECT id, hash FROM ledger_nodes WHERE id IN ({marks})",  # noqa: S608 -- only placeholders are interpolated
                        tuple(wanted),
                    )
                    found = {wanted[node_id]: bytes(h) for node_id, h in cursor.fetchall()}
                return int(row[0]), found
            finally:
                cursor.close()

    def entries(self, start: int, stop: int) -> list[StoredEntry]:
        """Entries in ``[start, stop)``."""
        with self._db.read() as s:
            rows = s.execute(
                select(LedgerEntryRow)
                .where(LedgerEntryRow.idx >= start, LedgerEntryRow.idx < stop)
                .order_by(LedgerEntryRow.idx)
            ).scalars()
            return [StoredEntry(r.idx, r.type, r.actor, r.time, r.leaf_input) for r in rows]

    def find(
        self,
        subjects: Sequence[str],
        types: Sequence[str] | None = None,
        *,
        session: Session | None = None,
    ) -> list[SubjectHit]:
        """Entries indexed under any of ``subjects`` (of ``types``), in index order."""
        wanted = list(dict.fromkeys(subjects))
        if not wanted:
            return []
        # Prebuilt statements with expanding parameters: a service checks its rows with
        # this on every use, and building an IN clause per call cost more than the query.
        query = _FIND if types is None else _FIND_TYPED
        params: dict[str, list[str]] = {"subjects": wanted}
        if types is not None:
            params["types"] = list(types)
        if session is not None:
            rows = session.connection().execute(query, params).all()
        else:
            with self._db.read() as own:
                rows = own.connection().execute(query, params).all()
        return [SubjectHit(str(s), int(i), str(t)) for s, i, t in rows]

    def count(
        self, subjects: Sequence[str], types: Sequence[str], *, session: Session | None = None
    ) -> dict[str, int]:
        """How many entries of ``types`` are indexed under each of ``subjects`` (one
        grouped count on the (subject, type) index)."""
        wanted = list(dict.fromkeys(subjects))
        if not wanted or not types:
            return {}
        params = {"subjects": wanted, "types": list(types)}
        if session is not None:
            rows = session.connection().execute(_COUNT, params).all()
        else:
            with self._db.read() as own:
                rows = own.connection().execute(_COUNT, params).all()
        return {str(subject): int(n) for subject, n in rows}

    def scan_entries(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        """``(index, leaf_input)`` rows in index order, read in large batches."""
        yield from self._scan(
            "SELECT idx, leaf_input FROM ledger_entries WHERE idx >= {p} AND idx < {p} "
            "ORDER BY idx LIMIT {p}",
            start,
            stop,
            0,
        )

    def scan_level(self, level: int) -> Iterator[tuple[int, bytes]]:
        """``(index, hash)`` rows of one level, in index order."""
        base = level << _LEVEL_SHIFT
        yield from self._scan(
            "SELECT id, hash FROM ledger_nodes WHERE id >= {p} AND id < {p} ORDER BY id LIMIT {p}",
            base,
            base + (1 << _LEVEL_SHIFT),
            base,
        )

    def _scan(self, template: str, lo: int, hi: int, offset: int) -> Iterator[tuple[int, bytes]]:
        """Keyset-paginated scan on the raw DB-API cursor (verify reads millions of rows;
        SQLAlchemy row objects would cost more than the hashing)."""
        placeholder = "?" if self._db.engine.dialect.paramstyle == "qmark" else "%s"
        sql = template.format(p=placeholder)
        with self._db.read() as s:
            cursor = s.connection().connection.cursor()
            try:
                pos = lo
                while True:
                    cursor.execute(sql, (pos, hi, _SCAN_BATCH))
                    batch = cursor.fetchall()
                    yield from ((key - offset, bytes(value)) for key, value in batch)
                    if len(batch) < _SCAN_BATCH:
                        return
                    pos = batch[-1][0] + 1
            finally:
                cursor.close()
