"""Every rule of the baseline pack, allow and deny, as a named table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest

from core.canonical import JsonValue
from policies import CompiledPolicy, Effect, PolicySource
from tests.policies.conftest import AT, CORE_COMPUTE, LI, make_request


@dataclass(frozen=True)
class Case:
    name: str
    role: str
    action: str
    context: dict[str, JsonValue]
    expect: Effect
    reason: str = ""
    subject: str = "requester-1"
    industry: str | None = LI
    resource: str = "dataset:cell-energy"


def core(**changes: JsonValue) -> dict[str, JsonValue]:
    out = dict(CORE_COMPUTE)
    out.update(changes)
    return out


PLATFORM: dict[str, JsonValue] = {"domain": "platform"}
ALLOW, DENY = Effect.ALLOW, Effect.DENY

CASES = [
    # classification: core needs HE or MPC, whitelisted purposes, the minimum cohort
    Case("core mean under MPC", "subbrain", "compute", core(), ALLOW, "attribute rules allow"),
    Case("core mean under HE", "subbrain", "compute", core(engine="he"), ALLOW),
    Case(
        "core refused in plaintext",
        "subbrain",
        "compute",
        core(engine="plain"),
        DENY,
        "engine plain is not allowed for core",
    ),
    Case(
        "core refused below cohort 5",
        "subbrain",
        "compute",
        core(cohort=4),
        DENY,
        "cohort 4 is below the minimum of 5",
    ),
    Case("core at exactly cohort 5", "subbrain", "compute", core(cohort=5), ALLOW),
    Case(
        "core refused for trade matching",
        "subbrain",
        "compute",
        core(purpose="trade_matching"),
        DENY,
        "not whitelisted for core",
    ),
    Case(
        "core refused for histograms",
        "subbrain",
        "compute",
        core(operation="histogram"),
        DENY,
        "operation histogram is not allowed on core",
    ),
    Case(
        "important data allows histograms under HE",
        "subbrain",
        "compute",
        core(
            classification="important",
            operation="histogram",
            engine="he",
            purpose="trade_matching",
            cohort=2,
        ),
        ALLOW,
    ),
    Case(
        "important data refused in plaintext",
        "subbrain",
        "compute",
        core(classification="important", engine="plain"),
        DENY,
        "engine plain",
    ),
    Case(
        "general data in plaintext, any purpose",
        "subbrain",
        "compute",
        core(
            classification="general",
            engine="plain",
            purpose="benchmarking",
            cohort=1,
            operation="regression",
        ),
        ALLOW,
    ),
    # raw export
    Case(
        "raw export of general data",
        "subbrain",
        "raw_export",
        {"domain": LI, "classification": "general", "purpose": "benchmarking"},
        ALLOW,
    ),
    Case(
        "raw export of important data",
        "subbrain",
        "raw_export",
        {"domain": LI, "classification": "important", "purpose": "benchmarking"},
        DENY,
        "raw export of important data is never allowed",
    ),
    Case(
        "raw export of core data",
        "subbrain",
        "raw_export",
        {"domain": LI, "classification": "core", "purpose": "risk_warning"},
        DENY,
        "raw export of core data is never allowed",
    ),
    # vocabulary
    Case(
        "unknown purpose",
        "subbrain",
        "compute",
        core(purpose="marketing"),
        DENY,
        "unknown purpose marketing",
    ),
    Case(
        "unknown classification",
        "subbrain",
        "compute",
        core(classification="secret"),
        DENY,
        "unknown classification secret",
    ),
    Case(
        "unknown domain",
        "subbrain",
        "compute",
        core(domain="shipbuilding"),
        DENY,
        "unknown domain shipbuilding",
    ),
    Case(
        "unknown action",
        "subbrain",
        "delete_everything",
        {"domain": LI},
        DENY,
        "unknown action delete_everything",
    ),
    Case("unknown role", "root", "compute", core(), DENY, "unknown role root"),
    Case(
        "subject named like a role",
        "subbrain",
        "compute",
        core(),
        DENY,
        "subject name security_officer is a role name",
        subject="security_officer",
    ),
    # validity windows and consent facts
    Case(
        "inside the validity window",
        "subbrain",
        "compute",
        core(valid_from="2026-11-01T00:00:00Z", valid_until="2026-12-01T00:00:00Z"),
        ALLOW,
    ),
    Case(
        "before the validity window",
        "subbrain",
        "compute",
        core(valid_from="2026-12-01T00:00:00Z"),
        DENY,
        "not yet valid",
    ),
    Case(
        "after the validity window",
        "subbrain",
        "compute",
        core(valid_until="2026-11-25T08:00:00Z"),
        DENY,
        "expired",
    ),
    Case(
        "owner has not consented",
        "subbrain",
        "compute",
        core(consented=False),
        DENY,
        "has not consented",
    ),
    Case("owner has consented", "subbrain", "compute", core(consented=True), ALLOW),
    # industry domains
    Case(
        "sub-brain outside its industry",
        "subbrain",
        "compute",
        core(domain="new-materials"),
        DENY,
        "may act only in its own industry",
    ),
    Case(
        "sub-brain without an industry",
        "subbrain",
        "compute",
        core(),
        DENY,
        "may act only in its own industry",
        industry=None,
    ),
    Case(
        "enterprise registers in its industry",
        "enterprise",
        "register_dataset",
        {"domain": LI, "classification": "important"},
        ALLOW,
    ),
    Case("enterprise may not compute", "enterprise", "compute", core(), DENY, "no line lets"),
    Case(
        "edge device uploads readings",
        "edge_device",
        "upload_reading",
        {"domain": LI},
        ALLOW,
        resource="reading:batch-1",
    ),
    Case(
        "compute node joins MPC on core data",
        "compute_node",
        "mpc_participate",
        {"domain": LI, "classification": "core", "engine": "mpc"},
        ALLOW,
    ),
    Case(
        "compute node refused plaintext on core",
        "compute_node",
        "mpc_participate",
        {"domain": LI, "classification": "core", "engine": "plain"},
        DENY,
        "engine plain",
    ),
    Case(
        "Casbin resource kind must match",
        "subbrain",
        "compute",
        core(),
        DENY,
        "no line lets",
        resource="ledger:main",
    ),
    # the three separated duties (三权分立)
    Case(
        "officer approves policy",
        "security_officer",
        "policy_approve",
        PLATFORM,
        ALLOW,
        industry=None,
        resource="policy:abc",
    ),
    Case(
        "officer revokes certificates",
        "security_officer",
        "cert_revoke",
        PLATFORM,
        ALLOW,
        industry=None,
        resource="certificate:01",
    ),
    Case(
        "sysadmin may not approve policy",
        "sysadmin",
        "policy_approve",
        PLATFORM,
        DENY,
        "separation of duties: sysadmin may not policy_approve",
        industry=None,
        resource="policy:abc",
    ),
    Case(
        "sysadmin may not read audit trails",
        "sysadmin",
        "audit_trace",
        PLATFORM,
        DENY,
        "separation of duties",
        industry=None,
        resource="ledger:main",
    ),
    Case(
        "sysadmin operates the service",
        "sysadmin",
        "service_operate",
        PLATFORM,
        ALLOW,
        industry=None,
        resource="service:exchange",
    ),
    Case(
        "sysadmin may not use data",
        "sysadmin",
        "compute",
        core(),
        DENY,
        "denied by 'p, sysadmin, lithium-battery, dataset, compute, deny'",
        industry=None,
    ),
    Case(
        "officer may not manage identities",
        "security_officer",
        "identity_manage",
        PLATFORM,
        DENY,
        "separation of duties: security_officer may not identity_manage",
        industry=None,
        resource="identity:x",
    ),
    Case(
        "officer may not trace audits",
        "security_officer",
        "audit_trace",
        PLATFORM,
        DENY,
        "separation of duties",
        industry=None,
        resource="ledger:main",
    ),
    Case(
        "auditor reads the ledger",
        "auditor",
        "ledger_read",
        PLATFORM,
        ALLOW,
        industry=None,
        resource="ledger:main",
    ),
    Case(
        "auditor may not activate policy",
        "auditor",
        "policy_activate",
        PLATFORM,
        DENY,
        "separation of duties: auditor may not policy_activate",
        industry=None,
        resource="policy:abc",
    ),
    Case(
        "auditor may not run backups",
        "auditor",
        "backup_run",
        PLATFORM,
        DENY,
        "separation of duties",
        industry=None,
        resource="service:exchange",
    ),
    Case(
        "witness cosigns",
        "witness",
        "ledger_cosign",
        PLATFORM,
        ALLOW,
        industry=None,
        resource="ledger:main",
    ),
    # bad input is denied with a reason, never allowed
    Case(
        "missing attribute",
        "subbrain",
        "compute",
        {k: v for k, v in CORE_COMPUTE.items() if k != "cohort"},
        DENY,
        "missing attribute cohort for compute",
    ),
    Case(
        "missing domain",
        "auditor",
        "ledger_read",
        {},
        DENY,
        "missing attribute domain",
        industry=None,
        resource="ledger:main",
    ),
    Case("unknown attribute", "subbrain", "compute", core(vip=True), DENY, "unknown attribute vip"),
    Case(
        "mistyped cohort",
        "subbrain",
        "compute",
        core(cohort="6"),
        DENY,
        "attribute cohort must be an integer",
    ),
    Case(
        "boolean is not an integer",
        "subbrain",
        "compute",
        core(cohort=True),
        DENY,
        "must be an integer",
    ),
    Case(
        "naive time",
        "subbrain",
        "compute",
        core(valid_until="2026-12-01T00:00:00"),
        DENY,
        "RFC 3339 time with an offset",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_pack_rule(pack: CompiledPolicy, case: Case) -> None:
    request = make_request(
        case.role,
        case.action,
        case.context,
        name=case.subject,
        industry=case.industry,
        resource=case.resource,
    )
    decision = pack.decide(request)
    assert decision.effect is case.expect, decision.reasons
    assert decision.version == pack.version
    assert decision.reasons
    if case.reason:
        assert any(case.reason in r for r in decision.reasons), decision.reasons


def test_every_deny_rule_is_exercised(pack: CompiledPolicy, pack_source: PolicySource) -> None:
    """Each `deny contains` rule of the pack fires for at least one case above."""
    module = next(m for m in pack_source.modules if m.name == "authz.rego")
    heads = re.findall(r'^deny contains (?:sprintf\()?"([^"%]*)', module.source, re.MULTILINE)
    assert len(heads) >= 10
    fired: set[str] = set()
    for case in CASES:
        request = make_request(
            case.role, case.action, case.context, name=case.subject, industry=case.industry,
            resource=case.resource,
        )  # fmt: skip
        fired.update(pack.decide(request).reasons)
    for head in heads:
        literal = head.strip() or "of"
        assert any(reason.startswith("rego: ") and literal in reason for reason in fired), head


def test_sample_requests_of_the_pack_hold(pack: CompiledPolicy, pack_source: PolicySource) -> None:
    for sample in pack_source.requests:
        decision = pack.decide(sample.request)
        assert decision.effect is sample.expect, (sample.name, decision.reasons)


def test_decision_time_is_passed_in(pack: CompiledPolicy) -> None:
    window = core(valid_until="2026-11-25T09:00:00Z")
    assert pack.decide(make_request("subbrain", "compute", window)).allow
    later = make_request("subbrain", "compute", window, at=AT + timedelta(hours=2))
    assert not pack.decide(later).allow
