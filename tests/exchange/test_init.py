"""``ibx init`` creates a deployment; nothing else does, and what it fixed cannot drift."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from exchange.datadir import RECORD_NAME
from tests.in_process import Done, ibx
from tests.zygote import ibx_argv


def _ibx(data: Path, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> Done:
    """``ibx`` through its entry point in this process (no ``IBX_*`` but ``env``)."""
    return ibx("--data-dir", str(data), *args, env=env, stdin=stdin)


def _process(data: Path, *args: str, env: dict[str, str] | None = None, stdin: str = ""):
    """``ibx`` in its own process: what a fresh process reads from the data dir."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
    return subprocess.run(
        [*ibx_argv(), "--data-dir", str(data), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "command",
    [["ledger", "verify"], ["ledger", "checkpoint"], ["identity", "list"], ["status"]],
    ids=["verify", "checkpoint", "identity", "status"],
)
def test_a_mistyped_data_dir_is_refused_and_nothing_is_created(
    tmp_path: Path, command: list[str]
) -> None:
    typo = tmp_path / "dtaa"
    done = _ibx(typo, *command)
    assert done.returncode == 1, done.stdout
    assert done.stderr == (
        f"ibx: not an ibx data dir: {typo} was never initialised (no {RECORD_NAME}); "
        f"create a deployment there with: ibx --data-dir {typo} init\n"
    )
    assert not typo.exists()


def test_init_once_then_every_command_opens_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = _process(data, "init", env={"IBX_LEDGER_ORIGIN": "gov.example/ibx"})
    assert done.returncode == 0, done.stderr
    assert "origin      gov.example/ibx" in done.stdout
    assert (data / RECORD_NAME).stat().st_mode & 0o077 == 0
    again = _process(data, "init")
    assert again.returncode == 1 and "already holds a deployment" in again.stderr, again.stderr
    # the origin was fixed at init: unset, it is taken from the record
    appended = _process(data, "ledger", "append", "--type", "note", stdin='{"a": 1}\n')
    assert appended.returncode == 0, appended.stderr
    checkpoint = _process(data, "ledger", "checkpoint").stdout
    assert checkpoint.startswith("gov.example/ibx\n3\n")  # two bootstrap officers, the note
    # set to something else, it is refused with the stored value named
    other = _process(data, "ledger", "verify", env={"IBX_LEDGER_ORIGIN": "other.example/ibx"})
    assert other.returncode == 1
    assert "this deployment's origin is 'gov.example/ibx'" in other.stderr


def test_a_missing_or_foreign_master_key_is_refused_never_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _ibx(data, "init").returncode == 0
    key = (data / "master.key").read_bytes()
    (data / "master.key").unlink()  # a restore that forgot the key file
    missing = _ibx(data, "ledger", "verify")
    assert missing.returncode == 1 and "no master key" in missing.stderr
    assert not (data / "master.key").exists()  # no new key was minted
    foreign = _ibx(data, "ledger", "verify", env={"IBX_MASTER_KEY": os.urandom(32).hex()})
    assert foreign.returncode == 1 and "not this deployment's" in foreign.stderr
    (data / "master.key").write_bytes(key)
    (data / "master.key").chmod(0o600)
    assert _ibx(data, "ledger", "verify").returncode == 0


def test_a_data_dir_from_before_records_is_adopted_if_it_agrees(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"IBX_LEDGER_ORIGIN": "old.example/ibx"}
    assert _ibx(data, "init", env=env).returncode == 0
    assert _ibx(data, "ledger", "append", "--type", "n", env=env, stdin="{}\n").returncode == 0
    (data / RECORD_NAME).unlink()  # as a data dir made before records existed
    assert _ibx(data, "ledger", "verify", env=env).returncode == 1
    wrong = _ibx(data, "init")  # the default origin is not this ledger's
    assert wrong.returncode == 1 and "set IBX_LEDGER_ORIGIN=old.example/ibx" in wrong.stderr
    assert not (data / RECORD_NAME).exists()
    adopted = _ibx(data, "init", env=env)
    assert adopted.returncode == 0, adopted.stderr
    assert _ibx(data, "ledger", "verify").stdout.startswith("ok size 3 ")  # officers kept
    assert "no bootstrap officers registered" in adopted.stdout


def test_serve_init_creates_its_data_dir_explicitly(tmp_path: Path) -> None:
    import httpx

    from tests.server import running_exchange

    data = tmp_path / "fresh"
    with running_exchange(data) as base:  # runs `ibx serve --init`
        assert httpx.get(f"{base}/readyz", verify=base.verify()).status_code == 200
    assert (data / RECORD_NAME).is_file()
