"""Coverage (issue 9 §3): a deny rule that never fires for any sample request fails the test.

A deny rule that reads a misspelled data key is valid Rego: the key is undefined and
the rule silently never fires, so the decision point allows what it should refuse.
``ibx policy test`` measures which rules fired and which lines were evaluated for the
version's sample requests (like ``opa test --coverage``) and refuses a version under the
thresholds (default: every deny rule of ``ibx.authz`` fires at least once).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exchange.cli import app
from exchange.error_table import RemoteRefusalError
from exchange.runtime import Runtime
from exchange.settings import Settings
from policies import (
    CoverageReport,
    CoverageThresholds,
    PolicySource,
    PolicyTestsFailedError,
    RuleCoverage,
    run_tests_in_sandbox,
)
from tests.conftest import initialised
from tests.identities import bootstrap, write_key_file
from tests.policies.duties import OFFICER_A, OFFICER_B, signed_point

EMBARGO_RULE = """
deny contains sprintf("%s data is under embargo", [input.context.classification]) if {
\tinput.action == "compute"
\tsome embargoed in data.vocab.{key}
\tinput.context.classification == embargoed
}
"""
EMBARGO_SAMPLE = {
    "name": "important data under embargo",
    "expect": "deny",
    "subject": {"name": "li-brain", "role": "subbrain", "industry": "lithium-battery"},
    "action": "compute",
    "resource": "dataset:cell-energy",
    "context": {
        "domain": "lithium-battery",
        "classification": "important",
        "purpose": "benchmarking",
        "engine": "mpc",
        "operation": "mean",
        "cohort": 6,
    },
    "at": "2026-11-25T08:00:00Z",
    "reason": "under embargo",
}


def _embargo(pack_dir: Path, key: str, *, sample: bool = False) -> int:
    """Add the embargo rule reading ``data.vocab.<key>``; return the rule's first line."""
    data_path = pack_dir / "data.json"
    data = json.loads(data_path.read_text())
    data["vocab"]["classification_embargo"] = ["important"]
    data_path.write_text(json.dumps(data))
    authz = pack_dir / "authz.rego"
    before = authz.read_text()
    authz.write_text(before + EMBARGO_RULE.replace("{key}", key))
    if sample:
        requests_path = pack_dir / "requests.json"
        requests = json.loads(requests_path.read_text())
        requests_path.write_text(json.dumps([*requests, EMBARGO_SAMPLE]))
    return before.count("\n") + 2


def _invoke(data_dir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--data-dir", str(data_dir), *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def _officers(data_dir: Path, *names: str) -> dict[str, tuple[str, str]]:
    """The bootstrap officers ``names``: each one's token and key file."""
    runtime = Runtime(Settings(data_dir=data_dir))
    try:
        issued = bootstrap(runtime, *names)
    finally:
        runtime.close()
    return {
        i.identity.name: (i.token, str(write_key_file(data_dir.parent, i.identity.name)))
        for i in issued
    }


def test_policy_test_refuses_a_deny_rule_reading_a_misspelled_key(
    tmp_path: Path, pack_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("IBX_TOKEN", raising=False)
    monkeypatch.delenv("IBX_OPA_URL", raising=False)
    line = _embargo(pack_copy, "classifcation_embargo", sample=False)
    data = initialised(tmp_path / "data")
    officers = _officers(data, "officer-a", "officer-b")
    a, b = (["--token", token, "--key", key] for token, key in officers.values())
    code, out = _invoke(data, "policy", "propose", str(pack_copy), *a)
    assert code == 0, out
    version = out.split()[1][:12]
    code, out = _invoke(data, "policy", "test", version, *b)
    assert code == 1
    assert "FAIL  coverage: deny rules" in out
    assert "10/11 fired (minimum 100%)" in out
    assert (
        f"NOT COVERED  authz.rego:{line} deny never fired: line {line + 2} never held "
        "(some embargoed in data.vocab.classifcation_embargo); "
        f"lines never evaluated: {line + 3}"
    ) in out
    assert "coverage: deny rules 10/11" in out
    with pytest.raises(RemoteRefusalError) as refused:
        _invoke(data, "policy", "approve", version, *b)
    assert refused.value.code == f"{PolicyTestsFailedError.__module__}.PolicyTestsFailedError"


def test_a_correct_rule_without_a_sample_is_uncovered_and_with_one_passes(
    pack_copy: Path,
) -> None:
    line = _embargo(pack_copy, "classification_embargo")
    report = run_tests_in_sandbox(PolicySource.from_dir(pack_copy))
    assert not report.passed
    failed = [r for r in report.results if not r.passed]
    assert [r.name for r in failed] == ["coverage: deny rules"]
    assert f"line {line + 3} never held (input.context.classification == embargoed)" in (
        failed[0].message
    )

    requests_path = pack_copy / "requests.json"
    requests_path.write_text(json.dumps([*json.loads(requests_path.read_text()), EMBARGO_SAMPLE]))
    report = run_tests_in_sandbox(PolicySource.from_dir(pack_copy))
    assert report.passed, [r for r in report.results if not r.passed]
    assert report.coverage is not None
    assert CoverageReport.from_dict(report.coverage).deny_rules == (11, 11)


def test_the_baseline_pack_covers_every_deny_rule_and_line(pack_source: PolicySource) -> None:
    report = run_tests_in_sandbox(pack_source)
    assert report.passed
    assert report.coverage is not None
    coverage = CoverageReport.from_dict(report.coverage)
    assert coverage.deny_rules == (10, 10)
    seen, measured = coverage.lines
    assert seen == measured > 0
    assert coverage.requests == len(pack_source.requests) - 2  # two are refused by the schema
    assert any(r.name == "coverage: deny rules" and r.passed for r in report.results)


def test_the_ledger_records_the_coverage_of_a_test(runtime: Runtime, pack_copy: Path) -> None:
    _point, steps = signed_point(runtime)
    version = steps.propose(OFFICER_A, pack_copy)
    steps.test(OFFICER_B, version.hash)
    entries = runtime.ledger.entries(0, runtime.ledger.size())
    tested = [dict(e.payload) for e in entries if e.type == "policy.test"]
    assert tested[-1]["coverage"] == {
        "deny_fired": 10,
        "deny_rules": 10,
        "lines_evaluated": 31,
        "lines": 31,
    }


def test_thresholds_are_configurable(pack_copy: Path) -> None:
    _embargo(pack_copy, "classifcation_embargo")
    source = PolicySource.from_dir(pack_copy)
    lenient = run_tests_in_sandbox(source, coverage=CoverageThresholds(min_deny=0.9))
    assert lenient.passed  # 10 of 11 deny rules is at least 90 %
    strict = run_tests_in_sandbox(source, coverage=CoverageThresholds(min_deny=0.9, min_lines=1.0))
    assert [r.name for r in strict.results if not r.passed] == ["coverage: lines"]
    with pytest.raises(ValueError, match="fractions"):
        CoverageThresholds(min_deny=1.5)


def test_rule_coverage_round_trips_and_checks_its_lines() -> None:
    rule = RuleCoverage("authz.rego", "deny", 10, True, False, (10, 11, 12), (11,), 11, "x")
    assert RuleCoverage.from_dict(rule.to_dict()) == rule
    assert rule.describe() == (
        "authz.rego:10 deny never fired: line 11 never held (x); lines never evaluated: 12"
    )
    with pytest.raises(ValueError, match="measured lines"):
        RuleCoverage("a.rego", "deny", 1, True, True, (1,), (2,))
