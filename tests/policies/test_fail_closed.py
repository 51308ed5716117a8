"""Fail closed: crashes contained, errors and undefined answers deny, nothing active denies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.runtime import Runtime
from policies import (
    CompiledPolicy,
    PolicyConfig,
    PolicyDecisionPoint,
    PolicySandboxError,
    PolicySource,
    PolicyTestsFailedError,
    Subject,
    check_in_sandbox,
    run_sandbox,
    run_tests_in_sandbox,
)
from tests.policies.conftest import AT, CORE_COMPUTE, make_request
from tests.policies.duties import OFFICER_A, OFFICER_B, signed_point

CRASHING_TEST = """package ibx.crash_test

import rego.v1

big if input.cohort >= 5

test_big_cohort if {
\tbig with input as {"cohort": 6}
}
"""


def test_regopy_with_trap_is_real_in_a_bare_process() -> None:
    """regopy 1.5.2 segfaults on this test_ rule; if this starts passing, the trap is fixed."""
    code = (
        "import regopy\n"
        "r = regopy.Interpreter()\n"
        f"r.add_module('crash.rego', {CRASHING_TEST!r})\n"
        "print(r.query('x := data.ibx.crash_test.test_big_cohort'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=120, check=False
    )
    assert done.returncode == -11  # SIGSEGV


def test_the_crash_is_contained_and_fails_the_version(runtime: Runtime, pack_copy: Path) -> None:
    (pack_copy / "crash_test.rego").write_text(CRASHING_TEST)
    _point, steps = signed_point(runtime)
    version = steps.propose(OFFICER_A, pack_copy)  # `with` inside a test_ rule is fine
    report = steps.test(OFFICER_B, version.hash)
    assert not report.passed
    assert report.error is not None
    assert "crashed (SIGSEGV) while running data.ibx.crash_test.test_big_cohort" in report.error
    assert any(r.name == "sandbox" and not r.passed for r in report.results)
    with pytest.raises(PolicyTestsFailedError):
        steps.approve(OFFICER_B, version.hash)
    assert os.getpid() > 0  # still here


def test_a_failing_test_rule_fails_the_report(pack_copy: Path) -> None:
    test_file = pack_copy / "authz_test.rego"
    test_file.write_text(
        test_file.read_text() + '\ntest_wrong if "trade_matching" in vocab.core_purposes\n'
    )
    report = run_tests_in_sandbox(PolicySource.from_dir(pack_copy))
    failed = [r for r in report.results if not r.passed]
    assert [r.name for r in failed] == ["data.ibx.authz_test.test_wrong"]
    assert report.error is None and not report.passed


def test_a_wrong_expectation_fails_the_report(pack_copy: Path) -> None:
    requests = pack_copy / "requests.json"
    requests.write_text(requests.read_text().replace('"expect": "deny"', '"expect": "allow"', 1))
    report = run_tests_in_sandbox(PolicySource.from_dir(pack_copy))
    failed = [r for r in report.results if not r.passed]
    assert len(failed) == 1 and "expected allow, got deny" in failed[0].message


def test_sandbox_timeout(pack_source: PolicySource) -> None:
    run = run_sandbox("check", pack_source, timeout=0.05)
    assert run.error is not None and "timed out after 0.05 s" in run.error
    with pytest.raises(PolicySandboxError, match="timed out"):
        check_in_sandbox(pack_source, timeout=0.05)


def test_a_deny_rule_that_errors_still_denies(pack_copy: Path) -> None:
    """A built-in error in a deny rule must not make the rule undefined (fail open)."""
    (pack_copy / "strict.rego").write_text(
        "package ibx.authz\n\nimport rego.v1\n\n"
        'deny contains "bad number" if to_number(input.context.purpose) > 0\n'
    )
    compiled = CompiledPolicy.compile(PolicySource.from_dir(pack_copy))
    decision = compiled.decide(make_request("subbrain", "compute", CORE_COMPUTE))
    assert not decision.allow
    assert "rego: error: evaluation failed (built-in error)" in decision.reasons


def test_unsupported_builtin_in_a_deny_rule_denies(pack_copy: Path) -> None:
    (pack_copy / "strict.rego").write_text(
        "package ibx.authz\n\nimport rego.v1\n\n"
        'deny contains "parsed" if time.parse_rfc3339_ns("2026-11-25T08:00:00Z") > 0\n'
    )
    compiled = CompiledPolicy.compile(PolicySource.from_dir(pack_copy))
    assert not compiled.decide(make_request("subbrain", "compute", CORE_COMPUTE)).allow


def test_undefined_allow_denies(pack_copy: Path) -> None:
    authz = pack_copy / "authz.rego"
    text = authz.read_text().replace("default allow := false\n", "")
    authz.write_text(
        text.replace("\tinput.subject.role in vocab.roles\n", "\tinput.context.cohort < 7\n")
    )
    compiled = CompiledPolicy.compile(PolicySource.from_dir(pack_copy))
    decision = compiled.decide(make_request("subbrain", "compute", {**CORE_COMPUTE, "cohort": 8}))
    assert not decision.allow
    assert "rego: error: allow is undefined" in decision.reasons
    assert compiled.decide(make_request("subbrain", "compute", CORE_COMPUTE)).allow


def test_allow_that_is_not_true_denies(pack_copy: Path) -> None:
    authz = pack_copy / "authz.rego"
    text = authz.read_text().replace("default allow := false", 'default allow := "yes"')
    authz.write_text(text.replace("allow if {", 'allow := "yes" if {'))
    compiled = CompiledPolicy.compile(PolicySource.from_dir(pack_copy))
    decision = compiled.decide(make_request("subbrain", "compute", CORE_COMPUTE))
    assert not decision.allow
    assert any("allow is not a boolean" in r for r in decision.reasons)


def test_no_active_version_and_bad_requests_deny(runtime: Runtime) -> None:
    """Without a bootstrap pack nothing is allowed before the first activation."""
    point = PolicyDecisionPoint(runtime.db, runtime.ledger, PolicyConfig())
    subject = Subject("li-brain", "subbrain", "lithium-battery")
    decision = point.decide(subject, "compute", "dataset:x", CORE_COMPUTE, at=AT)
    assert not decision.allow and decision.version is None
    assert decision.reasons == ("no policy version is active; denied by default",)
    naive = point.decide(subject, "compute", "dataset:x", CORE_COMPUTE, at=AT.replace(tzinfo=None))
    assert not naive.allow and "timezone-aware" in naive.reasons[0]


def test_indented_test_rules_are_run(pack_copy: Path) -> None:
    """Test rules are found on the parse tree (a column-0 text scan missed indented ones)."""
    (pack_copy / "indent_test.rego").write_text(
        "package ibx.indent_test\n\nimport rego.v1\n\n  test_indented if {\n\tfalse\n}\n"
    )
    report = run_tests_in_sandbox(PolicySource.from_dir(pack_copy))
    failed = [r.name for r in report.results if not r.passed]
    assert failed == ["data.ibx.indent_test.test_indented"]
