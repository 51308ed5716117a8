"""PSI through the API with real data agents on a blinding ring, and an exchange that hands an
agent forged points: the agent checks what it is handed against its predecessor's signed,
ledgered contribution (read with its own-scope ledger access) and refuses, signed."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from consent import Operation
from exchange.agent import AgentState, CsvSource, DataAgent, assemble_agent
from exchange.error_table import RemoteRefusalError
from exchange.pipeline.tables import AnswerRow
from ledger import NoteVerifier
from mpc.hazmat import ecgroup
from tests.exchange.pipeline.conftest import World

NAMES = ("p-alpha", "p-beta", "p-gamma")
FIELD = "supplier_id"
COMMON = [f"91330100MA2C{n:06d}" for n in range(12)]


def _items(index: int) -> list[str]:
    own = [f"91330100MA2X{index}{n:05d}" for n in range(20 + 5 * index)]
    return COMMON[: 12 - index] + own


@dataclass
class Ring:
    """The enterprises' agents and what they printed."""

    agents: dict[str, DataAgent] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    def round(self) -> None:
        """Each agent answers what it is asked now."""
        for agent in self.agents.values():
            assert agent.run_once() == 0


@pytest.fixture
def ring(world: World, tmp_path: Path) -> Ring:
    """Three enterprises with supplier lists in CSV files and consents to PSI; their agents."""
    made = Ring()
    vkey = NoteVerifier.from_vkey(world.runtime.ledger.vkey())
    for index, name in enumerate(NAMES):
        world.enterprise(name, fields=(FIELD,))
        world.consent(name, operations=(Operation.SET_INTERSECTION_SIZE,), fields=(FIELD,))
        home = tmp_path / name
        home.mkdir(mode=0o700)
        (home / "suppliers.csv").write_text(
            f"{FIELD},since\n" + "".join(f"{i},2020\n" for i in _items(index))
        )
        with world.client(name) as client:
            made.agents[name] = assemble_agent(
                client,
                enterprise=name,
                signer=world.keys[name].signer,
                ledger_key=vkey,
                source=CsvSource(home / "suppliers.csv"),
                state=AgentState.open(home / "state"),
                say=made.lines.append,
            )
    return made


def _submit(world: World) -> str:
    created = world.submit(
        operation="set_intersection_size",
        fields=[FIELD],
        datasets=[f"{n}.energy" for n in NAMES],
        engine="auto",
        parameters={"deadline_seconds": 60},
    )
    assert created["engine"] == "psi", created
    job_id: str = created["job_id"]
    assert world.wait_state(job_id, ["collecting"])["state"] == "collecting"
    return job_id


def test_psi_agents_on_the_ring_release_the_common_size(world: World, ring: Ring) -> None:
    job_id = _submit(world)
    for _ in NAMES:
        ring.round()
    view = world.wait_state(job_id, ["released", "failed", "refused"])
    assert view["state"] == "released", (view, ring.lines)
    with world.client("sb-lb") as client:
        result = client.get(f"/v1/results/{job_id}")
    expected = set.intersection(*(set(_items(i)) for i in range(len(NAMES))))
    assert result["values"] == {"size": [float(len(expected))]} and result["cohort"] == len(NAMES)
    handed_on = [
        e
        for e in world.runtime.ledger.entries(0, world.runtime.ledger.size())
        if e.type == "pipeline.contribution" and e.payload["job_id"] == job_id
    ]
    assert len(handed_on) == len(NAMES) ** 2
    for entry in handed_on:  # every round but the last names whom it is handed to
        to = entry.payload.get("to")
        if entry.payload["round"] == len(NAMES):
            assert to is None
        else:
            successor = sorted(NAMES)[(sorted(NAMES).index(entry.actor) + 1) % len(NAMES)]
            assert to == {"enterprise": successor}


def test_an_agent_refuses_points_its_predecessor_did_not_sign(world: World, ring: Ring) -> None:
    """The exchange swaps a guessed item's group element into the set it hands on (what it
    would pass round the ring to test membership): the successor refuses to blind it."""
    job_id = _submit(world)
    ring.round()  # round 1: every agent posts its own blinded set
    order = sorted(NAMES)
    victim, predecessor = order[1], order[0]
    guess = base64.b64encode(ecgroup.hash_to_group(COMMON[0].encode())).decode()
    with world.runtime.db.write() as session:
        row = session.execute(
            select(AnswerRow).where(
                AnswerRow.job_id == job_id,
                AnswerRow.enterprise == predecessor,
                AnswerRow.round == 1,
            )
        ).scalar_one()
        assert row.payload is not None
        payload = json.loads(row.payload)
        payload["points"][0] = guess
        row.payload = json.dumps(payload, separators=(",", ":")).encode()
    [task] = [t for t in world.tasks(victim) if t["job_id"] == job_id]
    assert task["round"] == 2 and task["material"]["points"][0] == guess
    assert task["material"]["from"] == predecessor
    assert ring.agents[victim].run_once() == 0
    refused = [x for x in ring.lines if x.startswith(f"{job_id} round 2: refused")]
    assert len(refused) == 1, ring.lines
    assert f"not the ones {predecessor} signed" in refused[0]
    refusals = [
        e
        for e in world.runtime.ledger.entries(0, world.runtime.ledger.size())
        if e.type == "pipeline.refusal" and e.actor == victim
    ]
    assert len(refusals) == 1
    assert "refused to blind them" in str(refusals[0].payload["statement"])
    with world.runtime.db.read() as session:
        kinds = session.execute(
            select(AnswerRow.round, AnswerRow.kind).where(
                AnswerRow.job_id == job_id, AnswerRow.enterprise == victim
            )
        ).all()
    assert sorted(tuple(k) for k in kinds) == [(1, "contribution"), (2, "refusal")]


def test_only_the_successor_reads_the_contribution_handed_to_it(world: World, ring: Ring) -> None:
    """Own-scope ledger reads: the entry of a handed-on set concerns its author and the
    successor it names, no other enterprise; a last round's entry, only its author."""
    job_id = _submit(world)
    for _ in NAMES:
        ring.round()
    log = world.runtime.ledger
    size = log.size()
    order = sorted(NAMES)
    entries = [
        e
        for e in log.entries(0, size)
        if e.type == "pipeline.contribution" and e.payload["job_id"] == job_id
    ]
    for entry in entries:
        author = entry.actor
        successor = order[(order.index(author) + 1) % len(order)]
        round_no = entry.payload["round"]
        assert isinstance(round_no, int)
        readers = {author} | ({successor} if round_no < len(NAMES) else set())
        for name in NAMES:
            with world.client(name) as client:
                page = client.get("/v1/ledger/entries", start=entry.index, limit=1)
                try:
                    client.get("/v1/ledger/proof/inclusion", index=entry.index, tree_size=size)
                    status = 200
                except RemoteRefusalError as exc:
                    status = exc.status
            shown = [item["index"] for item in page["entries"]]
            if name in readers:
                assert status == 200 and shown == [entry.index], (name, entry)
            else:
                assert status == 403 and shown == [], (name, entry)
