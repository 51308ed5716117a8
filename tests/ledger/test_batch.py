"""Batched appends (:meth:`ledger.Ledger.batch`): many entries, one tree update, one checkpoint.

The same entries appended one by one and in a batch give the same log (leaves,
root, proofs against the RFC 9162 reference); a unit rolled back inside a
batch leaves no gap; a failed batch writes nothing; entries recorded with the
batch's session join it, and are durable only when that transaction commits.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.db import Database, migrate
from core.events import Event
from core.keys import Ed25519Signer
from ledger import (
    MIGRATIONS,
    Checkpoint,
    InvalidEntryError,
    Ledger,
    LedgerBackend,
    LedgerConfig,
    LedgerError,
    MemoryLedgerBackend,
    SqlLedgerBackend,
    leaf_hash,
    verify_inclusion,
)
from tests.ledger import reference

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
KEY = Ed25519Signer("test", bytes(range(32)))


def _ledger(backend: LedgerBackend) -> Ledger:
    return Ledger(backend, KEY, LedgerConfig(origin="test/log"), clock=lambda: T0)


def _events(n: int, start: int = 0) -> list[Event]:
    return [Event("test.event", f"actor-{i % 3}", {"n": i}) for i in range(start, start + n)]


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerBackend]:
    if request.param == "memory":
        yield MemoryLedgerBackend()
        return
    db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    migrate(db, [MIGRATIONS])
    yield SqlLedgerBackend(db)
    db.dispose()


@pytest.fixture
def sql(tmp_path: Path) -> Iterator[tuple[Database, Ledger]]:
    db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    migrate(db, [MIGRATIONS])
    yield db, _ledger(SqlLedgerBackend(db))
    db.dispose()


def test_a_batch_gives_the_log_that_single_appends_give(backend: LedgerBackend) -> None:
    single = _ledger(MemoryLedgerBackend())
    single.append(_events(5), now=T0)
    for i in range(5, 18):
        single.append(_events(1, i), now=T0)
    batched = _ledger(backend)
    batched.append(_events(5), now=T0)
    with batched.batch() as batch:
        recorded = [r for i in range(5, 18) for r in batch.add(_events(1, i), now=T0)]
        assert batch.start == 5
        assert len(batch) == 13
    assert [r.index for r in recorded] == list(range(5, 18))
    leaves = [e.leaf_input for e in batched.entries(0, 100)]
    assert leaves == [e.leaf_input for e in single.entries(0, 100)]
    assert [r.leaf_hash for r in recorded] == [leaf_hash(x) for x in leaves[5:]]
    note = batched.checkpoint()
    note.verify(batched.verifier)
    checkpoint = Checkpoint.from_text(note.text)
    assert (checkpoint.size, checkpoint.root) == (18, reference.mth(leaves))
    for index in range(18):
        proof = batched.inclusion_proof(index, 18)
        assert list(proof.hashes) == reference.path(index, leaves)
        verify_inclusion(index, 18, leaf_hash(leaves[index]), proof.hashes, checkpoint.root)
    assert batched.verify().size == 18


def test_rolled_back_units_leave_no_gap(backend: LedgerBackend) -> None:
    log = _ledger(backend)
    with log.batch() as batch:
        batch.add(_events(2))
        mark = batch.mark()
        batch.add(_events(3, 100))  # a unit that fails afterwards
        batch.rollback_to(mark)
        again = batch.add(_events(1, 2))
        with pytest.raises(LedgerError):
            batch.rollback_to(mark + 5)
    assert again[0].index == 2
    assert [e.payload["n"] for e in log.entries(0, 10)] == [0, 1, 2]
    assert log.verify().size == 3


def test_a_batch_whose_block_fails_writes_nothing(backend: LedgerBackend) -> None:
    log = _ledger(backend)
    log.append(_events(1))
    with pytest.raises(RuntimeError), log.batch() as batch:
        batch.add(_events(4, 1))
        raise RuntimeError("the caller's transaction fails")
    assert log.size() == 1
    with log.batch():  # an empty batch writes nothing, not even a new checkpoint
        pass
    assert log.size() == 1
    assert log.verify().size == 1


def test_a_bad_event_is_refused_and_the_batch_goes_on(backend: LedgerBackend) -> None:
    log = _ledger(backend)
    with log.batch() as batch:
        batch.add(_events(1))
        with pytest.raises(InvalidEntryError) as caught:
            batch.add([*_events(1, 1), Event("test.event", "a", {"x": float("nan")})])
        assert caught.value.line == 2
        batch.add(_events(1, 1))
    assert [e.index for e in log.entries(0, 10)] == [0, 1]
    with log.batch() as closed:
        pass
    with pytest.raises(InvalidEntryError):
        closed.add(_events(1))


def test_records_in_the_batch_session_join_it_and_commit_with_it(
    sql: tuple[Database, Ledger],
) -> None:
    db, log = sql
    with db.write() as session, log.batch(session) as batch:
        first = log.record(Event("test.a", "x", {"n": 1}), session=session)
        more = log.record_batch(_events(2, 2), session=session)
        assert [first.index, *(r.index for r in more)] == [0, 1, 2]
        assert len(batch) == 3
        assert log.size() == 0  # not written until the batch closes and the transaction commits
        with pytest.raises(LedgerError), log.batch(session):  # one batch per session
            pass
    assert log.size() == 3
    assert log.verify().size == 3
    # outside a batch, record with a session appends at once, as before
    with db.write() as session:
        assert log.record(Event("test.b", "x", {}), session=session).index == 3
    assert log.size() == 4


def test_a_rolled_back_transaction_drops_its_batch(sql: tuple[Database, Ledger]) -> None:
    db, log = sql
    with pytest.raises(RuntimeError), db.write() as session, log.batch(session):
        log.record(Event("test.a", "x", {}), session=session)
        raise RuntimeError("refused")
    assert log.size() == 0
    log.record(Event("test.b", "x", {}))
    assert log.entry(0).type == "test.b"
    assert log.verify().size == 1


def test_concurrent_batches_and_appends_keep_indices_dense(sql: tuple[Database, Ledger]) -> None:
    db, log = sql
    errors: list[BaseException] = []

    def batcher(k: int) -> None:
        try:
            for i in range(5):
                with db.write() as session, log.batch(session):
                    for j in range(4):
                        log.record(Event("test.b", "x", {"k": k, "i": i, "j": j}), session=session)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def appender() -> None:
        try:
            for i in range(10):
                log.append(_events(1, i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=batcher, args=(k,)) for k in range(3)]
    threads.append(threading.Thread(target=appender))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert log.size() == 3 * 5 * 4 + 10
    assert [e.index for e in log.entries(0, 1000)] == list(range(70))
    assert log.verify().size == 70
