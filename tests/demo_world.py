"""The demo's story, run once per test session, and a live copy of its world.

:func:`run_demo` runs ``python -m exchange.demo`` (``make demo``) in a fresh
directory that already holds a stale ``.ibx-demo``; ``tests/conftest.py``
exposes it as the session fixture ``demo_run`` (``tests/e2e/test_demo.py``
reads what it printed and left; the console tests build on it). The story
takes about 35 s: it must run once. Iterating locally on the console's tests,
``IBX_TEST_DEMO_DIR=/tmp/ibx-demo-run pytest tests/console`` keeps the run in
that directory and reuses it on the next invocation (delete it after changing
the demo or the server's schema).

:func:`live_world` **copies** the demo's work dir (so nothing done in it
changes what ``test_demo`` reads), serves the copy with a real ``ibx serve``
over TLS (:func:`tests.server.running_exchange`) and starts the plants' data
agents on the copy with the very command lines the demo used
(:func:`exchange.demo.setup_acts.agent_argv`), so a request submitted in
the browser really computes. Every process stops when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from exchange.demo.cluster import PLANTS
from exchange.demo.scene import AUDITOR, OFFICERS, SUBBRAIN, WITNESS
from exchange.demo.setup_acts import agent_argv
from tests.server import ExchangeUrl, free_port, running_exchange

__all__ = [
    "REUSE_ENV",
    "DemoRun",
    "LiveWorld",
    "WorldActor",
    "demo_run_in",
    "live_world",
    "run_demo",
    "wait_for_agents",
]

REVOKED_PLANT = "shimen-battery"
"""The plant that revokes its consent in step 8 (its agent is not started again)."""


def demo_env() -> dict[str, str]:
    """The environment the demo runs in: this one without any ``IBX_`` variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}


@dataclass(frozen=True)
class DemoRun:
    """One run of the demo: where (``cwd``; its files in ``cwd/.ibx-demo``), its exit code and
    what it printed."""

    cwd: Path
    code: int
    out: str
    err: str

    @property
    def work(self) -> Path:
        """The demo's work dir (``.ibx-demo``)."""
        return self.cwd / ".ibx-demo"

    def step(self, number: int) -> str:
        """The lines of step ``number`` (from its heading to the next one)."""
        found = re.search(rf"^== {number}\. .*?(?=^== |\Z)", self.out, re.M | re.S)
        assert found, f"no step {number} in:\n{self.out[-2000:]}"
        return found.group(0)

    def check(self) -> None:
        """Fail with the end of its output unless it exited 0."""
        assert self.code == 0, self.out[-3000:] + self.err[-3000:]


REUSE_ENV = "IBX_TEST_DEMO_DIR"
"""Local iteration only: where to keep the demo's run and reuse it (:func:`demo_run_in`)."""


def run_demo(cwd: Path) -> DemoRun:
    """``python -m exchange.demo`` in ``cwd`` (a stale ``.ibx-demo`` put there first), stdin
    not a terminal: the story runs to the end and stops everything it started. What it
    printed is kept in ``cwd/demo.out`` and ``cwd/demo.err``."""
    (cwd / ".ibx-demo" / "data").mkdir(parents=True)
    (cwd / ".ibx-demo" / "stale-from-an-earlier-run").write_text("x")
    done = subprocess.run(
        [sys.executable, "-m", "exchange.demo"],
        cwd=cwd,
        env=demo_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    (cwd / "demo.out").write_text(done.stdout, encoding="utf-8")
    (cwd / "demo.err").write_text(done.stderr, encoding="utf-8")
    (cwd / "demo.code").write_text(str(done.returncode), encoding="utf-8")
    return DemoRun(cwd, done.returncode, done.stdout, done.stderr)


def demo_run_in(fresh: Path) -> DemoRun:
    """The session's demo run: made in ``fresh``; or, when ``IBX_TEST_DEMO_DIR`` names a
    directory (a developer iterating on console tests), the successful run kept there,
    made there first if it holds none. CI never sets it: the story always runs."""
    kept = os.environ.get(REUSE_ENV)
    if not kept:
        return run_demo(fresh)
    where = Path(kept).resolve()
    if (where / "demo.code").is_file() and (where / "demo.code").read_text() == "0":
        return DemoRun(
            where,
            0,
            (where / "demo.out").read_text(encoding="utf-8"),
            (where / "demo.err").read_text(encoding="utf-8"),
        )
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    return run_demo(where)


@dataclass(frozen=True)
class WorldActor:
    """Someone of the demo, in the copied world: who, their role and console duty, their
    token, and the files on their machine."""

    name: str
    role: str
    duty: str | None
    """Their console pages (``/console/<duty>``); None for a role without any (the witness)."""
    token: str = field(repr=False)
    home: Path
    key_file: Path | None = None
    """Their signing key (``ibx consent keygen`` / ``ibx identity keygen`` JSON)."""
    client_cert: Path | None = None
    """Administrators: their client certificate (PEM), the second factor."""
    client_key: Path | None = None
    """Its private key (PEM)."""

    @property
    def token_file(self) -> Path:
        """``<home>/token``."""
        return self.home / "token"

    @property
    def admin(self) -> bool:
        """Whether they sign in with a client certificate too."""
        return self.client_cert is not None


@dataclass
class LiveWorld:
    """The copy of the demo's world, served."""

    url: ExchangeUrl
    """The base URL (``https://127.0.0.1:PORT``); ``url.ca_bundle`` trusts it."""
    work: Path
    """The copied work dir (``.ibx-demo``'s layout: officers/, plants/, sub-brain/, ...)."""
    actors: dict[str, WorldActor]
    demo: DemoRun
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def data_dir(self) -> Path:
        """The served data dir."""
        return self.work / "data"

    @property
    def database(self) -> Path:
        """The served SQLite database."""
        return self.data_dir / "ibx.db"

    @property
    def ca_bundle(self) -> Path:
        """The deployment CA's bundle."""
        assert self.url.ca_bundle is not None
        return self.url.ca_bundle

    def of_role(self, role: str) -> list[WorldActor]:
        """The actors of ``role`` (``security_officer``, ``auditor``, ``enterprise``, ...)."""
        return [a for a in self.actors.values() if a.role == role]

    def sql(self, statement: str, *params: object) -> list[tuple[object, ...]]:
        """Run one SQL statement on the served database (e.g. age a console session)."""
        with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as db, db:
            return list(db.execute(statement, params))

    def ibx(self, actor: WorldActor, *args: str) -> subprocess.CompletedProcess[str]:
        """``ibx --token-file HOME/token ARGS --exchange URL --ca-bundle PEM`` as ``actor``
        (with their client certificate when they have one); not checked."""
        argv = [sys.executable, "-m", "exchange.cli", "--token-file", str(actor.token_file)]
        argv += [*args, *self.url.cli_args()]
        if actor.client_cert and actor.client_key:
            argv += ["--client-cert", str(actor.client_cert), "--client-key", str(actor.client_key)]
        return subprocess.run(
            argv, cwd=actor.home, env=demo_env(), capture_output=True, text=True, check=False
        )


def _actors(work: Path) -> dict[str, WorldActor]:
    def token(home: Path) -> str:
        return (home / "token").read_text().strip()

    found: list[WorldActor] = []
    for name in OFFICERS:
        home = work / "officers" / name
        found.append(
            WorldActor(
                name, "security_officer", "officer", token(home), home, home / "officer.key",
                home / f"{name}.crt", home / f"{name}.key",
            )
        )  # fmt: skip
    home = work / "auditor"
    found.append(
        WorldActor(
            AUDITOR, "auditor", "auditor", token(home), home, home / "auditor.key",
            home / f"{AUDITOR}.crt", home / f"{AUDITOR}.key",
        )
    )  # fmt: skip
    for plant in PLANTS:
        home = work / "plants" / plant.name
        found.append(
            WorldActor(
                plant.name, "enterprise", "enterprise", token(home), home, home / "consent.key"
            )
        )
    home = work / "sub-brain"
    found.append(WorldActor(SUBBRAIN, "subbrain", "subbrain", token(home), home))
    home = work / "witness"
    found.append(WorldActor(WITNESS, "witness", None, token(home), home, home / "witness.key"))
    return {actor.name: actor for actor in found}


@contextlib.contextmanager
def live_world(demo: DemoRun, into: Path) -> Iterator[LiveWorld]:
    """Copy ``demo``'s work dir to ``into``, serve it over TLS and start the four plants
    whose consent stands (their agents, on the copy); stop them all when the block ends.

    Every plant in a job must answer for it to compute, so each agent of a consenting
    plant runs (the revoked one's would be left out anyway: it is not started).
    """
    demo.check()
    work = into / ".ibx-demo"
    shutil.copytree(demo.work, work, symlinks=True)
    for stale in work.glob("plants/*/agent-state/*.lock"):
        stale.unlink()
    with running_exchange(work / "data", "--edge-port", str(free_port())) as url:
        world = LiveWorld(url, work, _actors(work), demo)
        try:
            for plant in PLANTS:
                if plant.name == REVOKED_PLANT:
                    continue
                home = work / "plants" / plant.name
                argv = agent_argv(
                    plant, home, exchange=url.url, ca_bundle=world.ca_bundle,
                    ledger_vkey=work / "ledger.vkey",
                )  # fmt: skip
                with (home / "agent.log").open("ab") as log:
                    world.agents[plant.name] = subprocess.Popen(
                        [sys.executable, "-m", "exchange.cli", *argv],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        cwd=home,
                        env=demo_env(),
                    )
            yield world
        finally:
            for proc in world.agents.values():
                if proc.poll() is None:
                    proc.terminate()
            for proc in world.agents.values():
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_for_agents(world: LiveWorld, *, within: float = 60) -> None:
    """Until each agent has said it started (a line in its log; they start in the background,
    a few seconds each, and pick up any job within 5 s of starting).

    Raises:
        RuntimeError: an agent exited, or one did not start in time.
    """
    marks = {
        name: (world.work / "plants" / name / "agent.log").stat().st_size for name in world.agents
    }
    deadline = time.monotonic() + within
    waiting = set(world.agents)
    while waiting:
        for name in list(waiting):
            proc = world.agents[name]
            log = world.work / "plants" / name / "agent.log"
            if proc.poll() is not None:
                raise RuntimeError(f"ibx agent {name} exited: {log.read_text()[-1500:]}")
            with log.open("rb") as handle:
                handle.seek(marks[name])
                if handle.read().strip():
                    waiting.discard(name)
        if time.monotonic() > deadline:
            raise RuntimeError(f"agents did not start within {within:.0f} s: {sorted(waiting)}")
        time.sleep(0.2)
