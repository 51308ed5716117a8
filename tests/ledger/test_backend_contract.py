"""One contract suite, run against every ledger backend (memory, SQL on SQLite)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.canonical import canonical_bytes
from core.db import Database, migrate
from core.events import Event
from core.keys import Ed25519Signer
from ledger import (
    MAX_PAYLOAD_BYTES,
    MIGRATIONS,
    Checkpoint,
    EntryTooLargeError,
    InvalidEntryError,
    Ledger,
    LedgerBackend,
    LedgerConfig,
    MemoryLedgerBackend,
    NoteVerifier,
    SignedNote,
    SqlLedgerBackend,
    TreeSizeError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from tests.ledger import reference

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerBackend]:
    if request.param == "memory":
        yield MemoryLedgerBackend()
        return
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db = Database(url)
    migrate(db, [MIGRATIONS])
    yield SqlLedgerBackend(db)
    db.dispose()


@pytest.fixture
def ledger(backend: LedgerBackend) -> Ledger:
    return Ledger(backend, Ed25519Signer("test", bytes(range(32))), LedgerConfig(origin="test/log"))


def _events(n: int, start: int = 0) -> list[Event]:
    return [
        Event("test.event", f"actor-{i % 3}", {"n": i, "text": "数据"})
        for i in range(start, start + n)
    ]


def test_empty_log_has_a_signed_checkpoint_of_size_zero(ledger: Ledger) -> None:
    note = ledger.checkpoint()
    note.verify(ledger.verifier)
    assert Checkpoint.from_text(note.text).size == 0
    assert ledger.verify().size == 0


def test_entries_are_dense_and_leaf_input_is_canonical_entry(ledger: Ledger) -> None:
    first = ledger.append(_events(3), now=T0)
    second = ledger.append(_events(2, 3), now=T0)
    assert [r.index for r in first + second] == [0, 1, 2, 3, 4]
    for entry in ledger.entries(0, 10):
        assert entry.leaf_input == canonical_bytes(entry.to_dict())
        assert json.loads(entry.leaf_input)["index"] == entry.index
    assert ledger.entry(4).payload == {"n": 4, "text": "数据"}
    assert ledger.entry(0).time == T0


def test_proofs_match_reference_and_verify_against_the_checkpoint(ledger: Ledger) -> None:
    for batch in (1, 4, 7, 13):
        ledger.append(_events(batch), now=T0)
    size = ledger.size()
    leaves = [e.leaf_input for e in ledger.entries(0, size)]
    note = ledger.checkpoint()
    NoteVerifier.from_vkey(ledger.vkey())
    note.verify(NoteVerifier.from_vkey(ledger.vkey()))
    checkpoint = Checkpoint.from_text(note.text)
    assert (checkpoint.origin, checkpoint.size) == ("test/log", size)
    assert checkpoint.root == reference.mth(leaves)
    for index in range(size):
        proof = ledger.inclusion_proof(index, size)
        assert list(proof.hashes) == reference.path(index, leaves)
        verify_inclusion(index, size, leaf_hash(leaves[index]), proof.hashes, checkpoint.root)
    for first in range(1, size + 1):
        cons = ledger.consistency_proof(first, size)
        assert list(cons.hashes) == reference.proof(first, leaves)
        verify_consistency(first, size, ledger.root_at(first), checkpoint.root, cons.hashes)


def test_a_bad_event_in_a_batch_appends_nothing(ledger: Ledger) -> None:
    ledger.append(_events(2), now=T0)
    bad = [*_events(2), Event("test.event", "a", {"x": float("nan")})]
    with pytest.raises(InvalidEntryError) as caught:
        ledger.append(bad)
    assert caught.value.line == 3
    assert ledger.size() == 2
    assert ledger.verify().size == 2


def test_payloads_over_64_kib_are_refused_with_the_line(ledger: Ledger) -> None:
    fits = {"blob": "x" * (MAX_PAYLOAD_BYTES - len('{"blob":""}'))}
    assert len(canonical_bytes(fits)) == MAX_PAYLOAD_BYTES
    ledger.append([Event("test.big", "a", fits)])
    too_big = {"blob": "x" * MAX_PAYLOAD_BYTES}
    with pytest.raises(EntryTooLargeError) as caught:
        ledger.append([Event("test.ok", "a", {}), Event("test.big", "a", too_big)])
    assert caught.value.line == 2
    assert ledger.size() == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda lg: lg.inclusion_proof(0, 0),
        lambda lg: lg.inclusion_proof(3, 3),
        lambda lg: lg.inclusion_proof(0, 4),
        lambda lg: lg.consistency_proof(0, 3),
        lambda lg: lg.consistency_proof(3, 2),
        lambda lg: lg.consistency_proof(1, 4),
        lambda lg: lg.entries(3, 1),
        lambda lg: lg.entries(-1, 1),
        lambda lg: lg.root_at(4),
    ],
    ids=[
        "inclusion-empty",
        "inclusion-index-at-size",
        "inclusion-beyond-log",
        "consistency-from-zero",
        "consistency-shrinking",
        "consistency-beyond-log",
        "entries-beyond",
        "entries-negative",
        "root-beyond",
    ],
)
def test_out_of_range_requests_are_refused(ledger: Ledger, call: object) -> None:
    ledger.append(_events(3))
    with pytest.raises(TreeSizeError):
        call(ledger)  # type: ignore[operator]


def test_concurrent_appenders_keep_indices_dense(ledger: Ledger) -> None:
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(10):
                ledger.append(_events(3, 100 * k + 3 * i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert ledger.size() == 120
    assert [e.index for e in ledger.entries(0, 200)] == list(range(120))
    assert ledger.verify().size == 120


def test_checkpoint_is_signed_with_the_configured_origin(ledger: Ledger) -> None:
    ledger.append(_events(1))
    note = SignedNote.from_text(ledger.checkpoint().to_text())
    assert note.text.splitlines()[0] == "test/log"
    assert note.signatures[0].name == "test/log"
    assert ledger.vkey().startswith("test/log+")
