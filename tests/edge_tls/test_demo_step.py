"""The ``make demo`` edge step runs on its own fresh runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.demo import Scene, edge_step
from exchange.runtime import Runtime
from exchange.settings import Settings


def test_edge_demo_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runtime = Runtime.initialise(
        Settings(data_dir=tmp_path / "data", ledger_origin="demo.test/ledger")
    )
    try:
        edge_step.run(Scene(runtime=runtime, work_dir=tmp_path))
    finally:
        runtime.close()
    out = capsys.readouterr().out
    assert "enrolled over EST" in out
    assert "HTTP 401 bootstrap token refused" in out
    assert "opened it with its own key: [['kiln-3', '412.5', '120']" in out
    assert "same connection: HTTP 401" in out
