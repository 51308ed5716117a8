"""The four-eyes lifecycle on a real database and ledger, and the attacks it refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exchange.runtime import Runtime
from policies import (
    BASELINE_PACK,
    FourEyesError,
    Officer,
    OfficerRequiredError,
    PolicyDecisionPoint,
    PolicyLifecycleError,
    PolicyNotFoundError,
    PolicySource,
    PolicyTestsFailedError,
    Subject,
    VersionState,
)
from tests.policies.conftest import AT, CORE_COMPUTE, OFFICER_A, OFFICER_B

SUBBRAIN = Subject("li-brain", "subbrain", "lithium-battery")
OFFICER_C = Officer("officer-c", "security_officer")


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
    point = runtime.policy
    # before the first activation the exchange decides under the shipped baseline pack,
    # and every decision names its content hash
    baseline = PolicySource.from_dir(BASELINE_PACK).hash
    before = point.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE, at=AT)
    assert before.allow and before.version == baseline
    first = point.propose(pack_copy, officer=OFFICER_A)
    assert first.state is VersionState.PROPOSED
    assert point.test(first.hash[:12], officer=OFFICER_B).passed
    assert point.approve(first.hash, officer=OFFICER_B).approved_by == "officer-b"
    active = point.activate(first.hash, officer=OFFICER_B)
    assert active.state is VersionState.ACTIVE
    decision = point.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE, at=AT)
    assert decision.allow and decision.version == first.hash

    # a stricter version (minimum cohort 8) turns the same request into a deny
    second = point.propose(_edit_vocab(pack_copy, "min_cohort", 8), officer=OFFICER_B)
    rows = point.diff(second.hash, officer=OFFICER_A)
    changed = [r for r in rows if r.changed]
    assert [r.name for r in changed] == ["subbrain computes a mean over core data under MPC"]
    assert changed[0].active is not None and changed[0].active.allow
    assert not changed[0].candidate.allow
    assert point.test(second.hash, officer=OFFICER_B).passed is False  # its table still allows 6
    with pytest.raises(PolicyTestsFailedError, match="failed"):
        point.approve(second.hash, officer=OFFICER_A)

    # a third version (one more purpose for core data) goes live, then a rollback to the first
    _edit_vocab(pack_copy, "min_cohort", 5)
    purposes = ["industry_monitoring", "risk_warning", "policy_evaluation", "chain_analysis"]
    third = point.propose(_edit_vocab(pack_copy, "core_purposes", purposes), officer=OFFICER_C)
    point.test(third.hash, officer=OFFICER_C)
    point.approve(third.hash, officer=OFFICER_A)
    point.activate(third.hash, officer=OFFICER_B)
    assert point.get(first.hash).state is VersionState.APPROVED
    decision = point.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE, at=AT)
    assert decision.allow and decision.version == third.hash
    point.activate(first.hash, officer=OFFICER_C)  # rollback
    assert point.active_version() == first.hash
    assert point.get(third.hash).state is VersionState.APPROVED

    events = _events(runtime)
    kinds = [kind for kind, _, _ in events]
    assert kinds.count("policy.propose") == 3 and kinds.count("policy.activate") == 3
    approve = next(p for k, _, p in events if k == "policy.approve")
    assert approve == {
        "version": first.hash,
        "officer": "officer-b",
        "proposer": "officer-a",
        "approver": "officer-b",
    }
    rollback = [p for k, _, p in events if k == "policy.activate"][-1]
    assert rollback["rollback"] is True and rollback["previous"] == third.hash
    assert rollback["proposer"] == "officer-a" and rollback["activator"] == "officer-c"
    failed_test = [p for k, _, p in events if k == "policy.test" and not p["passed"]]
    assert failed_test and failed_test[0]["version"] == second.hash


@pytest.fixture
def proposed(runtime: Runtime, pack_copy: Path) -> tuple[PolicyDecisionPoint, str]:
    point = runtime.policy
    return point, point.propose(pack_copy, officer=OFFICER_A).hash


def test_attacks_on_the_four_eyes_rule(
    runtime: Runtime, proposed: tuple[PolicyDecisionPoint, str]
) -> None:
    point, version = proposed
    # approving an untested version
    with pytest.raises(PolicyTestsFailedError, match="were not run"):
        point.approve(version, officer=OFFICER_B)
    # activating an unapproved version
    with pytest.raises(PolicyLifecycleError, match="only approved versions"):
        point.activate(version, officer=OFFICER_B)
    point.test(version, officer=OFFICER_A)
    with pytest.raises(PolicyLifecycleError, match="only approved versions"):
        point.activate(version, officer=OFFICER_B)
    # self-approval, also under a different role claim
    with pytest.raises(FourEyesError, match="cannot approve"):
        point.approve(version, officer=OFFICER_A)
    # a non-officer cannot approve, even with another name
    for role in ("sysadmin", "auditor", "subbrain"):
        with pytest.raises(OfficerRequiredError):
            point.approve(version, officer=Officer("someone", role))
    point.approve(version, officer=OFFICER_B)
    # the proposer cannot switch it on either
    with pytest.raises(FourEyesError, match="cannot activate"):
        point.activate(version, officer=OFFICER_A)
    with pytest.raises(PolicyLifecycleError, match="already approved"):
        point.approve(version, officer=OFFICER_C)
    point.activate(version, officer=OFFICER_C)
    with pytest.raises(PolicyLifecycleError, match="already active"):
        point.activate(version, officer=OFFICER_B)
    with pytest.raises(PolicyLifecycleError):
        point.test(version, officer=OFFICER_B)
    assert point.active_version() == version
    refused = [k for k, _, _ in _events(runtime)]
    assert "policy.approve" in refused and refused.count("policy.activate") == 1


def test_reproposing_and_unknown_versions(
    proposed: tuple[PolicyDecisionPoint, str], pack_copy: Path
) -> None:
    point, version = proposed
    with pytest.raises(PolicyLifecycleError, match="already proposed"):
        point.propose(pack_copy, officer=OFFICER_B)
    with pytest.raises(PolicyNotFoundError):
        point.get("0" * 64)
    with pytest.raises(PolicyNotFoundError, match="8\\+ hex"):
        point.get(version[:4])
    with pytest.raises(OfficerRequiredError):
        point.propose(pack_copy, officer=Officer("ops", "sysadmin"))
    assert point.source(version).hash == version  # lines read back through their table
    assert [v.hash for v in point.versions()] == [version]
