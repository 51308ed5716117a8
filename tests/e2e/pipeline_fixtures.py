"""The pipeline's end-to-end world: a real ``ibx serve``, enterprises with their own data and
their own ``ibx agent`` processes, sub-brains asking through the API and ``ibx request``.

Everything is done the way its owner would do it: the operator creates the
identities on the server's data dir (``ibx identity create``) and hands each
enterprise the ledger's verifier key and the CA bundle; each enterprise makes
its consent key on its own machine (a directory of its own), registers its
dataset and signs its consents with ``ibx dataset register`` / ``ibx consent
grant`` over ``--exchange``, and runs ``ibx agent`` over its own CSV file or
SQLite database. Results are compared with numpy over the very same files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from consent import EnterpriseKey
from exchange.cli import main
from exchange.client import ExchangeClient
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests import zygote
from tests.conftest import initialised
from tests.server import CA_BUNDLE_NAME, TEST_AUTH_LIMITS, ExchangeUrl, free_port

LB = "lithium-battery"
NM = "new-materials"
ORIGIN = "e2e.ibx.localhost/ledger"
ROWS = 4
"""Rows in every enterprise's source (HE vectors of this length need no reduction)."""
COMMON_SUPPLIERS = ("sup-common-1", "sup-common-2")
"""Suppliers every enterprise buys from (the PSI overlap)."""
NUMERIC = (
    "energy_kwh", "output_units", "unit_cost", "water_m3", "scrap_kg", "co2_t", "heat_gj",
    "steam_t", "power_kw", "line_kwh", "line_units",
)  # fmt: skip
"""Numeric columns; each linear release in the tests reads its own (the release guard's
differencing memory is per field, and it is shared by every test of the module)."""
FIELDS = (*NUMERIC, "supplier")
TERMINAL = frozenset({"released", "refused", "failed", "cancelled"})


def _ibx(*argv: str) -> tuple[int, str, str]:
    """``ibx ARGV`` in this process, as a user runs it; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        mp = stack.enter_context(_monkeypatch())
        mp.setattr(sys, "argv", ["ibx", *argv])
        for name in [n for n in os.environ if n.startswith("IBX_")]:
            mp.delenv(name)
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            main()
            code: int | str | None = 0
        except SystemExit as exited:
            code = exited.code
    return (code if isinstance(code, int) else 0), out.getvalue(), err.getvalue()


@contextlib.contextmanager
def _monkeypatch() -> Iterator[Any]:
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        yield mp


@dataclass
class Enterprise:
    """One enterprise: its machine (``home``), key, token, data and agent."""

    name: str
    home: Path
    token: str
    kind: str
    """``csv`` or ``sqlite``: what its agent reads."""
    data: dict[str, list[Any]]
    consents: dict[str, str] = field(default_factory=dict)
    """Consent id by label (``main``, ``monitoring``)."""

    @property
    def key_file(self) -> Path:
        return self.home / "consent.key"

    @property
    def token_file(self) -> Path:
        return self.home / "token"

    @property
    def dataset(self) -> str:
        return f"{self.name}.plant"

    @property
    def source_args(self) -> list[str]:
        if self.kind == "csv":
            return ["--source", str(self.home / "plant.csv")]
        return ["--source", f"sqlite:///{self.home / 'plant.db'}", "--table", "plant"]

    @property
    def source_spec(self) -> tuple[str, str | None]:
        """``--source`` and ``--table`` (None for a CSV file)."""
        args = self.source_args
        return args[1], (args[3] if len(args) > 2 else None)

    def column(self, name: str) -> np.ndarray:
        return np.array(self.data[name], dtype=float)

    def write_source(self) -> None:
        """The enterprise's own data, as a CSV file or a SQLite table."""
        if self.kind == "csv":
            with (self.home / "plant.csv").open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(FIELDS)
                for i in range(ROWS):
                    writer.writerow([self.data[f][i] for f in FIELDS])
            return
        with contextlib.closing(sqlite3.connect(self.home / "plant.db")) as db:
            columns = ", ".join(f"{f} REAL" if f in NUMERIC else f"{f} TEXT" for f in FIELDS)
            db.execute(f"CREATE TABLE plant ({columns})")
            db.executemany(
                f"INSERT INTO plant VALUES ({', '.join('?' for _ in FIELDS)})",
                [tuple(self.data[f][i] for f in FIELDS) for i in range(ROWS)],
            )
            db.commit()


def make_data(index: int, rng: np.random.Generator) -> dict[str, list[Any]]:
    """One enterprise's rows: energy follows output (a regression to recover), the rest varies."""
    output = rng.uniform(50, 150, ROWS).round(2)
    energy = (2.5 * output + 100 + 20 * index + rng.normal(0, 3, ROWS)).round(3)
    own = [f"sup-{index}-{k}" for k in range(ROWS - len(COMMON_SUPPLIERS))]
    return {
        "energy_kwh": energy.tolist(),
        "output_units": output.tolist(),
        "unit_cost": (rng.uniform(10, 20, ROWS) + 3 * index).round(3).tolist(),
        "water_m3": rng.uniform(5, 50, ROWS).round(3).tolist(),
        "scrap_kg": rng.uniform(1, 9, ROWS).round(3).tolist(),
        "co2_t": rng.uniform(30, 90, ROWS).round(3).tolist(),
        "heat_gj": rng.uniform(100, 200, ROWS).round(3).tolist(),
        "steam_t": rng.uniform(1, 4, ROWS).round(3).tolist(),
        "power_kw": rng.uniform(200, 900, ROWS).round(3).tolist(),
        "line_units": output.tolist(),
        "line_kwh": (1.8 * output + 40 + 10 * index + rng.normal(0, 2, ROWS)).round(3).tolist(),
        "supplier": [*COMMON_SUPPLIERS, *own],
    }


class ServerProcess:
    """``ibx serve`` on a fixed port that a test may kill (SIGKILL) and start again."""

    def __init__(self, data_dir: Path, log_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = log_dir / "serve.log"
        self.url = ExchangeUrl(
            f"https://127.0.0.1:{self.port}", data_dir.resolve() / CA_BUNDLE_NAME, self.log_path
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    def start(self, timeout: float = 60) -> None:
        """Start and wait until ``/healthz`` answers."""
        log = self.log_path.open("ab")
        self._proc, self._pid = zygote.start(
            ["--data-dir", str(self.data_dir), "serve",
             "--init", "--host", "127.0.0.1", "--port", str(self.port)],
            self.log_path.with_name("serve.pid"),
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, **TEST_AUTH_LIMITS},
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"ibx serve exited early: {self.url.log()[-3000:]}")
            try:
                if self.url.ca_bundle is not None and self.url.ca_bundle.is_file():
                    answer = httpx.get(f"{self.url}/healthz", timeout=1, verify=self.url.verify())
                    if answer.status_code == 200:
                        return
            except (httpx.TransportError, ssl.SSLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("ibx serve did not come up")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup (a crash)."""
        if self._proc is not None and self._proc.poll() is None:
            zygote.kill(self._proc, self._pid)

    def stop(self, grace: float = 15) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            zygote.kill(self._proc, self._pid)


class AgentProcess:
    """One enterprise's ``ibx agent`` subprocess, its output in ``<home>/agent.log``."""

    def __init__(
        self, enterprise: Enterprise, url: ExchangeUrl, *extra: str, vkey: Path | None = None
    ) -> None:
        self.enterprise = enterprise
        self.url = url
        self.extra = extra
        self.vkey = vkey or enterprise.home / "ledger.vkey"
        """The verifier key it was handed (a test may hand it another deployment's)."""
        self.state = enterprise.home / "agent-state"
        self.log_path = enterprise.home / "agent.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    def argv(self, *more: str) -> list[str]:
        e = self.enterprise
        return [
            "--token-file", str(e.token_file), "agent",
            *self.url.cli_args(), "--enterprise", e.name, "--key", str(e.key_file),
            *e.source_args, "--ledger-vkey", str(self.vkey),
            "--state", str(self.state), "--poll", "5", *self.extra, *more,
        ]  # fmt: skip

    def start(self) -> None:
        if self.running:
            return
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
        self._proc, self._pid = zygote.start(
            self.argv(),
            self.enterprise.home / "agent.pid",
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.enterprise.home,
        )
        log.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (a crash: no clean shutdown)."""
        if self._proc is not None and self._proc.poll() is None:
            zygote.kill(self._proc, self._pid)

    def signal_stop(self) -> None:
        """SIGTERM without waiting (:meth:`stop` waits)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def stop(self) -> int | None:
        """SIGTERM and wait: an agent stops cleanly (exit 0)."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                zygote.kill(self._proc, self._pid)
        return self._proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def journal(self) -> list[dict[str, Any]]:
        path = self.state / "journal.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def journal_for(self, job_id: str) -> list[dict[str, Any]]:
        return [line for line in self.journal() if line.get("job_id") == job_id]

    def wait_journal(self, job_id: str, event: str, timeout: float = 60) -> dict[str, Any]:
        """The first journal line of ``event`` for the job, once the agent has written it."""
        stop = time.monotonic() + timeout
        while time.monotonic() < stop:
            for line in self.journal_for(job_id):
                if line.get("event") == event:
                    return line
            time.sleep(0.1)
        raise AssertionError(f"{self.enterprise.name} journaled no {event} for {job_id}")


@dataclass
class World:
    """What the end-to-end tests share: one server, its users, the agents."""

    root: Path
    data_dir: Path
    server: ServerProcess
    tokens: dict[str, Path]
    """Token file by user name (sub-brains, auditors)."""
    enterprises: dict[str, Enterprise]
    agents: dict[str, AgentProcess]
    fork_checkpoint: str
    """A checkpoint of a fork of this deployment's ledger (same key, other history)."""
    notes: dict[str, str] = field(default_factory=dict)
    """What one test leaves for a later one (e.g. a released job's id)."""

    @property
    def url(self) -> ExchangeUrl:
        return self.server.url

    def client(self, who: str) -> ExchangeClient:
        """The API client ``who`` (a user or an enterprise) speaks through."""
        token_file = (
            self.enterprises[who].token_file if who in self.enterprises else self.tokens[who]
        )
        return ExchangeClient.remote(
            self.url.url, token=token_file.read_text().strip(), ca_bundle=self.url.ca_bundle
        )

    def ibx(self, who: str, *argv: str) -> tuple[int, str, str]:
        """``ibx ARGV`` as ``who`` over ``--exchange`` (the command and its options)."""
        token_file = (
            self.enterprises[who].token_file if who in self.enterprises else self.tokens[who]
        )
        return _ibx("--token-file", str(token_file), *argv, *self.url.cli_args())

    def names(self, count: int | None = None) -> list[str]:
        names = sorted(self.enterprises)
        return names if count is None else names[:count]

    def datasets(self, names: Sequence[str]) -> list[str]:
        return [self.enterprises[n].dataset for n in names]

    def submit(self, who: str, request: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/requests``; the job view."""
        with self.client(who) as client:
            body: dict[str, Any] = client.post("/v1/requests", request)
        return body

    def job(self, job_id: str, who: str = "sb-lb") -> dict[str, Any]:
        with self.client(who) as client:
            body: dict[str, Any] = client.get(f"/v1/jobs/{job_id}")
        return body

    def wait(self, job_id: str, *, timeout: float = 90, who: str = "sb-lb") -> dict[str, Any]:
        """Poll the job until it ends; its last view (fails the test if it never ends)."""
        stop = time.monotonic() + timeout
        view = self.job(job_id, who)
        while view["state"] not in TERMINAL:
            if time.monotonic() > stop:
                raise AssertionError(
                    f"job {job_id} still {view['state']} after {timeout} s: {view}"
                )
            time.sleep(0.2)
            view = self.job(job_id, who)
        return view

    def wait_for(
        self, job_id: str, predicate: Any, *, timeout: float = 60, who: str = "sb-lb"
    ) -> dict[str, Any]:
        """Poll the job until ``predicate(view)``; the view."""
        stop = time.monotonic() + timeout
        while True:
            view = self.job(job_id, who)
            if predicate(view):
                return view
            if view["state"] in TERMINAL or time.monotonic() > stop:
                raise AssertionError(f"job {job_id} never got there: {view}")
            time.sleep(0.1)

    def result(self, job_id: str, who: str = "sb-lb") -> dict[str, Any]:
        with self.client(who) as client:
            body: dict[str, Any] = client.get(f"/v1/results/{job_id}")
        return body

    def refusal(self, call: Any, *args: Any, **kwargs: Any) -> RemoteRefusalError:
        try:
            call(*args, **kwargs)
        except RemoteRefusalError as exc:
            return exc
        raise AssertionError("the exchange did not refuse")

    def entries(self, entry_type: str) -> list[dict[str, Any]]:
        """Every ledger entry of a type (read on the server's data dir, as an operator)."""
        runtime = Runtime(Settings(data_dir=self.data_dir))
        try:
            found = []
            start, size = 0, runtime.ledger.size()
            while start < size:
                page = runtime.ledger.entries(start, 1000)
                for entry in page:
                    if entry.type == entry_type:
                        found.append({"index": entry.index, "actor": entry.actor,
                                      "payload": dict(entry.payload)})  # fmt: skip
                start += len(page)
            return found
        finally:
            runtime.close()

    def stop(self) -> None:
        """Stop every agent (all signalled first, then waited for) and the server."""
        for agent in self.agents.values():
            agent.signal_stop()
        for agent in self.agents.values():
            agent.stop()
        # uvicorn's graceful shutdown would wait out the long polls the agents left (up to
        # their --poll of 5 s); nothing is asked of the server any more: a second is enough
        self.server.stop(grace=1)


def mean_request(
    fields: Sequence[str], datasets: Sequence[str], *, purpose: str = "benchmarking",
    operation: str = "mean", engine: str = "he", deadline: int = 60, **parameters: Any,
) -> dict[str, Any]:  # fmt: skip
    """A ComputeRequest body (docs/pipeline.md) over ``datasets``."""
    return {
        "purpose": purpose,
        "operation": operation,
        "fields": list(fields),
        "datasets": list(datasets),
        "industry": None,
        "engine": engine,
        "parameters": {"deadline_seconds": deadline, **parameters},
    }


MAIN_OPERATIONS = ("mean", "regression", "percentile_rank", "quantiles", "set_intersection_size")


def build_world(root: Path, *, enterprises: int = 6, seed: int = 12) -> World:
    """Create the deployment, users, enterprises with data and consents; start server and agents."""
    data_dir = initialised(root / "server", ledger_origin=ORIGIN)
    rng = np.random.default_rng(seed)
    runtime = Runtime(Settings(data_dir=data_dir))
    tokens: dict[str, Path] = {}
    people = root / "people"
    people.mkdir()
    try:
        for name, role, industry in (
            ("sb-lb", Role.SUBBRAIN, LB),
            ("sb-lb2", Role.SUBBRAIN, LB),
            ("sb-nm", Role.SUBBRAIN, NM),
        ):
            path = people / f"{name}.token"
            path.write_text(runtime.identities.create(name, role, industry=industry).token + "\n")
            path.chmod(0o600)
            tokens[name] = path
        vkey = runtime.ledger.vkey()
        firms: dict[str, Enterprise] = {}
        for index in range(enterprises):
            name = f"plant-{chr(ord('a') + index)}"
            home = root / name
            home.mkdir(mode=0o700)
            key = EnterpriseKey.generate(home / "consent.key")
            issued = runtime.identities.create(
                name, Role.ENTERPRISE, industry=LB, public_key=key.signer.public_key
            )
            firm = Enterprise(name, home, issued.token, "csv" if index % 2 == 0 else "sqlite",
                              make_data(index, rng))  # fmt: skip
            firm.token_file.write_text(issued.token + "\n")
            firm.token_file.chmod(0o600)
            (home / "ledger.vkey").write_text(vkey + "\n")  # handed over by the operator
            firm.write_source()
            firms[name] = firm
    finally:
        runtime.close()
    fork_checkpoint = _forked_checkpoint(data_dir, root / "fork")
    server = ServerProcess(data_dir, root)
    server.start()
    world = World(root, data_dir, server, tokens, firms, {}, fork_checkpoint)
    for firm in firms.values():
        _register_and_consent(world, firm)
    _check(
        world.ibx("plant-a", "dataset", "register", "--id", "plant-a.recipes",
                  "--field", "binder_ratio", "--classification", "core"),
        "plant-a registers core data",
    )  # fmt: skip
    for firm in firms.values():
        agent = AgentProcess(firm, server.url)
        agent.start()
        world.agents[firm.name] = agent
    return world


def _forked_checkpoint(data_dir: Path, fork: Path) -> str:
    """A copy of the deployment that goes its own way: same ledger key, other entries."""
    import shutil

    from core.events import Event

    shutil.copytree(data_dir, fork)
    runtime = Runtime(Settings(data_dir=fork))
    try:
        for k in range(40):  # a longer history than the real one will have by then
            runtime.ledger.record(Event("demo.fork", "mallory", {"k": k}))
        return runtime.ledger.checkpoint().to_text()
    finally:
        runtime.close()


def _check(done: tuple[int, str, str], what: str) -> str:
    code, out, err = done
    if code != 0:
        raise RuntimeError(f"{what} failed ({code}): {err.strip()}")
    return out


def _register_and_consent(world: World, firm: Enterprise) -> None:
    """The enterprise registers its dataset and signs two consents, with ``ibx`` as a user."""
    _check(
        world.ibx(firm.name, "dataset", "register", "--id", firm.dataset,
                  *(a for f in FIELDS for a in ("--field", f)), "--classification", "general"),
        f"{firm.name} dataset register",
    )  # fmt: skip
    scope = f"{firm.dataset}:{','.join(FIELDS)}"
    main_grant = _check(
        world.ibx(firm.name, "consent", "grant", "--key", str(firm.key_file), "--dataset", scope,
                  "--requester-group", f"subbrain:{LB}", "--purpose", "benchmarking",
                  "--purpose", "trade_matching",
                  *(a for op in MAIN_OPERATIONS for a in ("--operation", op)),
                  "--engine", "he", "--engine", "mpc", "--engine", "psi",
                  "--min-cohort", "3", "--days", "30", "--json"),
        f"{firm.name} consent grant",
    )  # fmt: skip
    firm.consents["main"] = json.loads(main_grant)["consent_id"]
    monitoring = _check(
        world.ibx(firm.name, "consent", "grant", "--key", str(firm.key_file), "--dataset", scope,
                  "--requester-group", f"subbrain:{LB}", "--purpose", "industry_monitoring",
                  "--operation", "mean", "--engine", "he", "--min-cohort", "3", "--days", "30",
                  "--json"),
        f"{firm.name} consent grant (monitoring)",
    )  # fmt: skip
    firm.consents["monitoring"] = json.loads(monitoring)["consent_id"]
