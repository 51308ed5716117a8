"""An agent with ``--witness-quorum``: no data read before enough witnesses cosigned.

A real ledger (SQLite) and the agent's real verifier; the witnesses cosign
with the C2SP ``tlog-cosignature`` code the ``ibx audit witness`` command uses.
Then one in-process exchange (module-scoped): an agent whose task arrives before
any cosignature waits (one line, nothing read from its source), a real witness
round (:class:`audit.witness.Witness` over the exchange's routes) cosigns, and
the agent contributes and the job releases; a task whose deadline passes while
it waits is dropped with one line and answered by no one (the sweeper fails the
job); ``?witnessed=true&quorum=K&witness=NAME`` serves the newest checkpoint
those witnesses cosigned.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from audit.witness import Witness, WitnessState
from consent import (
    ConsentReceipt,
    DatasetScope,
    Engine,
    EnterpriseKey,
    Operation,
    Purpose,
    Requester,
    new_consent_id,
)
from core.clock import utcnow
from core.db import Database
from core.events import Event
from core.keys import Ed25519Signer
from exchange.agent import AgentConfig, AgentState, CsvSource, LedgerAlarm, TaskRefused
from exchange.agent.assemble import assemble_agent
from exchange.agent.errors import AwaitingWitnesses
from exchange.agent.loop import DataAgent, Say
from exchange.agent.reads import EvidenceReads, ExchangeReads
from exchange.agent.sources import Columns, Source
from exchange.agent.verify import TaskVerifier, WitnessQuorum
from exchange.app import create_app
from exchange.cli.audit_witness import HttpWitnessTransport
from exchange.client import ExchangeClient, InProcessTransport
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.pipeline.evidence import EvidenceCache
from exchange.runtime import Runtime
from exchange.settings import Settings
from ledger import (
    Checkpoint,
    CheckpointStore,
    CosignatureVerifier,
    NoteVerifier,
    SignedNote,
    StoredCosignature,
    cosign,
    sign_note,
    with_cosignatures,
)
from tests.conftest import initialised
from tests.exchange.agent._world import ME, ORIGIN, World, make_world
from tests.identities import admin_signer, register_all

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


def test_a_task_before_any_cosignature_waits_instead_of_being_refused(world: World) -> None:
    decision = world.decision()
    task = world.task(decision, world.record(decision))
    verifier = _verifier(world, 1)
    heads = verifier.heads()
    assert heads.trusted is None and "no witness has cosigned" in heads.shortfall
    wanted = (
        "waiting for 1 witness cosignature on a checkpoint covering decision "
        f"#{task.decision_index}"
    )
    with pytest.raises(AwaitingWitnesses, match=wanted):
        verifier.check(task, heads)
    assert world.reads.witnessed_asks == [(1, ("w1", "w2"))]  # its own quorum, its witnesses
    off = world.task(decision, task.decision_index + 50)  # not on the served ledger at all
    with pytest.raises(TaskRefused, match="0 of the 1 witness cosignatures"):
        verifier.check(off, heads)

    world.reads.witnessed = _cosigned(world, ("w1", W1))
    later = world.decision()
    beyond = world.task(later, world.record(later))  # decided after the witnessed checkpoint
    heads = verifier.heads()
    assert heads.trusted is not None and heads.trusted.size == task.decision_index + 1
    assert verifier.check(task, heads).participant.enterprise == ME
    with pytest.raises(AwaitingWitnesses, match=f"covering decision #{beyond.decision_index}"):
        verifier.check(beyond, heads)  # waits: it is on the served ledger
    with pytest.raises(TaskRefused, match="beyond the verified checkpoint"):
        verifier.check(world.task(later, beyond.decision_index + 50), heads)


def test_too_few_cosignatures_wait_and_a_forked_witnessed_checkpoint_still_alarms(
    world: World,
) -> None:
    decision = world.decision()
    task = world.task(decision, world.record(decision))
    world.reads.witnessed = _cosigned(world, ("w1", W1))
    heads = _verifier(world, 2).heads()
    assert heads.trusted is None and "carries 1 of the 2" in heads.shortfall
    with pytest.raises(AwaitingWitnesses, match="waiting for 2 witness cosignatures"):
        _verifier(world, 2).check(task, heads)
    served = Checkpoint.from_text(world.log.checkpoint().text)
    forked = Checkpoint(served.origin, served.size, bytes(32)).to_text()
    note = sign_note(forked, world.vkey.name, world.ledger_signer)
    world.reads.witnessed = note.to_text()  # signed by the ledger's key, no cosignature at all
    with pytest.raises(LedgerAlarm, match="different roots"):
        _verifier(world, 2).heads()


# -- against the exchange's routes, in-process: a waiting agent, real witness rounds -------

LB = "lithium-battery"
FIRMS = ("plant-a", "plant-b", "plant-c")
FAST = AgentConfig(wait=2, first_backoff=0.05, max_backoff=0.2)


class CountingSource:
    """A real CSV source that counts its reads (the test asserts none while waiting)."""

    def __init__(self, path: Path) -> None:
        self._inner = CsvSource(path)
        self.reads = 0

    @property
    def description(self) -> str:
        return self._inner.description

    def read(self, columns: Sequence[str]) -> Columns:
        self.reads += 1
        return self._inner.read(columns)


@dataclass
class Deployment:
    root: Path
    runtime: Runtime
    app: ASGIApp
    tokens: dict[str, str]
    keys: dict[str, EnterpriseKey]
    vkey: str

    def client(self, who: str | None) -> ExchangeClient:
        """A client of the one in-process app (as ``ExchangeClient.local``, built once)."""
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        http = httpx.Client(
            base_url="http://ibx.local", headers=headers, transport=InProcessTransport(self.app)
        )
        return ExchangeClient(http, where="local")

    def witness_round(self, name: str) -> tuple[int, ...]:
        with self.client(name) as client:
            witness = Witness(
                HttpWitnessTransport(client),
                WitnessState.open(self.root / f"{name}-state"),
                name=name,
                signer=admin_signer(name),
                ledger_key=NoteVerifier.from_vkey(self.vkey),
            )
            return witness.round().cosigned

    def request(self, deadline_seconds: int) -> str:
        body = {
            "purpose": "benchmarking",
            "operation": "mean",
            "fields": ["energy_kwh"],
            "datasets": [f"{firm}.plant" for firm in FIRMS],
            "industry": None,
            "engine": "he",
            "parameters": {"length": 2, "deadline_seconds": deadline_seconds},
        }
        with self.client("sb-lb") as client:
            job_id = str(client.post("/v1/requests", body)["job_id"])
            _until(lambda: client.get(f"/v1/jobs/{job_id}")["state"] != "authorized")
        return job_id

    def state_of(self, job_id: str) -> str:
        with self.client("sb-lb") as client:
            return str(client.get(f"/v1/jobs/{job_id}")["state"])

    def agent(
        self, firm: str, source: Source, state: str, say: Say, quorum: int = 0
    ) -> tuple[DataAgent, ExchangeClient]:
        client = self.client(firm)
        witnesses = (CosignatureVerifier("wit", admin_signer("wit").public_key),)
        agent = assemble_agent(
            client,
            enterprise=firm,
            signer=self.keys[firm].signer,
            ledger_key=NoteVerifier.from_vkey(self.vkey),
            source=source,
            state=AgentState.open(self.root / firm / state),
            say=say,
            config=FAST,
            witnesses=WitnessQuorum.of(witnesses, quorum),
        )
        return agent, client


def _until(done: Callable[[], bool], timeout: float = 20) -> None:
    stop = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < stop, "timed out"
        time.sleep(0.02)


def _consent(firm: str, key: EnterpriseKey) -> dict[str, Any]:
    now = utcnow()
    receipt = ConsentReceipt(
        consent_id=new_consent_id(),
        origin=ORIGIN,
        enterprise=firm,
        public_key=key.signer.public_key,
        scope=(DatasetScope(f"{firm}.plant", ("energy_kwh",)),),
        requester=Requester.group("subbrain", LB),
        purposes=(Purpose.BENCHMARKING,),
        operations=(Operation.MEAN,),
        engines=(Engine.HE,),
        min_cohort=3,
        valid_from=now - dt.timedelta(minutes=5),
        valid_until=now + dt.timedelta(days=1),
        signed_at=now - dt.timedelta(minutes=1),
    )
    return receipt.sign(key.signer).to_dict()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("quorum")
    runtime = Runtime(Settings(data_dir=initialised(root / "server", ledger_origin=ORIGIN)))
    witnesses = register_all(runtime, {"wit": (Role.WITNESS, None), "wit2": (Role.WITNESS, None)})
    tokens = {name: issued.token for name, issued in witnesses.items()}
    tokens["sb-lb"] = runtime.identities.create("sb-lb", Role.SUBBRAIN, industry=LB).token
    keys: dict[str, EnterpriseKey] = {}
    for index, firm in enumerate(FIRMS):
        (root / firm).mkdir(mode=0o700)
        keys[firm] = EnterpriseKey.generate(root / firm / "consent.key")
        tokens[firm] = runtime.identities.create(
            firm, Role.ENTERPRISE, industry=LB, public_key=keys[firm].signer.public_key
        ).token
        (root / firm / "plant.csv").write_text(f"energy_kwh\n{100 + index}\n{200 + index}\n")
    made = Deployment(
        root, runtime, create_app(runtime=runtime), tokens, keys, runtime.ledger.vkey()
    )
    for firm in FIRMS:
        with made.client(firm) as client:
            client.post(
                "/v1/datasets",
                {"dataset_id": f"{firm}.plant", "fields": ["energy_kwh"],
                 "classification": "general"},
            )  # fmt: skip
            client.post("/v1/consents", _consent(firm, keys[firm]))
    yield made
    runtime.close()


def _running(agent: DataAgent) -> threading.Thread:
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    return thread


def test_a_waiting_agent_contributes_once_a_witness_cosigns(deployment: Deployment) -> None:
    job_id = deployment.request(deadline_seconds=60)
    lines: list[str] = []
    source = CountingSource(deployment.root / "plant-a" / "plant.csv")
    agent, client = deployment.agent("plant-a", source, "state", lines.append, quorum=1)
    thread = _running(agent)
    try:
        _until(lambda: any("waiting for 1 witness cosignature" in line for line in lines))
        for firm in FIRMS[1:]:  # the others need no witness
            plain = CountingSource(deployment.root / firm / "plant.csv")
            other, other_client = deployment.agent(firm, plain, "state", lines.append)
            with other_client:
                assert other.run_once() == 0
        assert source.reads == 0  # nothing read while waiting
        assert deployment.state_of(job_id) == "collecting"

        assert deployment.witness_round("wit")  # a witness cosigns the latest checkpoint
        _until(lambda: deployment.state_of(job_id) == "released")
    finally:
        agent.stop()
        thread.join(timeout=10)
        client.close()
    assert not thread.is_alive()
    mine = [line for line in lines if line.startswith(f"{job_id} round 1") and "plant" not in line]
    waiting = [line for line in lines if "waiting for" in line]
    assert len(waiting) == 1, lines  # one line, not one per poll
    assert "on a checkpoint covering decision #" in waiting[0]
    assert source.reads >= 1
    assert not any("refused" in line for line in lines), lines
    assert sum("contributed" in line for line in lines) == 3, mine


def test_a_task_whose_deadline_passes_while_waiting_is_dropped(deployment: Deployment) -> None:
    job_id = deployment.request(deadline_seconds=2)
    lines: list[str] = []
    source = CountingSource(deployment.root / "plant-a" / "plant.csv")
    agent, client = deployment.agent("plant-a", source, "state-late", lines.append, quorum=1)
    thread = _running(agent)
    try:
        _until(lambda: any("waiting for 1 witness" in line for line in lines))
        _until(lambda: any("dropped" in line for line in lines), timeout=10)
        deployment.runtime.pipeline.sweep()  # the exchange's sweeper: the job is past its deadline
        _until(lambda: not agent.waiting and deployment.state_of(job_id) == "failed")
    finally:
        agent.stop()
        thread.join(timeout=10)
        client.close()
    dropped = [line for line in lines if "dropped" in line]
    assert len(dropped) == 1 and dropped[0].startswith(f"{job_id} round 1: dropped: its deadline")
    assert source.reads == 0
    assert not any("refused" in line or "contributed" in line for line in lines), lines
    log = deployment.runtime.ledger
    answers = [
        e for e in log.entries(0, log.size())
        if e.type in ("pipeline.refusal", "pipeline.contribution") and job_id in str(e.payload)
    ]  # fmt: skip
    assert answers == []  # the agent answered nothing; the sweeper failed the job


def test_the_witnessed_checkpoint_meeting_a_quorum_of_named_witnesses(
    deployment: Deployment,
) -> None:
    log = deployment.runtime.ledger

    def witnessed(**query: Any) -> int | None:
        with deployment.client(None) as client:
            try:
                text = client.call(
                    "GET", "/v1/ledger/checkpoint", params={"witnessed": "true", **query}
                ).text
            except RemoteRefusalError as exc:
                assert exc.status == 404
                return None
        return Checkpoint.from_text(SignedNote.from_text(text).text).size

    both = {"quorum": 2, "witness": ["wit", "wit2"]}
    log.record(Event("demo.note", "exchange", {"note": "news"}))
    (first,) = deployment.witness_round("wit")
    assert witnessed(**both) is None  # only one of the two
    assert deployment.witness_round("wit2") == (first,)  # converges on it
    assert witnessed(**both) == first
    log.record(Event("demo.note", "exchange", {"note": "more news"}))
    (second,) = deployment.witness_round("wit")
    assert second > first
    assert witnessed() == second  # the newest any witness cosigned
    assert witnessed(**both) == first  # the newest both cosigned
    assert witnessed(quorum=1, witness=["wit2"]) == first
    assert witnessed(quorum=2, witness=["wit", "nobody"]) is None

    quorum = WitnessQuorum.of(
        [CosignatureVerifier(n, admin_signer(n).public_key) for n in ("wit", "wit2")], 2
    )
    with deployment.client("plant-b") as client:
        verifier = TaskVerifier(
            ExchangeReads(client),
            NoteVerifier.from_vkey(deployment.vkey),
            AgentState.open(deployment.root / "plant-b" / "state-quorum"),
            enterprise="plant-b",
            public_key=deployment.keys["plant-b"].signer.public_key,
            witnesses=quorum,
        )
        trusted = verifier.heads().trusted
    assert trusted is not None and trusted.size == first  # the agent asked for its quorum
