"""What users of step, opa and gh expect: --version and shell completion."""

from __future__ import annotations

import os
import subprocess
from importlib.metadata import version

import pytest

from tests.zygote import ibx_argv


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ibx_argv(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    done = _run("--version")
    assert done.returncode == 0
    assert done.stdout == f"ibx {version('ibx')}\n"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str) -> None:
    done = _run("completion", shell)
    assert done.returncode == 0, done.stderr
    assert "_IBX_COMPLETE" in done.stdout


def test_an_unknown_shell_is_a_usage_error() -> None:
    done = _run("completion", "tcsh")
    assert done.returncode == 2
    assert "tcsh" in done.stderr


def test_bash_completes_commands_and_subcommands() -> None:
    top = _run(env={"_IBX_COMPLETE": "complete_bash", "COMP_WORDS": "ibx led", "COMP_CWORD": "1"})
    assert top.stdout.split() == ["ledger"]
    sub = _run(
        env={"_IBX_COMPLETE": "complete_bash", "COMP_WORDS": "ibx ledger ver", "COMP_CWORD": "2"}
    )
    assert sub.stdout.split() == ["verify"]
