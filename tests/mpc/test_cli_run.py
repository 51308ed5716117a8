"""``ibx mpc run`` through the real console script: every MPC operation, and bad input refused.

The jobs run as the console script's process; the refusals, which no party
ever sees, through its entry point in this process. Refusals are one line on
stderr naming the contributor, a non-zero exit, nothing on stdout and no party
started (each kind of bad value once here; ``tests/mpc/test_sharing.py``
covers every kind at the dealer).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import initialised
from tests.in_process import Done, ibx


@pytest.fixture(autouse=True)
def _deployment(tmp_path: Path) -> None:
    """Each test's ``tmp_path/data`` is a deployment, as ``ibx init`` makes it."""
    initialised(tmp_path / "data")


IBX = Path(sys.executable).parent / "ibx"


def _ibx(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(IBX), "--data-dir", str(data), "mpc", "run", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _refused(data: Path, *args: str) -> Done:
    """``ibx mpc run`` through the console script's entry point in this process: a refusal
    before any party starts needs no interpreter of its own."""
    return ibx("--data-dir", str(data), "mpc", "run", *args)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"acme": 1.0, "globex": 2.0, "acme": 3.0}', "duplicate contributor: contributor 'acme'"),
        ('{"a": 1.0, "b": {"v": 2.0}, "c": 3.0}', "non-numeric value: contributor 'b'"),
        ('{"a": 1.0, "b": NaN, "c": 3.0}', "non-numeric value: contributor 'b'"),
        ('{"a": 1.0, "b": 1e13, "c": 3.0}', "value out of range: contributor 'b'"),
    ],
    ids=["duplicate", "object", "nan", "beyond"],
)
def test_bad_input_is_refused_naming_the_contributor(tmp_path: Path, text, needle) -> None:
    values = tmp_path / "values.json"
    values.write_text(text)
    done = _refused(tmp_path / "data", "--input", str(values), "--stat", "sum")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ibx: {needle}"), lines
    assert done.stdout == ""
    assert not (tmp_path / "data" / "mpc" / "party0" / "jobs").exists()  # no party started


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--bound", "inf"], "bound must be between"),
        (["--dominance", "1:85:3"], "--dominance takes n:k"),
    ],
    ids=["inf-bound", "bad-rule"],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, args, needle) -> None:
    values = tmp_path / "values.json"
    values.write_text('{"a": 1.0, "b": 2.0, "c": 3.0}')
    done = _refused(tmp_path / "data", "--input", str(values), *args)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr and done.stdout == ""
    assert "Traceback" not in done.stderr


def test_every_mpc_operation_is_usable_from_the_command_line(tmp_path: Path) -> None:
    """Every statistic, ranks, dominance, the cohort minimum and the bound; one real job."""
    rng = np.random.default_rng(9)
    values = {f"ent-{i}": float(v) for i, v in enumerate(rng.normal(1e9, 50.0, 7))}
    values["ent-big"] = 1.2e10  # one contributor dominates the total
    path = tmp_path / "values.json"
    path.write_text(json.dumps(values))
    args = ["--input", str(path), "--bound", "1e11", "--min-cohort", "4", "--ranks"]
    args += ["--dominance", "1:50", "--dominance", "2:99.9", "--exact-order"]
    for stat in ("count", "sum", "mean", "variance", "min", "max", "median", "quartiles"):
        args += ["--stat", stat]
    done = _ibx(tmp_path / "data", *args)
    # the policy's dominance rule suppresses this total: refused after the job, by rule
    assert done.returncode == 3 and "dominated total suppressed" in done.stderr, done
    del values["ent-big"]
    path.write_text(json.dumps(values))
    done = _ibx(tmp_path / "data", *args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    released = json.loads(lines[0])
    assert released["cohort"] == 7
    got = released["statistics"]
    q = Fraction(1, 10**7)  # bound 1e11: resolution 1e-7
    quantised = [round(Fraction(v) / q) * q for v in values.values()]
    assert got["count"] == [7]
    assert got["sum"] == [float(sum(quantised))]
    assert got["mean"] == [float(statistics.mean(quantised))]
    # printed to its guarantee σ·q + q²/4 (σ ≈ 45: 4.5e-6, so six decimals), not float noise
    variance = statistics.pvariance(quantised)
    guarantee = Fraction(math.sqrt(variance)) * q + q * q / 4
    assert abs(Fraction(got["variance"][0]) - variance) <= guarantee + Fraction(1, 2 * 10**6)
    assert got["variance"] == [round(float(variance), 6)]
    assert got["variance"][0] == pytest.approx(np.var(list(values.values())), rel=1e-9)
    assert got["min"] == [float(min(quantised))] and got["max"] == [float(max(quantised))]
    assert got["median"] == [float(statistics.median(quantised))]
    assert got["quartiles"] == [float(x) for x in statistics.quantiles(quantised, n=4)]
    order = sorted(values, key=values.__getitem__)
    for who in values:
        assert f"{who} sees: {100 * order.index(who) / 6:.1f}% of the others are below it" in lines
