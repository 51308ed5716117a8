"""API throughput: authenticated and authorized requests per second over HTTPS.

    .venv/bin/python benchmarks/bench_api.py                  # 32 clients, 10 s per route
    .venv/bin/python benchmarks/bench_api.py --clients 32 --seconds 5

Starts a real ``ibx serve`` (HTTPS with the deployment CA, one uvicorn
process) on a fresh data dir, then drives it with ``--clients`` concurrent
keep-alive HTTPS clients (httpx, asyncio, one event loop in this process) for
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

Prints requests/s, p50 and p99 latency and the overhead ratio (bare req/s ÷
route req/s), with the machine, the load average before and after, and the
command. The client shares the machine's cores with the server, so the
figures are a floor for the server alone. Goals (issue 11, 2 cores): ≥1,000
authorized requests/s, p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    from exchange.deployment_ca import CA_BUNDLE_NAME, ensure_deployment_ca
    from exchange.identities import Role
    from exchange.runtime import Runtime
    from exchange.settings import Settings

    data_dir = root / "data"
    runtime = Runtime.initialise(Settings(data_dir=data_dir))
    try:
        now = utcnow()
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
        officer = runtime.identities.create("bench-officer", Role.SECURITY_OFFICER)
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

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(
    base: str, deployment: Deployment, scenario: Scenario, clients: int, seconds: float
) -> Result:
    """``clients`` concurrent clients, each on its own keep-alive HTTPS connection, sending
    ``scenario`` for ``seconds`` (one client per connection: httpcore's pool scans all of
    its connections for every request, which would make the load generator the bottleneck).
    """
    headers = {"Authorization": f"Bearer {scenario.token}"} if scenario.token else {}
    context = tls(deployment, client_cert=scenario.client_cert)
    latencies: list[float] = []
    errors = 0
    pool = [
        httpx.AsyncClient(
            base_url=base,
            headers=headers,
            verify=context,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            timeout=30,
        )
        for _ in range(clients)
    ]

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal errors
        start = time.perf_counter()
        answer = await client.request(
            scenario.method, scenario.path, params=scenario.params, json=scenario.body
        )
        latencies.append((time.perf_counter() - start) * 1000)
        if answer.status_code != 200:
            errors += 1
            if errors == 1:
                print(f"   first error: {answer.status_code} {answer.text[:200]}")

    try:
        await asyncio.gather(*(one(client) for client in pool))  # connect every client
        latencies.clear()
        errors = 0
        stop = time.perf_counter() + seconds

        async def worker(client: httpx.AsyncClient) -> None:
            while time.perf_counter() < stop:
                await one(client)

        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for client in pool))
        elapsed = time.perf_counter() - started
    finally:
        for client in pool:
            await client.aclose()
    return Result(scenario, len(latencies), errors, elapsed, latencies)


def serve(deployment: Deployment, port: int, log: Path) -> subprocess.Popen[bytes]:
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
    # httpcore asks for sniffio on every request; absent, each ask searches sys.path again
    # (about 3 ms a request in the load generator). Mark it absent once.
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
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
        proc = serve(deployment, port, log)
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
                asyncio.run(drive(base, deployment, s, args.clients, args.seconds))
                for s in scenarios
            ]
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    bare = results[0].rate
    print(f"{args.clients} concurrent HTTPS clients (keep-alive), {args.seconds:g} s per route:")
    print(f"  {'route':56} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'overhead':>9}")
    for result in results:
        print(
            f"  {result.scenario.name:56} {result.rate:8.0f} {result.percentile(0.5):8.1f} "
            f"{result.percentile(0.99):8.1f} {result.errors:7d} {bare / result.rate:8.2f}x"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
