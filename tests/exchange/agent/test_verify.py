"""The agent's checks before it reads any data: each attack is refused, the honest task passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from consent import EnterpriseKey, Operation
from core.canonical import canonical_bytes
from core.events import Event
from core.keys import Ed25519Signer
from exchange.agent import LedgerAlarm, TaskRefused
from exchange.agent.verify import check_consent
from tests.exchange.agent._world import (
    ME,
    REQUESTER,
    World,
    consent_body,
    make_receipt,
    make_request,
    make_world,
    sql_ledger,
)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def test_an_honest_task_verifies(world: World) -> None:
    decision = world.decision()
    task = world.task(decision, world.record(decision))
    verifier = world.verifier()
    auth = verifier.verify(task, verifier.head())
    assert auth.decision.job_id == task.job_id
    assert auth.participant.enterprise == ME
    assert auth.receipt.consent_id == world.signed.receipt.consent_id
    assert world.state.kept_checkpoint() == world.log.checkpoint().to_text()


def test_a_checkpoint_signed_by_another_key_is_refused(world: World) -> None:
    other = world.log.verifier.__class__(world.vkey.name, Ed25519Signer.generate("x").public_key)
    with pytest.raises(TaskRefused, match="not signed by the pinned ledger key"):
        world.verifier(other).head()
    assert world.state.kept_checkpoint() is None


def test_a_forged_decision_not_on_the_ledger_is_refused(world: World) -> None:
    """The exchange serves a decision it never recorded at an index some other entry holds."""
    honest = world.decision()
    index = world.record(honest)
    forged = world.decision()  # another job, never appended
    leaf = world.log.entry(index).leaf_input
    entry = json.loads(leaf)
    entry["payload"] = forged.to_payload()
    world.reads.forged_entries[index] = canonical_bytes(entry)
    verifier = world.verifier()
    with pytest.raises(TaskRefused, match="not on the verified ledger"):
        verifier.verify(world.task(forged, index), verifier.head())


def test_an_inclusion_proof_of_another_entry_is_refused(world: World) -> None:
    decision = world.decision()
    index = world.record(decision)
    world.log.record(Event("demo.other", "exchange", {"n": 1}))
    world.reads.forged_entries[index] = world.log.entry(index + 1).leaf_input
    verifier = world.verifier()
    with pytest.raises(TaskRefused, match="not on the verified ledger"):
        verifier.verify(world.task(decision, index), verifier.head())


def test_a_decision_beyond_the_checkpoint_is_refused(world: World) -> None:
    decision = world.decision()
    index = world.record(decision)
    verifier = world.verifier()
    with pytest.raises(TaskRefused, match="beyond the verified checkpoint"):
        verifier.verify(world.task(decision, index + 5), verifier.head())


def test_a_consent_signed_by_another_key_is_refused(world: World, tmp_path: Path) -> None:
    stranger = EnterpriseKey.generate(tmp_path / "stranger.key")
    foreign = make_receipt(stranger.signer)
    world.reads.consents[foreign.receipt.consent_id] = consent_body(foreign)
    decision = world.decision(signed=foreign)
    task = world.task(decision, world.record(decision))
    verifier = world.verifier()
    with pytest.raises(TaskRefused, match="not signed by this enterprise's key"):
        verifier.verify(task, verifier.head())


def test_a_receipt_hash_mismatch_is_refused(world: World) -> None:
    decision = world.decision(receipt_sha256="ab" * 32)
    task = world.task(decision, world.record(decision))
    verifier = world.verifier()
    with pytest.raises(TaskRefused, match="receipt hash"):
        verifier.verify(task, verifier.head())


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"request": make_request(fields=("output_units",)).to_dict()}, "not the request"),
        ({"request": make_request(operation=Operation.SUM).to_dict()}, "not the request"),
        ({"engine": "mpc"}, "the decision authorized he"),
        ({"dataset": "cathode-co.other"}, "the decision names"),
        ({"consent_id": "cst_" + "0" * 32}, "the decision"),
    ],
    ids=["fields", "operation", "engine", "dataset", "consent"],
)
def test_a_task_that_differs_from_its_decision_is_refused(
    world: World, changes: dict[str, object], reason: str
) -> None:
    decision = world.decision()
    task = world.task(decision, world.record(decision), **changes)
    verifier = world.verifier()
    with pytest.raises(TaskRefused, match=reason):
        verifier.verify(task, verifier.head())


def test_a_decision_for_another_requester_than_the_consent_is_refused(world: World) -> None:
    decision = world.decision(requester="sb-steel")
    task = world.task(decision, world.record(decision))
    verifier = world.verifier()
    with pytest.raises(TaskRefused, match=f"is for {REQUESTER}, not for sb-steel"):
        verifier.verify(task, verifier.head())


def test_fields_or_operations_outside_the_consent_are_refused(world: World) -> None:
    narrow = make_receipt(world.key.signer, fields=("output_units",), operations=(Operation.SUM,))
    world.reads.consents[narrow.receipt.consent_id] = consent_body(narrow)
    decision = world.decision(signed=narrow)
    task = world.task(decision, world.record(decision))
    verifier = world.verifier()
    with pytest.raises(TaskRefused, match="does not cover field"):
        verifier.verify(task, verifier.head())
    sums = world.decision(signed=narrow, request=make_request(fields=("output_units",)))
    task = world.task(sums, world.record(sums))
    with pytest.raises(TaskRefused, match="does not allow mean"):
        verifier.verify(task, verifier.head())


def test_a_revoked_consent_is_refused_at_the_exchange_and_by_the_agents_own_list(
    world: World,
) -> None:
    decision = world.decision()
    task = world.task(decision, world.record(decision))
    cid = world.signed.receipt.consent_id
    verifier = world.verifier()
    head = verifier.head()
    world.reads.consents[cid] = consent_body(world.signed, status="revoked")
    with pytest.raises(TaskRefused, match="revoked at the exchange"):
        verifier.verify(task, head)
    world.reads.consents[cid] = consent_body(world.signed)
    (world.state.root / "revoked").write_text(cid + "\n")
    with pytest.raises(TaskRefused, match="this agent's own list"):
        verifier.verify(task, head)


def test_a_decision_with_a_cohort_below_the_consents_is_refused(world: World) -> None:
    strict = make_receipt(world.key.signer, min_cohort=5)
    decision = world.decision(signed=strict)
    with pytest.raises(TaskRefused, match="cohort of at least 5"):
        check_consent(
            world.task(decision, 1),
            decision,
            decision.participants[0],
            consent_body(strict),
            public_key=world.key.signer.public_key,
            origin=world.log.config.origin,
            revoked=frozenset(),
            now=decision.decided_at,
        )


def test_a_forked_ledger_raises_the_alarm_and_keeps_the_evidence(world: World) -> None:
    """The agent saw the honest log; the exchange then serves a fork signed by the same key."""
    verifier = world.verifier()
    verifier.head()  # kept: the honest log of 1 entry
    world.log.record(Event("demo.honest", "exchange", {"n": 1}))
    verifier.head()  # kept: 2 entries
    fork = sql_ledger(world.root / "fork", world.ledger_signer)
    fork.record(Event("demo.start", "exchange", {"note": "genesis"}))
    fork.record(Event("demo.rewritten", "exchange", {"n": 2}))
    fork.record(Event("demo.more", "exchange", {"n": 3}))
    world.reads.log = fork
    with pytest.raises(LedgerAlarm, match="not consistent"):
        verifier.head()
    alarm = world.state.alarm()
    assert alarm is not None
    evidence = sorted((world.state.root / "evidence").iterdir())
    assert len(evidence) == 1
    kept = (evidence[0] / "kept.checkpoint").read_text()
    served = (evidence[0] / "served.checkpoint").read_text()
    assert kept == world.log.checkpoint().to_text()
    assert served == fork.checkpoint().to_text()
    assert world.state.kept_checkpoint() == kept  # the fork's head is not kept
    world.reads.log = world.log  # even the honest log is refused while the alarm stands
    with pytest.raises(LedgerAlarm):
        verifier.head()


def test_a_rolled_back_ledger_raises_the_alarm(world: World) -> None:
    verifier = world.verifier()
    world.log.record(Event("demo.honest", "exchange", {"n": 1}))
    verifier.head()
    shorter = sql_ledger(world.root / "short", world.ledger_signer)
    shorter.record(Event("demo.start", "exchange", {"note": "genesis"}))
    world.reads.log = shorter
    with pytest.raises(LedgerAlarm, match="rolled back"):
        verifier.head()


def test_a_growing_honest_ledger_is_consistent(world: World) -> None:
    verifier = world.verifier()
    for n in range(5):
        world.log.record(Event("demo.more", "exchange", {"n": n}))
        head = verifier.head()
        assert head.size == world.log.size()
    assert world.state.alarm() is None


def test_a_consent_used_up_by_this_decision_is_accepted_but_never_beyond_its_limit(
    world: World,
) -> None:
    """The exchange shows a consent ``used_up`` once the decision that took its last use is
    made: that decision's task is accepted; a further job under it is refused by the agent's
    own journal, whatever the exchange counts."""
    limited = make_receipt(world.key.signer, use_limit=1)
    decision = world.decision(signed=limited)

    def check(used_by: frozenset[str]) -> None:
        check_consent(
            world.task(decision, 1),
            decision,
            decision.participants[0],
            consent_body(limited, status="used_up"),
            public_key=world.key.signer.public_key,
            origin=world.log.config.origin,
            revoked=frozenset(),
            now=decision.decided_at,
            used_by=used_by,
        )

    check(frozenset())
    check(frozenset({decision.job_id}))  # a retry of the same job
    with pytest.raises(TaskRefused, match="allows 1 use"):
        check(frozenset({"job_" + "1" * 32}))
    # the journal is where the agent learns its own uses
    world.state.journal.record(
        "contributed", job_id="job_" + "2" * 32, round=1, consent_id=limited.receipt.consent_id
    )
    assert world.state.jobs_contributed(limited.receipt.consent_id) == {"job_" + "2" * 32}
