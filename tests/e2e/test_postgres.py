"""The whole scenario on PostgreSQL: every package's migrations and flows, not only the ledger."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.in_process import ibx as in_process
from tests.zygote import ibx_argv

pytestmark = pytest.mark.postgres


@pytest.mark.slow  # the same story as tests/e2e/test_demo.py; `make test` keeps the smaller
# PostgreSQL tests below and tests/exchange/test_backup.py's, `make test-slow` runs this one
def test_demo_runs_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exchange.demo"],
        cwd=tmp_path,
        env={**os.environ, "IBX_DATABASE_URL": postgres_url},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo finished" in done.stdout
    assert not (tmp_path / ".ibx-demo" / "data" / "ibx.db").exists()


def test_cli_ledger_and_identities_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """Real processes: each opens the PostgreSQL database and ends (in this process a
    command's connections would outlive it)."""
    env = {**os.environ, "IBX_DATABASE_URL": postgres_url}

    def ibx(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ibx_argv(), "--data-dir", str(tmp_path / "d"), *args],
            input=stdin,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert ibx("init").returncode == 0
    # the same data dir without IBX_DATABASE_URL would be a SQLite deployment (this one
    # opens no database: in this process)
    wrong_kind = in_process("--data-dir", str(tmp_path / "d"), "ledger", "vkey")
    assert wrong_kind.returncode == 1
    assert "this deployment's database is postgresql" in wrong_kind.stderr
    created = ibx("identity", "create", "--role", "enterprise", "--name", "ent-1",
                  "--industry", "lithium-battery")  # fmt: skip
    assert created.returncode == 0, created.stderr
    appended = ibx("ledger", "append", "--type", "pg.test", stdin='{"a":1}\n{"b":2}\n')
    assert appended.returncode == 0, appended.stderr
    # indexes 0 and 1 are init's bootstrap officers, 2 the enterprise
    assert appended.stdout.split() == ["3", "4"]
    verified = ibx("ledger", "verify")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("ok size 5 ")
