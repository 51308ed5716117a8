"""Ledger benchmark: ibx's SQL ledger next to pymerkle's SQLite tree, same entries, same run.

    .venv/bin/python benchmarks/bench_ledger.py                 # 10^4, 10^5, 10^6
    .venv/bin/python benchmarks/bench_ledger.py --sizes 10000   # quicker

Reports batched and single append rates (ibx: canonical JSON entries, durable
commits with SQLite synchronous=FULL, signed checkpoint per batch; pymerkle:
the same entry bytes), inclusion and consistency proof latency (median, p99)
at each size, and the time of a full `verify`.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from pymerkle import SqliteTree

import core
from core.db import Database, migrate
from core.events import Event
from core.keyring import KeyRing
from core.keys import MasterKey
from ledger import MIGRATIONS, Ledger, LedgerConfig, SqlLedgerBackend

BATCH = 10_000


def _events(start: int, count: int) -> list[Event]:
    return [
        Event(
            "bench.reading",
            f"enterprise-{(start + i) % 97}",
            {"seq": start + i, "kwh": (start + i) * 0.25},
        )
        for i in range(count)
    ]


def _latency(fn: Callable[[int], object], args: list[int]) -> tuple[float, float]:
    times = []
    for a in args:
        t = time.perf_counter()
        fn(a)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def _ours_inclusion(ledger: Ledger, size: int, index: int) -> object:
    return ledger.inclusion_proof(index, size)


def _ours_consistency(ledger: Ledger, size: int, first: int) -> object:
    return ledger.consistency_proof(first, size)


def _peer_inclusion(peer: SqliteTree, size: int, index: int) -> object:
    return peer.prove_inclusion(index + 1, size)


def _peer_consistency(peer: SqliteTree, size: int, first: int) -> object:
    return peer.prove_consistency(first, size)


def run(sizes: list[int], proofs: int, peer_proofs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="ibx-bench-ledger-"))
    db = Database(f"sqlite:///{work / 'ibx.db'}")
    migrate(db, [core.MIGRATIONS, MIGRATIONS])
    signer = KeyRing(db, MasterKey(os.urandom(32))).get_or_create("ledger")
    ledger = Ledger(SqlLedgerBackend(db), signer, LedgerConfig(origin="bench/ledger"))
    peer = SqliteTree(str(work / "pymerkle.db"))
    rng = random.Random(7)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")

    # Single appends: each one a durable commit (and a signed checkpoint, for ibx).
    n_single = 300
    t = time.perf_counter()
    for i in range(n_single):
        ledger.append(_events(i, 1))
    ibx_single = n_single / (time.perf_counter() - t)
    leaves_single = [e.leaf_input for e in ledger.entries(0, n_single)]
    t = time.perf_counter()
    for leaf in leaves_single:
        peer.append_entry(leaf)
    peer_single = n_single / (time.perf_counter() - t)
    print("| single appends (durable, one per commit) | ibx | pymerkle |")
    print("|---|---|---|")
    print(f"| appends/s | {ibx_single:,.0f} | {peer_single:,.0f} |\n")

    rows = []
    built = n_single
    ibx_append_time = peer_append_time = 0.0
    appended = 0
    for size in sizes:
        while built < size:
            count = min(BATCH, size - built)
            events = _events(built, count)
            t = time.perf_counter()
            recorded = ledger.append(events)
            ibx_append_time += time.perf_counter() - t
            leaves = [e.leaf_input for e in ledger.entries(recorded[0].index, count)]
            # entries() reads at most 1000 per call: fetch the batch's leaves in pages
            while len(leaves) < count:
                leaves += [
                    e.leaf_input for e in ledger.entries(recorded[0].index + len(leaves), count)
                ]
            t = time.perf_counter()
            peer.append_entries(leaves)
            peer_append_time += time.perf_counter() - t
            appended += count
            built += count
        indices = [rng.randrange(size) for _ in range(proofs)]
        firsts = [rng.randrange(1, size) for _ in range(proofs)]
        inc = _latency(partial(_ours_inclusion, ledger, size), indices)
        con = _latency(partial(_ours_consistency, ledger, size), firsts)
        p_inc = _latency(partial(_peer_inclusion, peer, size), indices[:peer_proofs])
        p_con = _latency(partial(_peer_consistency, peer, size), firsts[:peer_proofs])
        t = time.perf_counter()
        report = ledger.verify()
        verify_s = time.perf_counter() - t
        assert report.size == size
        t = time.perf_counter()
        peer_root = peer.get_root(size)
        peer_root_s = time.perf_counter() - t
        assert peer_root == report.root, "pymerkle and ibx disagree on the root"
        rows.append((size, inc, con, p_inc, p_con, verify_s, peer_root_s))

    print(f"| batched appends ({BATCH:,} per batch) | ibx | pymerkle |")
    print("|---|---|---|")
    print(
        f"| appends/s | {appended / ibx_append_time:,.0f} | {appended / peer_append_time:,.0f} |\n"
    )
    print(
        "| entries | ibx inclusion ms (median / p99) | pymerkle inclusion ms | "
        "ibx consistency ms | pymerkle consistency ms | ibx full verify s | "
        "pymerkle root recompute s |"
    )
    print("|---|---|---|---|---|---|---|")
    for size, inc, con, p_inc, p_con, verify_s, peer_root_s in rows:
        print(
            f"| {size:,} | {inc[0]:.3f} / {inc[1]:.3f} | {p_inc[0]:.2f} / {p_inc[1]:.2f} | "
            f"{con[0]:.3f} / {con[1]:.3f} | {p_con[0]:.2f} / {p_con[1]:.2f} | "
            f"{verify_s:.2f} | {peer_root_s:.2f} |"
        )
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--proofs", type=int, default=500, help="ibx proofs timed per size")
    parser.add_argument(
        "--peer-proofs", type=int, default=50, help="pymerkle proofs timed per size"
    )
    args = parser.parse_args()
    run([int(s) for s in args.sizes.split(",")], args.proofs, args.peer_proofs)


if __name__ == "__main__":
    main()
