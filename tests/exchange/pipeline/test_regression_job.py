"""An HE regression through the API with real data agents: each agent reads its own CSV rows
(target first, then the features), encrypts them as an :class:`mpc.RegressionInput` under the
job's public context and signs its contribution; the released coefficients equal numpy's least
squares over every enterprise's rows pooled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from consent import Operation
from exchange.agent import AgentState, CsvSource, assemble_agent
from ledger import NoteVerifier
from tests.exchange.pipeline.conftest import World

NAMES = ("r1", "r2", "r3", "r4")
FIELDS = ("energy_kwh", "output_units", "shift_hours")


def _plant_rows(rng: np.random.Generator, rows: int) -> np.ndarray:
    """``rows`` rows of (energy, output, hours): energy linear in the others, with noise."""
    output = rng.uniform(10, 100, rows)
    hours = rng.uniform(4, 12, rows)
    energy = 120.0 + 3.5 * output + 11.0 * hours + rng.normal(0, 4, rows)
    return np.column_stack([energy, output, hours]).round(3)


def _write_csv(path: Path, rows: np.ndarray) -> None:
    lines = ["energy_kwh,output_units,shift_hours,site"]
    lines += [f"{e},{o},{h},line-{i}" for i, (e, o, h) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


def _run_agents(world: World, homes: dict[str, Path]) -> list[str]:
    lines: list[str] = []
    vkey = NoteVerifier.from_vkey(world.runtime.ledger.vkey())
    for name, home in homes.items():
        with world.client(name) as client:
            agent = assemble_agent(
                client,
                enterprise=name,
                signer=world.keys[name].signer,
                ledger_key=vkey,
                source=CsvSource(home / "plant.csv"),
                state=AgentState.open(home / "state"),
                say=lines.append,
            )
            assert agent.run_once() == 0
    return lines


def test_he_regression_with_real_agents_equals_pooled_least_squares(
    world: World, tmp_path: Path
) -> None:
    rng = np.random.default_rng(12)
    data: dict[str, np.ndarray] = {}
    homes: dict[str, Path] = {}
    for index, name in enumerate(NAMES):
        world.enterprise(name, fields=FIELDS)
        world.consent(name, operations=(Operation.REGRESSION,), fields=FIELDS)
        home = tmp_path / name
        home.mkdir(mode=0o700)
        data[name] = _plant_rows(rng, 6 + 3 * index)  # enterprises hold different row counts
        _write_csv(home / "plant.csv", data[name])
        homes[name] = home
    created = world.submit(
        operation="regression",
        fields=list(FIELDS),
        datasets=[f"{n}.energy" for n in NAMES],
        engine="auto",
        parameters={"bound": 10_000.0, "deadline_seconds": 60},
    )
    assert created["engine"] == "he"
    job_id = created["job_id"]
    assert world.wait_state(job_id, ["collecting"])["state"] == "collecting"
    lines = _run_agents(world, homes)
    assert sum(f"{job_id} round 1: contributed" in line for line in lines) == len(NAMES), lines
    view = world.wait_state(job_id, ["released", "failed", "refused"])
    assert view["state"] == "released", view
    with world.client("sb-lb") as client:
        result = client.get(f"/v1/results/{job_id}")
    pooled = np.vstack([data[n] for n in NAMES])
    design = np.column_stack([np.ones(len(pooled)), pooled[:, 1:]])
    expected, *_ = np.linalg.lstsq(design, pooled[:, 0], rcond=None)
    assert result["values"]["coefficients"] == pytest.approx(expected.tolist(), rel=1e-6, abs=1e-6)
    assert result["cohort"] == len(NAMES)
    entry = world.runtime.ledger.entry(result["result_index"])
    assert entry.type == "pipeline.result"
    assert entry.payload["result_sha256"] == result["result_sha256"]


def test_an_agent_whose_rows_do_not_fit_the_bound_refuses_signed(
    world: World, tmp_path: Path
) -> None:
    """A value beyond the job's bound is refused by the agent (without naming it); the others'
    rows are still pooled when the cohort allows."""
    rng = np.random.default_rng(5)
    data: dict[str, np.ndarray] = {}
    homes: dict[str, Path] = {}
    for name in NAMES:
        world.enterprise(name, fields=FIELDS)
        world.consent(name, operations=(Operation.REGRESSION,), fields=FIELDS)
        home = tmp_path / name
        home.mkdir(mode=0o700)
        data[name] = _plant_rows(rng, 8)
        homes[name] = home
    data["r4"][0, 0] = 5_000_000.0  # beyond the bound
    for name in NAMES:
        _write_csv(homes[name] / "plant.csv", data[name])
    created = world.submit(
        operation="regression",
        fields=list(FIELDS),
        datasets=[f"{n}.energy" for n in NAMES],
        engine="he",
        parameters={"bound": 10_000.0, "deadline_seconds": 60},
    )
    job_id = created["job_id"]
    assert world.wait_state(job_id, ["collecting"])["state"] == "collecting"
    lines = _run_agents(world, homes)
    refusals = [line for line in lines if line.startswith(f"{job_id} round 1: refused")]
    assert len(refusals) == 1 and "5000000" not in refusals[0], lines
    view = world.wait_state(job_id, ["released", "failed", "refused"])
    assert view["state"] == "released", view
    with world.client("sb-lb") as client:
        result = client.get(f"/v1/results/{job_id}")
    pooled = np.vstack([data[n] for n in NAMES[:3]])
    design = np.column_stack([np.ones(len(pooled)), pooled[:, 1:]])
    expected, *_ = np.linalg.lstsq(design, pooled[:, 0], rcond=None)
    assert result["values"]["coefficients"] == pytest.approx(expected.tolist(), rel=1e-6, abs=1e-6)
    assert result["cohort"] == 3
