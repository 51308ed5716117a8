"""Steps 6-8 of the story: the sub-brain's three computations, two denials, a revocation.

The sub-brain only ever sees released results; each plant's agent alone
learns its own rank. The narrator adds, for the reader only, the same figure
computed in the clear from the plants' files, so the reader can see that the
encrypted computation got it right: nobody in the story sees those.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import TYPE_CHECKING, Any

from exchange.demo.cluster import (
    CORE_DATASET,
    EDGE_PLANT,
    INDUSTRY,
    PLANTS,
    annual_intensity,
    months_of,
    shared_suppliers,
)
from exchange.demo.launcher import check_stop
from exchange.demo.processes import DemoError
from exchange.pipeline.entries import ContributionEntry, DecisionEntry, DenialEntry

if TYPE_CHECKING:
    from exchange.demo.processes import Ran
    from exchange.demo.scene import Plant, Scene

__all__ = ["denials", "revocation", "subbrain_computes"]

RANK_WAIT = 30.0
"""Seconds a plant's agent may take to read its own share once the job is released."""


def _submit(scene: Scene, *args: str, ok: tuple[int, ...] = (0,)) -> Ran:
    return scene.cli.as_actor(
        scene.subbrain, "request", "submit", *args, "--deadline", "90", "--json", ok=ok
    )


def _computed(scene: Scene, label: str, *args: str) -> tuple[DecisionEntry, int, dict[str, Any]]:
    """``ibx request submit --wait``: the decision, its ledger index, the released result."""
    since = scene.ledger.size()
    result: dict[str, Any] = _submit(scene, *args, "--wait").json()
    job = str(result["job_id"])
    scene.jobs[label] = job
    entry = scene.ledger.last(
        "pipeline.decision",
        since=since,
        where=lambda e: DecisionEntry.model_validate(dict(e.payload)).job_id == job,
    )
    return DecisionEntry.model_validate(dict(entry.payload)), entry.index, result


def _he_mean(scene: Scene, label: str, field: str) -> tuple[DecisionEntry, int, dict[str, Any]]:
    return _computed(
        scene,
        label,
        "--purpose",
        "benchmarking",
        "--operation",
        "mean",
        "--field",
        field,
        "--industry",
        INDUSTRY,
        "--engine",
        "he",
        "--reduce",
        "mean",
    )


def _contributions(scene: Scene, job_id: str, since: int) -> list[int]:
    return [
        e.index
        for e in scene.ledger.find("pipeline.contribution", since=since)
        if ContributionEntry.model_validate(dict(e.payload)).job_id == job_id
    ]


def subbrain_computes(scene: Scene) -> None:
    """6. HE mean energy intensity; MPC benchmarking with each plant's own rank; PSI.

    Raises:
        DemoError: a command failed or printed something the story did not expect.
    """
    say, sb = scene.say, scene.subbrain.name
    _, decision, result = _he_mean(scene, "he", "kwh_per_kwh")
    job = scene.jobs["he"]
    say.fact(
        f"{sb} asks for the cluster's mean energy intensity under HE: policy and consents "
        f"decide first, decision on ledger #{decision} (job {job})"
    )
    contributed = _contributions(scene, job, decision)
    if not contributed or min(contributed) <= decision:
        raise DemoError(f"job {job}: no contribution after its decision #{decision}")
    say.fact(
        f"{len(contributed)} agents each verified that decision's inclusion proof and "
        f"their own signed consent, then sent encrypted figures: ledger "
        f"{', '.join(f'#{i}' for i in contributed)}"
    )
    plain = statistics.fmean(annual_intensity(p) for p in PLANTS)
    say.fact(
        f"released: {result['values']['mean'][0]:.2f} kWh of electricity per kWh of cells, "
        f"over {result['cohort']} plants (in the clear, for the reader: {plain:.2f}); "
        f"result sha256 {str(result['result_sha256'])[:16]}… on ledger "
        f"#{result['result_index']}"
    )
    _mpc_benchmark(scene)
    _psi_match(scene)


def _mpc_benchmark(scene: Scene) -> None:
    say = scene.say
    _, decision, result = _computed(
        scene,
        "mpc",
        "--purpose",
        "benchmarking",
        "--operation",
        "percentile_rank",
        "--field",
        "kwh_per_kwh",
        "--industry",
        INDUSTRY,
        "--engine",
        "mpc",
        "--bound",
        "100",
    )
    job, values = scene.jobs["mpc"], result["values"]
    quartiles = ", ".join(f"{q:.2f}" for q in values["quartiles"])
    say.fact(
        f"benchmarking under MPC (decision #{decision}): each agent secret-shares its "
        f"yearly intensity to 3 parties; median {values['median'][0]:.2f}, quartiles "
        f"{quartiles}"
    )
    say.detail("each plant's agent alone learns its own rank, from its own share:")
    for plant in scene.plants:
        say.detail(f"    {plant.profile.title}: {_own_rank(plant, job)}")


def _own_rank(plant: Plant, job_id: str) -> str:
    """What the plant's agent learnt from its own share (its journal): its rank.

    Raises:
        DemoError: the agent learnt nothing in :data:`RANK_WAIT` seconds.
    """
    journal = plant.actor.home / "agent-state" / "journal.jsonl"
    stop = time.monotonic() + RANK_WAIT
    while time.monotonic() < stop:
        check_stop()
        lines = journal.read_text(encoding="utf-8").splitlines() if journal.exists() else []
        for line in lines:
            event = json.loads(line)
            if event.get("job_id") != job_id:
                continue
            if event.get("event") == "rank":
                share = float(event["percentile"])
                return f"{share:.0f}% of the other plants use less energy per kWh of cells"
            if event.get("event") == "rank_unknown":
                return f"no rank ({event.get('reason')})"
        time.sleep(0.2)
    raise DemoError(f"{plant.name}'s agent learnt no rank for {job_id} in {RANK_WAIT:.0f} s")


def _psi_match(scene: Scene) -> None:
    _, decision, result = _computed(
        scene,
        "psi",
        "--purpose",
        "trade_matching",
        "--operation",
        "set_intersection_size",
        "--field",
        "supplier",
        "--industry",
        INDUSTRY,
        "--engine",
        "psi",
    )
    matched = [p for p in PLANTS if p is not EDGE_PLANT]
    scene.say.fact(
        f"supplier match under PSI (decision #{decision}) over the {result['cohort']} "
        f"plants that list suppliers: {result['values']['size'][0]:.0f} suppliers in "
        f"common (in the clear: {len(shared_suppliers(matched))}); which ones, "
        "nobody learns"
    )


def denials(scene: Scene) -> None:
    """7. A raw-data request refused by the policy; a cohort too small, refused by name.

    Raises:
        DemoError: a command failed or printed something the story did not expect.
    """
    say, ledger = scene.say, scene.ledger
    mark = ledger.size()
    raw = _submit(
        scene,
        "--purpose",
        "benchmarking",
        "--operation",
        "mean",
        "--field",
        "electrolyte_ratio",
        "--dataset",
        CORE_DATASET,
        "--engine",
        "mpc",
        "--reduce",
        "none",
        ok=(3,),
    )
    say.fact(
        f"{scene.subbrain.name} asks for the rows of {CORE_DATASET}, one plant's "
        f"electrolyte recipes (raw core data, 核心数据): DENIED by the policy "
        f"(exit {raw.code}), ledger #{_denial(scene, mark, 'policy')}"
    )
    say.detail(raw.message)
    mark = ledger.size()
    pair = [PLANTS[0], PLANTS[1]]
    small = _submit(
        scene,
        "--purpose",
        "benchmarking",
        "--operation",
        "mean",
        "--field",
        "kwh_per_kwh",
        *(a for p in pair for a in ("--dataset", p.dataset)),
        "--engine",
        "he",
        "--reduce",
        "mean",
        ok=(3,),
    )
    say.fact(
        f"the mean of two plants only ({' and '.join(p.english for p in pair)}): DENIED "
        f"(exit {small.code}), ledger #{_denial(scene, mark, 'cohort')}"
    )
    say.detail(small.message)


def _denial(scene: Scene, since: int, reason: str) -> int:
    entry = scene.ledger.last(
        "pipeline.denial",
        since=since,
        where=lambda e: DenialEntry.model_validate(dict(e.payload)).reason == reason,
    )
    return entry.index


def revocation(scene: Scene) -> None:
    """8. A plant revokes its consent; the next job runs without it, and says so.

    Raises:
        DemoError: a command failed or printed something the story did not expect.
    """
    say, cli = scene.say, scene.cli
    quitter = scene.plants[-1]
    revoked = cli.as_actor(
        quitter.actor,
        "consent",
        "revoke",
        quitter.consent_id,
        "--key",
        str(quitter.key_file),
        "--reason",
        "stops sharing its figures",
        "--json",
    ).json()
    say.fact(
        f"{quitter.profile.title} revokes its consent {quitter.consent_id}, signed with "
        f"its own key: ledger #{revoked['ledger_index']}"
    )
    decision, index, result = _he_mean(scene, "after-revocation", "yield_pct")
    left = "; ".join(f"{o.owner} ({o.reason})" for o in decision.left_out) or "nobody"
    say.fact(
        f"the next job, the mean formation yield (decision #{index}): "
        f"{len(decision.participants)} plants included; left out: {left}"
    )
    kept = [p for p in PLANTS if p is not quitter.profile]
    plain = statistics.fmean(statistics.fmean(m.yield_pct for m in months_of(p)) for p in kept)
    say.detail(
        f"released over {result['cohort']} plants: {result['values']['mean'][0]:.2f}% "
        f"(in the clear, without {quitter.profile.english}: {plain:.2f}%), "
        f"ledger #{result['result_index']}"
    )
