"""``ibx mpc``: HE, MPC and PSI jobs from the command line; mpyc.runtime stays out of the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from exchange.cli import app
from mpc import MpcStatistic, mpc_precision
from tests.conftest import initialised
from tests.in_process import Done, ibx


@pytest.fixture(autouse=True)
def _deployment(tmp_path: Path) -> None:
    """Each test's ``tmp_path/data`` is a deployment, as ``ibx init`` makes it."""
    initialised(tmp_path / "data")


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
    assert not (tmp_path / "data" / "mpc" / "party0" / "jobs").exists()  # refused before
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


# -- every HE operation from the command line; malformed input refused (issue 9 §2) ------


def _he(tmp_path: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["--data-dir", str(tmp_path / "data"), "mpc", "he", "--min-cohort", "3", *args]
    )
    assert result.exit_code == 0, result.output
    released: dict[str, Any] = json.loads(result.output.splitlines()[-1])
    return released


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_every_he_operation_runs_from_the_command_line(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    names = [f"e{i}" for i in range(5)]
    vectors = rng.uniform(-100, 100, size=(5, 3))
    values = _write(tmp_path, "v.json", json.dumps(dict(zip(names, vectors.tolist(), strict=True))))

    variance = _he(tmp_path, "--operation", "variance", "--input", values, "--bound", "100")
    assert np.allclose(variance["values"], [*vectors.mean(axis=0), *vectors.var(axis=0)])

    weights = dict(zip(names, [1.0, 2.0, 0.5, 1.5, 1.0], strict=True))
    weight_file = _write(tmp_path, "w.json", json.dumps(weights))
    weighted = _he(
        tmp_path, "--operation", "weighted_sum", "--input", values, "--weights", weight_file
    )
    assert np.allclose(weighted["values"], np.array(list(weights.values())) @ vectors)

    records = {name: rng.uniform(0, 100, size=40).tolist() for name in names}
    hist_file = _write(tmp_path, "h.json", json.dumps(records))
    hist = _he(tmp_path, "--operation", "histogram", "--input", hist_file, "--bins", "0,25,50,100")
    expected, _ = np.histogram(np.concatenate(list(records.values())), bins=[0, 25, 50, 100])
    assert hist["values"] == expected.tolist()

    parts, xs, ys = {}, [], []
    for name in names:
        x = rng.uniform(0, 10, size=(4, 2))
        y = 1.5 + x @ np.array([2.0, -0.5]) + rng.normal(0, 0.1, size=4)
        parts[name] = {"x": x.tolist(), "y": y.tolist()}
        xs.append(x)
        ys.append(y)
    reg_file = _write(tmp_path, "r.json", json.dumps(parts))
    regression = _he(tmp_path, "--operation", "linear_regression", "--input", reg_file)
    design = np.hstack([np.ones((20, 1)), np.vstack(xs)])
    lstsq, *_ = np.linalg.lstsq(design, np.concatenate(ys), rcond=None)
    assert np.allclose(regression["values"], lstsq, rtol=1e-9, atol=1e-9)

    counts = _write(tmp_path, "c.json", json.dumps({n: [i, 2 * i] for i, n in enumerate(names)}))
    assert _he(tmp_path, "--operation", "count", "--input", counts)["values"] == [10.0, 20.0]


def _ibx(tmp_path: Path, *args: str) -> Done:
    """``ibx mpc he`` through the console script's entry point in this process (its one-line
    errors and exit codes)."""
    return ibx("--data-dir", str(tmp_path / "data"), "mpc", "he", "--min-cohort", "3", *args)


MALFORMED_INPUTS = {
    # name: (operation, input file text, extra options, the contributor the error names)
    "duplicate-name": ("sum", '{"a": 1, "b": 2, "c": 3, "b": 4}', (), "b"),
    "duplicate-in-regression-object": (
        "linear_regression",
        '{"a": {"x": [[1]], "y": [2]}, "b": {"x": [[1]], "y": [2], "y": [3]}}',
        (),
        "b",
    ),
    "inconsistent-length": ("mean", '{"a": [1, 2], "b": [1, 2], "c": [1, 2, 3]}', (), "c"),
    "scalar-among-vectors": ("variance", '{"a": [1, 2], "b": 5, "c": [1, 2]}', (), "b"),
    "inconsistent-features": (
        "linear_regression",
        '{"a": {"x": [[1, 2]], "y": [1]}, "b": {"x": [[1, 2], [3]], "y": [1, 2]}}',
        (),
        "b",
    ),
    "rows-without-targets": ("linear_regression", '{"a": {"x": [[1], [2]], "y": [1]}}', (), "a"),
}


@pytest.mark.parametrize("case", MALFORMED_INPUTS.values(), ids=MALFORMED_INPUTS.keys())
def test_he_refuses_malformed_input_naming_the_contributor(
    tmp_path: Path, case: tuple[str, str, tuple[str, ...], str]
) -> None:
    operation, text, extra, culprit = case
    path = _write(tmp_path, "in.json", text)
    refused = _ibx(tmp_path, "--operation", operation, "--input", path, *extra)
    assert refused.returncode == 2, refused.stdout
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and f"contributor {culprit!r}" in lines[0], refused.stderr
    assert refused.stdout == ""  # no job ran: nothing released


def test_he_refuses_a_contributor_weighted_twice(tmp_path: Path) -> None:
    values = _write(tmp_path, "v.json", '{"a": 1, "b": 2, "c": 3}')
    weights = _write(tmp_path, "w.json", '{"a": 1, "b": 2, "c": 1, "a": 9}')
    refused = _ibx(tmp_path, "--operation", "weighted_sum", "--input", values, "--weights", weights)
    assert refused.returncode == 2
    assert (
        refused.stderr.strip()
        == "ibx: duplicate contributor: contributor 'a': is given twice in the weights"
    )


# -- released numbers printed to the precision the engine guarantees (issue 10) ----------


def _decimals(value: float) -> int:
    """Decimal places in the number as JSON prints it (``0.1666667`` -> 7)."""
    exponent = Decimal(json.dumps(value)).as_tuple().exponent
    assert isinstance(exponent, int)
    return max(-exponent, 0)


def test_an_mpc_mean_prints_the_digits_its_resolution_guarantees_and_no_more(
    tmp_path: Path,
) -> None:
    """1/6 is 0.16666666666666666 in float64; at resolution 1e-6 seven decimals are all it has."""
    values = _write(tmp_path, "v.json", json.dumps({"a": 0.1, "b": 0.2, "c": 0.2}))
    result = CliRunner().invoke(
        app,
        [
            *("--data-dir", str(tmp_path / "data"), "mpc", "run", "--input", values),
            *("--stat", "mean", "--stat", "sum", "--stat", "variance", "--stat", "count"),
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.output.splitlines()[0]
    released = json.loads(text)["statistics"]
    q = Fraction(1, 10**6)  # bound 1e12 (the default): resolution 10^(12-18)
    inputs = [Fraction(0.1), Fraction(0.2), Fraction(0.2)]
    exact_mean = sum(inputs, Fraction(0)) / 3
    exact_variance = sum(((x - exact_mean) ** 2 for x in inputs), Fraction(0)) / 3

    assert len(repr(float(exact_mean))) == len("0.16666666666666666")  # the noise float64 has
    [mean] = released["mean"]
    assert mean == 0.1666667 and _decimals(mean) == 7
    assert abs(Fraction(mean) - exact_mean) <= q / 2 + Fraction(1, 2 * 10**7)
    [total] = released["sum"]
    assert total == 0.5 and abs(Fraction(total) - sum(inputs, Fraction(0))) <= 3 * q / 2
    [variance] = released["variance"]
    sigma_bound = Fraction(0.05)  # σ ≈ 0.0471
    guarantee = sigma_bound * q + q * q / 4
    assert _decimals(variance) <= 8
    assert abs(Fraction(variance) - exact_variance) <= guarantee + Fraction(1, 2 * 10**8)
    assert released["count"] == [3] and '"count": [3]' in text  # an integer, not 3.0


def test_an_he_mean_prints_no_digit_below_its_guarantee(tmp_path: Path) -> None:
    values = _write(tmp_path, "v.json", json.dumps({f"e{i}": 0.1 * (i + 1) for i in range(5)}))
    released = _he(tmp_path, "--operation", "mean", "--input", values, "--bound", "1")
    [mean] = released["values"]
    guarantee = Fraction(1, 2**45)  # within 2^-45·bound of the exact mean
    assert _decimals(mean) <= 14  # the decimal place of 2^-45 ≈ 2.8e-14
    exact = sum((Fraction(0.1 * (i + 1)) for i in range(5)), Fraction(0)) / 5
    assert abs(Fraction(mean) - exact) <= guarantee + Fraction(1, 2 * 10**14)
    assert mean == 0.3


PRINTED = {
    # name: (precision, value, printed)
    "mpc-mean-0.1+0.2": (
        lambda: mpc_precision(MpcStatistic.MEAN, 0.3, bound=1e12, cohort=2, exact_order=False),
        0.1 + 0.2,
        0.3,
    ),
    "mpc-mean-finer-than-float64": (  # q = 1e-18 < ulp: the float is what the engine gives
        lambda: mpc_precision(MpcStatistic.MEAN, 0.3, bound=1, cohort=2, exact_order=False),
        0.1 + 0.2,
        0.30000000000000004,
    ),
    "dp-grid-point-noise": (  # a grid point computed as 3 x 0.1: 15 digits cut the noise
        lambda: mpc_precision(MpcStatistic.MEDIAN, 0.0, bound=1, cohort=5, exact_order=False),
        0.1 * 3,
        0.3,
    ),
    "mpc-sum-large": (  # q = 1e-6, n = 1000: within 5e-4, so to 1e-4
        lambda: mpc_precision(MpcStatistic.SUM, 1.0, bound=1e12, cohort=1000, exact_order=False),
        123456.78912345678,
        123456.7891,
    ),
    "dp-grid-point-kept": (  # a DP median is a grid point: printed as that point
        lambda: mpc_precision(MpcStatistic.MEDIAN, 0.0, bound=1, cohort=5, exact_order=False),
        0.09375,
        0.09375,
    ),
    "count-is-an-integer": (
        lambda: mpc_precision(MpcStatistic.COUNT, 3.0, bound=1, cohort=3, exact_order=False),
        3.0,
        3,
    ),
}


@pytest.mark.parametrize("case", PRINTED.values(), ids=PRINTED.keys())
def test_printed_values_drop_float_noise(case) -> None:
    make, value, expected = case
    printed = make().printed(value)
    assert printed == expected and type(printed) is type(expected)
    assert json.dumps(printed) == json.dumps(expected)


@settings(max_examples=200, deadline=None)
@given(
    value=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    exponent=st.integers(min_value=-3, max_value=12),
    cohort=st.integers(min_value=2, max_value=1000),
    statistic=st.sampled_from([MpcStatistic.SUM, MpcStatistic.MEAN, MpcStatistic.MEDIAN]),
)
def test_never_more_digits_than_guaranteed_and_never_further_than_half_a_digit(
    value: float, exponent: int, cohort: int, statistic: MpcStatistic
) -> None:
    bound = 10.0**exponent
    precision = mpc_precision(statistic, value, bound=bound, cohort=cohort, exact_order=True)
    assert precision.error is not None
    printed = precision.printed(value)
    assert isinstance(printed, float)
    places = precision.decimals(value)
    assert places <= -math.floor(math.log10(precision.error))  # no digit below the guarantee
    assert _decimals(printed) <= max(places, 0)
    half_digit = Fraction(1, 2) * Fraction(10) ** -places
    assert abs(Fraction(printed) - Fraction(value)) <= half_digit + Fraction(math.ulp(printed))
