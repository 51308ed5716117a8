"""Settings refuse unsafe values; nothing reads the environment at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from exchange.settings import Settings
from tests.conftest import initialised
from tests.zygote import ibx_argv


def test_prod_requires_an_explicit_master_key(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="IBX_MASTER_KEY"):
        Settings(env="prod", data_dir=tmp_path)


def test_placeholder_master_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(master_key="changeme", data_dir=tmp_path)


@pytest.mark.parametrize("origin", ["", "has space", "a+b"], ids=["empty", "space", "plus"])
def test_bad_ledger_origins_are_refused(origin: str) -> None:
    with pytest.raises(ValidationError):
        Settings(ledger_origin=origin)


def test_database_url_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    url = Settings(data_dir=tmp_path).resolved_database_url()
    assert url == f"sqlite:///{(tmp_path / 'ibx.db').resolve()}"


def test_importing_everything_reads_no_environment(tmp_path: Path) -> None:
    """A broken IBX_ variable must not matter until settings are built."""
    code = "import exchange, exchange.cli, exchange.app; print('ok')"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"IBX_TOKEN_TTL_DAYS": "not-a-number", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_cli_reports_bad_settings_in_one_line(tmp_path: Path) -> None:
    """Through the entry point in this process (a real process: tests/exchange/test_exit_codes)."""
    from tests.in_process import ibx

    done = ibx("--data-dir", str(tmp_path), "ledger", "vkey", env={"IBX_TOKEN_TTL_DAYS": "0"})
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1


def test_data_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings(data_dir=Path("rel/dir")).data_dir == tmp_path.resolve() / "rel" / "dir"


def test_mpc_run_works_with_a_relative_data_dir(tmp_path: Path) -> None:
    import json
    import os

    (tmp_path / "values.json").write_text(json.dumps({f"p{i}": 40.0 + i for i in range(5)}))
    done = subprocess.run(
        [
            *ibx_argv(),
            "mpc",
            "run",
            "--input",
            "values.json",
            "--stat",
            "mean",
        ],
        cwd=tmp_path,
        env={**os.environ, "IBX_DATA_DIR": str(initialised(tmp_path / ".ibx"))},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[0])
    assert abs(result["statistics"]["mean"][0] - 42.0) < 1e-3


def test_a_refused_secret_is_not_echoed_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(master_key="changeme", data_dir=tmp_path)
    assert "changeme" not in str(caught.value)
