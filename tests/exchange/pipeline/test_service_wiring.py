"""The pipeline inside the app: the sweeper runs in the app's lifespan (recovery at start),
and ``Idempotency-Key`` on ``POST /v1/requests`` gives the same job, never a second one."""

from __future__ import annotations

import asyncio
import time

import pytest

from exchange.app import create_app
from exchange.error_table import RemoteRefusalError
from exchange.pipeline.jobs import JobState
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.exchange.pipeline.conftest import World

NAMES = ("e1", "e2", "e3")


def _ready(world: World) -> str:
    for name in NAMES:
        world.enterprise(name)
        world.consent(name)
    job_id: str = world.submit(datasets=[f"{n}.energy" for n in NAMES])["job_id"]
    assert world.wait_state(job_id, ["collecting"])["state"] == "collecting"
    return job_id


def test_the_apps_sweeper_fails_a_job_left_computing(world: World) -> None:
    job_id = _ready(world)
    jobs = world.runtime.pipeline.jobs
    assert jobs.move(job_id, source=[JobState.COLLECTING], to=JobState.COMPUTING)
    again = Runtime(Settings(data_dir=world.runtime.data_dir))
    app = create_app(runtime=again)

    async def serve_a_while() -> None:
        async with app.router.lifespan_context(app):  # what uvicorn runs at start and stop
            until = time.monotonic() + 10
            while again.pipeline.jobs.get(job_id).state is JobState.COMPUTING:
                assert time.monotonic() < until, "the sweeper did not recover the job"
                await asyncio.sleep(0.02)

    asyncio.run(serve_a_while())
    assert jobs.get(job_id).reason == "the exchange restarted while computing"


def test_an_idempotency_key_gives_the_same_job(world: World) -> None:
    for name in NAMES:
        world.enterprise(name)
        world.consent(name)
    body = {
        "purpose": "benchmarking",
        "operation": "mean",
        "fields": ["energy_kwh"],
        "datasets": [f"{n}.energy" for n in NAMES],
    }
    headers = {"Idempotency-Key": "once-only"}
    with world.client("sb-lb") as client:
        first = client.post("/v1/requests", body, headers=headers)
        second = client.post("/v1/requests", body, headers=headers)
        assert first["job_id"] == second["job_id"]
        assert len(client.get("/v1/jobs")["items"]) == 1


def test_an_engine_whose_module_is_missing_refuses_with_501(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from exchange.pipeline import engines
    from exchange.pipeline.request import EngineName

    for name in NAMES:
        world.enterprise(name)
        world.consent(name)
    monkeypatch.setitem(
        engines._MODULES, EngineName.HE, ("exchange.pipeline.not_installed", "he_engine")
    )
    world.runtime.pipeline._engines.clear()
    size = world.runtime.ledger.size()
    with world.client("sb-lb") as client, pytest.raises(RemoteRefusalError) as info:
        client.post(
            "/v1/requests",
            {
                "purpose": "benchmarking",
                "operation": "mean",
                "fields": ["energy_kwh"],
                "datasets": [f"{n}.energy" for n in NAMES],
            },
        )
    assert info.value.status == 501
    ledger = world.runtime.ledger
    types = [e.type for e in ledger.entries(size, ledger.size() - size)]
    assert "pipeline.decision" not in types  # refused before anything was recorded
