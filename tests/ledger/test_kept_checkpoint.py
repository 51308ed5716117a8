"""``ibx ledger verify --checkpoint FILE``: a checkpoint an auditor kept catches what verify cannot.

The operator holds the signing key (encrypted, but usable by the service), so
a log rolled back to an earlier copy, or forked and re-grown, verifies on its
own. A signed checkpoint kept from before proves it: the current tree must
contain the kept one as a prefix.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.in_process import Done, ibx
from tests.zygote import ibx_argv


def _process(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ibx`` in its own process, as an auditor runs it."""
    return subprocess.run(
        [*ibx_argv(), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _ibx(data_dir: Path, *args: str, stdin: str = "") -> Done:
    """``ibx`` through its entry point in this process (setup, and checks of its logic)."""
    return ibx("--data-dir", str(data_dir), *args, stdin=stdin)


def _append(data_dir: Path, tag: str, count: int) -> None:
    if not (data_dir / "deployment.json").exists():
        assert _ibx(data_dir, "init").returncode == 0
    lines = "".join(f'{{"{tag}": {i}}}\n' for i in range(count))
    done = _ibx(data_dir, "ledger", "append", "--type", "demo.reading", stdin=lines)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("kept")
    live = base / "live"
    _append(live, "a", 6)
    early = base / "early"
    shutil.copytree(live, early)  # what the operator could restore later
    _append(live, "b", 6)
    kept = base / "kept.checkpoint"
    done = _ibx(live, "ledger", "checkpoint")
    assert done.returncode == 0, done.stderr
    kept.write_text(done.stdout)
    return {"live": live, "early": early, "kept": kept, "base": base}


def test_a_log_that_grew_is_consistent_with_the_kept_checkpoint(
    history: dict[str, Path], tmp_path: Path
) -> None:
    grown = tmp_path / "grown"
    shutil.copytree(history["live"], grown)
    _append(grown, "c", 5)
    done = _ibx(grown, "ledger", "verify", "--checkpoint", str(history["kept"]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        done.stdout.splitlines()[0],
        "consistent with kept checkpoint size 14",  # two bootstrap officers + 12
    ]
    assert done.stdout.startswith("ok size 19 ")
    same = _ibx(history["live"], "ledger", "verify", "--checkpoint", str(history["kept"]))
    assert same.returncode == 0, same.stderr


def test_a_rolled_back_log_verifies_alone_but_not_against_the_kept_checkpoint(
    history: dict[str, Path], tmp_path: Path
) -> None:
    rolled = tmp_path / "rolled"
    shutil.copytree(history["early"], rolled)
    assert _ibx(rolled, "ledger", "verify").returncode == 0  # the attack works on its own
    done = _process(rolled, "ledger", "verify", "--checkpoint", str(history["kept"]))
    assert done.returncode == 5
    assert "rolled back" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_a_forked_and_regrown_log_is_caught(history: dict[str, Path], tmp_path: Path) -> None:
    fork = tmp_path / "fork"
    shutil.copytree(history["early"], fork)
    _append(fork, "forged", 9)  # re-signed with the deployment's own key
    assert _ibx(fork, "ledger", "verify").returncode == 0
    done = _ibx(fork, "ledger", "verify", "--checkpoint", str(history["kept"]))
    assert done.returncode == 5
    assert "history was rewritten" in done.stderr


def test_a_checkpoint_of_another_log_or_a_forged_one_is_refused(
    history: dict[str, Path], tmp_path: Path
) -> None:
    other = tmp_path / "other"
    _append(other, "x", 3)
    foreign = tmp_path / "foreign.checkpoint"
    foreign.write_text(_ibx(other, "ledger", "checkpoint").stdout)
    done = _ibx(history["live"], "ledger", "verify", "--checkpoint", str(foreign))
    assert done.returncode == 5 and "no signature by" in done.stderr

    edited = tmp_path / "edited.checkpoint"
    text = history["kept"].read_text()
    edited.write_text(text.replace("\n14\n", "\n13\n", 1))
    done = _ibx(history["live"], "ledger", "verify", "--checkpoint", str(edited))
    assert done.returncode == 5 and "does not verify" in done.stderr

    garbage = tmp_path / "garbage.checkpoint"
    garbage.write_text("not a note")
    done = _ibx(history["live"], "ledger", "verify", "--checkpoint", str(garbage))
    assert done.returncode == 5 and len(done.stderr.strip().splitlines()) == 1
