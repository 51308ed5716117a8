"""The subject index (:meth:`ledger.Ledger.find`): which entries are about a consent, a key, a job.

It is written with the entries (one append, one batch, or rolled back with
them), is never part of the hashed leaf, and answers by subject and type in
index order on every backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.db import Database, migrate
from core.events import Event
from core.keys import Ed25519Signer
from ledger import MIGRATIONS, Ledger, LedgerBackend, MemoryLedgerBackend, SqlLedgerBackend

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
KEY = Ed25519Signer("test", bytes(range(32)))


@pytest.fixture(params=["memory", "sqlite"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    backend: LedgerBackend
    db: Database | None = None
    if request.param == "memory":
        backend = MemoryLedgerBackend()
    else:
        db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
        migrate(db, [MIGRATIONS])
        backend = SqlLedgerBackend(db)
    yield Ledger(backend, KEY, clock=lambda: T0)
    if db is not None:
        db.dispose()


def test_find_by_subject_and_type_in_index_order(ledger: Ledger) -> None:
    ledger.record(Event("consent.grant", "e1", {"n": 0}, subjects=("c1", "e1")))
    ledger.record(Event("consent.grant", "e2", {"n": 1}, subjects=("c2", "e2")))
    ledger.record_batch(
        [
            Event("consent.use", "sb", {"n": 2}, subjects=("c1", "c2")),
            Event("consent.revoke", "e1", {"n": 3}, subjects=("c1", "c1")),
        ]
    )
    assert [(h.index, h.type) for h in ledger.find(["c1"])] == [
        (0, "consent.grant"),
        (2, "consent.use"),
        (3, "consent.revoke"),
    ]
    assert [h.index for h in ledger.find(["c1", "c2"], ["consent.use"])] == [2, 2]
    assert ledger.find(["nobody"]) == []
    assert ledger.find([]) == []


def test_subjects_are_not_hashed(ledger: Ledger) -> None:
    """The same event with and without subjects gives the same leaf (the index is apart)."""
    a = ledger.record(Event("t.x", "a", {"n": 1}, subjects=("s",)))
    plain = Ledger(MemoryLedgerBackend(), KEY, clock=lambda: T0)
    b = plain.record(Event("t.x", "a", {"n": 1}))
    assert a.leaf_hash == b.leaf_hash


def test_sql_batch_rolled_back_leaves_no_subjects(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    migrate(db, [MIGRATIONS])
    ledger = Ledger(SqlLedgerBackend(db), KEY, clock=lambda: T0)
    with pytest.raises(RuntimeError), db.write() as session:
        ledger.record(Event("t.x", "a", {}, subjects=("gone",)), session=session)
        assert [h.index for h in ledger.find(["gone"], session=session)] == [0]
        raise RuntimeError("roll back")
    assert ledger.find(["gone"]) == []
    with db.write() as session, ledger.batch(session):
        ledger.record(Event("t.x", "a", {}, subjects=("kept",)), session=session)
    assert [h.index for h in ledger.find(["kept"])] == [0]
    db.dispose()


def test_bad_subjects_are_refused() -> None:
    with pytest.raises(ValueError, match="subjects"):
        Event("t.x", "a", {}, subjects=("",))


def test_count_by_subject_and_type_agrees_with_find(ledger: Ledger) -> None:
    """:meth:`ledger.Ledger.count`: the uses of a consent counted by the database."""
    ledger.record(Event("consent.grant", "e1", {"n": 0}, subjects=("c1",)))
    for n in range(5):
        ledger.record(Event("consent.use", "sb", {"n": n}, subjects=("c1", "c2")))
    ledger.record(Event("consent.use", "sb", {"n": 9}, subjects=("c2",)))
    assert ledger.count(["c1", "c2", "c3"], ["consent.use"]) == {"c1": 5, "c2": 6}
    assert ledger.count(["c1"], ["consent.use", "consent.grant"]) == {"c1": 6}
    assert ledger.count(["c1"], []) == {}
    assert ledger.count([], ["consent.use"]) == {}
    found = ledger.find(["c1", "c2"], ["consent.use"])
    assert sum(ledger.count(["c1", "c2"], ["consent.use"]).values()) == len(found)
