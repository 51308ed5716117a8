"""Rule and line coverage of a version's Rego by its sample requests (``opa test --coverage``).

A ``deny`` rule that reads a misspelled key (``data.vocab.classifcation``)
is not an error in Rego: the key is undefined, the rule never fires, and the
decision point silently allows what it should refuse. Coverage makes that
visible and, under a threshold, fails the version's test.

regopy has no tracer, so coverage is measured by instrumenting a copy of each
policy module (never the version itself) in the sandbox child:

- for every rule with a body (functions and ``default`` rules aside), a copy of
  the whole rule under a fresh name (``ibx_coverage_rule_<n>``): the rule
  **fired** for a request when the copy is defined (a non-empty set or object
  for partial rules);
- for every literal but the last, a boolean probe whose body is the rule's
  literals up to and including it (``ibx_coverage_probe_<n>_<k>``): literal
  ``k + 1`` was **evaluated** for a request when the probe holds.

Each sample request is prepared exactly as a decision prepares it (requests the
input schema refuses never reach Rego and count for nothing) and the package
is asked once for all its probes. Definitions, as reported:

- a rule is *covered* when it fired for at least one sample request;
- a line is *covered* when a literal starting on it was evaluated (the first
  literal of a body always is), and a rule's head line when the rule fired;
- for an uncovered rule the report names the first literal that never held
  (the misspelled key) and the lines never evaluated after it.

``test_`` rules are run but not traced (regopy cannot evaluate most ``with
input as`` tests without crashing, so rules are exercised by sample requests;
see docs/policies.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import regopy

from core.canonical import JsonValue
from policies._coverage_report import CoverageReport, CoverageThresholds, RuleCoverage
from policies._engine import InputSchema, prepare_input
from policies._model import SampleRequest
from policies._rego_ast import AstNode, parse_module
from policies._rego_check import dotted
from policies._source import ENTRY_PACKAGE, PolicySource, RegoModule, location_of

__all__ = ["CoverageReport", "CoverageThresholds", "RuleCoverage", "measure_coverage"]

logger = logging.getLogger(__name__)

_RULE = "ibx_coverage_rule_"
_PROBE = "ibx_coverage_probe_"


@dataclass(frozen=True)
class _Measured:
    index: int
    module: RegoModule
    package: str
    name: str
    rule: AstNode
    literals: tuple[AstNode, ...]
    end: int
    """Byte offset where the rule's text ends (the next rule's start, or the end)."""


def _measured_rules(module: RegoModule, tree: AstNode, start: int) -> list[_Measured]:
    raw = module.source.encode()
    policy = tree.child("policy")
    rules = list(policy.children) if policy is not None else []
    out: list[_Measured] = []
    for position, rule in enumerate(rules):
        ref = rule.first("ruleref")
        inner = ref.first("ref") if ref is not None else None
        name = dotted(inner) if inner is not None else None
        body = rule.child("rulebodyseq")
        query = body.child("query") if body is not None else None
        if (
            name is None
            or rule.offset is None
            or query is None
            or rule.first("ruleheadfunc") is not None
            or not raw[rule.offset :].startswith(name.encode())
        ):
            continue  # functions, default rules, rules without a body
        literals = tuple(c for c in query.children if c.kind == "literal" and c.offset is not None)
        if not literals:
            continue
        following = rules[position + 1].offset if position + 1 < len(rules) else None
        end = following if following is not None else len(raw)
        package = module.package or ""
        out.append(_Measured(start + len(out), module, package, name, rule, literals, end))
    return out


def _instrument(module: RegoModule, measured: Sequence[_Measured]) -> str:
    raw = module.source.encode()
    probes = [module.source.rstrip("\n"), ""]
    for item in measured:
        assert item.rule.offset is not None
        text = raw[item.rule.offset : item.end].decode()
        probes.append(f"{_RULE}{item.index}{text[len(item.name) :]}".rstrip())
        for k in range(1, len(item.literals)):
            start, stop = item.literals[0].offset, item.literals[k].offset
            body = raw[start:stop].decode().rstrip()
            probes.append(f"{_PROBE}{item.index}_{k} if {{\n{body}\n}}")
    return "\n\n".join(probes) + "\n"


def _fired(value: JsonValue | None) -> bool:
    return value is not None and value not in ([], {})


def measure_coverage(source: PolicySource, requests: Sequence[SampleRequest]) -> CoverageReport:
    """Instrument the policy modules and run every sample request against them.

    Runs in the sandbox child only: it evaluates officer Rego.
    """
    measured: list[_Measured] = []
    instrumented: dict[str, str] = {}
    for module in source.modules:
        if module.is_test:
            continue
        try:
            found = _measured_rules(module, parse_module(module.source), len(measured))
        except (regopy.RegoError, ValueError) as exc:
            return CoverageReport((), 0, f"{module.name} could not be instrumented: {exc}")
        measured.extend(found)
        instrumented[module.name] = _instrument(module, found)
    interpreter = regopy.Interpreter()
    interpreter.strict_built_in_errors = False  # a failing built-in just does not hold
    try:
        interpreter.add_data_json(json.dumps(dict(source.data)))
        for module in source.modules:
            if not module.is_test:
                interpreter.add_module(module.name, instrumented[module.name])
    except regopy.RegoError as exc:
        return CoverageReport((), 0, f"the instrumented modules do not compile: {exc}")
    schema = InputSchema.from_source(source)
    seen: dict[str, bool] = {}
    reached = 0
    queries = _queries(measured)
    for sample in requests:
        document, refusals = prepare_input(sample.request, schema)
        if refusals:
            continue
        reached += 1
        interpreter.set_input(regopy.Input(document))
        for query in queries:
            output = interpreter.query(query)
            if not output.ok() or not len(output):
                continue
            values = output[0].bindings.get("x")
            if isinstance(values, dict):
                for name, value in values.items():
                    seen[name] = seen.get(name, False) or _fired(value)
    return CoverageReport(tuple(_rule_coverage(m, seen) for m in measured), reached)


def _queries(measured: Sequence[_Measured]) -> list[str]:
    names: dict[str, list[str]] = {}
    for item in measured:
        probes = names.setdefault(item.package, [])
        probes.append(f"{_RULE}{item.index}")
        probes.extend(f"{_PROBE}{item.index}_{k}" for k in range(1, len(item.literals)))
    return [
        f"x := {{n: v | some n in {json.dumps(probes)}; v := data.{package}[n]}}"
        for package, probes in names.items()
    ]


def _rule_coverage(item: _Measured, seen: Mapping[str, bool]) -> RuleCoverage:
    source = item.module.source
    raw = source.encode()
    assert item.rule.offset is not None

    def line(offset: int | None) -> int:
        return location_of(source, offset or 0)[0]

    fired = seen.get(f"{_RULE}{item.index}", False)
    held = [seen.get(f"{_PROBE}{item.index}_{k}", False) for k in range(1, len(item.literals))]
    held.append(fired)
    head = line(item.rule.offset)
    literal_lines = [line(lit.offset) for lit in item.literals]
    evaluated = {head} if fired else set()
    evaluated.add(literal_lines[0])
    for k in range(1, len(item.literals)):
        if held[k - 1]:
            evaluated.add(literal_lines[k])
    blocked_at, blocked_by = None, ""
    if not fired:
        k = next(k for k, ok in enumerate(held) if not ok)
        start = item.literals[k].offset or 0
        stop = item.literals[k + 1].offset if k + 1 < len(item.literals) else item.end
        text = raw[start:stop].decode().strip().splitlines()[0]
        blocked_at, blocked_by = literal_lines[k], text[:80]
    return RuleCoverage(
        item.module.name,
        item.name,
        head,
        item.name == "deny" and item.package == ENTRY_PACKAGE,
        fired,
        tuple(sorted({head, *literal_lines})),
        tuple(sorted(evaluated)),
        blocked_at,
        blocked_by,
    )
