"""Release-guard check latency as a requester group's history grows.

    .venv/bin/python benchmarks/bench_guard.py [--enterprises 1000] [--history 100 1000 10000]

One requester group asks for means over random cohorts (5 to 200 of N
enterprises, uniformly) of one field, through the real guard on a migrated
SQLite database (WAL, synchronous=FULL): each release is checked against the
stored reduced form and, when approved, the form is written back in the same
transaction. After 100, 1,000 and 10,000 earlier releases (approved or
refused), it times 30 more releases three ways in the same run (and
reports the approve latency of every release that built the history):

* ``approve`` — the guard's full call: read the form (cached by stamp), add
  the row, look for a solvable value or difference, store the form;
* ``check`` — the in-memory part only (reduce, eliminate, look);
* ``re-solve`` — the peer: from scratch over every approved vector so far,
  the rank (numpy.linalg.matrix_rank, SVD) and the projector onto the row
  space (is any unit vector or pairwise difference in it), as a guard that
  kept no reduced form would have to do per release (3 samples).

Most releases are refused once the rank nears N − 5 (every further cohort
then pins down some aggregate under the minimum); the latency is measured
for approvals and refusals alike.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

import core
import ledger
import mpc
from core.db import Database, migrate
from mpc._release_history import ReleaseHistory
from mpc.errors import ReleaseRefusedError

SUBJECT = mpc.ReleaseSubject("energy", ("kwh",))
GROUP = mpc.industry_group("battery")
POLICY = mpc.ReleasePolicy(min_cohort=5)
PROBES = 30
PEER_SAMPLES = 3


class Requester:
    """Issues releases for one group and keeps the approved vectors (for the peer)."""

    def __init__(self, guard: mpc.ReleaseGuard, names: list[str], seed: int) -> None:
        self.guard = guard
        self.names = names
        self.rng = np.random.default_rng(seed)
        self.issued = 0
        self.approved: list[np.ndarray] = []

    def cohort(self) -> list[int]:
        size = int(self.rng.integers(5, min(200, len(self.names)) + 1))
        return [int(i) for i in self.rng.choice(len(self.names), size=size, replace=False)]

    def release(self, cohort: list[int]) -> bool:
        request = mpc.ReleaseRequest(f"job-{self.issued}", "sb-1", GROUP, SUBJECT, POLICY)
        self.issued += 1
        query = mpc.ReleaseQuery.uniform(
            SUBJECT, (mpc.StatisticKind.MEAN,), [self.names[i] for i in cohort]
        )
        try:
            self.guard.approve(request, query)
        except ReleaseRefusedError:
            return False
        row = np.zeros(len(self.names))
        row[cohort] = 1.0
        self.approved.append(row)
        return True


def _peer(approved: list[np.ndarray], cohort: list[int], n: int) -> float:
    """From scratch: rank and row-space projector of every approved vector plus the new one."""
    t = time.perf_counter()
    row = np.zeros(n)
    row[cohort] = 1.0
    matrix = np.vstack([*approved, row]) if approved else row[np.newaxis, :]
    rank = np.linalg.matrix_rank(matrix)
    _, _, vt = np.linalg.svd(matrix, full_matrices=False)
    basis = vt[:rank]
    projector_diag = np.einsum("ij,ij->j", basis, basis)
    single = bool(np.any(projector_diag > 1 - 1e-9))
    gram = basis.T @ basis  # P; e_i − e_j in span iff P_ii + P_jj − 2 P_ij = 2
    pair = bool(np.any(projector_diag[:, None] + projector_diag[None, :] - 2 * gram > 2 - 1e-9))
    del single, pair
    return time.perf_counter() - t


def _check_only(guard: mpc.ReleaseGuard, cohort: list[int], names: list[str]) -> float:
    history: ReleaseHistory = guard._history
    with guard._db.read() as session:
        slot = history.tracker(session, GROUP, SUBJECT.dataset, SUBJECT.fields[0])
    t = time.perf_counter()
    after = slot.tracker.with_row({names[i]: Fraction(1) for i in cohort})
    after.disclosure()
    after.smallest_support()
    return time.perf_counter() - t


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(values) * 1e3:7.1f} ms  p95 {p95 * 1e3:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enterprises", type=int, default=1000)
    parser.add_argument("--history", type=int, nargs="+", default=[100, 1000, 10_000])
    args = parser.parse_args()
    names = [f"ent-{i:05d}" for i in range(args.enterprises)]
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'guard.db'}")
        migrate(db, [core.MIGRATIONS, ledger.MIGRATIONS, mpc.MIGRATIONS])
        guard = mpc.ReleaseGuard(db)
        requester = Requester(guard, names, seed=9)
        largest = min(200, args.enterprises)
        print(f"{args.enterprises} enterprises, one group, cohorts of 5-{largest}, min cohort 5")
        build_start = time.perf_counter()
        for target in sorted(args.history):
            building: list[float] = []
            start_rank = len(requester.approved)
            while requester.issued < target:
                cohort = requester.cohort()
                t = time.perf_counter()
                requester.release(cohort)
                building.append(time.perf_counter() - t)
            approve, check, outcomes = [], [], []
            for _ in range(PROBES):
                cohort = requester.cohort()
                check.append(_check_only(guard, cohort, names))
                t = time.perf_counter()
                outcomes.append(requester.release(cohort))
                approve.append(time.perf_counter() - t)
            peer = [
                _peer(requester.approved, requester.cohort(), len(names))
                for _ in range(PEER_SAMPLES)
            ]
            with db.read() as session:
                slot = guard._history.tracker(session, GROUP, SUBJECT.dataset, SUBJECT.fields[0])
            print(
                f"\nafter {target:>6,} earlier releases ({len(requester.approved):,} approved, "
                f"rank {slot.tracker.rank}; probes approved {sum(outcomes)}/{PROBES})"
            )
            if building:
                print(
                    f"  building up to here       {_ms(building)}  max "
                    f"{max(building) * 1e3:6.1f} ms  ({len(building):,} releases, "
                    f"rank {start_rank} → {len(requester.approved)})"
                )
            print(f"  approve (guard, stored)   {_ms(approve)}")
            print(f"  check (in memory)         {_ms(check)}")
            print(f"  re-solve from scratch     {_ms(peer)}   (peer, {PEER_SAMPLES} samples)")
        print(f"\nwhole run {time.perf_counter() - build_start:.0f} s")
        db.dispose()


if __name__ == "__main__":
    main()
