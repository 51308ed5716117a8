"""The evidence the exchange serves with a task list: the agent checks it exactly as it checks
separate reads. An honest bundle needs no other read; every tampered piece is refused (never
repaired by a fallback read); a piece of the wrong shape is only ignored (read again)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from core.canonical import canonical_bytes
from core.events import Event
from core.keys import Ed25519Signer
from exchange.agent import LedgerAlarm, TaskRefused
from exchange.agent.reads import EvidenceReads, kept_size
from exchange.pipeline.evidence import ledger_head, proven_entry
from tests.exchange.agent._world import (
    World,
    consent_body,
    make_receipt,
    make_world,
    sql_ledger,
)


class NoReads:
    """A fallback that fails the test: everything must come from the evidence."""

    def checkpoint_text(self) -> str:
        raise AssertionError("read the checkpoint")

    def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        raise AssertionError("read a consistency proof")

    def entry(self, index: int) -> bytes | None:
        raise AssertionError("read an entry")

    def inclusion(self, index: int, tree_size: int) -> tuple[bytes, ...]:
        raise AssertionError("read an inclusion proof")

    def consent(self, consent_id: str) -> Mapping[str, Any]:
        raise AssertionError("read the consent")


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _served(world: World, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ``GET /v1/agent/tasks?since=N`` serves, from the real ledger."""
    since = kept_size(world.state.kept_checkpoint())
    head = ledger_head(world.log, since)
    decision = proven_entry(world.log, index, head.size)
    assert decision is not None
    consent = world.reads.consents[world.signed.receipt.consent_id]
    return head.to_dict(), {"decision": decision.to_dict(), "consent": dict(consent)}


def _verify(world: World, head: Any, task_evidence: Any, index: int, fallback: Any) -> None:
    decision = json.loads(world.log.entry(index).leaf_input)["payload"]["job_id"]
    base = world.verifier()
    verifier = base.with_reads(EvidenceReads(fallback, head, task_evidence))
    checkpoint = verifier.head()
    task = world.task(_decision(world, index), index)
    assert task.job_id == decision
    verifier.verify(task, checkpoint)


def _decision(world: World, index: int) -> Any:
    from exchange.pipeline.statements import DecisionRecord

    return DecisionRecord.from_payload(json.loads(world.log.entry(index).leaf_input)["payload"])


def test_an_honest_bundle_verifies_without_any_other_read(world: World) -> None:
    world.verifier().head()  # the agent kept a checkpoint of 1 entry
    for n in range(3):
        world.log.record(Event("demo.more", "exchange", {"n": n}))
    index = world.record(world.decision())
    head, task_evidence = _served(world, index)
    assert head["consistency"]["first"] == 1
    _verify(world, head, task_evidence, index, NoReads())
    assert world.state.kept_checkpoint() == head["checkpoint"]


def _other_key_checkpoint(world: World, head: dict[str, Any], _: dict[str, Any]) -> None:
    other = sql_ledger(world.root / "other", Ed25519Signer.generate("ledger"))
    for _n in range(world.log.size()):
        other.record(Event("demo.start", "exchange", {"note": "genesis"}))
    head["checkpoint"] = other.checkpoint().to_text()


def _forged_decision(world: World, _: dict[str, Any], task: dict[str, Any]) -> None:
    entry = json.loads(base64.b64decode(task["decision"]["entry"]))
    entry["payload"]["min_cohort"] = 1  # what the exchange would like the agent to accept
    task["decision"]["entry"] = base64.b64encode(canonical_bytes(entry)).decode()


def _altered_inclusion(world: World, _: dict[str, Any], task: dict[str, Any]) -> None:
    hashes = task["decision"]["inclusion"]
    hashes[0] = base64.b64encode(bytes(32)).decode()


def _revoked_consent(world: World, _: dict[str, Any], task: dict[str, Any]) -> None:
    task["consent"]["status"] = "revoked"


def _consent_of_another_key(world: World, _: dict[str, Any], task: dict[str, Any]) -> None:
    forged = make_receipt(Ed25519Signer.generate("consent"))
    body = consent_body(forged)
    body["consent_id"] = world.signed.receipt.consent_id
    task["consent"] = body


ATTACKS = [
    ("a checkpoint signed by another key", _other_key_checkpoint, "not signed by the pinned"),
    ("a decision entry altered", _forged_decision, "not on the verified ledger"),
    ("an inclusion proof altered", _altered_inclusion, "not on the verified ledger"),
    ("a consent revoked at the exchange", _revoked_consent, "revoked"),
    ("a consent signed by another key", _consent_of_another_key, "not signed by this enterprise"),
]


@pytest.mark.parametrize(
    ("attack", "reason"), [(a[1], a[2]) for a in ATTACKS], ids=[a[0] for a in ATTACKS]
)
def test_a_tampered_bundle_is_refused_not_repaired_by_honest_reads(
    world: World, attack: Any, reason: str
) -> None:
    index = world.record(world.decision())
    head, task_evidence = _served(world, index)
    attack(world, head, task_evidence)
    with pytest.raises(TaskRefused, match=reason):
        _verify(world, head, task_evidence, index, world.reads)  # honest reads as fallback


def test_a_consistency_proof_altered_raises_the_alarm(world: World) -> None:
    world.verifier().head()
    world.log.record(Event("demo.more", "exchange", {"n": 1}))
    index = world.record(world.decision())
    head, task_evidence = _served(world, index)
    head["consistency"]["hashes"] = [base64.b64encode(b"\x01" * 32).decode()] * len(
        head["consistency"]["hashes"]
    )
    with pytest.raises(LedgerAlarm, match="not consistent"):
        _verify(world, head, task_evidence, index, world.reads)
    assert world.state.alarm() is not None


def test_a_forked_log_in_the_bundle_raises_the_alarm(world: World) -> None:
    """The bundle's checkpoint and proof are a fork's, signed with the real ledger key."""
    world.verifier().head()  # kept: the honest log of 1 entry
    world.log.record(Event("demo.honest", "exchange", {"n": 1}))
    world.verifier().head()  # kept: 2 entries
    fork = sql_ledger(world.root / "fork", world.ledger_signer)
    fork.record(Event("demo.start", "exchange", {"note": "genesis"}))
    fork.record(Event("demo.rewritten", "exchange", {"n": 2}))
    fork.record(Event("demo.more", "exchange", {"n": 3}))
    head = ledger_head(fork, 2).to_dict()
    verifier = world.verifier().with_reads(EvidenceReads(world.reads, head, None))
    with pytest.raises(LedgerAlarm, match="not consistent"):
        verifier.head()


MALFORMED = [
    ("no evidence", lambda h, t: (None, None)),
    (
        "hashes not base64",
        lambda h, t: (h, {**t, "decision": {**t["decision"], "inclusion": ["!"]}}),
    ),
    (
        "an index of the wrong type",
        lambda h, t: (h, {**t, "decision": {**t["decision"], "index": "0"}}),
    ),
    ("a consent for another id", lambda h, t: (h, {**t, "consent": {"consent_id": "cst_x"}})),
    (
        "the evidence of another entry",
        lambda h, t: (h, {**t, "decision": {**t["decision"], "index": 0}}),
    ),
]


@pytest.mark.parametrize("mangle", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_a_piece_of_the_wrong_shape_is_read_again_and_verified(world: World, mangle: Any) -> None:
    index = world.record(world.decision())
    head, task_evidence = mangle(*_served(world, index))
    _verify(world, head, task_evidence, index, world.reads)
