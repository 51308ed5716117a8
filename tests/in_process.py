"""``ibx`` run through its real entry point inside the test process.

:func:`ibx` calls :func:`exchange.cli.main` — argument parsing, the one-line
error handling and the exit codes included — with its own argv, stdin,
environment and captured output, as a user's process would have them. It
costs milliseconds where a new interpreter costs a second or more (importing
the API, the engines and the database layer), so a test uses it for setup and
for checks whose subject is the command's logic; a test whose subject is the
process itself (signals, what reaches argv or the environment, what a fresh
interpreter imports, a crash) keeps ``subprocess``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Done:
    """What a run of ``ibx`` left: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _environment(env: Mapping[str, str] | None) -> Iterator[None]:
    """``os.environ`` without any ``IBX_*`` variable, plus ``env``, for the block."""
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith("IBX_")]:
            del os.environ[name]
        os.environ.update(env or {})
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _databases_closed_after() -> Iterator[None]:
    """Every :class:`core.db.Database` the command opens has its pool closed when it ends,
    as the end of its process would (no connection outlives the command here either)."""
    from core.db import Database

    opened: list[Database] = []
    original = Database.__init__

    def tracked(self: Database, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        opened.append(self)

    Database.__init__ = tracked  # type: ignore[method-assign]
    try:
        yield
    finally:
        Database.__init__ = original  # type: ignore[method-assign]
        for database in opened:
            database.dispose()


def ibx(*argv: str, stdin: str = "", env: Mapping[str, str] | None = None) -> Done:
    """``ibx ARGV`` in this process with ``stdin`` as its standard input and ``env`` added
    to an environment cleared of ``IBX_*`` variables; never raises for a failed command
    (an exception :func:`exchange.cli.main` lets through would be a traceback, and fails
    the test).

    Raises:
        Exception: whatever ``ibx`` itself would have died of with a traceback.
    """
    from exchange.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_stdin = sys.argv, sys.stdin
    sys.argv = ["ibx", *argv]
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
    try:
        with (
            _environment(env),
            _databases_closed_after(),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                main()
                code: int | str | None = 0
            except SystemExit as exited:
                code = exited.code
    finally:
        sys.argv, sys.stdin = saved_argv, saved_stdin
    if code is None:
        code = 0
    elif not isinstance(code, int):
        err.write(f"{code}\n")
        code = 1
    return Done(code, out.getvalue(), err.getvalue())
