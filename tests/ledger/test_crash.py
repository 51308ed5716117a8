"""SIGKILL a real appending process at arbitrary moments; the log must still verify."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from exchange.runtime import Runtime
from exchange.settings import Settings


@pytest.mark.parametrize(
    "round_",
    [0, *(pytest.param(n, marks=pytest.mark.slow) for n in (1, 2))],
    ids=str,
)  # three kills at random moments per round; `make test-slow` runs two more rounds
def test_sigkill_leaves_every_acknowledged_entry_and_no_partial_one(
    tmp_path: Path, round_: int
) -> None:
    data = tmp_path / "data"
    Runtime.initialise(Settings(data_dir=data)).close()  # once, outside the race
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
        assert set(acked) <= set(range(report.size)), "an acknowledged entry was lost"
        entries = [
            e for start in range(0, report.size, 1000) for e in runtime.ledger.entries(start, 1000)
        ]
        assert [e.index for e in entries] == list(range(report.size))
        # No partial batch: a batch is one append (one time stamp); it is all there or absent.
        counts: dict[tuple[datetime, int], int] = {}
        for e in entries:
            batch = e.payload["batch"]
            assert isinstance(batch, int)
            counts[(e.time, batch)] = counts.get((e.time, batch), 0) + 1
        for (_, batch), count in counts.items():
            assert count == 1 + batch % 50, f"batch {batch} holds {count} of {1 + batch % 50}"
    finally:
        runtime.close()
