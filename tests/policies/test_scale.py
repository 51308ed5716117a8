"""A version with many lines, through the real store: indexed reads only, same answers as peers.

The default run uses 1,000 lines; ``-m slow`` runs the issue's 10,000 lines.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from typing import Any

import casbin
import pytest
import regopy
from casbin.model import FastModel
from sqlalchemy import event

from exchange.runtime import Runtime
from policies import (
    CasbinLine,
    DecisionRequest,
    PolicyConfig,
    PolicyDecisionPoint,
    PolicySource,
    Subject,
    prepare_input,
)
from tests.policies.conftest import AT
from tests.policies.duties import OFFICER_A, OFFICER_B, signed_point

ROLES = ["subbrain", "enterprise", "compute_node", "auditor", "sysadmin"]
KINDS = ["dataset", "reading", "consent"]
ACTIONS = ["compute", "read_metadata", "raw_export", "register_dataset", "upload_reading",
           "mpc_participate"]  # fmt: skip
CONTEXTS: list[dict[str, Any]] = [
    {"classification": "core", "purpose": "risk_warning", "engine": "mpc", "operation": "mean",
     "cohort": 6},
    {"classification": "core", "purpose": "trade_matching", "engine": "he", "operation": "sum",
     "cohort": 9},
    {"classification": "general", "purpose": "chain_analysis", "engine": "plain",
     "operation": "regression", "cohort": 1},
]  # fmt: skip


def scaled(pack: PolicySource, domains: int) -> PolicySource:
    names = [f"ind-{i:03d}" for i in range(domains)]
    lines = [
        CasbinLine("p", (role, name, kind, action, "deny" if role == "sysadmin" else "allow"))
        for name in names
        for role in ROLES
        for kind in KINDS
        for action in ACTIONS
    ]
    lines += [
        CasbinLine("g", (f"subject-{i:04d}", ROLES[i % 4], names[i % domains]))
        for i in range(domains * 10)
    ]
    data = json.loads(json.dumps(dict(pack.data)))
    data["vocab"]["domains"] += names
    # the pack's own lines and sample requests stay: its test must still cover every deny rule
    return dataclasses.replace(pack, lines=(*pack.lines, *lines), data=data)


def requests_for(domains: int, count: int) -> list[DecisionRequest]:
    out = []
    for n in range(count):
        i = (n * 7919) % (domains * 10)
        home = f"ind-{i % domains:03d}"
        context = dict(CONTEXTS[n % len(CONTEXTS)])
        context["domain"] = home if n % 5 else f"ind-{(i + 1) % domains:03d}"
        subject = Subject(f"subject-{i:04d}", ROLES[(i + n) % 4], home)
        out.append(DecisionRequest(subject, "compute", f"dataset:d{n}", context, AT))
    return out


@pytest.fixture
def statements(runtime: Runtime) -> Iterator[list[str]]:
    """Every statement SQLite runs from now on, also those sent straight to the driver
    (``Database.fetch``), which SQLAlchemy's events do not see."""
    seen: list[str] = []

    def _trace(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(seen.append)

    runtime.db.dispose()  # new connections, each traced from its start
    event.listen(runtime.db.engine, "connect", _trace)
    yield seen
    event.remove(runtime.db.engine, "connect", _trace)


def run_at_scale(runtime: Runtime, pack: PolicySource, statements: list[str], domains: int) -> None:
    source = scaled(pack, domains)
    point, steps = signed_point(runtime)
    version = steps.propose(OFFICER_A, source).hash
    assert steps.test(OFFICER_B, version).passed
    steps.approve(OFFICER_B, version)
    steps.activate(OFFICER_B, version)
    assert point.compiled(version) is point.compiled(version)  # compiled once, cached
    requests = requests_for(domains, 300)

    # peers built from the same lines and modules, not through the store
    model = FastModel([1, 2, 3])
    model.load_model_from_text(source.model)
    fast = casbin.FastEnforcer(model, cache_key_order=[1, 2, 3])
    fast.add_policies([list(x.values) for x in source.lines if x.ptype == "p"])
    fast.add_grouping_policies([list(x.values) for x in source.lines if x.ptype == "g"])
    builder = regopy.Interpreter()
    builder.strict_built_in_errors = True
    builder.add_data_json(json.dumps(dict(source.data)))
    for module in source.modules:
        if not module.is_test:
            builder.add_module(module.name, module.source)
    bundle = builder.build("allow := data.ibx.authz.allow; deny := data.ibx.authz.deny", [])
    runner = regopy.Interpreter()
    schema = point.compiled(version).schema

    statements.clear()
    decisions = [point.decide_request(r) for r in requests]
    # at most one primary-key read of the active version per decision (it is reused for
    # up to PolicyConfig.active_version_ttl), each checked against the ledger's latest
    # activation (the subject index and that entry), nothing else
    active = [s for s in statements if "FROM policies_active" in s]
    assert active and len(active) <= len(requests)
    assert all("WHERE policies_active.id" in s for s in active)
    others = [s for s in statements if s not in active]
    assert all("ledger_" in s or s.startswith(("BEGIN", "COMMIT", "ROLLBACK")) for s in others)
    uncached = PolicyDecisionPoint(runtime.db, runtime.ledger, PolicyConfig(active_version_ttl=0))
    uncached.compiled(version)
    statements.clear()
    assert [uncached.decide_request(r) for r in requests[:50]] == decisions[:50]
    assert len(statements) == 50 and all("FROM policies_active" in s for s in statements)

    allowed = 0
    for request, decision in zip(requests, decisions, strict=True):
        document, refusals = prepare_input(request, schema)
        runner.set_input(regopy.Input(document))
        bindings = runner.query_bundle(bundle)[0].bindings
        casbin_ok = fast.enforce(
            request.subject.name, request.context["domain"], "dataset", "compute",
            request.subject.role,
        )  # fmt: skip
        expected = casbin_ok and not refusals and bindings["allow"] is True and not bindings["deny"]
        assert decision.allow == expected, (request, decision.reasons)
        assert decision.version == version
        allowed += decision.allow
    assert 0 < allowed < len(requests)

    # the same answers from several threads at once
    results: dict[int, list[bool]] = {}

    def worker(k: int) -> None:
        results[k] = [point.decide_request(r).allow for r in requests[:100]]

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r == [d.allow for d in decisions[:100]] for r in results.values())

    # another process's decision point (same database) sees the active version
    other = PolicyDecisionPoint(runtime.db, runtime.ledger)
    assert other.decide_request(requests[0]).allow == decisions[0].allow


def test_1000_lines_through_the_store(
    runtime: Runtime, pack_source: PolicySource, statements: list[str]
) -> None:
    run_at_scale(runtime, pack_source, statements, domains=11)  # 990 p + 110 g lines


@pytest.mark.slow
def test_10000_lines_through_the_store(
    runtime: Runtime, pack_source: PolicySource, statements: list[str]
) -> None:
    run_at_scale(runtime, pack_source, statements, domains=100)  # 9,000 p + 1,000 g lines
