"""An agent with ``--witness-quorum``: no data read before enough witnesses cosigned.

A real ledger (SQLite) and the agent's real verifier; the witnesses cosign
with the C2SP ``tlog-cosignature`` code the ``ibx audit witness`` command uses.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.db import Database
from core.events import Event
from core.keys import Ed25519Signer
from exchange.agent import LedgerAlarm, TaskRefused
from exchange.agent.reads import EvidenceReads
from exchange.agent.verify import TaskVerifier, WitnessQuorum
from exchange.pipeline.evidence import EvidenceCache
from ledger import (
    Checkpoint,
    CheckpointStore,
    CosignatureVerifier,
    StoredCosignature,
    cosign,
    sign_note,
    with_cosignatures,
)
from tests.exchange.agent._world import ME, World, make_world

W1 = Ed25519Signer("w1", bytes(range(3, 35)))
W2 = Ed25519Signer("w2", bytes(range(4, 36)))
STRANGER = Ed25519Signer("w1", bytes(range(5, 37)))
WITNESSES = (CosignatureVerifier("w1", W1.public_key), CosignatureVerifier("w2", W2.public_key))


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _verifier(world: World, quorum: int) -> TaskVerifier:
    return TaskVerifier(
        world.reads,
        world.vkey,
        world.state,
        enterprise=ME,
        public_key=world.key.signer.public_key,
        witnesses=WitnessQuorum.of(WITNESSES, quorum),
    )


def _cosigned(world: World, *signers: tuple[str, Ed25519Signer]) -> str:
    note = world.log.checkpoint()
    now = int(time.time())
    return with_cosignatures(
        note, [cosign(note.text, name, signer, now) for name, signer in signers]
    ).to_text()


def test_quorum_one_refuses_before_a_witness_cosigned_and_proceeds_after(world: World) -> None:
    decision = world.decision()
    task = world.task(decision, world.record(decision))
    with pytest.raises(TaskRefused, match="0 of the 1 witness cosignatures"):
        _verifier(world, 1).head()

    world.reads.witnessed = _cosigned(world, ("w1", W1))  # a witness cosigns this head
    world.log.record(
        Event("demo.note", "exchange", {"note": "after the witness"})
    )  # the log moves on
    verifier = _verifier(world, 1)
    head = verifier.head()
    assert head.size == world.log.size() - 1  # the witnessed checkpoint, not the latest
    auth = verifier.verify(task, head)
    assert auth.participant.enterprise == ME

    later = world.decision()
    beyond = world.task(later, world.record(later))  # decided after the witnessed checkpoint
    with pytest.raises(TaskRefused, match="beyond the verified checkpoint"):
        verifier.verify(beyond, verifier.head())


def test_a_stranger_or_too_few_witnesses_do_not_make_a_quorum(world: World) -> None:
    world.reads.witnessed = _cosigned(world, ("w1", STRANGER))  # w1's name, another key
    with pytest.raises(TaskRefused, match="carries 0 of the 1"):
        _verifier(world, 1).head()
    world.reads.witnessed = _cosigned(world, ("w1", W1))
    with pytest.raises(TaskRefused, match="carries 1 of the 2"):
        _verifier(world, 2).head()
    world.reads.witnessed = _cosigned(world, ("w1", W1), ("w2", W2))
    assert _verifier(world, 2).head().size == world.log.size()
    assert _verifier(world, 0).head().size == world.log.size()  # off: as before


def test_a_witnessed_checkpoint_off_the_served_log_raises_the_alarm(world: World) -> None:
    served = world.log.checkpoint()
    size = Checkpoint.from_text(served.text).size
    forked = Checkpoint(Checkpoint.from_text(served.text).origin, size, bytes(32)).to_text()
    note = sign_note(forked, world.vkey.name, world.ledger_signer)
    world.reads.witnessed = with_cosignatures(
        note, [cosign(note.text, "w1", W1, int(time.time()))]
    ).to_text()
    with pytest.raises(LedgerAlarm, match="different roots"):
        _verifier(world, 1).head()
    assert world.state.alarm() is not None


def test_a_quorum_larger_than_the_witnesses_is_refused() -> None:
    with pytest.raises(ValueError, match="at least that many distinct"):
        WitnessQuorum.of(WITNESSES[:1] * 2, 2)


def test_the_task_list_evidence_carries_the_cosignatures(world: World) -> None:
    """The checkpoint bundled with the task list is served with its cosignature lines, so an
    agent with a quorum needs no other read when the latest checkpoint was witnessed."""
    db = Database(f"sqlite:///{world.root / 'ledger' / 'ledger.db'}")
    try:
        store = CheckpointStore(db)
        note = world.log.checkpoint()
        now = int(time.time())
        line = cosign(note.text, "w1", W1, now)
        with db.write() as session:
            size = Checkpoint.from_text(note.text).size
            store.add(note, StoredCosignature(size, line, now), session=session)
        head = EvidenceCache(lambda: world.log, served=store.served).head(0)
    finally:
        db.dispose()
    assert head.checkpoint.startswith(note.to_text()[:-1]) and "\u2014 w1 " in head.checkpoint
    verifier = _verifier(world, 1).with_reads(EvidenceReads(world.reads, head.to_dict()))
    assert world.reads.witnessed is None  # never asked: the served checkpoint has the quorum
    assert verifier.head().size == size
