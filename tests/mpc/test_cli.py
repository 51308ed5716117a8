"""``ibx mpc``: HE, MPC and PSI jobs from the command line; mpyc.runtime stays out of the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from exchange.cli import app


def test_cli_and_server_import_graphs_do_not_load_mpyc_runtime() -> None:
    code = (
        "import sys; sys.argv = ['x', '-M', '3', '--ssl']; "
        "import exchange.cli, exchange.app, mpc; "
        "assert 'mpyc.runtime' not in sys.modules, 'mpyc.runtime imported'; "
        "assert sys.argv == ['x', '-M', '3', '--ssl']"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_he_mpc_and_psi_commands(tmp_path: Path) -> None:
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"a": 12.0, "b": 30.5, "c": 22.0, "d": 18.0, "e": 25.0}))
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path / "data"), "mpc"]
    he = runner.invoke(app, [*base, "he", "--input", str(values), "--operation", "mean"])
    assert he.exit_code == 0, he.output
    released = json.loads(he.output)
    assert released["cohort"] == 5 and abs(released["values"][0] - 21.5) < 1e-6

    exact = runner.invoke(app, [*base, "run", "--input", str(values), "--stat", "median"])
    assert exact.exit_code != 0  # an exact median is one enterprise's value
    assert "one contributor's value" in str(exact.exception)
    coarse = ["--stat", "median", "--ranks", "--coarsen-step", "0.5"]
    mpc_run = runner.invoke(app, [*base, "run", "--input", str(values), *coarse])
    assert mpc_run.exit_code == 0, mpc_run.output
    lines = mpc_run.output.splitlines()
    assert json.loads(lines[0])["statistics"]["median"] == [22.0]
    assert "b sees: 100.0% of the others are below it" in lines

    left, right = tmp_path / "l.txt", tmp_path / "r.txt"
    left.write_text("acme\nglobex\ninitech\n")
    right.write_text("globex\ninitech\numbrella\n")
    psi = runner.invoke(app, ["mpc", "psi", "--left", str(left), "--right", str(right)])
    assert psi.exit_code == 0, psi.output
    assert "left learns overlap size 2" in psi.output and "globex" not in psi.output


def test_he_drops_bad_contributors_and_charges_dp_budgets(tmp_path: Path) -> None:
    from mpc.errors import PrivacyBudgetExhaustedError

    values = tmp_path / "values.json"
    good = {f"e{i}": 10.0 + i for i in range(5)}
    values.write_text(json.dumps({**good, "e-bad": "lots"}))
    runner = CliRunner()
    args = ["--data-dir", str(tmp_path / "data"), "mpc", "he", "--input", str(values)]
    args += ["--epsilon", "1", "--bound", "100", "--budget", "1.5"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    # the requester learns how many were left out, never who or why
    assert "left out: 1 contributors" in first.output and "e-bad" not in first.output
    released = json.loads(first.output.splitlines()[-1])
    assert released["cohort"] == 5 and released["epsilon"] == 1.0
    assert released["left_out"] == 1
    # the same question again: the same noisy answer, and no budget spent
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.output.splitlines()[-1])["values"] == released["values"]
    second = runner.invoke(app, [*args, "--field", "other"])
    assert isinstance(second.exception, PrivacyBudgetExhaustedError)


def test_he_with_a_dominance_policy_is_refused(tmp_path: Path) -> None:
    from mpc.errors import EngineChoiceError

    values = tmp_path / "values.json"
    values.write_text(json.dumps({f"e{i}": 10.0 + i for i in range(5)}))
    args = ["--data-dir", str(tmp_path / "data"), "mpc", "he", "--input", str(values)]
    refused = CliRunner().invoke(app, [*args, "--dominance", "1:85"])
    assert isinstance(refused.exception, EngineChoiceError)
