"""SIGKILL a real appending process at arbitrary moments; the log must still verify."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from exchange.runtime import Runtime
from exchange.settings import Settings


@pytest.mark.parametrize("round_", range(3))
def test_sigkill_leaves_every_acknowledged_entry_and_no_partial_one(
    tmp_path: Path, round_: int
) -> None:
    data = tmp_path / "data"
    Runtime(Settings(data_dir=data)).close()  # migrate once, outside the race
    acked: list[int] = []
    for kill in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.ledger.appender", str(data)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(random.uniform(0.05, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        acked.extend(int(x) for x in out.split())
        assert proc.returncode == -signal.SIGKILL, (round_, kill)
    runtime = Runtime(Settings(data_dir=data))
    try:
        report = runtime.ledger.verify()
        assert acked, "the appender acknowledged nothing before being killed"
        assert max(acked) < report.size
        assert sorted(set(acked)) == list(range(len(set(acked)))) or set(acked) <= set(
            range(report.size)
        )
        entries = runtime.ledger.entries(0, 1000)
        assert [e.index for e in entries] == list(range(min(report.size, 1000)))
    finally:
        runtime.close()
