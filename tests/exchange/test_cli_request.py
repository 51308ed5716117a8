"""``ibx request``: a sub-brain's commands, their checks before sending, and their output.

A malformed request is refused by the command itself (the same
``ComputeRequest`` check the exchange makes) with one line and exit 2, before
any token or server is needed. Against a real ``ibx serve`` the commands print
the documented job view and result shapes and exit like every user command:
403 → 3, a job not released → one line naming its state, non-zero.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchange.cli import main
from exchange.cli.request import JobView

VIEW = {
    "job_id": "job_abc",
    "state": "collecting",
    "reason": None,
    "requester": "sb-lb",
    "operation": "mean",
    "engine": "he",
    "created_at": "2026-01-01T00:00:00Z",
    "deadline": "2026-01-01T00:02:00Z",
    "updated_at": "2026-01-01T00:00:01Z",
    "participants": ["a-co", "b-co", "c-co"],
    "contributed": ["a-co"],
    "refused": [],
    "min_cohort": 3,
    "decision_index": 41,
    "result_index": None,
}


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


def ibx(
    capsys: pytest.CaptureFixture[str], *argv: str, env: dict[str, str] | None = None
) -> Outcome:
    """Run ``ibx ARGV`` in this process, with no IBX_* variable but ``env``."""
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["ibx", *argv])
        for name in [n for n in os.environ if n.startswith("IBX_")]:
            mp.delenv(name)
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        with pytest.raises(SystemExit) as exited:
            main()
    captured = capsys.readouterr()
    code = exited.value.code
    return Outcome(code if isinstance(code, int) else 0, captured.out, captured.err)


SUBMIT = ("request", "submit", "--purpose", "benchmarking")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--operation", "mean", "--field", "kwh"), "name either datasets or an industry"),
        (
            ("--operation", "mean", "--field", "kwh", "--dataset", "a", "--industry", "lb"),
            "name either datasets or an industry, not both or neither",
        ),
        (
            ("--operation", "regression", "--field", "y", "--dataset", "a"),
            "a regression needs a target field and a feature",
        ),
        (("--operation", "mean", "--field", "kwh", "--dataset", "a", "--engine", "psi"),
         "engine psi cannot compute mean (use he or auto)"),
        (("--operation", "histogram", "--field", "kwh", "--dataset", "a"),
         "parameters.bins is needed by, and only by, histogram"),
        (("--operation", "histogram", "--field", "kwh", "--dataset", "a", "--bins", "0,x"),
         "--bins must be numbers separated by commas"),
        (("--operation", "mean", "--field", "kwh", "--dataset", "a", "--deadline", "0"),
         "parameters.deadline_seconds must be from 1 to 3600"),
        (("--operation", "mean", "--field", "kwh", "--dataset", "a", "--epsilon", "-1"),
         "parameters.epsilon must be a positive number"),
        (("--operation", "mean", "--field", "k wh", "--dataset", "a"),
         "each field must be an identifier"),
        (("--operation", "mean", "--dataset", "a"), "--purpose, --operation and at least one"),
    ],
)  # fmt: skip
def test_a_malformed_request_is_refused_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    """No token, no server: the local check stops it with one line and exit 2."""
    done = ibx(capsys, *SUBMIT, *args, "--exchange", "https://127.0.0.1:9")
    assert done.code == 2, done
    assert done.out == ""
    assert done.err.startswith("ibx: invalid input: ")
    assert message in done.err
    assert len(done.err.splitlines()) == 1


def test_a_request_file_is_checked_and_takes_the_whole_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"purpose": "benchmarking", "operation": "mean",
                               "fields": ["kwh"], "datasets": ["a"], "colour": "red"}))  # fmt: skip
    done = ibx(capsys, "request", "submit", "--request", str(bad))
    assert (done.code, done.out) == (2, "")
    assert "unexpected ['colour']" in done.err
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{not json")
    done = ibx(capsys, "request", "submit", "--request", str(garbled))
    assert done.code == 2 and "not JSON" in done.err
    both = ibx(capsys, *SUBMIT, "--request", str(bad))
    assert both.code == 2 and "--request FILE takes the whole request" in both.err


def test_a_valid_request_without_a_token_stops_at_the_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    done = ibx(capsys, *SUBMIT, "--operation", "mean", "--field", "kwh", "--dataset", "a",
               "--exchange", "https://127.0.0.1:9")  # fmt: skip
    assert done.code == 4
    assert "a bearer token is required" in done.err
    assert "idempotency key" not in done.err  # nothing was about to be sent


def test_the_job_view_reads_the_documented_shape() -> None:
    view = JobView.from_dict(VIEW)
    assert not view.terminal
    assert list(view.lines()) == [
        "job           job_abc",
        "state         collecting",
        "requester     sb-lb",
        "operation     mean on he",
        "participants  3: a-co, b-co, c-co",
        "contributed   1: a-co",
        "refused       0",
        "min cohort    3",
        "decision      ledger entry 41",
        "result        -",
        "created       2026-01-01T00:00:00Z",
        "deadline      2026-01-01T00:02:00Z",
    ]
    ended = JobView.from_dict({**VIEW, "state": "refused", "reason": "cohort 2 is below 3"})
    assert ended.terminal
    assert "state         refused (cohort 2 is below 3)" in list(ended.lines())
    with pytest.raises(ValueError, match="no 'state'"):
        JobView.from_dict({"job_id": "job_x"})
