"""The command line starts at once: ``--help`` and simple commands import only what they use."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from exchange.cli._lazy import SUBCOMMANDS

HEAVY = (
    "tenseal",
    "mpyc",
    "numpy",
    "fastapi",
    "sqlalchemy",
    "regopy",
    "alembic",
    "opendp",
    "casbin",
)

_PROBE = """
import sys
sys.argv = ["ibx", *{args!r}]
from exchange.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
print("EXIT", code)
print("LOADED", " ".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


def _run(args: list[str], heavy: tuple[str, ...] = HEAVY) -> tuple[set[str], int, str]:
    """``ibx ARGS`` in a fresh interpreter: which of ``heavy`` it loaded, its exit code, and
    what it printed before the probe's lines."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(args=args, heavy=heavy)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    lines = done.stdout.splitlines()
    line = [x for x in lines if x.startswith("LOADED")]
    assert line, done.stdout + done.stderr
    exit_line = [x for x in lines if x.startswith("EXIT ")][-1]
    printed = done.stdout[: done.stdout.rindex(exit_line)]
    assert int(exit_line.split()[1]) == 0 or done.stderr, done.stderr
    return set(line[-1].split()[1:]), int(exit_line.split()[1]), printed


def _loaded(args: list[str], heavy: tuple[str, ...] = HEAVY) -> set[str]:
    return _run(args, heavy)[0]


@pytest.mark.parametrize("args", [["--help"], []], ids=["help", "bare"])
def test_help_imports_no_heavy_library(args: list[str]) -> None:
    assert _loaded(args) == set()


def test_a_group_help_loads_only_its_own_module() -> None:
    assert not _loaded(["ledger", "--help"]) & {"tenseal", "mpyc", "numpy", "fastapi", "regopy"}


def test_a_ledger_command_loads_neither_compute_nor_policy_nor_http(tmp_path: Path) -> None:
    loaded = _loaded(["--data-dir", str(tmp_path / "d"), "ledger", "checkpoint"])
    assert "sqlalchemy" in loaded  # it did open the database
    assert not loaded & {"tenseal", "mpyc", "numpy", "fastapi", "regopy", "opendp"}


@pytest.mark.parametrize("sub", SUBCOMMANDS, ids=[s.name for s in SUBCOMMANDS])
def test_the_lazy_table_matches_each_command(sub) -> None:
    target = getattr(importlib.import_module(sub.module), sub.attr)
    if isinstance(target, typer.Typer):
        assert target.info.help == sub.help
    else:
        assert (target.__doc__ or "").strip().splitlines()[0] == sub.help
    assert sub.load().name == sub.name


def test_every_subcommand_is_listed_and_runs_its_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    for sub in SUBCOMMANDS:
        assert sub.name in done.stdout
    policy = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "policy", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "propose" in policy.stdout


def test_remote_user_commands_load_no_engine_framework_or_database_layer(
    tmp_path: Path,
) -> None:
    """A remote user command is a thin client: the exchange authorizes and decides, so
    ``policy list`` and ``ledger checkpoint`` with ``--exchange URL`` load no policy engine,
    compute library, web framework or database layer (issue 10: simple commands start at
    once). Locally the same app runs in-process, its decision point included."""
    from tests.in_process import ibx
    from tests.server import running_exchange

    data = tmp_path / "d"
    certs = tmp_path / "certs"
    assert ibx("--data-dir", str(data), "init").returncode == 0  # setup: in this process
    lister_key = tmp_path / "lister.key"
    assert ibx("identity", "keygen", "--out", str(lister_key)).returncode == 0
    create = ["identity", "create", "--role", "auditor", "--name", "lister"]
    create += ["--public-key", str(lister_key), "--key", str(data / "bootstrap" / "officer-1.key")]
    created = ibx("--data-dir", str(data), *create, "--cert-out", str(certs))
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    with running_exchange(data) as url:
        args = ["policy", "list", "--token", token, *url.cli_args()]
        args += [
            "--client-cert",
            str(certs / "lister.crt"),
            "--client-key",
            str(certs / "lister.key"),
        ]
        # each a fresh interpreter running the command to its end
        loaded, listed, _ = _run(["--data-dir", str(data), *args])
        checkpoint = ["ledger", "checkpoint", "--token", token, *args[4:]]
        loaded_checkpoint, read, printed = _run(
            ["--data-dir", str(data), *checkpoint], heavy=(*HEAVY, "rich", "pygments")
        )
    assert listed == 0  # it did ask the exchange, and was answered
    assert read == 0
    assert printed.startswith("ibx.localhost/ledger\n")
    assert not loaded & set(HEAVY), loaded
    # nor httpx's own command-line tool (Rich, Pygments) when the output is not a terminal
    assert not loaded_checkpoint, loaded_checkpoint


def test_policies_still_gives_its_rego_names_on_first_use() -> None:
    """The package's lazy names resolve (and an unknown one is still an AttributeError)."""
    code = (
        "import sys, policies\n"
        "assert 'regopy' not in sys.modules\n"
        "assert policies.CompiledPolicy.__name__ == 'CompiledPolicy'\n"
        "assert 'regopy' in sys.modules and 'ALLOWED_BUILTINS' in policies.__all__\n"
        "assert policies.ALLOWED_BUILTINS\n"
        "try:\n    policies.NoSuchName\nexcept AttributeError:\n    pass\n"
        "else:\n    raise SystemExit('no AttributeError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
