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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from consent import (
    ConsentReceipt,
    DatasetScope,
    Engine,
    EnterpriseKey,
    Operation,
    Purpose,
    Requester,
    new_consent_id,
)
from core.clock import utcnow
from exchange.cli import main
from exchange.cli.request import JobView
from exchange.client import ExchangeClient
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.server import ExchangeUrl, running_exchange

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
    counted = JobView.from_dict({**VIEW, "participants": 3, "contributed": 1, "refused": 0})
    assert "participants  3" in list(counted.lines())
    ended = JobView.from_dict({**VIEW, "state": "refused", "reason": "cohort 2 is below 3"})
    assert ended.terminal
    assert "state         refused (cohort 2 is below 3)" in list(ended.lines())
    with pytest.raises(ValueError, match="no 'state'"):
        JobView.from_dict({"job_id": "job_x"})


# --- against a real exchange (no agents: jobs stay collecting until cancelled) -----------

LB = "lithium-battery"
OWNERS = ("cells-a", "cells-b", "cells-c")


@dataclass
class Served:
    data_dir: Path
    url: ExchangeUrl
    files: Path


def _consent(runtime: Runtime, token: str, name: str, key: EnterpriseKey) -> None:
    """The enterprise registers its dataset and grants a signed consent, through the API."""
    now = utcnow()
    dataset = f"{name}.energy"
    with ExchangeClient.local(runtime, token=token) as client:
        client.post("/v1/datasets", {"dataset_id": dataset, "fields": ["energy_kwh"],
                                     "classification": "general"})  # fmt: skip
        receipt = ConsentReceipt(
            consent_id=new_consent_id(),
            origin=runtime.settings.ledger_origin,
            enterprise=name,
            public_key=key.signer.public_key,
            scope=(DatasetScope(dataset, ("energy_kwh",)),),
            requester=Requester.group("subbrain", LB),
            purposes=(Purpose.BENCHMARKING,),
            operations=(Operation.MEAN,),
            engines=(Engine.HE,),
            min_cohort=3,
            valid_from=now,
            valid_until=now + timedelta(days=30),
            signed_at=now,
        )
        client.post("/v1/consents", receipt.sign(key.signer).to_dict())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("request-cli")
    data = initialised(root / "data")
    files = root / "files"
    files.mkdir()
    runtime = Runtime(Settings(data_dir=data))
    try:
        for name, industry in (("sb-lb", LB), ("sb-lb2", LB), ("sb-nm", "new-materials")):
            token = files / f"{name}.token"
            token.write_text(
                runtime.identities.create(name, Role.SUBBRAIN, industry=industry).token
            )
            token.chmod(0o600)
        for name in OWNERS:
            key = EnterpriseKey.generate(files / f"{name}.key")
            issued = runtime.identities.create(
                name, Role.ENTERPRISE, industry=LB, public_key=key.signer.public_key
            )
            _consent(runtime, issued.token, name, key)
        with ExchangeClient.local(runtime, token=issued.token) as client:  # the last owner's
            recipes = {"dataset_id": "cells-c.recipes", "fields": ["binder_ratio"]}
            client.post("/v1/datasets", {**recipes, "classification": "core"})
    finally:
        runtime.close()
    with running_exchange(data) as url:
        yield Served(data, url, files)


def run_as(
    served: Served, capsys: pytest.CaptureFixture[str], who: str, *command: str, remote: bool = True
) -> Outcome:
    where = served.url.cli_args() if remote else []
    root = [] if remote else ["--data-dir", str(served.data_dir)]
    return ibx(capsys, *root, "--token-file", str(served.files / f"{who}.token"), *command, *where)


MEAN = ("request", "submit", "--purpose", "benchmarking", "--operation", "mean",
        "--field", "energy_kwh", "--engine", "he",
        *(a for o in OWNERS for a in ("--dataset", f"{o}.energy")))  # fmt: skip


def test_submit_prints_the_job_and_a_retry_with_its_key_gets_the_same_job(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_as(served, capsys, "sb-lb", *MEAN)
    assert done.code == 0, done.err
    key = done.err.split()[2]
    assert done.err == f"idempotency key {key} (retry with --idempotency-key {key})\n"
    lines = dict(line.split(None, 1) for line in done.out.splitlines() if " " in line)
    job_id = lines["job"]
    assert lines["state"] in ("authorized", "collecting")
    assert lines["requester"] == "sb-lb"
    assert lines["operation"] == "mean on he"
    assert lines["participants"] == "3"
    again = run_as(served, capsys, "sb-lb", *MEAN, "--idempotency-key", key, "--json")
    assert again.code == 0 and again.err == ""  # the key was given: nothing to print
    assert json.loads(again.out)["job_id"] == job_id
    as_json = json.loads(run_as(served, capsys, "sb-lb", "request", "status", job_id,
                                "--json").out)  # fmt: skip
    assert set(as_json) >= {"job_id", "state", "reason", "requester", "operation", "engine",
                            "created_at", "deadline", "updated_at", "participants", "contributed",
                            "refused", "min_cohort", "decision_index", "result_index"}  # fmt: skip


def test_the_commands_print_and_exit_the_same_locally_and_remotely(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    made = run_as(served, capsys, "sb-lb", *MEAN, "--json")
    job_id = json.loads(made.out)["job_id"]
    for _ in range(100):  # the exchange opens the job to agents right after the decision
        if json.loads(run_as(served, capsys, "sb-lb", "request", "status", job_id,
                             "--json").out)["state"] != "authorized":  # fmt: skip
            break
        time.sleep(0.05)
    for command in (("request", "status", job_id), ("request", "result", job_id)):
        local = run_as(served, capsys, "sb-lb", *command, remote=False)
        remote = run_as(served, capsys, "sb-lb", *command)
        assert local == remote, command
    result = run_as(served, capsys, "sb-lb", "request", "result", job_id)
    assert result.code == 1 and result.out == ""
    assert result.err.startswith(f"ibx: not released: job {job_id} is ")
    assert len(result.err.splitlines()) == 1
    listed = run_as(served, capsys, "sb-lb", "request", "list")
    assert any(line.startswith(job_id + "\t") for line in listed.out.splitlines()), listed
    assert job_id not in run_as(served, capsys, "sb-lb2", "request", "list").out  # own jobs only


def test_cancel_only_ones_own_job_and_only_once(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = json.loads(run_as(served, capsys, "sb-lb", *MEAN, "--json").out)["job_id"]
    other = run_as(served, capsys, "sb-lb2", "request", "cancel", job_id)
    assert other.code in (1, 3) and other.out == ""  # another's job: not found or denied
    done = run_as(served, capsys, "sb-lb", "request", "cancel", job_id)
    assert done == Outcome(0, f"cancelled {job_id} (cancelled)\n", "")
    twice = run_as(served, capsys, "sb-lb", "request", "cancel", job_id)
    assert twice.code == 1 and twice.out == "" and len(twice.err.splitlines()) == 1
    after = run_as(served, capsys, "sb-lb", "request", "result", job_id, "--wait")
    assert (after.code, after.out) == (1, "")
    assert after.err.startswith(f"ibx: not released: job {job_id} is cancelled")


def test_refusals_exit_3_with_the_exchanges_reason(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    denied = run_as(served, capsys, "sb-lb", "request", "submit", "--purpose", "benchmarking",
                    "--operation", "mean", "--field", "binder_ratio", "--engine", "auto",
                    "--dataset", "cells-c.recipes")  # fmt: skip
    assert denied.code == 3 and denied.out == ""
    assert "not whitelisted for core data" in denied.err, denied.err  # the Rego rule named
    outsider = run_as(served, capsys, "sb-nm", *MEAN)  # no consent covers another industry
    assert outsider.code == 3 and outsider.out == ""
    assert "no_consent" in outsider.err, outsider.err
    small = run_as(served, capsys, "sb-lb", *MEAN[:-4])  # two of the three datasets
    assert small.code == 3 and "cohort" in small.err, small
