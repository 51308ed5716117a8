"""How the demo runs ``ibx``: one command per act, each actor with its own files.

Every act of the story is an ``ibx`` command line run as a process of its
own, the way the actor would type it: the operator's on the data dir
(:meth:`Cli.operator`), everyone else's over HTTPS as the identity of their
own token file (:meth:`Cli.as_actor`). Tokens and bootstrap tokens travel in
files and the environment, never in argv, so ``commands.log`` (every command
line the story ran, in order) holds no secret. Each command is a process of
its own, forked from the preloaded command line (:mod:`exchange.demo.launcher`).

The long-running processes — ``ibx serve`` and the enterprises' ``ibx
agent`` — are :class:`Background` children: each is stopped (SIGTERM, then
SIGKILL after a grace) when the story ends, fails or is interrupted.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from exchange.demo.launcher import CommandTimeoutError, check_stop, run_ibx

__all__ = [
    "Actor",
    "Background",
    "Cli",
    "DemoError",
    "Ran",
    "free_port",
    "in_parallel",
    "start_server",
    "write_secret",
]

T = TypeVar("T")

_SECRET_ENV = ("IBX_DATABASE_URL", "IBX_MASTER_KEY")
"""What the operator's commands and ``ibx serve`` get from the demo's environment."""
COMMAND_TIMEOUT = 180.0
STOP_GRACE = 10.0


class DemoError(RuntimeError):
    """A step of the story did not go as told (the demo stops, its processes too)."""


def write_secret(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` with mode 0600 (a token file, a bootstrap token)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text.strip() + "\n")
    return path


@dataclass(frozen=True)
class Actor:
    """Someone who runs ``ibx`` on their own machine: a home dir, a token file, and for an
    administrator the client certificate that is their second factor."""

    name: str
    home: Path

    @property
    def token_file(self) -> Path:
        """``<home>/token`` (mode 0600)."""
        return self.home / "token"

    @property
    def client_cert(self) -> Path:
        """``<home>/<name>.crt`` (administrators; ``ibx identity create --cert-out``)."""
        return self.home / f"{self.name}.crt"

    @property
    def client_key(self) -> Path:
        """The client certificate's key, next to it."""
        return self.home / f"{self.name}.key"

    def keep_token(self, token: str) -> None:
        """Store the token the operator handed over."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_secret(self.token_file, token)


@dataclass(frozen=True)
class Ran:
    """A finished command: exit code and what it printed."""

    argv: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """Standard output parsed as JSON (``--json``).

        Raises:
            DemoError: it is not JSON.
        """
        try:
            return json.loads(self.stdout)
        except json.JSONDecodeError as exc:
            raise DemoError(f"{self.command} printed no JSON: {self.stdout[:200]!r}") from exc

    @property
    def command(self) -> str:
        """The command line, as typed."""
        return "ibx " + shlex.join(self.argv)

    @property
    def message(self) -> str:
        """The last line of standard error (a refusal's one-line message)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1].removeprefix("ibx: ") if lines else ""


@dataclass
class Cli:
    """Runs ``ibx`` commands for the story's actors against one deployment."""

    work: Path
    data_dir: Path
    exchange: str = ""
    ca_bundle: Path | None = None
    deployment_env: Mapping[str, str] = field(default_factory=dict)
    """More of the operator's environment: the consortium ledger's settings, when on."""
    _log_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @staticmethod
    def base_env() -> dict[str, str]:
        """The environment with every ``IBX_`` variable removed: each actor brings its own."""
        return {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}

    def operator_env(self) -> dict[str, str]:
        """The operator's: the deployment's database URL and master key, if the demo got them,
        and :attr:`deployment_env`."""
        env = self.base_env()
        env.update({k: os.environ[k] for k in _SECRET_ENV if os.environ.get(k)})
        env.update(self.deployment_env)
        return env

    def operator(self, *args: str, ok: Sequence[int] = (0,)) -> Ran:
        """``ibx --data-dir DATA ARGS``: the system administrator on the server's data dir.

        Raises:
            DemoError: the exit code is not in ``ok``.
        """
        return self._run(("--data-dir", str(self.data_dir), *args), self.operator_env(), ok)

    def as_actor(
        self,
        actor: Actor,
        *args: str,
        remote: bool = True,
        admin: bool = False,
        ok: Sequence[int] = (0,),
        env: Mapping[str, str] | None = None,
    ) -> Ran:
        """``ibx --token-file HOME/token ARGS --exchange URL --ca-bundle PEM``: ``actor``'s
        command over HTTPS (``remote=False``: on their machine only, no exchange);
        ``admin`` adds their client certificate.

        Raises:
            DemoError: the exit code is not in ``ok``.
        """
        argv: list[str] = []
        if remote:
            argv += ["--token-file", str(actor.token_file)]
        argv += list(args)
        if remote:
            argv += ["--exchange", self.exchange, "--ca-bundle", str(self.ca_bundle)]
        if admin:
            argv += ["--client-cert", str(actor.client_cert), "--client-key", str(actor.client_key)]
        full_env = self.base_env()
        full_env.update(env or {})
        return self._run(tuple(argv), full_env, ok, cwd=actor.home)

    def _run(
        self, argv: tuple[str, ...], env: dict[str, str], ok: Sequence[int], cwd: Path | None = None
    ) -> Ran:
        with self._log_lock, (self.work / "commands.log").open("a", encoding="utf-8") as log:
            log.write(f"{'ibx ' + shlex.join(argv)}\n")
        try:
            code, stdout, stderr = run_ibx(
                argv, env=env, cwd=cwd or self.work, timeout=COMMAND_TIMEOUT
            )
        except CommandTimeoutError as exc:
            raise DemoError(
                f"ibx {shlex.join(argv)} did not finish in {COMMAND_TIMEOUT:.0f} s"
            ) from exc
        ran = Ran(argv, code, stdout, stderr)
        if ran.code not in ok:
            raise DemoError(f"{ran.command} exited {ran.code}: {ran.message or ran.stdout[-300:]}")
        return ran


def in_parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run ``calls`` at once in threads (each mostly waits on a process); results in order.

    Raises:
        BaseException: the first call's error, after every call has ended.
    """
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException | None] = [None] * len(calls)

    def one(i: int) -> None:
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            errors[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for error in errors:
        if error is not None:
            raise error
    return results


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Background:
    """The story's long-running processes; :meth:`stop_all` ends every one of them."""

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._lock = threading.Lock()

    def start(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path
    ) -> subprocess.Popen[bytes]:
        """Start ``ibx ARGV`` with its output in ``log``."""
        with log.open("ab") as out:
            proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "exchange.cli", *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env),
                cwd=cwd,
            )
        with self._lock:
            self._procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM, then SIGKILL after a grace; forget it."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with self._lock:
            self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def stop_all(self) -> None:
        """Stop every process, the last started first (agents before the server)."""
        with self._lock:
            procs = [p for _, p in reversed(self._procs)]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            self.stop(proc)

    def dead(self) -> list[str]:
        """The names of processes that stopped by themselves."""
        with self._lock:
            return [name for name, proc in self._procs if proc.poll() is not None]


def start_server(background: Background, cli: Cli, *, port: int, edge_port: int, log: Path) -> str:
    """Start ``ibx serve`` (API and edge listener) on the data dir; the API URL once
    ``/healthz`` answers over TLS. :meth:`Background.stop_all` stops it.

    Raises:
        DemoError: the server stopped or did not come up in time.
    """
    argv = [
        "--data-dir",
        str(cli.data_dir),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--edge-port",
        str(edge_port),
    ]
    proc = background.start("ibx serve", argv, env=cli.operator_env(), log=log, cwd=cli.work)
    url = f"https://127.0.0.1:{port}"
    bundle = cli.data_dir / "ca-bundle.pem"
    stop = time.monotonic() + 90
    while True:
        check_stop()
        if proc.poll() is not None:
            raise DemoError(f"ibx serve stopped (exit {proc.returncode}): see {log}")
        try:
            context = ssl.create_default_context(cafile=str(bundle))
            if httpx.get(f"{url}/healthz", verify=context, timeout=2).status_code == 200:
                return url
        except (httpx.TransportError, ssl.SSLError, FileNotFoundError):
            pass
        if time.monotonic() > stop:
            raise DemoError(f"ibx serve did not come up in 90 s: see {log}")
        time.sleep(0.1)
