"""The four-eyes lifecycle on a real database and ledger, and the attacks it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.duty import DutyError
from exchange.runtime import Runtime
from policies import (
    BASELINE_PACK,
    FourEyesError,
    Officer,
    OfficerRequiredError,
    PolicyLifecycleError,
    PolicyNotFoundError,
    PolicySource,
    PolicyTestsFailedError,
    Subject,
    VersionState,
)
from tests.policies.conftest import AT, CORE_COMPUTE
from tests.policies.duties import OFFICER_A, OFFICER_B, OFFICER_C, DutyOfficer, Steps, signed_point

SUBBRAIN = Subject("li-brain", "subbrain", "lithium-battery")


def _events(runtime: Runtime, prefix: str = "policy.") -> list[tuple[str, str, dict[str, object]]]:
    entries = runtime.ledger.entries(0, runtime.ledger.size())
    return [(e.type, e.actor, dict(e.payload)) for e in entries if e.type.startswith(prefix)]


def _edit_vocab(pack_dir: Path, key: str, value: object) -> Path:
    data_path = pack_dir / "data.json"
    data = json.loads(data_path.read_text())
    data["vocab"][key] = value
    data_path.write_text(json.dumps(data))
    return pack_dir


def test_propose_test_approve_activate_and_rollback(runtime: Runtime, pack_copy: Path) -> None:
    point, steps = signed_point(runtime)
    # before the first activation the exchange decides under the shipped baseline pack,
    # and every decision names its content hash
    baseline = PolicySource.from_dir(BASELINE_PACK).hash
    before = point.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE, at=AT)
    assert before.allow and before.version == baseline
    first = steps.propose(OFFICER_A, pack_copy)
    assert first.state is VersionState.PROPOSED
    assert steps.test(OFFICER_B, first.hash[:12]).passed
    assert steps.approve(OFFICER_B, first.hash).approved_by == "officer-b"
    active = steps.activate(OFFICER_B, first.hash)
    assert active.state is VersionState.ACTIVE
    decision = point.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE, at=AT)
    assert decision.allow and decision.version == first.hash

    # a stricter version (minimum cohort 8) turns the same request into a deny
    second = steps.propose(OFFICER_B, _edit_vocab(pack_copy, "min_cohort", 8))
    rows = point.diff(second.hash, officer=OFFICER_A.officer)
    changed = [r for r in rows if r.changed]
    assert [r.name for r in changed] == ["subbrain computes a mean over core data under MPC"]
    assert changed[0].active is not None and changed[0].active.allow
    assert not changed[0].candidate.allow
    assert steps.test(OFFICER_B, second.hash).passed is False  # its table still allows 6
    with pytest.raises(PolicyTestsFailedError, match="failed"):
        steps.approve(OFFICER_A, second.hash)

    # a third version (one more purpose for core data) goes live, then a rollback to the first
    _edit_vocab(pack_copy, "min_cohort", 5)
    purposes = ["industry_monitoring", "risk_warning", "policy_evaluation", "chain_analysis"]
    third = steps.propose(OFFICER_C, _edit_vocab(pack_copy, "core_purposes", purposes))
    steps.test(OFFICER_C, third.hash)
    steps.approve(OFFICER_A, third.hash)
    steps.activate(OFFICER_B, third.hash)
    assert point.get(first.hash).state is VersionState.APPROVED
    decision = point.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE, at=AT)
    assert decision.allow and decision.version == third.hash
    steps.activate(OFFICER_C, first.hash)  # rollback
    assert point.active_version() == first.hash
    assert point.get(third.hash).state is VersionState.APPROVED

    events = _events(runtime)
    kinds = [kind for kind, _, _ in events]
    assert kinds.count("policy.propose") == 3 and kinds.count("policy.activate") == 3
    approve = next(p for k, _, p in events if k == "policy.approve")
    duty = approve.pop("duty")
    assert approve == {
        "version": first.hash,
        "officer": "officer-b",
        "proposer": "officer-a",
        "approver": "officer-b",
    }
    assert isinstance(duty, dict)
    assert duty["statement"]["actor"] == "officer-b"
    assert duty["statement"]["action"] == "policy.approve"
    assert duty["statement"]["subject"] == first.hash
    rollback = [p for k, _, p in events if k == "policy.activate"][-1]
    assert rollback["rollback"] is True and rollback["previous"] == third.hash
    assert rollback["proposer"] == "officer-a" and rollback["activator"] == "officer-c"
    failed_test = [p for k, _, p in events if k == "policy.test" and not p["passed"]]
    assert failed_test and failed_test[0]["version"] == second.hash


@pytest.fixture
def proposed(runtime: Runtime, pack_copy: Path) -> tuple[Steps, str]:
    _, steps = signed_point(runtime)
    return steps, steps.propose(OFFICER_A, pack_copy).hash


def test_attacks_on_the_four_eyes_rule(runtime: Runtime, proposed: tuple[Steps, str]) -> None:
    steps, version = proposed
    point = steps.point
    # approving an untested version
    with pytest.raises(PolicyTestsFailedError, match="were not run"):
        steps.approve(OFFICER_B, version)
    # activating an unapproved version
    with pytest.raises(PolicyLifecycleError, match="only approved versions"):
        steps.activate(OFFICER_B, version)
    steps.test(OFFICER_A, version)
    with pytest.raises(PolicyLifecycleError, match="only approved versions"):
        steps.activate(OFFICER_B, version)
    # self-approval, also under a different role claim
    with pytest.raises(FourEyesError, match="cannot approve"):
        steps.approve(OFFICER_A, version)
    # a non-officer cannot approve, even with another name: no officer key is theirs
    for role in ("sysadmin", "auditor", "subbrain"):
        with pytest.raises(DutyError, match="not an active security_officer"):
            steps.approve(DutyOfficer("someone", role), version)
    steps.approve(OFFICER_B, version)
    # the proposer cannot switch it on either
    with pytest.raises(FourEyesError, match="cannot activate"):
        steps.activate(OFFICER_A, version)
    with pytest.raises(PolicyLifecycleError, match="already approved"):
        steps.approve(OFFICER_C, version)
    steps.activate(OFFICER_C, version)
    with pytest.raises(PolicyLifecycleError, match="already active"):
        steps.activate(OFFICER_B, version)
    with pytest.raises(PolicyLifecycleError):
        steps.test(OFFICER_B, version)
    assert point.active_version() == version
    refused = [k for k, _, _ in _events(runtime)]
    assert "policy.approve" in refused and refused.count("policy.activate") == 1


def test_reproposing_and_unknown_versions(proposed: tuple[Steps, str], pack_copy: Path) -> None:
    steps, version = proposed
    point = steps.point
    with pytest.raises(PolicyLifecycleError, match="already proposed"):
        steps.propose(OFFICER_B, pack_copy)
    with pytest.raises(PolicyNotFoundError):
        point.get("0" * 64)
    with pytest.raises(PolicyNotFoundError, match="8\\+ hex"):
        point.get(version[:4])
    with pytest.raises(OfficerRequiredError):  # an authenticated caller who is no officer
        steps.propose(OFFICER_A, pack_copy, caller=Officer("ops", "sysadmin"))
    assert point.source(version).hash == version  # lines read back through their table
    assert [v.hash for v in point.versions()] == [version]
