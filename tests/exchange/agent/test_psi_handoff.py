"""A PSI agent blinds in round r > 1 only what its predecessor signed for round r − 1.

A real ledger holds the decision (which states each participant's key) and
the predecessor's signed round-1 contribution, recorded as the exchange
records it. Each attack is something a malicious exchange could hand the
agent instead — its own points, another entry, a statement signed by a key
of its own — and each is refused before the agent reads any data.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

import mpc
from consent import (
    ConsentReceipt,
    DatasetScope,
    Engine,
    Operation,
    Purpose,
    Requester,
    new_consent_id,
)
from core.canonical import JsonValue, canonical_bytes, canonical_sha256
from core.clock import utcnow
from core.events import Event
from core.keys import Ed25519Signer
from exchange.agent import TaskRefused
from exchange.agent.task import Task
from exchange.pipeline.jobs import CONTRIBUTION_EVENT
from exchange.pipeline.request import ComputeRequest, EngineName
from exchange.pipeline.statements import CONTRIBUTION_KIND, AgentStatement, DecisionRecord
from mpc.hazmat import ecgroup
from tests.exchange.agent._world import DATASET, ME, ORIGIN, REQUESTER, World, consent_body
from tests.exchange.agent._world import make_world as _make_world

PREDECESSOR = "anode-co"  # before cathode-co on the ring (participants in order of name)
FIELD = "supplier_id"


@dataclass
class Ring:
    """The decision of a two-party PSI job on the ledger and the predecessor's round 1."""

    world: World
    decision: DecisionRecord
    decision_index: int
    predecessor: Ed25519Signer
    points: list[str]
    contribution_index: int

    def record_contribution(
        self,
        points: list[str],
        *,
        signer: Ed25519Signer | None = None,
        job_id: str | None = None,
        round_no: int = 1,
        actor: str = PREDECESSOR,
    ) -> int:
        """Record a contribution entry as the exchange does; its ledger index."""
        statement = AgentStatement(
            CONTRIBUTION_KIND,
            job_id or self.decision.job_id,
            PREDECESSOR,
            round_no,
            canonical_sha256({"points": list(points)}).hex(),
        )
        payload: dict[str, JsonValue] = {
            "job_id": statement.job_id,
            "enterprise": PREDECESSOR,
            "round": round_no,
            "statement": statement.to_dict(),
            "signature": statement.sign(signer or self.predecessor),
            "to": {"enterprise": ME},
        }
        return self.world.log.record(Event(CONTRIBUTION_EVENT, actor, payload)).index

    def task(self, round_no: int = 2, **material: Any) -> Task:
        """The round-``round_no`` task, with the honest material changed by ``material``."""
        given: dict[str, Any] = {
            "session": self.decision.job_id,
            "points": self.points,
            "from": PREDECESSOR,
            "contribution_index": self.contribution_index,
        }
        given.update(material)
        return self.world.task(
            self.decision,
            self.decision_index,
            round=round_no,
            material={k: v for k, v in given.items() if v is not None},
        )

    def verify(self, task: Task) -> None:
        verifier = self.world.verifier()
        verifier.verify(task, verifier.head())


def _psi_world(root: Path, *, my_key_in_decision: bool = True) -> Ring:
    world = _make_world(root)
    signer = world.key.signer
    now = utcnow()
    signed = ConsentReceipt(
        consent_id=new_consent_id(),
        origin=ORIGIN,
        enterprise=ME,
        public_key=signer.public_key,
        scope=(DatasetScope(DATASET, (FIELD,)),),
        requester=Requester.one(REQUESTER),
        purposes=(Purpose.BENCHMARKING,),
        operations=(Operation.SET_INTERSECTION_SIZE,),
        engines=(Engine.PSI,),
        min_cohort=2,
        valid_from=now - dt.timedelta(days=1),
        valid_until=now + dt.timedelta(days=30),
        signed_at=now - dt.timedelta(days=1),
    ).sign(signer)
    world.reads.consents[signed.receipt.consent_id] = consent_body(signed)
    request = ComputeRequest(
        purpose=Purpose.BENCHMARKING,
        operation=Operation.SET_INTERSECTION_SIZE,
        fields=(FIELD,),
        datasets=(DATASET, "anode-co.energy"),
        engine=EngineName.PSI,
    )
    predecessor = Ed25519Signer.generate("consent")
    base = world.decision(request=request, signed=signed)
    mine, theirs = base.participants
    if not my_key_in_decision:
        mine = replace(mine, public_key=Ed25519Signer.generate("consent").public_key)
    decision = replace(
        base,
        engine=EngineName.PSI,
        participants=(mine, replace(theirs, public_key=predecessor.public_key)),
    )
    decision_index = world.record(decision)
    blinded = mpc.PsiParty(decision.job_id, ["s-1", "s-2", "s-3"], mpc.PsiMode.CARDINALITY)
    points = [base64.b64encode(p).decode() for p in blinded.blinded().points]
    ring = Ring(world, decision, decision_index, predecessor, points, -1)
    ring.contribution_index = ring.record_contribution(points)
    return ring


@pytest.fixture
def ring(tmp_path: Path) -> Ring:
    return _psi_world(tmp_path)


def test_round_two_verifies_when_it_hands_on_what_the_predecessor_signed(ring: Ring) -> None:
    ring.verify(ring.task())


def test_round_one_needs_no_hand_off(ring: Ring) -> None:
    task = ring.world.task(
        ring.decision,
        ring.decision_index,
        material={"session": ring.decision.job_id, "parties": 2},
    )
    ring.verify(task)


def _guess(ring: Ring) -> Task:
    """The exchange swaps a guessed item's group element into the set it hands on."""
    guess = base64.b64encode(ecgroup.hash_to_group(b"91330100MA2C000001")).decode()
    return ring.task(points=[guess, *ring.points[1:]])


def _only_the_guess(ring: Ring) -> Task:
    guess = base64.b64encode(ecgroup.hash_to_group(b"91330100MA2C000001")).decode()
    return ring.task(points=[guess])


def _another_predecessor(ring: Ring) -> Task:
    return ring.task(2, **{"from": "mallory-co"})


def _no_index(ring: Ring) -> Task:
    return ring.task(contribution_index=None)


def _the_decision_entry(ring: Ring) -> Task:
    return ring.task(contribution_index=ring.decision_index)


def _signed_by_the_exchange(ring: Ring) -> Task:
    """The exchange records a statement over its own points, signed with a key of its own."""
    forged = [base64.b64encode(ecgroup.hash_to_group(b"guess")).decode()]
    index = ring.record_contribution(forged, signer=Ed25519Signer.generate("consent"))
    return ring.task(points=forged, contribution_index=index)


def _recorded_by_another_actor(ring: Ring) -> Task:
    index = ring.record_contribution(ring.points, actor="exchange")
    return ring.task(contribution_index=index)


def _another_round(ring: Ring) -> Task:
    index = ring.record_contribution(ring.points, round_no=2)
    return ring.task(contribution_index=index)


def _another_job(ring: Ring) -> Task:
    index = ring.record_contribution(ring.points, job_id="job_" + "7" * 32)
    return ring.task(contribution_index=index)


def _not_on_the_ledger(ring: Ring) -> Task:
    """The exchange serves, at the named index, an entry it never appended."""
    forged = [base64.b64encode(ecgroup.hash_to_group(b"guess")).decode()]
    entry = json.loads(ring.world.log.entry(ring.contribution_index).leaf_input)
    statement = AgentStatement(
        CONTRIBUTION_KIND,
        ring.decision.job_id,
        PREDECESSOR,
        1,
        canonical_sha256({"points": forged}).hex(),
    )
    entry["payload"]["statement"] = statement.to_dict()
    entry["payload"]["signature"] = statement.sign(Ed25519Signer.generate("consent"))
    ring.world.reads.forged_entries[ring.contribution_index] = canonical_bytes(entry)
    return ring.task(points=forged)


def _beyond_the_checkpoint(ring: Ring) -> Task:
    return ring.task(contribution_index=ring.contribution_index + 10)


def _a_round_past_the_ring(ring: Ring) -> Task:
    return ring.task(round_no=3)


ATTACKS: dict[str, tuple[Callable[[Ring], Task], str]] = {
    "a guessed point swapped in": (_guess, "not the ones anode-co signed"),
    "only a guessed point": (_only_the_guess, "not the ones anode-co signed"),
    "another predecessor named": (_another_predecessor, "predecessor on the ring is anode-co"),
    "no entry named": (_no_index, "names no ledger entry"),
    "the decision entry named": (_the_decision_entry, "not anode-co's pipeline.contribution"),
    "signed by a key of the exchange's": (_signed_by_the_exchange, "key the decision states"),
    "recorded by another actor": (_recorded_by_another_actor, "by exchange, not anode-co's"),
    "the predecessor's other round": (_another_round, "not anode-co's round 1 contribution"),
    "another job's contribution": (_another_job, "not anode-co's round 1 contribution"),
    "an entry not on the ledger": (_not_on_the_ledger, "not on the verified ledger"),
    "an entry beyond the checkpoint": (_beyond_the_checkpoint, "beyond the verified checkpoint"),
    "a round past the ring": (_a_round_past_the_ring, "has no round 3"),
}


@pytest.mark.parametrize(("attack", "reason"), ATTACKS.values(), ids=ATTACKS.keys())
def test_a_hand_off_the_predecessor_did_not_sign_is_refused(
    ring: Ring, attack: Callable[[Ring], Task], reason: str
) -> None:
    task = attack(ring)
    with pytest.raises(TaskRefused, match=reason):
        ring.verify(task)


def test_a_decision_stating_another_key_for_this_enterprise_is_refused(tmp_path: Path) -> None:
    """Its successor would check this agent's statements against that key."""
    ring = _psi_world(tmp_path, my_key_in_decision=False)
    with pytest.raises(TaskRefused, match=f"states another key for {ME}"):
        ring.verify(ring.task())
