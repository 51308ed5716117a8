"""A real ledger, a real enterprise key and signed consent, and decisions on that ledger.

The agent's verifier reads through :class:`DirectReads`, which answers from a
real :class:`ledger.Ledger` (SQL backend in a temporary directory) exactly
what the exchange's routes would serve. Attacks replace one answer.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ledger
from consent import (
    ConsentReceipt,
    DatasetScope,
    Engine,
    EnterpriseKey,
    Operation,
    Purpose,
    Requester,
    SignedReceipt,
    new_consent_id,
)
from core.canonical import JsonValue
from core.clock import format_rfc3339, utcnow
from core.db import Database, migrate
from core.events import Event
from core.keys import Ed25519Signer
from exchange.agent import AgentState, Task, TaskVerifier
from exchange.pipeline.request import ComputeRequest, EngineName, Parameters
from exchange.pipeline.statements import DECISION_EVENT, DecisionRecord, Participant, new_job_id

ORIGIN = "agent.test/ledger"
ME = "cathode-co"
REQUESTER = "sb-battery"
DATASET = "cathode-co.energy"


def sql_ledger(directory: Path, signer: Ed25519Signer) -> ledger.Ledger:
    """A real ledger on SQLite in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    db = Database(f"sqlite:///{directory / 'ledger.db'}")
    migrate(db, [ledger.MIGRATIONS])
    return ledger.Ledger(ledger.SqlLedgerBackend(db), signer, ledger.LedgerConfig(origin=ORIGIN))


def consent_body(signed: SignedReceipt, status: str = "active") -> dict[str, Any]:
    """The consent as ``GET /v1/consents/{id}`` shows it."""
    return {
        "consent_id": signed.receipt.consent_id,
        "enterprise": signed.receipt.enterprise,
        "status": status,
        "receipt": signed.receipt.to_dict(),
        "signature": base64.b64encode(signed.signature).decode(),
        "receipt_sha256": signed.receipt_hash(),
    }


@dataclass
class DirectReads:
    """What the exchange's routes serve, read straight from a real ledger."""

    log: ledger.Ledger
    consents: dict[str, dict[str, Any]] = field(default_factory=dict)
    forged_entries: dict[int, bytes] = field(default_factory=dict)
    checkpoint_override: str | None = None
    witnessed: str | None = None
    """What ``GET /v1/ledger/checkpoint?witnessed=true`` serves (None: 404, none yet)."""
    witnessed_asks: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    """The quorum and witness names each such read asked for."""

    def checkpoint_text(self) -> str:
        return self.checkpoint_override or self.log.checkpoint().to_text()

    def witnessed_checkpoint_text(
        self, quorum: int = 1, witnesses: Sequence[str] = ()
    ) -> str | None:
        self.witnessed_asks.append((quorum, tuple(witnesses)))
        return self.witnessed

    def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        return self.log.consistency_proof(first, second).hashes

    def entry(self, index: int) -> bytes | None:
        if index in self.forged_entries:
            return self.forged_entries[index]
        return self.log.entry(index).leaf_input

    def inclusion(self, index: int, tree_size: int) -> tuple[bytes, ...]:
        return self.log.inclusion_proof(index, tree_size).hashes

    def consent(self, consent_id: str) -> Mapping[str, Any]:
        return self.consents[consent_id]


def make_receipt(
    signer: Ed25519Signer,
    *,
    fields: tuple[str, ...] = ("energy_kwh", "output_units"),
    operations: tuple[Operation, ...] = (Operation.MEAN, Operation.SUM),
    requester: str = REQUESTER,
    min_cohort: int = 2,
    use_limit: int | None = None,
) -> SignedReceipt:
    """A consent signed by ``signer`` for :data:`REQUESTER` on :data:`DATASET`."""
    now = utcnow()
    receipt = ConsentReceipt(
        consent_id=new_consent_id(),
        origin=ORIGIN,
        enterprise=ME,
        public_key=signer.public_key,
        scope=(DatasetScope(DATASET, fields),),
        requester=Requester.one(requester),
        purposes=(Purpose.BENCHMARKING,),
        operations=operations,
        engines=(Engine.HE, Engine.MPC),
        min_cohort=min_cohort,
        use_limit=use_limit,
        valid_from=now - dt.timedelta(days=1),
        valid_until=now + dt.timedelta(days=30),
        signed_at=now - dt.timedelta(days=1),
    )
    return receipt.sign(signer)


def make_request(
    operation: Operation = Operation.MEAN, fields: tuple[str, ...] = ("energy_kwh",)
) -> ComputeRequest:
    return ComputeRequest(
        purpose=Purpose.BENCHMARKING,
        operation=operation,
        fields=fields,
        datasets=(DATASET, "anode-co.energy"),
        engine=EngineName.HE,
        parameters=Parameters(length=3),
    )


@dataclass
class World:
    """One enterprise's key and consent, a ledger, and the agent's verifier over it."""

    root: Path
    key: EnterpriseKey
    ledger_signer: Ed25519Signer
    log: ledger.Ledger
    reads: DirectReads
    state: AgentState
    signed: SignedReceipt

    @property
    def vkey(self) -> ledger.NoteVerifier:
        return self.log.verifier

    def verifier(self, vkey: ledger.NoteVerifier | None = None) -> TaskVerifier:
        return TaskVerifier(
            self.reads,
            vkey or self.vkey,
            self.state,
            enterprise=ME,
            public_key=self.key.signer.public_key,
        )

    def decision(
        self,
        *,
        request: ComputeRequest | None = None,
        signed: SignedReceipt | None = None,
        receipt_sha256: str | None = None,
        requester: str = REQUESTER,
    ) -> DecisionRecord:
        signed = signed or self.signed
        now = utcnow()
        return DecisionRecord(
            job_id=new_job_id(),
            requester=requester,
            request=request or make_request(),
            engine=EngineName.HE,
            policy_version="0" * 64,
            participants=(
                Participant(
                    ME,
                    DATASET,
                    signed.receipt.consent_id,
                    receipt_sha256 or signed.receipt_hash(),
                    2,
                    signed.receipt.public_key,
                ),
                Participant(
                    "anode-co",
                    "anode-co.energy",
                    new_consent_id(),
                    "1" * 64,
                    2,
                    Ed25519Signer.generate("consent").public_key,
                ),
            ),
            left_out=(),
            min_cohort=2,
            decided_at=now,
            deadline=now + dt.timedelta(minutes=2),
        )

    def record(self, decision: DecisionRecord) -> int:
        """Append ``decision`` to the ledger as the exchange does; its index."""
        recorded = self.log.record(Event(DECISION_EVENT, decision.requester, decision.to_payload()))
        return recorded.index

    def task(self, decision: DecisionRecord, index: int, **changes: Any) -> Task:
        """The task the exchange would list for ``decision``."""
        participant = decision.participant(ME)
        assert participant is not None
        obj: dict[str, JsonValue] = {
            "job_id": decision.job_id,
            "round": 1,
            "decision_index": index,
            "engine": decision.engine.value,
            "request": decision.request.to_dict(),
            "dataset": participant.dataset,
            "consent_id": participant.consent_id,
            "deadline": format_rfc3339(decision.deadline),
            "material": {},
        }
        obj.update(changes)
        return Task.from_dict(obj)


def make_world(root: Path) -> World:
    key = EnterpriseKey.generate(root / "enterprise.key")
    ledger_signer = Ed25519Signer.generate("ledger")
    log = sql_ledger(root / "ledger", ledger_signer)
    log.record(Event("demo.start", "exchange", {"note": "genesis"}))
    signed = make_receipt(key.signer)
    reads = DirectReads(log, {signed.receipt.consent_id: consent_body(signed)})
    state = AgentState.open(root / "state")
    return World(root, key, ledger_signer, log, reads, state, signed)


__all__ = [
    "DATASET",
    "ME",
    "ORIGIN",
    "REQUESTER",
    "DirectReads",
    "World",
    "consent_body",
    "make_receipt",
    "make_request",
    "make_world",
    "replace",
    "sql_ledger",
]
