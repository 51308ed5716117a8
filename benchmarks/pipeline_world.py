"""A deployment for the pipeline benchmark: a real ``ibx serve`` over HTTPS, N enterprises
with their own CSV files, keys, datasets and signed consents, and their ``ibx agent``
processes.

Unlike the end-to-end tests (``tests/e2e/pipeline_fixtures.py``), which set up six
enterprises the slow, faithful way (every step an ``ibx`` command over
``--exchange``), the set-up here is done by the operator on the data dir before
the server starts, so 100 enterprises take seconds: identities and tokens, each
enterprise's key generated in its own directory, its dataset registered and a
consent receipt signed with that key and granted through
:meth:`consent.ConsentService.grant` (the same verification as ``POST
/v1/consents``). Nothing of that is timed. What is timed goes through the API
as a user meets it: ``POST /v1/requests`` by a sub-brain, the agents' protocol,
``GET /v1/results/{id}``.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

PY = sys.executable
INDUSTRY = "lithium-battery"
ORIGIN = "bench.ibx.localhost/ledger"
TERMINAL = frozenset({"released", "refused", "failed", "cancelled"})
CA_BUNDLE_NAME = "ca-bundle.pem"


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Firm:
    """One enterprise: its directory (its machine), token, key, source file and consent."""

    name: str
    home: Path
    token: str
    dataset: str
    consent_id: str

    @property
    def key_file(self) -> Path:
        return self.home / "consent.key"

    @property
    def token_file(self) -> Path:
        return self.home / "token"

    @property
    def source(self) -> Path:
        return self.home / "plant.csv"

    @property
    def vkey(self) -> Path:
        return self.home / "ledger.vkey"


@dataclass
class Deployment:
    """The data dir, the requester's token and the enterprises, before the server runs."""

    root: Path
    data_dir: Path
    requester_token: str
    firms: list[Firm]
    columns: tuple[str, ...]
    values: int

    @property
    def ca_bundle(self) -> Path:
        return self.data_dir / CA_BUNDLE_NAME

    def datasets(self, count: int | None = None) -> list[str]:
        """The first ``count`` enterprises' datasets (all by default)."""
        return [f.dataset for f in self.firms[:count]]


def prepare(
    root: Path, *, enterprises: int, values: int, columns: Sequence[str], seed: int = 12
) -> Deployment:
    """Initialise a deployment with ``enterprises`` enterprises, each with ``values`` rows of
    every column in ``columns`` in its own CSV file, a dataset and one signed consent
    (HE and MPC, mean/sum/percentile_rank/quantiles, benchmarking, minimum cohort 3)."""
    from consent import (
        Classification,
        ConsentReceipt,
        DatasetScope,
        Engine,
        EnterpriseKey,
        Operation,
        Purpose,
        Requester,
        new_consent_id,
    )
    from core.clock import utcnow
    from exchange.identities import Role
    from exchange.runtime import Runtime
    from exchange.settings import Settings

    data_dir = root / "server"
    runtime = Runtime.initialise(Settings(data_dir=data_dir, ledger_origin=ORIGIN))
    rng = np.random.default_rng(seed)
    firms: list[Firm] = []
    try:
        now = utcnow()
        requester = runtime.identities.create("bench-sb", Role.SUBBRAIN, industry=INDUSTRY)
        vkey = runtime.ledger.vkey()
        origin = runtime.consents.config.origin
        for index in range(enterprises):
            name = f"plant-{index:03d}"
            home = root / name
            home.mkdir(mode=0o700)
            key = EnterpriseKey.generate(home / "consent.key")
            issued = runtime.identities.create(
                name, Role.ENTERPRISE, industry=INDUSTRY, public_key=key.signer.public_key
            )
            (home / "token").write_text(issued.token + "\n")
            (home / "token").chmod(0o600)
            (home / "ledger.vkey").write_text(vkey + "\n")
            dataset = f"{name}.plant"
            runtime.consents.catalog.register(
                dataset,
                owner=name,
                fields=list(columns),
                classification=Classification.GENERAL,
                now=now,
            )
            receipt = ConsentReceipt(
                consent_id=new_consent_id(),
                origin=origin,
                enterprise=name,
                public_key=key.signer.public_key,
                scope=(DatasetScope(dataset, tuple(columns)),),
                requester=Requester.group("subbrain", INDUSTRY),
                purposes=(Purpose("benchmarking"),),
                operations=tuple(
                    Operation(op) for op in ("mean", "sum", "percentile_rank", "quantiles")
                ),
                engines=(Engine("he"), Engine("mpc")),
                min_cohort=3,
                valid_from=now - timedelta(minutes=5),
                valid_until=now + timedelta(days=30),
                use_limit=None,
                notice=None,
                signed_at=now,
            )
            record = runtime.consents.grant(receipt.sign(key.signer), actor=name)
            _write_source(home / "plant.csv", columns, values, index, rng)
            firms.append(Firm(name, home, issued.token, dataset, record.consent_id))
    finally:
        runtime.close()
    return Deployment(root, data_dir, requester.token, firms, tuple(columns), values)


def _write_source(
    path: Path, columns: Sequence[str], values: int, index: int, rng: np.random.Generator
) -> None:
    data = rng.uniform(50, 150, (values, len(columns))) + index
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(np.round(data, 3).tolist())


def read_column(firm: Firm, column: str) -> np.ndarray:
    """The enterprise's column, as its agent reads it (numpy checks the results)."""
    with firm.source.open(newline="") as handle:
        reader = csv.DictReader(handle)
        return np.array([float(row[column]) for row in reader])


class Server:
    """``ibx serve`` (HTTPS with the deployment CA) on a free port, its stderr in a file."""

    def __init__(self, deployment: Deployment, *, workers: int = 1) -> None:
        self.deployment = deployment
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.log = deployment.root / "serve.log"
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        """Start and wait until ``/readyz`` answers.

        Raises:
            RuntimeError: it exited or did not become ready in time.
        """
        with self.log.open("ab") as stderr:
            self.proc = subprocess.Popen(
                [PY, "-m", "exchange.cli", "--data-dir", str(self.deployment.data_dir), "serve",
                 "--host", "127.0.0.1", "--port", str(self.port),
                 *(["--workers", str(self.workers)] if self.workers != 1 else [])],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, "IBX_AUTH_MAX_FAILURES": "100000",
                     "IBX_LEDGER_ORIGIN": ORIGIN},
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ibx serve exited early: {self.log.read_text()[-3000:]}")
            try:
                if self.deployment.ca_bundle.is_file():
                    answer = httpx.get(f"{self.url}/readyz", timeout=1, verify=self.tls())
                    if answer.status_code == 200:
                        return
            except (httpx.TransportError, ssl.SSLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("ibx serve did not become ready")
            time.sleep(0.1)

    def tls(self) -> ssl.SSLContext:
        """Trust the deployment CA (as every client is told to)."""
        return ssl.create_default_context(cafile=str(self.deployment.ca_bundle))

    def client(self, token: str) -> httpx.Client:
        """An HTTPS client speaking as ``token``."""
        return httpx.Client(
            base_url=self.url,
            verify=self.tls(),
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Agents:
    """The enterprises' ``ibx agent`` processes (one each, its own source and state dir)."""

    server: Server
    firms: list[Firm]
    poll: int = 25
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def argv(self, firm: Firm) -> list[str]:
        return [
            PY, "-m", "exchange.cli", "--token-file", str(firm.token_file), "agent",
            "--exchange", self.server.url, "--ca-bundle", str(self.server.deployment.ca_bundle),
            "--enterprise", firm.name, "--key", str(firm.key_file), "--source", str(firm.source),
            "--ledger-vkey", str(firm.vkey), "--state", str(firm.home / "agent-state"),
            "--poll", str(self.poll),
        ]  # fmt: skip

    def start(self, timeout: float = 300) -> float:
        """Start every agent and wait until each says it is serving; the seconds it took.

        Raises:
            RuntimeError: an agent exited, or not all were serving in time.
        """
        started = time.perf_counter()
        env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
        for firm in self.firms:
            with (firm.home / "agent.log").open("ab") as log:
                self.procs[firm.name] = subprocess.Popen(
                    self.argv(firm), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=firm.home
                )
        waiting = {f.name: f for f in self.firms}
        deadline = time.monotonic() + timeout
        while waiting:
            for name, firm in list(waiting.items()):
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"agent {name} exited: {self.log(firm)[-2000:]}")
                if "serving" in self.log(firm):
                    del waiting[name]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(waiting)} agent(s) not serving after {timeout:.0f} s")
            time.sleep(0.2)
        time.sleep(0.5)  # the last ones' first long poll reaches the server
        return time.perf_counter() - started

    @staticmethod
    def log(firm: Firm) -> str:
        path = firm.home / "agent.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM to all, then wait (SIGKILL after 20 s)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def request_body(
    operation: str, column: str, datasets: Sequence[str], *, engine: str, deadline: int = 120,
    **parameters: Any,
) -> dict[str, Any]:  # fmt: skip
    """A ComputeRequest body (docs/pipeline.md)."""
    return {
        "purpose": "benchmarking",
        "operation": operation,
        "fields": [column],
        "datasets": list(datasets),
        "industry": None,
        "engine": engine,
        "parameters": {"deadline_seconds": deadline, **parameters},
    }


@dataclass(frozen=True)
class Run:
    """One end-to-end job: seconds from the POST to the result in hand, and the result."""

    seconds: float
    job: dict[str, Any]
    result: dict[str, Any]


def run_job(client: httpx.Client, body: dict[str, Any], *, poll: float = 0.01) -> Run:
    """``POST /v1/requests``, poll the job until it ends, read the result; timed.

    Raises:
        RuntimeError: refused at submission, or the job ended other than released.
    """
    started = time.perf_counter()
    answer = client.post("/v1/requests", json=body)
    if answer.status_code != 201:
        raise RuntimeError(f"POST /v1/requests: {answer.status_code} {answer.text[:500]}")
    job_id = answer.json()["job_id"]
    while True:
        view = client.get(f"/v1/jobs/{job_id}").json()
        if view["state"] in TERMINAL:
            break
        time.sleep(poll)
    if view["state"] != "released":
        raise RuntimeError(f"job {job_id} {view['state']}: {view.get('reason')}")
    got = client.get(f"/v1/results/{job_id}")
    seconds = time.perf_counter() - started
    if got.status_code != 200:
        raise RuntimeError(f"GET /v1/results/{job_id}: {got.status_code} {got.text[:300]}")
    return Run(seconds, view, got.json())
