"""`make demo`'s scenario runs to the end on the embedded defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exchange.demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo finished" in done.stdout
    assert "inclusion proof verified" in done.stdout
    # the API step: HTTPS, refusals by the pack (403) and by authentication (401), no noise
    assert "the exchange serves HTTPS on https://127.0.0.1:" in done.stdout
    assert "admin-qian (sysadmin) reading consent receipts: HTTP 403 forbidden" in done.stdout
    assert "separation of duties: sysadmin may not consent_read_all" in done.stdout
    assert "officer-wang without its client certificate: HTTP 401" in done.stdout
    assert "Request: " not in done.stdout + done.stderr  # no per-request Casbin log lines
