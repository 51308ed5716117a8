"""Progress of long work: drawn on a terminal's stderr, never in pipes, files or tests."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from core.events import Event
from core.keys import Ed25519Signer
from exchange.cli._progress import Progress
from ledger import Ledger, LedgerConfig, MemoryLedgerBackend
from ledger._integrity import PROGRESS_EVERY


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100, color_system=None), out


def test_the_renderer_on_a_terminal_shows_every_step_spinner_and_count() -> None:
    console, out = _terminal()
    progress = Progress.on(console)
    assert progress.enabled
    progress.step("dealing shares to 3 parties")
    with progress.working("3 parties computing over TLS"):
        pass
    with progress.counting("verifying entries", total=40) as advance:
        advance(20, 40)
        advance(40, 40)
    shown = out.getvalue()
    assert "▸ dealing shares to 3 parties" in shown
    assert "3 parties computing over TLS" in shown
    assert "verifying entries" in shown and "40/40" in shown


def test_a_stream_that_is_not_a_terminal_gets_nothing() -> None:
    for stream in (io.StringIO(), Path(os.devnull).open("w")):  # noqa: SIM115 -- closed below
        with stream:
            progress = Progress.for_stderr(stream)
            assert not progress.enabled
            progress.step("a step")
            with progress.working("work"), progress.counting("count", 5) as advance:
                advance(5, 5)
            if isinstance(stream, io.StringIO):
                assert stream.getvalue() == ""


def test_a_closed_stream_is_not_a_terminal() -> None:
    stream = io.StringIO()
    stream.close()
    assert not Progress.for_stderr(stream).enabled


def test_verify_reports_how_far_it_got_and_finishes_at_the_size() -> None:
    ledger = Ledger(
        MemoryLedgerBackend(), Ed25519Signer("t", bytes(range(32))), LedgerConfig(origin="t/log")
    )
    size = PROGRESS_EVERY + 5
    ledger.append([Event("test.event", "a", {"n": i}) for i in range(size)])
    seen: list[tuple[int, int]] = []
    report = ledger.verify(progress=lambda done, total: seen.append((done, total)))
    assert report.size == size
    assert seen == [(PROGRESS_EVERY, size), (size, size)]


def _ibx(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "exchange.cli", "--data-dir", str(data), *args]


def test_ledger_verify_in_a_pipe_prints_only_its_result(cli_data_dir: Path) -> None:
    done = subprocess.run(
        _ibx(cli_data_dir, "ledger", "verify"),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stderr == ""
    assert done.stdout.startswith("ok size ") and len(done.stdout.splitlines()) == 1


def test_ledger_verify_on_a_terminal_draws_progress_on_stderr_only(cli_data_dir: Path) -> None:
    """A real pseudo-terminal as stderr: the bar appears there, stdout stays the result."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            _ibx(cli_data_dir, "ledger", "verify"),
            stdout=subprocess.PIPE,
            stderr=follower,
            env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
        )
        os.close(follower)
        drawn = b""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                drawn += chunk
            elif proc.poll() is not None:
                break
        stdout, _ = proc.communicate(timeout=60)
    finally:
        os.close(leader)
    assert proc.returncode == 0
    assert b"verifying entries" in drawn
    assert stdout.decode().startswith("ok size ") and len(stdout.splitlines()) == 1


def test_what_the_work_prints_stays_on_stdout_unless_stdout_is_the_same_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console, drawn = _terminal()
    with Progress(console, shares_stdout=False).working("a step"):
        print("the result")
    assert capsys.readouterr().out == "the result\n" and "the result" not in drawn.getvalue()
    console, drawn = _terminal()
    with Progress(console, shares_stdout=True).working("a step"):
        print("the story")
    assert capsys.readouterr().out == "" and "the story" in drawn.getvalue()
