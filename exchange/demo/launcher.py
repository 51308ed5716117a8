"""Run one ``ibx`` command as a process of its own, without paying Python's start-up each time.

The story runs about sixty ``ibx`` commands; a fresh interpreter spends most of
a second of CPU importing ibx's libraries before each does a few milliseconds
of work. On POSIX the demo therefore works like a fork server: it imports the
command line's modules once (:func:`preload`) and forks a child per command.
The child is a process of its own like any other: its own argv, environment
(only what the actor has: no ``IBX_*`` of the demo's), working directory,
standard streams and exit code; it shares nothing with the demo but the
modules already in memory. Elsewhere (no ``fork``) each command is spawned as
``python -m exchange.cli``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import signal
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "CommandTimeoutError",
    "check_stop",
    "preload",
    "request_stop",
    "run_ibx",
    "stop_running",
]

_PRELOAD = (
    "exchange.cli",
    "exchange.cli.init",
    "exchange.cli.identity",
    "exchange.cli.policy",
    "exchange.cli.consent",
    "exchange.cli.dataset",
    "exchange.cli.request",
    "exchange.cli.edge",
    "exchange.cli.audit",
    "exchange.cli.ledger",
    "exchange.client",
    "exchange.runtime",
    "exchange.identities",
    "consent",
    "edge_tls",
    "ledger",
    "audit",
)
"""What the commands import (never TenSEAL, MPyC or the policy engine: those run in
``ibx serve`` and the agents, which are started as fresh interpreters)."""

_FORK_LOCK = threading.Lock()
_STOP = threading.Event()
_RUNNING: set[int] = set()
_RUNNING_LOCK = threading.Lock()


class CommandTimeoutError(RuntimeError):
    """The command ran longer than it was given (it was killed)."""


def preload() -> None:
    """Import the command line's modules once, so that each forked command starts warm."""
    if not hasattr(os, "fork"):
        return
    for name in _PRELOAD:
        importlib.import_module(name)


def run_ibx(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float
) -> tuple[int, str, str]:
    """Run ``ibx ARGV``; its exit code, standard output and standard error.

    Raises:
        CommandTimeoutError: it did not finish in ``timeout`` seconds.
    """
    check_stop()
    if not hasattr(os, "fork"):
        try:
            done = subprocess.run(  # noqa: S603 - our own interpreter and module
                [sys.executable, "-m", "exchange.cli", *argv],
                capture_output=True,
                text=True,
                env=dict(env),
                cwd=cwd,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeoutError(str(exc)) from exc
        return done.returncode, done.stdout, done.stderr
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        with _FORK_LOCK:
            pid = os.fork()
        if pid == 0:  # the child: becomes the command, never returns
            _become_ibx(argv, env, cwd, out.fileno(), err.fileno())
        with _RUNNING_LOCK:
            _RUNNING.add(pid)
        killer = threading.Timer(timeout, _kill, args=(pid,))
        killer.daemon = True
        killer.start()
        try:
            _, status = os.waitpid(pid, 0)
        except BaseException:  # interrupted: the command does not outlive the demo
            _kill(pid)
            os.waitpid(pid, 0)
            raise
        finally:
            killer.cancel()
            with _RUNNING_LOCK:
                _RUNNING.discard(pid)
        code = os.waitstatus_to_exitcode(status)
        check_stop()
        if code == -signal.SIGKILL:
            raise CommandTimeoutError(f"killed after {timeout:.0f} s")
        out.seek(0)
        err.seek(0)
        return code, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")


def request_stop() -> None:
    """The demo was told to stop (a signal): every later :func:`check_stop` raises."""
    _STOP.set()


def check_stop() -> None:
    """Raise ``KeyboardInterrupt`` once a stop was requested.

    A signal handler's exception can be lost (raised inside a fork handler or a
    finaliser); the demo also checks this flag before each command and step.

    Raises:
        KeyboardInterrupt: a stop was requested.
    """
    if _STOP.is_set():
        raise KeyboardInterrupt


def stop_running() -> None:
    """Kill every command still running (the demo is stopping); each caller reaps its own."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for pid in running:
        _kill(pid)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _become_ibx(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, out_fd: int, err_fd: int
) -> None:
    """In the forked child: the actor's streams, directory and environment; then ``ibx``."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8")
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["ibx", *argv]
        from exchange.cli import main

        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
    except BaseException:  # the child reports and exits, whatever happened
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
