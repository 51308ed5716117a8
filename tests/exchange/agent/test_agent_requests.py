"""What one agent costs the exchange per HE task: three requests — the task list (with its
evidence), the HE context and one binary contribution — and no separate ledger or consent
read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from exchange.agent import AgentState, CsvSource, assemble_agent
from exchange.app import create_app
from exchange.client import ExchangeClient, InProcessTransport
from ledger import NoteVerifier
from tests.exchange.agent.test_agent_pipeline import (
    Deployment,
    _collecting,
    _mean_request,
    _wait,
    build,
)


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    made = build(tmp_path, count=3)
    yield made
    made.runtime.close()


def _counting_client(deployment: Deployment, token: str, seen: list[str]) -> ExchangeClient:
    def record(request: httpx.Request) -> None:
        media = request.headers.get("content-type", "")
        seen.append(f"{request.method} {request.url.path} {media}".strip())

    http = httpx.Client(
        base_url="http://ibx.local",
        headers={"Authorization": f"Bearer {token}"},
        transport=InProcessTransport(create_app(runtime=deployment.runtime)),
        event_hooks={"request": [record]},
    )
    return ExchangeClient(http, where="local")


def test_an_he_task_costs_three_requests(deployment: Deployment) -> None:
    with deployment.client(deployment.requester_token) as client:
        job = client.post("/v1/requests", _mean_request(deployment.firms))
    job_id = job["job_id"]
    _collecting(deployment, job_id)
    seen: dict[str, list[str]] = {}
    for firm in deployment.firms:
        seen[firm.name] = []
        with _counting_client(deployment, firm.token, seen[firm.name]) as client:
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
    assert _wait(deployment, job_id)["state"] == "released"
    for requests in seen.values():
        assert requests[:3] == [
            "GET /v1/agent/tasks",
            f"GET /v1/agent/jobs/{job_id}/he-context",
            f"POST /v1/agent/jobs/{job_id}/contributions application/octet-stream",
        ], requests
        assert not any("/v1/ledger/" in r or "/v1/consents/" in r for r in requests)
    with deployment.client(deployment.requester_token) as client:
        result = client.get(f"/v1/results/{job_id}")
    expected = np.mean([f.values for f in deployment.firms], axis=0)
    assert result["values"]["mean"] == pytest.approx(expected.tolist(), abs=1e-6)
