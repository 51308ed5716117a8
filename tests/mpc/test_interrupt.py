"""Interrupting ``ibx mpc run`` ends every compute party it started.

The real CLI runs in its own session (as in a terminal) on a real data dir,
with enough contributors that the parties' sort lasts while the test looks.
Once the three party processes exist (found by their command line in
/proc), the test interrupts the CLI and then looks for any survivor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import initialised

IBX = Path(sys.executable).parent / "ibx"


def _party_pids(marker: str) -> set[int]:
    """Live processes whose command line is a compute party under ``marker`` (a data dir)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # gone meanwhile
        if state != "Z" and b"_party_main" in cmdline and marker.encode() in cmdline:
            found.add(int(entry.name))
    return found


def _wait_for(predicate: object, timeout: float) -> bool:
    assert callable(predicate)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def _terminal_signals() -> None:
    """SIGINT and SIGHUP as a terminal's foreground job has them (not ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture
def started_job(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``ibx mpc run`` with 300 contributors and ranks, once its three parties run."""
    data = initialised(tmp_path / "data")
    values = tmp_path / "values.json"
    values.write_text(json.dumps({f"ent-{i:03d}": 10.0 + i * 0.37 for i in range(300)}))
    command = [str(IBX), "--data-dir", str(data), "mpc", "run", "--input", str(values)]
    command += ["--stat", "mean", "--ranks", "--deadline", "600"]
    cli = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a terminal's foreground job: Ctrl-C goes to this group
        # as at a terminal, even when this test runs as a background job (SIGINT ignored)
        # or under nohup (SIGHUP ignored)
        preexec_fn=_terminal_signals,  # noqa: PLW1509
    )
    marker = str(data)
    try:
        assert _wait_for(lambda: len(_party_pids(marker)) == 3, 90), "parties never started"
        yield cli, marker
    finally:
        for pid in _party_pids(marker):  # never leave this test's parties behind
            os.kill(pid, signal.SIGKILL)
        if cli.poll() is None:
            cli.kill()
        cli.communicate(timeout=30)


def _assert_no_party_survives(marker: str) -> None:
    survivors: set[int] = set()

    def gone() -> bool:
        survivors.clear()
        survivors.update(_party_pids(marker))
        return not survivors

    assert _wait_for(gone, 5), f"party processes survived the interrupted command: {survivors}"


def test_sigterm_to_the_command_ends_every_party(started_job) -> None:
    cli, marker = started_job
    cli.send_signal(signal.SIGTERM)  # what `kill`, systemd or a CI runner sends
    _, err = cli.communicate(timeout=30)
    assert cli.returncode == 130
    assert b"SIGTERM received; every compute party was stopped" in err
    _assert_no_party_survives(marker)


def test_ctrl_c_at_the_terminal_ends_every_party(started_job) -> None:
    cli, marker = started_job
    os.killpg(cli.pid, signal.SIGINT)  # the terminal signals the foreground process group
    cli.communicate(timeout=30)
    assert cli.returncode == 130  # the CLI's exit status for an interrupt
    _assert_no_party_survives(marker)


def test_sighup_when_the_terminal_closes_ends_every_party(started_job) -> None:
    cli, marker = started_job
    os.killpg(cli.pid, signal.SIGHUP)
    _, err = cli.communicate(timeout=30)
    assert cli.returncode == 130 and b"SIGHUP received" in err
    _assert_no_party_survives(marker)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_to_the_command_still_ends_every_party(started_job) -> None:
    """No handler runs on SIGKILL: the parties asked the kernel to die with their runner."""
    cli, marker = started_job
    cli.kill()
    cli.communicate(timeout=30)
    _assert_no_party_survives(marker)
