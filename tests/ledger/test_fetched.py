"""``FetchedLog``: an outside verifier recomputes a served log, checked against the RFC text."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import Event
from core.keys import Ed25519Signer
from ledger import (
    CheckpointError,
    FetchedLog,
    Ledger,
    LedgerIntegrityError,
    MemoryLedgerBackend,
    NoteVerifier,
)
from tests.ledger.reference import mth


def _ledger(size: int) -> Ledger:
    log = Ledger(MemoryLedgerBackend(), Ed25519Signer.generate("test"))
    if size:
        log.append([Event("t.e", "a", {"i": i}) for i in range(size)])
    return log


def _fetched(log: Ledger) -> FetchedLog:
    return FetchedLog.from_signed_checkpoint(log.checkpoint().to_text(), log.verifier)


def _leaves(log: Ledger) -> list[bytes]:
    size = log.size()
    return [e.leaf_input for e in log.entries(0, size)] if size else []


@settings(max_examples=40, deadline=None)
@given(size=st.integers(0, 70))
def test_the_recomputed_root_is_the_reference_root_and_the_signed_one(size: int) -> None:
    log = _ledger(size)
    fetched = _fetched(log)
    leaves = _leaves(log)
    for index, leaf in enumerate(leaves):
        fetched.add(index, leaf)
        assert fetched.root() == mth(leaves[: index + 1])
    report = fetched.verify()
    assert (report.size, report.root) == (size, log.head().root)


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    log = _ledger(3)
    other = NoteVerifier("test", Ed25519Signer.generate("test").public_key)
    with pytest.raises(CheckpointError):
        FetchedLog.from_signed_checkpoint(log.checkpoint().to_text(), other)


@pytest.mark.parametrize(
    ("serve", "message"),
    [
        (lambda leaves: [(0, leaves[0]), (2, leaves[2])], "missing or repeated"),
        (lambda leaves: [(0, leaves[0]), (0, leaves[0])], "missing or repeated"),
        (lambda leaves: [(0, leaves[1])], "claim index 1"),
        (lambda leaves: [(0, b"not json")], "not a ledger entry"),
        (lambda leaves: [(i, leaf) for i, leaf in enumerate(leaves)] + [(4, leaves[0])],
         "beyond the signed size"),
    ],
    ids=["gap", "repeat", "wrong-claimed-index", "not-an-entry", "beyond-size"],
)  # fmt: skip
def test_served_entries_out_of_place_are_refused(
    serve: Callable[[list[bytes]], list[tuple[int, bytes]]], message: str
) -> None:
    log = _ledger(4)
    fetched = _fetched(log)
    with pytest.raises(LedgerIntegrityError, match=message):
        for index, leaf in serve(_leaves(log)):
            fetched.add(index, leaf)


def test_too_few_entries_or_an_edited_one_fail_verify() -> None:
    log = _ledger(5)
    leaves = _leaves(log)
    short = _fetched(log)
    for index, leaf in enumerate(leaves[:4]):
        short.add(index, leaf)
    with pytest.raises(LedgerIntegrityError, match="served 4 entries"):
        short.verify()
    edited = _fetched(log)
    for index, leaf in enumerate(leaves):
        edited.add(index, leaf.replace(b'"i":3', b'"i":4') if index == 3 else leaf)
    with pytest.raises(LedgerIntegrityError, match="not the root the checkpoint signs"):
        edited.verify()
