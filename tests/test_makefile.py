"""``make demo`` installs only the product and says first that it takes minutes; ``make test``
adds the development tools; each install is redone when pyproject.toml changes."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _plan(venv: Path, target: str) -> list[str]:
    """What ``make TARGET`` would run with this venv dir (``make -n``: nothing is run)."""
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), f"VENV={venv}", target],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [line for line in done.stdout.splitlines() if not line.startswith("make")]


def _installs(plan: list[str]) -> list[str]:
    return [line for line in plan if "pip install" in line]


def test_demo_says_the_first_install_takes_minutes_then_installs_only_the_product(
    tmp_path: Path,
) -> None:
    plan = _plan(tmp_path / "venv", "demo")
    [install] = _installs(plan)
    assert install.rstrip().endswith("-e .")  # no [dev]: no pytest, mypy, ruff...
    said = next(i for i, line in enumerate(plan) if "first install takes a few minutes" in line)
    assert said < plan.index(install)
    assert plan[-1].endswith("-m exchange.demo")


def test_test_installs_the_development_tools(tmp_path: Path) -> None:
    [install] = _installs(_plan(tmp_path / "venv", "test"))
    assert "'.[dev]'" in install


def test_stamps_switch_from_product_to_development_and_follow_pyproject(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    product, dev = venv / ".installed-product", venv / ".installed-dev"
    product.touch()  # a demo install, newer than pyproject.toml
    assert _installs(_plan(venv, "demo")) == []
    [install] = _installs(_plan(venv, "lint"))  # switching to tests installs the tools
    assert "'.[dev]'" in install
    dev.touch()  # a development install also serves the demo
    assert _installs(_plan(venv, "demo")) == []
    assert _installs(_plan(venv, "lint")) == []
    for stamp in (product, dev):  # pyproject.toml changed since: both reinstall
        os.utime(stamp, (0, 0))
    assert len(_installs(_plan(venv, "demo"))) == 1
    assert len(_installs(_plan(venv, "lint"))) == 1
