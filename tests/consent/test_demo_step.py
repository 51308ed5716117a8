"""The consent demo step runs on a real runtime and tells the revocation story."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.demo import Scene, consent_step
from exchange.runtime import Runtime


def test_consent_demo_step(
    runtime: Runtime, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    consent_step.run(Scene(runtime=runtime, work_dir=tmp_path))
    out = capsys.readouterr().out
    assert "-> 3 of 3 owners may be included" in out
    assert "refused (revoked)" in out
    assert "-> 2 of 3 owners may be included" in out
    assert "job demo-job-1 stops before release" in out
    runtime.ledger.verify()
