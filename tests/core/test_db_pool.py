"""A writer that holds SQLite's write lock can always get a second pooled connection.

The pipeline's group commit holds the write lock and, inside it, reads an
identity through :meth:`core.db.Database.fetch` (another pooled connection).
Each HTTP worker thread waiting for the write lock holds a pooled connection
while it waits. With SQLAlchemy's default pool (5 + 10 overflow) sixteen
waiters took every connection: the lock holder waited for a connection, the
waiters for the lock, until SQLite's 30 s busy timeout failed them all (500s
under 32 concurrent ``POST /v1/requests``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from core.db import SQLITE_POOL_SIZE, Database

WAITERS = 40
"""As many threads as the server's worker pool (anyio's default limit)."""


def test_a_lock_holder_reads_while_forty_threads_wait_for_the_lock(tmp_path: Path) -> None:
    assert SQLITE_POOL_SIZE > WAITERS
    db = Database(f"sqlite:///{tmp_path / 'pool.db'}")
    with db.write() as session:
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    waiting = threading.Barrier(WAITERS + 1)
    errors: list[BaseException] = []

    def waiter() -> None:
        waiting.wait()
        try:
            with db.write() as session:  # blocks in BEGIN IMMEDIATE, holding a connection
                session.execute(text("INSERT INTO t VALUES (1)"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=waiter) for _ in range(WAITERS)]
    with db.write() as session:
        session.execute(text("INSERT INTO t VALUES (0)"))
        for thread in threads:
            thread.start()
        waiting.wait()
        time.sleep(0.5)  # every waiter is now in BEGIN IMMEDIATE
        started = time.monotonic()
        with db.lookups() as connection:  # another pooled connection, as fetch() takes
            count = connection.execute(text("SELECT count(*) FROM t")).scalar_one()
        assert time.monotonic() - started < 5, "the lock holder waited for a connection"
        assert count == 0  # another connection: the holder's insert is not committed yet
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar_one() == WAITERS + 1
    db.dispose()
