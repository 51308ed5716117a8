"""A witness's rounds (:class:`audit.witness.Witness`) against real in-memory ledgers.

The transport answers from a real :class:`ledger.Ledger` (memory backend) the
way the exchange's routes do, and keeps posted cosignatures as the exchange
does (each recorded as a ``ledger.cosignature`` entry, which moves the log).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit.witness import ForkDetected, Witness, WitnessError, WitnessState
from core.events import Event
from core.keys import Ed25519Signer
from ledger import (
    Checkpoint,
    Ledger,
    LedgerConfig,
    LedgerEntry,
    MemoryLedgerBackend,
    SignedNote,
    verify_cosignature,
    with_cosignatures,
)

KEY = Ed25519Signer("ledger", bytes(range(32)))
ORIGIN = "witness.test/ledger"
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def _log(entries: int = 3, tag: str = "a") -> Ledger:
    log = Ledger(MemoryLedgerBackend(), KEY, LedgerConfig(origin=ORIGIN))
    for i in range(entries):
        log.record(Event("demo.reading", "acme", {"i": i, "tag": tag}))
    return log


@dataclass
class LedgerTransport:
    """The exchange's witness routes over a real ledger."""

    log: Ledger
    cosigned: dict[int, SignedNote] = field(default_factory=dict)
    forks: list[tuple[list[str], str]] = field(default_factory=list)
    served_override: str | None = None

    def checkpoint(self) -> str:
        if self.served_override is not None:
            return self.served_override
        note = self.log.checkpoint()
        size = Checkpoint.from_text(note.text).size
        kept = self.cosigned.get(size)
        return (kept if kept is not None and kept.text == note.text else note).to_text()

    def witnessed(self) -> str | None:
        return self.cosigned[max(self.cosigned)].to_text() if self.cosigned else None

    def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        return self.log.consistency_proof(first, second).hashes

    def entries(self, start: int, stop: int) -> Sequence[LedgerEntry]:
        return self.log.entries(start, stop - start)

    def post_cosignature(self, note: str) -> None:
        parsed = SignedNote.from_text(note)
        parsed.verify(self.log.verifier)
        size = Checkpoint.from_text(parsed.text).size
        before = self.cosigned.get(size, SignedNote(parsed.text, parsed.signatures[:1]))
        self.cosigned[size] = with_cosignatures(before, parsed.signatures[1:])
        witness = parsed.signatures[-1].name
        self.log.record(Event("ledger.cosignature", witness, {"size": size}))

    def post_fork(
        self, checkpoints: Sequence[str], consistency: Sequence[bytes], reason: str
    ) -> None:
        self.forks.append((list(checkpoints), reason))


def _witness(transport: LedgerTransport, state: Path, name: str = "w1") -> Witness:
    signer = Ed25519Signer(name, name.encode().ljust(32, b"."))
    return Witness(
        transport,
        WitnessState.open(state),
        name=name,
        signer=signer,
        ledger_key=transport.log.verifier,
        clock=lambda: NOW,
    )


def test_a_round_cosigns_then_skips_its_own_bookkeeping_then_cosigns_news(tmp_path: Path) -> None:
    transport = LedgerTransport(_log())
    witness = _witness(transport, tmp_path / "w1")
    first = witness.round()
    assert first.cosigned == (3,)
    note = transport.cosigned[3]
    assert verify_cosignature(note, witness.verifier) == int(NOW.timestamp())
    second = witness.round()
    assert second.cosigned == () and second.skipped is not None
    assert transport.log.size() == 4  # no cosignature of a cosignature
    transport.log.record(Event("demo.reading", "acme", {"i": 9}))
    third = witness.round()
    assert third.cosigned == (5,)


def test_witnesses_converge_on_one_checkpoint(tmp_path: Path) -> None:
    transport = LedgerTransport(_log())
    w1, w2 = _witness(transport, tmp_path / "w1", "w1"), _witness(transport, tmp_path / "w2", "w2")
    assert w1.round().cosigned == (3,)
    assert w2.round().cosigned == (3,)  # the newest witnessed one, then nothing new
    both = transport.cosigned[3]
    keys = [w1.verifier, w2.verifier]
    assert all(verify_cosignature(both, v) for v in keys)
    assert w1.round().cosigned == () and w2.round().cosigned == ()


def test_one_size_two_roots_is_a_fork_and_it_stands(tmp_path: Path) -> None:
    honest, forked = _log(3, "a"), _log(3, "b")
    transport = LedgerTransport(honest)
    witness = _witness(transport, tmp_path / "w1")
    assert witness.round().cosigned == (3,)  # kept: 3 entries; the fork has 3 others
    transport.served_override = forked.checkpoint().to_text()
    with pytest.raises(ForkDetected, match="different roots") as raised:
        witness.round()
    evidence = raised.value.evidence
    assert (evidence / "served.checkpoint").read_text() == transport.served_override
    assert len(transport.forks) == 1
    transport.served_override = None
    with pytest.raises(ForkDetected, match="a fork stands"):
        witness.round()


def test_a_checkpoint_under_another_key_is_refused_and_nothing_kept(tmp_path: Path) -> None:
    other = Ledger(MemoryLedgerBackend(), Ed25519Signer("x", bytes(32)), LedgerConfig(ORIGIN))
    other.record(Event("demo.reading", "acme", {}))
    transport = LedgerTransport(_log())
    transport.served_override = other.checkpoint().to_text()
    witness = _witness(transport, tmp_path / "w1")
    with pytest.raises(WitnessError, match="not signed by the pinned ledger key"):
        witness.round()
    assert WitnessState(tmp_path / "w1").kept() is None and not transport.cosigned


def test_a_state_dir_others_may_read_is_refused(tmp_path: Path) -> None:
    (tmp_path / "open").mkdir(mode=0o755)
    (tmp_path / "open").chmod(0o755)
    with pytest.raises(WitnessError, match="chmod 700"):
        WitnessState.open(tmp_path / "open")
