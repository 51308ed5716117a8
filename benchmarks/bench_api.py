"""API throughput: authenticated and authorized requests per second over HTTPS.

    .venv/bin/python benchmarks/bench_api.py --workers 2      # 32 clients, 10 s per route
    .venv/bin/python benchmarks/bench_api.py --clients 32 --seconds 5 --workers 1

Starts a real ``ibx serve`` (HTTPS with the deployment CA; ``--workers``
processes, default one a core) on a fresh data dir, then drives it with
``--clients`` concurrent keep-alive HTTPS clients (a minimal HTTP/1.1 client on asyncio
streams, uvloop when installed, one event loop in this process) for
``--seconds`` per route, in the same run:

* ``GET /healthz`` — a bare FastAPI route on the same server: no token, no
  database; it still passes the request-id/access-log, body-limit and
  idempotency middleware and the app-wide access check (a public rule);
* ``GET /v1/me`` — the authorization path alone: token lookup, the policy
  decision for ``whoami``, a small answer;
* ``GET /v1/datasets?industry=…&field=…`` — a sub-brain's catalog search
  (token lookup, policy decision, the catalog query, a page of results);
* ``POST /v1/decisions`` — a security officer asks the policy decision point
  (token, client certificate checked against the registry, policy decision on
  the route itself, then the decision asked for).

Prints requests/s, p50 and p99 latency, the overhead ratio (bare req/s ÷
route req/s) and the CPU time per request of the server (all its processes)
and of the load generator, with the machine, the load average before and
after, and the command. The client shares the machine's cores with the
server, so the figures are a floor for the server alone; the CPU time per
request depends much less on other work on the machine than the rates do.
Goals (issue 11, 2 cores): ≥1,000 authorized requests/s, p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

PY = sys.executable
INDUSTRY = "lithium-battery"
DATASETS = 60
"""Datasets in the catalog (three enterprises, a third of them with the searched field)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Deployment:
    """What the clients need: tokens, the officer's client certificate, the CA bundle."""

    data_dir: Path
    ca_bundle: Path
    subbrain_token: str
    officer_token: str
    officer_cert: Path
    officer_key: Path
    subject: str


def prepare(root: Path) -> Deployment:
    """A deployment with a catalog, a sub-brain and a security officer (with certificate)."""
    from consent import Classification
    from core.clock import utcnow
    from core.keys import Ed25519Signer
    from exchange.deployment_ca import CA_BUNDLE_NAME, ensure_deployment_ca
    from exchange.identities import Role
    from exchange.runtime import Runtime
    from exchange.settings import Settings

    data_dir = root / "data"
    runtime = Runtime.initialise(Settings(data_dir=data_dir))
    try:
        now = utcnow()
        officer, _second = runtime.identities.bootstrap_officers(
            [
                (name, Ed25519Signer.generate(name).public_key)
                for name in ("bench-officer", "bench-officer-2")
            ]
        )  # as ibx init does: the deployment's first identities
        ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=now)
        owners = [
            runtime.identities.create(f"bench-ent-{i}", Role.ENTERPRISE, industry=INDUSTRY)
            for i in range(3)
        ]
        for n in range(DATASETS):
            owner = owners[n % len(owners)].identity.name
            fields = ["energy_kwh", "output_units"] if n % 3 == 0 else ["water_m3"]
            runtime.consents.catalog.register(
                f"{owner}.line-{n:03d}",
                owner=owner,
                fields=fields,
                classification=Classification.GENERAL,
                now=now,
            )
        subbrain = runtime.identities.create("bench-subbrain", Role.SUBBRAIN, industry=INDUSTRY)
        credentials = runtime.admin_certificates.issue("bench-officer", actor="sysadmin", now=now)
        cert, key = credentials.write(root / "certs")
    finally:
        runtime.close()
    return Deployment(
        data_dir=data_dir,
        ca_bundle=data_dir / CA_BUNDLE_NAME,
        subbrain_token=subbrain.token,
        officer_token=officer.token,
        officer_cert=cert,
        officer_key=key,
        subject=subbrain.identity.name,
    )


def tls(deployment: Deployment, *, client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(deployment.ca_bundle))
    if client_cert:
        context.load_cert_chain(str(deployment.officer_cert), str(deployment.officer_key))
    return context


@dataclass(frozen=True)
class Scenario:
    name: str
    method: str
    path: str
    token: str | None = None
    body: dict[str, Any] | None = None
    params: dict[str, str] | None = None
    client_cert: bool = False


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its live descendants (worker processes)."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # it exited
    tree, total = {pid}, 0
    for candidate in sorted(stats):  # a child's pid is usually above its parent's
        fields = stats[candidate]
        if candidate in tree or int(fields[1]) in tree:
            tree.add(candidate)
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def request_bytes(scenario: Scenario, host: str) -> bytes:
    """The scenario's request, encoded once: the same bytes are sent every time."""
    target = scenario.path + (f"?{urlencode(scenario.params)}" if scenario.params else "")
    lines = [f"{scenario.method} {target} HTTP/1.1", f"Host: {host}"]
    if scenario.token:
        lines.append(f"Authorization: Bearer {scenario.token}")
    body = b""
    if scenario.body is not None:
        body = json.dumps(scenario.body).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive HTTPS connection that sends one fixed request and reads its answer.

    A minimal HTTP/1.1 client (status line, ``Content-Length`` or chunked body) in
    the manner of wrk: at about 0.1 ms of CPU a request it leaves the cores to the
    server, where httpx (about 1 ms a request) took half the machine.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int, context: ssl.SSLContext) -> Connection:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=context, server_hostname=host
        )
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request``; the answer's status and body."""
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        at = lowered.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lowered.index(b"\r\n", at + 2)
            body = await self._reader.readexactly(int(lowered[at + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in lowered:
            chunks = []
            while size := int((await self._reader.readuntil(b"\r\n"))[:-2], 16):
                chunks.append((await self._reader.readexactly(size + 2))[:-2])
            await self._reader.readuntil(b"\r\n")
            body = b"".join(chunks)
        else:
            raise RuntimeError(f"an answer without a length: {head!r}")
        return status, body

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()


async def drive(
    port: int,
    deployment: Deployment,
    scenario: Scenario,
    clients: int,
    seconds: float,
    server_pid: int,
) -> Result:
    """``clients`` concurrent clients, each on its own keep-alive HTTPS connection, sending
    ``scenario`` for ``seconds``; the server's and this process's CPU time meanwhile.
    """
    host = "127.0.0.1"
    request = request_bytes(scenario, f"{host}:{port}")
    context = tls(deployment, client_cert=scenario.client_cert)
    load = await hammer(host, port, context, request, clients, seconds, server_pid, 200)
    return Result(
        scenario,
        len(load.latencies),
        load.errors,
        load.elapsed,
        load.latencies,
        load.server_cpu,
        load.client_cpu,
    )


@dataclass
class Load:
    """What :func:`hammer` measured."""

    errors: int
    elapsed: float
    latencies: list[float]
    server_cpu: float
    client_cpu: float


async def hammer(
    host: str,
    port: int,
    context: ssl.SSLContext,
    request: bytes,
    clients: int,
    seconds: float,
    server_pid: int,
    expected: int,
) -> Load:
    """``clients`` keep-alive HTTPS connections each sending ``request`` for ``seconds``
    (after one warm-up request each); an answer other than ``expected`` is an error.
    """
    latencies: list[float] = []
    errors = 0
    pool = [await Connection.open(host, port, context) for _ in range(clients)]

    async def one(connection: Connection) -> None:
        nonlocal errors
        start = time.perf_counter()
        status, body = await connection.exchange(request)
        latencies.append((time.perf_counter() - start) * 1000)
        if status != expected:
            errors += 1
            if errors == 1:
                print(f"   first error: {status} {body[:300]!r}")

    try:
        await asyncio.gather(*(one(connection) for connection in pool))  # warm every connection
        latencies.clear()
        errors = 0
        stop = time.perf_counter() + seconds

        async def worker(connection: Connection) -> None:
            while time.perf_counter() < stop:
                await one(connection)

        started = time.perf_counter()
        server_before, client_before = cpu_seconds(server_pid), time.process_time()
        await asyncio.gather(*(worker(connection) for connection in pool))
        server_cpu = cpu_seconds(server_pid) - server_before
        client_cpu = time.process_time() - client_before
        elapsed = time.perf_counter() - started
    finally:
        for connection in pool:
            await connection.close()
    return Load(errors, elapsed, latencies, server_cpu, client_cpu)


def run(main: Coroutine[Any, Any, Result]) -> Result:
    """Run the load generator on uvloop when it is installed (its I/O costs less CPU)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def serve(deployment: Deployment, port: int, log: Path, workers: int) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [
                PY,
                "-m",
                "exchange.cli",
                "--data-dir",
                str(deployment.data_dir),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *(["--workers", str(workers)] if workers != 1 else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "IBX_AUTH_MAX_FAILURES": "100000"},
        )


def wait_ready(base: str, deployment: Deployment, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"ibx serve exited early: {log.read_text(errors='replace')}")
        try:
            answer = httpx.get(f"{base}/readyz", verify=tls(deployment, client_cert=False))
            if answer.status_code == 200:
                return
        except (httpx.TransportError, ssl.SSLError, FileNotFoundError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("ibx serve did not become ready within 60 s")
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="ibx serve --workers (one a core)"
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    print(f"command: {' '.join([Path(PY).name, *sys.argv])}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="ibx-bench-api-") as tmp:
        root = Path(tmp)
        deployment = prepare(root)
        port = free_port()
        base = f"https://127.0.0.1:{port}"
        log = root / "serve.log"
        proc = serve(deployment, port, log, args.workers)
        try:
            wait_ready(base, deployment, proc, log)
            scenarios = [
                Scenario("bare FastAPI route (GET /healthz)", "GET", "/healthz"),
                Scenario(
                    "whoami (GET /v1/me, sub-brain): authorization alone",
                    "GET",
                    "/v1/me",
                    token=deployment.subbrain_token,
                ),
                Scenario(
                    "catalog search (GET /v1/datasets, sub-brain)",
                    "GET",
                    "/v1/datasets",
                    token=deployment.subbrain_token,
                    params={"industry": INDUSTRY, "field": "energy_kwh", "limit": "20"},
                ),
                Scenario(
                    "decide (POST /v1/decisions, officer + client cert)",
                    "POST",
                    "/v1/decisions",
                    token=deployment.officer_token,
                    body={
                        "subject": deployment.subject,
                        "action": "read_metadata",
                        "resource": "dataset:bench-ent-0.line-000",
                        "context": {"domain": INDUSTRY},
                    },
                    client_cert=True,
                ),
            ]
            results = [
                run(drive(port, deployment, s, args.clients, args.seconds, proc.pid))
                for s in scenarios
            ]
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    bare = results[0].rate
    print(
        f"ibx serve --workers {args.workers}; {args.clients} concurrent HTTPS clients "
        f"(keep-alive), {args.seconds:g} s per route:"
    )
    print(
        f"  {'route':56} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'overhead':>9} {'server CPU ms':>14} {'client CPU ms':>14}"
    )
    for result in results:
        print(
            f"  {result.scenario.name:56} {result.rate:8.0f} {result.percentile(0.5):8.1f} "
            f"{result.percentile(0.99):8.1f} {result.errors:7d} {bare / result.rate:8.2f}x "
            f"{1000 * result.server_cpu_s / result.requests:14.2f} "
            f"{1000 * result.client_cpu_s / result.requests:14.2f}"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
