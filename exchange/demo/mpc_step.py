"""Demo step: an HE mean, an MPC benchmarking round, and a PSI between two suppliers."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import mpc
from core.clock import utcnow
from mpc.errors import ReleaseRefusedError

if TYPE_CHECKING:
    from exchange.demo import Scene

# energy intensity (kWh per unit of output) of the demo's battery-cell makers
INTENSITY = {
    "cells-hangzhou": 41.8,
    "cells-ningbo": 37.2,
    "cells-wenzhou": 45.9,
    "cells-jiaxing": 39.4,
    "cells-huzhou": 52.3,
    "cells-shaoxing": 35.7,
}


SUBJECT = mpc.ReleaseSubject(
    "battery-cells-energy", ("energy_intensity",), (("period", "2026-Q3"),)
)
"""What the demo's releases read: the guard tracks them by this, not by a label."""


def run(scene: Scene) -> None:
    """Run each privacy-compute engine once, printing what each party gets to see."""
    _he_mean(scene)
    _mpc_benchmarking(scene)
    _psi(scene)


def _he_mean(scene: Scene) -> None:
    runtime = scene.runtime
    job_id = f"demo-he-{uuid.uuid4().hex[:8]}"
    spec = mpc.HeJobSpec(job_id, mpc.HeOperation.MEAN)
    job = runtime.key_custodian.create_job(spec)
    scene.say(f"HE: custodian generated a CKKS key for {job_id} ({job.key_fingerprint[:16]}…)")
    aggregator = mpc.HeAggregator(job)
    encryptor = mpc.HeContributor(job)
    for name, value in INTENSITY.items():
        contribution = encryptor.encrypt(name, [value])
        aggregator.add(contribution)
    size = sum(len(c) for c in contribution.chunks)
    scene.say(
        f"    {len(INTENSITY)} enterprises encrypted on their side ({size / 1e3:.0f} kB each)"
    )
    request = mpc.ReleaseRequest(
        job_id,
        "battery-sub-brain",
        mpc.industry_group("battery"),
        SUBJECT,
        mpc.ReleasePolicy(min_cohort=5),
    )
    result = runtime.key_custodian.finish_job(request, aggregator.aggregate())
    plain = sum(INTENSITY.values()) / len(INTENSITY)
    scene.say(
        f"    released mean energy intensity {result.values[0]:.4f} kWh/unit over "
        f"{result.cohort} enterprises (plaintext check {plain:.4f}); key destroyed"
    )
    key_ops = [
        e.type
        for e in runtime.ledger.entries(0, runtime.ledger.size())
        if e.type.startswith("mpc.key.") and e.payload.get("job_id") == job_id
    ]
    scene.say(f"    key operations on the ledger: {', '.join(key_ops)}")


def _mpc_benchmarking(scene: Scene) -> None:
    deployment = mpc.MpcDeployment.create(scene.work_dir / "mpc", now=utcnow())
    job_id = f"demo-mpc-{uuid.uuid4().hex[:8]}"
    spec = mpc.MpcJobSpec(
        job_id,
        (mpc.MpcStatistic.MEAN, mpc.MpcStatistic.MEDIAN, mpc.MpcStatistic.QUARTILES),
        percentile_ranks=True,
        dominance=(mpc.DominanceRule(1, 85),),
    )
    dealer = mpc.ShareDealer(job_id, deployment.box_public_keys, deployment.threshold)
    dealt = [dealer.deal(name, value, with_rank_key=True) for name, value in INTENSITY.items()]
    scene.say(
        f"MPC: {len(dealt)} enterprises sealed Shamir shares to {deployment.parties} party "
        "processes (TLS between them, per-deployment CA)"
    )
    result = mpc.MpcRunner(deployment).run(spec, dealt)
    # order statistics are one enterprise's value: this policy lets them out rounded to 1 kWh
    policy = mpc.ReleasePolicy(
        min_cohort=5,
        dominance=spec.dominance,
        order_statistics=mpc.OrderRelease.COARSEN,
        coarsen_step=1.0,
    )
    guard = scene.runtime.release_guard
    guard.check_dominance(policy, result.dominance)
    request = mpc.ReleaseRequest(
        job_id, "battery-analytics-office", mpc.industry_group("battery"), SUBJECT, policy
    )
    left_out = dict(result.dropped)
    kept = frozenset(INTENSITY) - set(left_out)
    guard.approve(request, mpc.mpc_query(SUBJECT, spec, kept), left_out=left_out)
    median = guard.release_order_statistics(request, result.statistic(mpc.MpcStatistic.MEDIAN))
    coarse = guard.release_order_statistics(request, result.statistic(mpc.MpcStatistic.QUARTILES))
    quartiles = ", ".join(f"{q:.0f}" for q in coarse)
    scene.say(
        f"    requester sees: mean {result.statistic(mpc.MpcStatistic.MEAN)[0]:.2f}, "
        f"median ≈ {median[0]:.0f}, quartiles ≈ {quartiles} (rounded to 1 kWh); "
        f"{len(left_out)} left out; no single enterprise dominates"
    )
    _differencing_refused(scene)
    for d in dealt:
        assert d.rank_key is not None
        pct = d.rank_key.percentile(result.rank_tags)
        scene.say(f"    {d.contributor} alone sees: {pct:.0f}% of its peers use less energy")


def _differencing_refused(scene: Scene) -> None:
    """Another sub-brain of the same industry asks for the mean without one enterprise."""
    request = mpc.ReleaseRequest(
        f"demo-diff-{uuid.uuid4().hex[:8]}",
        "battery-sub-brain",
        mpc.industry_group("battery"),
        SUBJECT,
        mpc.ReleasePolicy(min_cohort=5),
    )
    cohort = sorted(INTENSITY)[1:]
    query = mpc.ReleaseQuery.uniform(SUBJECT, (mpc.StatisticKind.MEAN,), cohort)
    try:
        scene.runtime.release_guard.approve(request, query)
    except ReleaseRefusedError as exc:
        scene.say(
            f"    the same mean without one enterprise, asked by a peer: refused ({exc.title})"
        )
    else:  # pragma: no cover - the guard must refuse it
        raise AssertionError("the differencing release was approved")


def _psi(scene: Scene) -> None:
    supplier_a = ["cathode-qz-01", "separator-nb-07", "electrolyte-hz-03", "foil-jx-11"]
    supplier_b = ["foil-jx-11", "casing-wz-02", "separator-nb-07", "binder-sx-05"]
    session = uuid.uuid4().hex
    a = mpc.PsiParty(session, supplier_a, mpc.PsiMode.CARDINALITY)
    b = mpc.PsiParty(session, supplier_b, mpc.PsiMode.CARDINALITY)
    to_b, to_a = a.blinded(), b.blinded()
    back_to_a, back_to_b = b.reblind(to_b), a.reblind(to_a)
    left, right = a.finish(back_to_a), b.finish(back_to_b)
    scene.say(
        f"PSI: two suppliers compared customer lists through the relay (blinded points only): "
        f"each learns an overlap of {left.size} (and {right.size}), not which customers"
    )
