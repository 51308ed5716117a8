"""The HE path end to end through the API: request → decision on the ledger → agents'
signed ciphertexts → one decryption → the result, compared with numpy."""

from __future__ import annotations

import numpy as np

from tests.exchange.pipeline.conftest import World

NAMES = ("e1", "e2", "e3", "e4")


def _setup(world: World, names: tuple[str, ...] = NAMES) -> None:
    for name in names:
        world.enterprise(name)
        world.consent(name)


def test_he_mean_end_to_end(world: World) -> None:
    _setup(world)
    created = world.submit(datasets=[f"{n}.energy" for n in NAMES], parameters={"length": 3})
    assert created["state"] == "authorized"
    assert created["participants"] == 4
    job_id = created["job_id"]
    view = world.wait_state(job_id, ["collecting"])
    assert view["state"] == "collecting", view
    rng = np.random.default_rng(7)
    values = {n: rng.uniform(0, 100, 3).tolist() for n in NAMES}
    for name in NAMES:
        [task] = world.tasks(name)
        assert task["job_id"] == job_id and task["engine"] == "he"
        response = world.post_answer(name, job_id, world.he_body(name, task, values[name]))
        assert response.status_code == 201
    view = world.wait_state(job_id, ["released", "failed", "refused"])
    assert view["state"] == "released", view
    with world.client("sb-lb") as client:
        result = client.get(f"/v1/results/{job_id}")
    expected = np.mean([values[n] for n in NAMES], axis=0)
    assert np.allclose(result["values"]["mean"], expected, rtol=1e-9, atol=1e-6)
    assert result["cohort"] == 4
    entry = world.runtime.ledger.entry(result["result_index"])
    assert entry.type == "pipeline.result"
    assert entry.payload["result_sha256"] == result["result_sha256"]


def test_he_variance_and_histogram(world: World) -> None:
    from consent import Operation

    for name in NAMES:
        world.enterprise(name)
        world.consent(name, operations=(Operation.VARIANCE, Operation.HISTOGRAM))
    rng = np.random.default_rng(11)
    values = {n: rng.uniform(0, 100, 4).round(3).tolist() for n in NAMES}
    datasets = [f"{n}.energy" for n in NAMES]
    variance = world.submit(datasets=datasets, operation="variance", parameters={"length": 4})
    bins = [0.0, 50.0, 100.0]
    histogram = world.submit(
        datasets=datasets, operation="histogram", parameters={"bins": bins, "length": 4}
    )
    for created in (variance, histogram):
        job_id = created["job_id"]
        assert world.wait_state(job_id, ["collecting"])["state"] == "collecting"
        for name in NAMES:
            [task] = [t for t in world.tasks(name) if t["job_id"] == job_id]
            world.post_answer(name, job_id, world.he_body(name, task, values[name]))
        assert world.wait_state(job_id, ["released", "failed", "refused"])["state"] == "released"
    with world.client("sb-lb") as client:
        got = client.get(f"/v1/results/{variance['job_id']}")["values"]
        counts = client.get(f"/v1/results/{histogram['job_id']}")["values"]["counts"]
    matrix = np.array([values[n] for n in NAMES])
    assert np.allclose(got["means"], matrix.mean(axis=0))
    assert np.allclose(got["variances"], matrix.var(axis=0))
    expected, _ = np.histogram(matrix.ravel(), bins=bins)
    assert counts == expected.tolist()
