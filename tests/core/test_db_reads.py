"""The one-statement reads of every request: ``Database.fetch`` (compiled once, straight on
the driver for SQLite) and ``Database.lookups`` give what SQLAlchemy's execution gives, and
send no transaction statements around them; writes still take the lock first."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    bindparam,
    column,
    event,
    func,
    select,
    text,
)

from core.db import Database

META = MetaData()
THINGS = Table(
    "things",
    META,
    Column("name", String(64), primary_key=True),
    Column("owner", String(64), index=True),
    Column("digest", LargeBinary),
    Column("size", Integer),
    Column("price", Numeric(10, 2)),  # a type whose values SQLAlchemy converts on SQLite
)
ROWS = [
    {"name": n, "owner": o, "digest": bytes([i]) * 4, "size": i, "price": f"{i}.25"}
    for i, (n, o) in enumerate(
        [("a.x", "ent-a"), ("B.y", "ent-b"), ("b.y", "ent-a"), ("c", "Ent-c"), ("é", "ent-b")]
    )
]

STATEMENTS: dict[str, tuple[Any, dict[str, Any]]] = {
    "by primary key": (
        select(THINGS).where(THINGS.c.name == bindparam("name")),
        {"name": "b.y"},
    ),
    "by bytes": (
        select(THINGS.c.name, THINGS.c.size).where(THINGS.c.digest == bindparam("digest")),
        {"digest": bytes([3]) * 4},
    ),
    "a default value": (select(THINGS.c.owner).where(THINGS.c.size == 2), {}),
    "keyset page": (
        select(THINGS)
        .where(THINGS.c.name.collate("BINARY") > bindparam("after"))
        .order_by(THINGS.c.name.collate("BINARY"))
        .limit(bindparam("limit")),
        {"after": "B", "limit": 3},
    ),
    "a function": (
        select(THINGS.c.name).where(func.instr(THINGS.c.owner, bindparam("part")) > 0),
        {"part": "nt-"},
    ),
    "a JSON list": (
        select(THINGS.c.name)
        .where(
            THINGS.c.owner.in_(
                select(column("value")).select_from(func.json_each(bindparam("owners")))
            )
        )
        .order_by(THINGS.c.name),
        {"owners": json.dumps(["ent-a", "Ent-c"])},
    ),
    "an expanding IN (SQLAlchemy runs it)": (
        select(THINGS.c.name)
        .where(THINGS.c.owner.in_(bindparam("owners", expanding=True)))
        .order_by(THINGS.c.name),
        {"owners": ["ent-b"]},
    ),
    "converted values": (select(THINGS.c.price, THINGS.c.name).order_by(THINGS.c.size), {}),
    "no rows": (select(THINGS).where(THINGS.c.name == bindparam("name")), {"name": "none"}),
}


@pytest.fixture
def sqlite(tmp_path: Any) -> Iterator[Database]:
    db = Database(f"sqlite:///{tmp_path / 'reads.db'}")
    META.create_all(db.engine)
    with db.engine.begin() as connection:
        connection.execute(THINGS.insert(), ROWS)
    yield db
    db.dispose()


@pytest.fixture
def statements(sqlite: Database) -> Iterator[list[str]]:
    seen: list[str] = []

    def _record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(sqlite.engine, "before_cursor_execute", _record)
    yield seen
    event.remove(sqlite.engine, "before_cursor_execute", _record)


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_fetch_gives_what_sqlalchemy_gives(sqlite: Database, name: str) -> None:
    statement, params = STATEMENTS[name]
    with sqlite.engine.connect() as connection:
        expected = connection.execute(statement, params).all()
    for _ in range(2):  # compiled on the first call, reused on the second
        rows = sqlite.fetch(statement, params)
        assert [tuple(row) for row in rows] == [tuple(row) for row in expected]
        for row, want in zip(rows, expected, strict=True):
            for key in want._fields:
                assert getattr(row, key) == getattr(want, key)
                assert type(getattr(row, key)) is type(getattr(want, key))


def test_reads_send_no_transaction_statements_and_writes_take_the_lock(
    sqlite: Database, statements: list[str]
) -> None:
    statement, params = STATEMENTS["an expanding IN (SQLAlchemy runs it)"]
    sqlite.fetch(statement, params)  # through lookups()
    with sqlite.lookups() as connection:
        connection.execute(text("SELECT count(*) FROM things")).scalar()
    assert not [s for s in statements if s.split()[0] in ("BEGIN", "COMMIT", "ROLLBACK")]
    with sqlite.write() as session:
        session.execute(text("SELECT 1"))
    with sqlite.read() as session:
        session.execute(text("SELECT 1"))
    assert [s for s in statements if s.startswith("BEGIN")] == ["BEGIN IMMEDIATE", "BEGIN"]


def test_a_read_sees_a_write_committed_by_another_connection(sqlite: Database) -> None:
    statement, params = STATEMENTS["by primary key"]
    assert sqlite.fetch(statement, {"name": "new"}) == []
    other = Database(str(sqlite.url))
    with other.engine.begin() as connection:
        connection.execute(THINGS.insert(), [{**ROWS[0], "name": "new"}])
    other.dispose()
    assert [row.name for row in sqlite.fetch(statement, {"name": "new"})] == ["new"]
    assert params  # the statement is a module-level one, as fetch asks


@pytest.mark.postgres
def test_fetch_on_postgresql_runs_through_sqlalchemy(postgres_server: str) -> None:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    host, port = postgres_server.split(":")
    with psycopg.connect(
        f"host={host} port={port} user=ibx dbname=postgres", autocommit=True
    ) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    db = Database(f"postgresql+psycopg://ibx@{postgres_server}/{name}")
    try:
        META.create_all(db.engine)
        with db.engine.begin() as connection:
            connection.execute(THINGS.insert(), ROWS)
        statement, params = STATEMENTS["by primary key"]
        assert [(row.name, row.owner) for row in db.fetch(statement, params)] == [("b.y", "ent-a")]
    finally:
        db.dispose()
