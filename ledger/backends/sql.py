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

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text, insert, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from core.db import Base, Database
from ledger._merkle import NodeKey
from ledger.backends.base import StoredEntry, TreeHead
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


class LedgerHeadRow(Base):
    """The single head row."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    root: Mapped[bytes] = mapped_column(LargeBinary)
    checkpoint: Mapped[str] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger)


class _SqlWriter:
    def __init__(self, session: Session) -> None:
        self._session = session
        row = session.execute(
            update(LedgerHeadRow)
            .where(LedgerHeadRow.id == 1)
            .values(version=LedgerHeadRow.version + 1)
            .returning(LedgerHeadRow.size, LedgerHeadRow.root, LedgerHeadRow.checkpoint)
        ).one_or_none()
        if row is None:
            raise LedgerError("ledger tables are not initialised; run the migrations")
        self._head = TreeHead(row[0], row[1], row[2])

    def head(self) -> TreeHead:
        return self._head

    def nodes(self, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
        return _read_nodes(self._session, keys)

    def write(
        self, entries: Sequence[StoredEntry], nodes: Mapping[NodeKey, bytes], head: TreeHead
    ) -> None:
        s = self._session
        if entries:
            s.execute(
                insert(LedgerEntryRow),
                [
                    {
                        "idx": e.index,
                        "type": e.type,
                        "actor": e.actor,
                        "time": e.time,
                        "leaf_input": e.leaf_input,
                    }
                    for e in entries
                ],
            )
        if nodes:
            s.execute(
                insert(LedgerNodeRow),
                [{"id": _node_id(k), "hash": h} for k, h in nodes.items()],
            )
        s.execute(
            update(LedgerHeadRow)
            .where(LedgerHeadRow.id == 1)
            .values(size=head.size, root=head.root, checkpoint=head.checkpoint)
        )


def _read_nodes(session: Session, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
    wanted = {_node_id(k): k for k in keys}
    if not wanted:
        return {}
    rows = session.execute(
        select(LedgerNodeRow.id, LedgerNodeRow.hash).where(LedgerNodeRow.id.in_(list(wanted)))
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
            yield _SqlWriter(session)
            return
        with self._db.write() as own:
            yield _SqlWriter(own)

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

    def entries(self, start: int, stop: int) -> list[StoredEntry]:
        """Entries in ``[start, stop)``."""
        with self._db.read() as s:
            rows = s.execute(
                select(LedgerEntryRow)
                .where(LedgerEntryRow.idx >= start, LedgerEntryRow.idx < stop)
                .order_by(LedgerEntryRow.idx)
            ).scalars()
            return [StoredEntry(r.idx, r.type, r.actor, r.time, r.leaf_input) for r in rows]

    def scan_entries(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        """``(index, leaf_input)`` rows in index order, read in large batches."""
        with self._db.read() as s:
            pos = start
            while True:
                batch = s.execute(
                    select(LedgerEntryRow.idx, LedgerEntryRow.leaf_input)
                    .where(LedgerEntryRow.idx >= pos, LedgerEntryRow.idx < stop)
                    .order_by(LedgerEntryRow.idx)
                    .limit(_SCAN_BATCH)
                ).all()
                yield from ((idx, leaf) for idx, leaf in batch)
                if len(batch) < _SCAN_BATCH:
                    return
                pos = batch[-1][0] + 1

    def scan_level(self, level: int) -> Iterator[tuple[int, bytes]]:
        """``(index, hash)`` rows of one level, in index order."""
        base = level << _LEVEL_SHIFT
        count = 1 << _LEVEL_SHIFT
        with self._db.read() as s:
            pos = base
            while True:
                batch = s.execute(
                    select(LedgerNodeRow.id, LedgerNodeRow.hash)
                    .where(LedgerNodeRow.id >= pos, LedgerNodeRow.id < base + count)
                    .order_by(LedgerNodeRow.id)
                    .limit(_SCAN_BATCH)
                ).all()
                yield from ((node_id - base, h) for node_id, h in batch)
                if len(batch) < _SCAN_BATCH:
                    return
                pos = batch[-1][0] + 1
