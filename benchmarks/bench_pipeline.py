"""The pipeline's benchmark (issue 12): end to end with agent processes, authorize-only
throughput, and the engine-only figures beside them.

    .venv/bin/python benchmarks/bench_pipeline.py                 # 10 and 100 enterprises
    .venv/bin/python benchmarks/bench_pipeline.py --sizes 10 --runs 3 --seconds 5

In one run:

1. **End to end** through a real ``ibx serve`` over HTTPS (``--workers``) with one
   real ``ibx agent`` process per enterprise, each over its own CSV file of
   4,096 rows (``pipeline_world.py`` sets the deployment up). The agents are
   started (and the first ``--sizes`` of them serving) before any timing; a
   size's enterprises are the first N, so the 10-enterprise figures run with
   10 agents and the 100-enterprise ones with 100. Timed: from ``POST
   /v1/requests`` by a sub-brain to the result read with ``GET
   /v1/results/{id}`` (the job polled every ``--poll`` s); p50 (and min, max)
   of ``--runs`` jobs after one untimed warm-up job, each job on a column of
   its own. Jobs: HE ``mean`` of 4,096 values per enterprise; MPC
   ``percentile_rank`` (median and quartiles for the requester, each
   enterprise's rank as its share). Each result is checked against numpy
   over the same files. Beside each: the CPU seconds the server (its live
   processes; the MPC parties, which exit with each job, are not counted) and
   all agents used per job — the
   agents would run on the enterprises' own machines; here they share the
   two cores with the server.
2. **Engine only**, in this process on the same data sizes: HE mean (n
   encryptions, ``HeAggregator`` + ``KeyCustodian.finish_job``) and the MPC
   benchmarking round (``ShareDealer`` + ``MpcRunner`` with three party
   processes), as ``bench_mpc.py`` measures them.
3. **Authorize only**: ``POST /v1/requests`` (token, policy, consent check and
   ``consent.use``, the ``pipeline.decision`` ledger entry, job rows: one
   durable group commit for concurrent requests) from ``--clients``
   concurrent keep-alive HTTPS clients (``bench_api.py``'s load generator) for
   ``--seconds``, on a deployment of its own with ten enterprises and no
   agents running (the jobs stay ``collecting``; their deadline is past the
   end of the run, so no sweep of them runs meanwhile). MPC jobs: an MPC job's
   start only checks its spec, where an HE job's creates a key pair per job.

Goals (issue 12, 2 cores): HE mean over 100 enterprises < 3 s end to end; MPC
benchmarking over 100 < 8 s; ≥ 500 authorized requests/s, p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_api import Scenario as ApiScenario
from benchmarks.bench_api import cpu_seconds, hammer, request_bytes
from benchmarks.pipeline_world import (
    Agents,
    Deployment,
    Server,
    prepare,
    read_column,
    request_body,
    run_job,
)

PY = sys.executable
VALUES = 4096
HE_GOAL_S = 3.0
MPC_GOAL_S = 8.0
RATE_GOAL = 500.0
P99_GOAL_MS = 100.0


def machine() -> str:
    """CPU model and core count (from /proc/cpuinfo where there is one)."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


@dataclass(frozen=True)
class Timing:
    """Seconds of several runs, and CPU seconds per run (server, agents)."""

    seconds: list[float]
    server_cpu: float = 0.0
    agents_cpu: float = 0.0

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds)

    def spread(self) -> str:
        return f"{min(self.seconds):.2f}–{max(self.seconds):.2f}"


# -- engine only ------------------------------------------------------------------------


def engine_he(n: int, runs: int, work: Path) -> Timing:
    """HE mean of n × 4,096 in this process: n encryptions, aggregate, finish_job."""
    import mpc
    from benchmarks.bench_mpc import _custodian

    custodian, _ = _custodian(work)
    rng = np.random.default_rng(5)
    data = rng.uniform(50, 150, (n, VALUES))
    seconds = []
    for rep in range(runs + 1):
        job_id = f"engine-he-{n}-{rep}"
        t = time.perf_counter()
        job = custodian.create_job(
            mpc.HeJobSpec(job_id, mpc.HeOperation.MEAN, length=VALUES, max_contributors=n)
        )
        encryptor = mpc.HeContributor(job)
        contributions = [encryptor.encrypt(f"e{i:03d}", row.tolist()) for i, row in enumerate(data)]
        request = mpc.ReleaseRequest(
            job_id,
            "bench",
            f"bench-{job_id}",
            mpc.ReleaseSubject("bench", ("values",)),
            mpc.ReleasePolicy(min_cohort=2),
        )
        aggregator = mpc.HeAggregator(job)
        for c in contributions:
            aggregator.add(c)
        result = custodian.finish_job(request, aggregator.aggregate())
        elapsed = time.perf_counter() - t
        assert np.max(np.abs(np.array(result.values) - data.mean(axis=0))) < 1e-3
        if rep:  # the first is a warm-up
            seconds.append(elapsed)
    return Timing(seconds)


def engine_mpc(n: int, runs: int, work: Path) -> Timing:
    """The MPC benchmarking round over n values: dealing and three party processes."""
    import mpc

    deployment = mpc.MpcDeployment.create(work / f"parties-{n}", now=dt.datetime.now(dt.UTC))
    runner = mpc.MpcRunner(deployment, mpc.RunnerConfig(deadline=600))
    rng = np.random.default_rng(6)
    values = rng.uniform(50, 150, n)
    seconds = []
    for rep in range(runs):
        spec = mpc.MpcJobSpec(
            f"engine-mpc-{n}-{rep}",
            (mpc.MpcStatistic.MEDIAN, mpc.MpcStatistic.QUARTILES),
            percentile_ranks=True,
        )
        t = time.perf_counter()
        dealer = mpc.ShareDealer(spec.job_id, deployment.box_public_keys, deployment.threshold)
        dealt = [dealer.deal(f"e{i}", float(v), with_rank_key=True) for i, v in enumerate(values)]
        result = runner.run(spec, dealt)
        seconds.append(time.perf_counter() - t)
        median = result.statistic(mpc.MpcStatistic.MEDIAN)[0]
        assert abs(median - float(np.median(values))) < 1e-2, (median, np.median(values))
    return Timing(seconds)


# -- end to end -------------------------------------------------------------------------


def _agents_cpu(agents: Agents) -> float:
    return sum(cpu_seconds(proc.pid) for proc in agents.procs.values())


def e2e(
    server: Server,
    agents: Agents,
    deployment: Deployment,
    *,
    n: int,
    columns: Sequence[str],
    make: Callable[[str, list[str]], dict[str, Any]],
    check: Callable[[str, dict[str, Any]], None],
    poll: float,
) -> Timing:
    """Run one warm-up job then ``len(columns) - 1`` timed ones over the first n enterprises."""
    assert server.proc is not None
    datasets = deployment.datasets(n)
    seconds: list[float] = []
    server_cpu = agents_cpu = 0.0
    with server.client(deployment.requester_token) as client:
        for index, column in enumerate(columns):
            s0, a0 = cpu_seconds(server.proc.pid), _agents_cpu(agents)
            done = run_job(client, make(column, datasets), poll=poll)
            check(column, done.result)
            if index == 0:
                continue
            seconds.append(done.seconds)
            server_cpu += cpu_seconds(server.proc.pid) - s0
            agents_cpu += _agents_cpu(agents) - a0
            print(f"    {done.job['operation']} over {n}: {done.seconds:.2f} s", flush=True)
    runs = len(seconds)
    return Timing(seconds, server_cpu / runs, agents_cpu / runs)


def _check_mean(deployment: Deployment, n: int) -> Callable[[str, dict[str, Any]], None]:
    def check(column: str, result: dict[str, Any]) -> None:
        expected = np.mean([read_column(f, column) for f in deployment.firms[:n]], axis=0)
        got = np.array(result["values"]["mean"])
        assert result["cohort"] == n, result["cohort"]
        assert np.max(np.abs(got - expected)) < 1e-2, np.max(np.abs(got - expected))

    return check


def _check_median(deployment: Deployment, n: int) -> Callable[[str, dict[str, Any]], None]:
    def check(column: str, result: dict[str, Any]) -> None:
        means = [float(np.mean(read_column(f, column))) for f in deployment.firms[:n]]
        assert result["cohort"] == n, result["cohort"]
        got = result["values"]["median"][0]
        assert abs(got - float(np.median(means))) < 1e-2, (got, np.median(means))

    return check


@dataclass(frozen=True)
class E2eFigures:
    he: dict[int, Timing]
    mpc: dict[int, Timing]
    agents_start: dict[int, float]


def run_e2e(sizes: Sequence[int], runs: int, workers: int, poll: float, root: Path) -> E2eFigures:
    """Set up max(sizes) enterprises; for each size start its agents, time HE and MPC jobs."""
    per_size = 2 * (runs + 1)
    columns = [f"v{i}" for i in range(per_size * len(sizes))]
    t = time.perf_counter()
    deployment = prepare(
        root / "e2e", enterprises=max(sizes), values=VALUES, columns=columns, seed=12
    )
    print(f"  set-up of {max(sizes)} enterprises: {time.perf_counter() - t:.1f} s", flush=True)
    server = Server(deployment, workers=workers)
    server.start()
    agents = Agents(server, [])
    he: dict[int, Timing] = {}
    mpc_: dict[int, Timing] = {}
    started: dict[int, float] = {}
    try:
        for k, n in enumerate(sorted(sizes)):
            more = Agents(server, deployment.firms[len(agents.procs) : n], poll=agents.poll)
            started[n] = more.start()
            agents.procs.update(more.procs)
            agents.firms = deployment.firms[:n]
            print(
                f"  {len(more.procs)} more agents serving after {started[n]:.1f} s "
                f"({n} in all); load {load()}",
                flush=True,
            )
            mine = columns[k * per_size : (k + 1) * per_size]
            he[n] = e2e(server, agents, deployment, n=n, columns=mine[: runs + 1], poll=poll,
                        make=lambda c, d: request_body("mean", c, d, engine="he",
                                                       length=VALUES, bound=1000.0),
                        check=_check_mean(deployment, n))  # fmt: skip
            mpc_[n] = e2e(server, agents, deployment, n=n, columns=mine[runs + 1 :], poll=poll,
                          make=lambda c, d: request_body("percentile_rank", c, d, engine="mpc",
                                                         bound=1000.0),
                          check=_check_median(deployment, n))  # fmt: skip
    finally:
        agents.stop()
        server.stop()
    return E2eFigures(he, mpc_, started)


# -- authorize only ---------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _drive(
    server: Server, request: bytes, clients: int, seconds: float
) -> tuple[int, int, float, list[float], float]:
    assert server.proc is not None
    load = await hammer(
        "127.0.0.1", server.port, server.tls(), request, clients, seconds, server.proc.pid, 201
    )
    return len(load.latencies), load.errors, load.elapsed, load.latencies, load.server_cpu


def _run(main: Coroutine[Any, Any, Throughput]) -> Throughput:
    """Run the load generator on uvloop when it is installed (as ``bench_api.py`` does)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def run_throughput(clients: int, seconds: float, workers: int, root: Path) -> Throughput:
    """32 concurrent requesters POST /v1/requests on a deployment of ten enterprises."""
    deployment = prepare(root / "authorize", enterprises=10, values=4, columns=["v0"], seed=3)
    server = Server(deployment, workers=workers)
    server.start()
    try:
        body = request_body(
            "percentile_rank", "v0", deployment.datasets(), engine="mpc",
            deadline=int(seconds) + 600,
        )  # fmt: skip
        scenario = ApiScenario(
            "authorize", "POST", "/v1/requests", token=deployment.requester_token, body=body
        )
        request = request_bytes(scenario, f"127.0.0.1:{server.port}")

        async def go() -> Throughput:
            got = await _drive(server, request, clients, seconds)
            return Throughput(*got)

        measured = _run(go())
    finally:
        server.stop()
    return measured


# -- report -----------------------------------------------------------------------------


def _goal(value: float, goal: float | None) -> str:
    if goal is None:
        return "—"
    return f"< {goal:g} s: {'met' if value < goal else 'MISSED'}"


def report(
    args: argparse.Namespace,
    figures: E2eFigures | None,
    engine: dict[str, dict[int, Timing]],
    rate: Throughput | None,
) -> None:
    print()
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(PY).name, *sys.argv])}")
    print(f"load average at the end: {load()}")
    print(
        f"ibx serve --workers {args.workers}; end-to-end p50 of {args.runs} jobs after one "
        "warm-up (range); CPU s per job: all server processes / all agents"
    )
    print()
    print(
        "| figure | pipeline end to end, p50 (range) | server CPU s | agents CPU s "
        "| engine only, p50 | pipeline ÷ engine | goal |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    if figures is not None:
        for label, kind, timings, goal in (
            ("HE mean, {n} × 4,096", "he", figures.he, HE_GOAL_S),
            ("MPC benchmarking (median, quartiles, ranks), {n}", "mpc", figures.mpc, MPC_GOAL_S),
        ):
            for n, timing in sorted(timings.items()):
                peer = engine[kind].get(n)
                peer_s = f"{peer.p50:.2f} s" if peer else "—"
                ratio = f"{timing.p50 / peer.p50:.1f}x" if peer else "—"
                print(
                    f"| {label.format(n=n)} | {timing.p50:.2f} s ({timing.spread()}) "
                    f"| {timing.server_cpu:.2f} | {timing.agents_cpu:.2f} | {peer_s} | {ratio} "
                    f"| {_goal(timing.p50, goal if n == 100 else None)} |"
                )
    if rate is not None:
        ok = rate.rate >= RATE_GOAL and rate.percentile(0.99) < P99_GOAL_MS
        print(
            f"| authorize only: POST /v1/requests, {args.clients} clients, {args.seconds:g} s "
            f"| {rate.rate:.0f} req/s, p50 {rate.percentile(0.5):.1f} ms, "
            f"p99 {rate.percentile(0.99):.1f} ms, {rate.errors} errors "
            f"| {1000 * rate.server_cpu_s / max(rate.requests, 1):.2f} ms/req | — | — | — "
            f"| ≥ {RATE_GOAL:g}/s, p99 < {P99_GOAL_MS:g} ms: {'met' if ok else 'MISSED'} |"
        )
    if figures is not None:
        starts = ", ".join(f"{s:.0f} s to {n}" for n, s in sorted(figures.agents_start.items()))
        print(f"\nagents started (untimed above): {starts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10,100", help="enterprises per end-to-end job (comma-separated)"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed jobs per figure (p50)")
    parser.add_argument("--workers", type=int, default=1, help="ibx serve --workers")
    parser.add_argument(
        "--throughput-workers",
        type=int,
        default=2,
        help="ibx serve --workers for the authorize-only run (one a core; the workers take "
        "turns on the group-commit lock)",
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between job polls")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument(
        "--only",
        choices=("all", "e2e", "engine", "authorize"),
        default="all",
        help="run one part only",
    )
    args = parser.parse_args()
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(PY).name, *sys.argv])}")
    print(f"load average at the start: {load()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="ibx-bench-pipeline-"))
    try:
        rate = None
        if args.only in ("all", "authorize"):
            print(f"authorize only ({args.clients} clients, {args.seconds:g} s) ...", flush=True)
            rate = run_throughput(args.clients, args.seconds, args.throughput_workers, root)
        engine: dict[str, dict[int, Timing]] = {"he": {}, "mpc": {}}
        if args.only in ("all", "engine"):
            print("engine only ...", flush=True)
            for n in sizes:
                engine["he"][n] = engine_he(n, args.runs, root)
                engine["mpc"][n] = engine_mpc(n, args.runs, root)
                print(
                    f"  {n}: HE {engine['he'][n].p50:.2f} s, MPC {engine['mpc'][n].p50:.2f} s",
                    flush=True,
                )
        figures = None
        if args.only in ("all", "e2e"):
            print("end to end ...", flush=True)
            figures = run_e2e(sizes, args.runs, args.workers, args.poll, root)
    finally:
        if args.keep:
            print(f"work dir kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report(args, figures, engine, rate)


if __name__ == "__main__":
    main()
