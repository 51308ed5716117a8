"""Hypothesis properties of the combination: deny overrides, and no allows overcome a deny."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import CasbinLine, CompiledPolicy, Effect, PolicySource, Verdict, combine
from tests.policies.conftest import CORE_COMPUTE, LI, make_request

EFFECTS = st.sampled_from([Effect.ALLOW, Effect.DENY, None])
VERDICTS = st.builds(
    Verdict,
    engine=st.sampled_from(["casbin", "rego", "opa", "input"]),
    effect=EFFECTS,
    reasons=st.lists(st.text(min_size=1, max_size=10), max_size=2).map(tuple),
    error=st.none() | st.text(min_size=1, max_size=10),
)


@given(st.lists(VERDICTS, max_size=6))
def test_combine_allows_only_when_every_engine_definitely_allows(verdicts: list[Verdict]) -> None:
    allow, reasons = combine(verdicts)
    expected = bool(verdicts) and all(
        v.effect is Effect.ALLOW and v.error is None for v in verdicts
    )
    assert allow is expected
    assert reasons  # every decision says why


@given(st.lists(VERDICTS, max_size=6), VERDICTS, st.integers(min_value=0, max_value=6))
def test_a_deny_anywhere_overrides(verdicts: list[Verdict], extra: Verdict, at: int) -> None:
    denying = dataclasses.replace(extra, effect=Effect.DENY)
    verdicts.insert(min(at, len(verdicts)), denying)
    allow, reasons = combine(verdicts)
    assert not allow
    assert all(f"{denying.engine}: {r}" in reasons for r in denying.reasons)


ROLES = ["subbrain", "enterprise", "auditor", "compute_node"]
DOMAINS = [LI, "new-materials", "intelligent-equipment"]
KINDS = ["dataset", "reading", "consent"]
ACTIONS = ["compute", "read_metadata", "raw_export", "register_dataset"]

ALLOW_LINES = st.lists(
    st.tuples(
        st.sampled_from(ROLES),
        st.sampled_from(DOMAINS),
        st.sampled_from(KINDS),
        st.sampled_from(ACTIONS),
    ).map(lambda t: CasbinLine("p", (*t, "allow"))),
    max_size=25,
)
GROUPINGS = st.lists(
    st.tuples(st.sampled_from(ROLES), st.sampled_from(DOMAINS)).map(
        lambda t: CasbinLine("g", ("requester-1", *t))
    ),
    max_size=5,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(allows=ALLOW_LINES, groupings=GROUPINGS, deny_role=st.sampled_from(ROLES))
def test_no_combination_of_casbin_allows_overcomes_a_deny_line(
    pack_source: PolicySource,
    allows: list[CasbinLine],
    groupings: list[CasbinLine],
    deny_role: str,
) -> None:
    deny = CasbinLine("p", (deny_role, LI, "dataset", "compute", "deny"))
    # the requester holds deny_role, by registry role or through a g line
    grant = CasbinLine("g", ("requester-1", deny_role, LI))
    lines = (*pack_source.lines, *allows, *groupings, grant, deny)
    compiled = CompiledPolicy.compile(dataclasses.replace(pack_source, lines=lines))
    decision = compiled.decide(make_request("subbrain", "compute", CORE_COMPUTE))
    assert not decision.allow
    assert any("denied by 'p, " + deny_role in r for r in decision.reasons)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    allows=ALLOW_LINES,
    classification=st.sampled_from(["important", "core"]),
    purpose=st.sampled_from(["benchmarking", "risk_warning", "trade_matching"]),
)
def test_no_casbin_allow_overcomes_a_rego_deny(
    pack: CompiledPolicy,
    pack_source: PolicySource,
    allows: list[CasbinLine],
    classification: str,
    purpose: str,
) -> None:
    lines = (
        *pack_source.lines,
        *allows,
        CasbinLine("p", ("subbrain", LI, "dataset", "raw_export", "allow")),
    )
    compiled = CompiledPolicy.compile(dataclasses.replace(pack_source, lines=lines))
    context = {"domain": LI, "classification": classification, "purpose": purpose}
    decision = compiled.decide(make_request("subbrain", "raw_export", context))
    assert not decision.allow
    assert f"rego: raw export of {classification} data is never allowed" in decision.reasons
    assert pack.decide(make_request("subbrain", "raw_export", context)).allow is False
