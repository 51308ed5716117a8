"""The agent against the real exchange: in-process (the app through ExchangeClient.local) and
as an ``ibx agent --once`` subprocess against a real ``ibx serve``.

Each enterprise registers its dataset and signs its consent with its own key
through the API; a sub-brain asks for an HE mean; the agents verify the
decision on the ledger and contribute; the released mean equals numpy's over
the same CSV files.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

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
from exchange.agent import AgentState, CsvSource, assemble_agent
from exchange.client import ExchangeClient
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from ledger import NoteVerifier
from tests.conftest import initialised
from tests.zygote import ibx_argv

ORIGIN = "agent-it.ibx.localhost/ledger"
LB = "lithium-battery"
ROWS = 3
TERMINAL = {"released", "refused", "failed", "cancelled"}


@dataclass
class Firm:
    name: str
    home: Path
    token: str
    key: EnterpriseKey
    values: list[float]

    @property
    def csv(self) -> Path:
        return self.home / "plant.csv"


@dataclass
class Deployment:
    runtime: Runtime
    requester_token: str
    firms: list[Firm]
    vkey: str

    def client(self, token: str) -> ExchangeClient:
        return ExchangeClient.local(self.runtime, token=token)


def _consent(firm: Firm, origin: str) -> dict[str, Any]:
    now = utcnow()
    receipt = ConsentReceipt(
        consent_id=new_consent_id(),
        origin=origin,
        enterprise=firm.name,
        public_key=firm.key.signer.public_key,
        scope=(DatasetScope(f"{firm.name}.plant", ("energy_kwh",)),),
        requester=Requester.group("subbrain", LB),
        purposes=(Purpose.BENCHMARKING,),
        operations=(Operation.MEAN,),
        engines=(Engine.HE,),
        min_cohort=3,
        valid_from=now - dt.timedelta(minutes=5),
        valid_until=now + dt.timedelta(days=1),
        signed_at=now - dt.timedelta(minutes=1),
    )
    return receipt.sign(firm.key.signer).to_dict()


def build(root: Path, count: int = 4) -> Deployment:
    data_dir = initialised(root / "server", ledger_origin=ORIGIN)
    runtime = Runtime(Settings(data_dir=data_dir))
    requester = runtime.identities.create("sb-lb", Role.SUBBRAIN, industry=LB).token
    rng = np.random.default_rng(7)
    firms = []
    for index in range(count):
        name = f"plant-{chr(ord('a') + index)}"
        home = root / name
        home.mkdir(mode=0o700)
        key = EnterpriseKey.generate(home / "consent.key")
        token = runtime.identities.create(
            name, Role.ENTERPRISE, industry=LB, public_key=key.signer.public_key
        ).token
        values = rng.uniform(100, 900, ROWS).round(3).tolist()
        firm = Firm(name, home, token, key, values)
        firm.csv.write_text(
            "energy_kwh,site\n" + "".join(f"{v},s{i}\n" for i, v in enumerate(values))
        )
        (home / "ledger.vkey").write_text(runtime.ledger.vkey() + "\n")
        firms.append(firm)
    deployment = Deployment(runtime, requester, firms, runtime.ledger.vkey())
    for firm in firms:
        with deployment.client(firm.token) as client:
            client.post(
                "/v1/datasets",
                {"dataset_id": f"{firm.name}.plant", "fields": ["energy_kwh", "site"],
                 "classification": "general"},
            )  # fmt: skip
            client.post("/v1/consents", _consent(firm, ORIGIN))
    return deployment


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    made = build(tmp_path)
    yield made
    made.runtime.close()


def _mean_request(firms: list[Firm]) -> dict[str, Any]:
    return {
        "purpose": "benchmarking",
        "operation": "mean",
        "fields": ["energy_kwh"],
        "datasets": [f"{f.name}.plant" for f in firms],
        "industry": None,
        "engine": "he",
        "parameters": {"length": ROWS, "deadline_seconds": 60},
    }


def _wait(deployment: Deployment, job_id: str, timeout: float = 60) -> dict[str, Any]:
    stop = time.monotonic() + timeout
    with deployment.client(deployment.requester_token) as client:
        while True:
            view: dict[str, Any] = client.get(f"/v1/jobs/{job_id}")
            if view["state"] in TERMINAL:
                return view
            assert time.monotonic() < stop, f"job still {view['state']}: {view}"
            time.sleep(0.1)


def _collecting(deployment: Deployment, job_id: str, timeout: float = 30) -> None:
    """Wait until the job collects (its engine has started: the agents have tasks)."""
    stop = time.monotonic() + timeout
    with deployment.client(deployment.requester_token) as client:
        while client.get(f"/v1/jobs/{job_id}")["state"] == "authorized":
            assert time.monotonic() < stop
            time.sleep(0.05)


def test_agents_contribute_to_an_he_mean_that_matches_numpy(deployment: Deployment) -> None:
    with deployment.client(deployment.requester_token) as client:
        job = client.post("/v1/requests", _mean_request(deployment.firms))
    _collecting(deployment, job["job_id"])
    lines: list[str] = []
    for firm in deployment.firms:
        with deployment.client(firm.token) as client:
            agent = assemble_agent(
                client,
                enterprise=firm.name,
                signer=firm.key.signer,
                ledger_key=NoteVerifier.from_vkey(deployment.vkey),
                source=CsvSource(firm.csv),
                state=AgentState.open(firm.home / "state"),
                say=lines.append,
            )
            assert agent.run_once() == 0
    assert sum("contributed" in line for line in lines) == len(deployment.firms), lines
    view = _wait(deployment, job["job_id"])
    assert view["state"] == "released", (view, lines)
    with deployment.client(deployment.requester_token) as client:
        result = client.get(f"/v1/results/{job['job_id']}")
    expected = np.mean([f.values for f in deployment.firms], axis=0)
    assert result["values"]["mean"] == pytest.approx(expected.tolist(), abs=1e-6)
    assert sum("contributed" in line for line in lines) == len(deployment.firms)
    for firm in deployment.firms:  # the journal has the outcome, never a value
        journal = (firm.home / "state" / "journal.jsonl").read_text()
        assert '"event": "contributed"' in journal
        assert not any(str(v) in journal for v in firm.values)
        assert (firm.home / "state" / "checkpoint").exists()


def test_an_agent_given_another_ledger_key_refuses_with_a_signed_reason(
    deployment: Deployment, tmp_path: Path
) -> None:
    with deployment.client(deployment.requester_token) as client:
        job = client.post("/v1/requests", _mean_request(deployment.firms))
    _collecting(deployment, job["job_id"])
    other = Runtime.initialise(Settings(data_dir=tmp_path / "other", ledger_origin=ORIGIN))
    wrong_key = NoteVerifier.from_vkey(other.ledger.vkey())
    other.close()
    firm = deployment.firms[0]
    lines: list[str] = []
    with deployment.client(firm.token) as client:
        agent = assemble_agent(
            client,
            enterprise=firm.name,
            signer=firm.key.signer,
            ledger_key=wrong_key,
            source=CsvSource(firm.csv),
            state=AgentState.open(firm.home / "state"),
            say=lines.append,
        )
        assert agent.run_once() == 0
    assert any("refused: the exchange's checkpoint is not signed by the pinned" in x for x in lines)
    journal = (firm.home / "state" / "journal.jsonl").read_text()
    assert '"sent": true' in journal
    with deployment.client(deployment.requester_token) as client:
        job_view = client.get(f"/v1/jobs/{job['job_id']}")
    assert job_view["refused"] in (1, [firm.name])  # the requester may see only a count
    log = deployment.runtime.ledger
    refusals = [
        e
        for e in log.entries(0, log.size())
        if e.type == "pipeline.refusal" and firm.name in str(e.payload)
    ]
    assert len(refusals) == 1 and "pinned" in str(refusals[0].payload)


def test_ibx_agent_once_as_a_process(deployment: Deployment) -> None:
    """One enterprise runs ``ibx agent --once`` as a real process (on the data dir's exchange,
    in-process mode); the others run in this process; the job releases."""
    with deployment.client(deployment.requester_token) as client:
        job = client.post("/v1/requests", _mean_request(deployment.firms))
    _collecting(deployment, job["job_id"])
    data_dir = deployment.runtime.settings.data_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
    env["IBX_TOKEN"] = deployment.firms[0].token
    first, *rest = deployment.firms
    done = subprocess.run(
        [*ibx_argv(), "--data-dir", str(data_dir), "agent",
         "--enterprise", first.name, "--key", str(first.home / "consent.key"),
         "--source", str(first.csv), "--ledger-vkey", str(first.home / "ledger.vkey"),
         "--state", str(first.home / "state"), "--once"],
        check=False, capture_output=True, text=True, env=env, timeout=120, cwd=first.home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{job['job_id']} round 1: contributed" in done.stdout
    assert first.token not in done.stdout + done.stderr
    assert not any(str(v) in done.stdout + done.stderr for v in first.values)
    for firm in rest:
        with deployment.client(firm.token) as client:
            agent = assemble_agent(
                client,
                enterprise=firm.name,
                signer=firm.key.signer,
                ledger_key=NoteVerifier.from_vkey(deployment.vkey),
                source=CsvSource(firm.csv),
                state=AgentState.open(firm.home / "state"),
                say=lambda _line: None,
            )
            assert agent.run_once() == 0
    view = _wait(deployment, job["job_id"])
    assert view["state"] == "released"
