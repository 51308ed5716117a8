"""The sandbox child's resident memory is bounded (issue 9 §3): past it, it is killed and the
proposal or test refused with a clear message, while the server process carries on.

The bomb is a Rego comprehension over ``numbers.range(1, 1e8)``: rego-cpp builds the
whole array (gigabytes) before ``count`` sees it. An address-space rlimit cannot stop
it (regopy reserves ~256 GiB of virtual memory at import), so the parent watches VmRSS.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from exchange.runtime import Runtime
from policies import (
    PolicyConfig,
    PolicySource,
    SandboxLimits,
    SandboxMemoryError,
    Subject,
    run_tests_in_sandbox,
)
from policies._sandbox import resident_bytes
from tests.policies.conftest import AT, CORE_COMPUTE
from tests.policies.duties import OFFICER_A, OFFICER_B, signed_point

LIMIT = 256 * 1024 * 1024
BOMB = 'count([s | some i in numbers.range(1, 100000000); s := "aaaaaaaa"])'

pytestmark = pytest.mark.skipif(
    resident_bytes(os.getpid()) is None, reason="no /proc: the memory bound is not enforced here"
)


def test_a_memory_bomb_in_a_proposal_is_killed_and_refused(
    runtime: Runtime, pack_copy: Path
) -> None:
    point, steps = signed_point(runtime)
    good = steps.propose(OFFICER_A, pack_copy)  # an active version to keep deciding
    steps.test(OFFICER_B, good.hash)
    steps.approve(OFFICER_B, good.hash)
    steps.activate(OFFICER_B, good.hash)

    authz = pack_copy / "authz.rego"
    authz.write_text(authz.read_text() + f"\nbomb := {BOMB}\n")
    _bounded, bounded_steps = signed_point(runtime, PolicyConfig(sandbox_memory_limit=LIMIT))
    started = time.monotonic()
    with pytest.raises(SandboxMemoryError, match="more than 256 MiB of resident memory") as caught:
        bounded_steps.propose(OFFICER_A, pack_copy)
    assert time.monotonic() - started < 30  # the memory bound fired, not the 60 s timeout
    assert caught.value.limit == LIMIT
    assert "while running evaluate package ibx.authz" in str(caught.value)
    assert [v.hash for v in point.versions()] == [good.hash]  # nothing stored

    # the server process is unharmed and keeps deciding
    subject = Subject("li-brain", "subbrain", "lithium-battery")
    assert point.decide(subject, "compute", "dataset:x", CORE_COMPUTE, at=AT).allow


def test_a_memory_bomb_in_a_test_rule_fails_the_report(pack_copy: Path) -> None:
    (pack_copy / "bomb_test.rego").write_text(
        f"package ibx.bomb_test\n\nimport rego.v1\n\ntest_bomb if {{\n\t{BOMB} > 0\n}}\n"
    )
    report = run_tests_in_sandbox(PolicySource.from_dir(pack_copy), memory_limit=LIMIT)
    assert not report.passed
    assert report.error is not None
    assert "more than 256 MiB of resident memory and was killed" in report.error
    assert "while running data.ibx.bomb_test.test_bomb" in report.error


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 64 MiB"):
        SandboxLimits(memory_limit=1024)
    with pytest.raises(ValueError, match="positive"):
        PolicyConfig(sandbox_timeout=0)
