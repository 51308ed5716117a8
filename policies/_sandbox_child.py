"""The child side of the policy sandbox: ``python -m policies._sandbox_child``.

Reads one JSON job (``check``, ``test`` or ``evaluate``) on stdin and writes
one JSON line per step to stdout, flushing each, so that the parent
(:mod:`policies._sandbox`) can name the step that was running when a crash or
a timeout ended the process. Never imported by the server.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

import regopy
from regopy.rego_shared import rego_output_ok, rego_output_string, rego_query

from core.canonical import JsonValue
from policies._coverage import measure_coverage
from policies._engine import CompiledPolicy
from policies._model import DecisionRequest
from policies._rego_ast import AstNode, RegoAstError, parse_module
from policies._rego_check import check_trees, test_rules
from policies._source import PolicySource, RegoModule, location_of
from policies.errors import PolicyInputError

logger = logging.getLogger(__name__)

_ERROR = re.compile(
    r"\(error \d+:(?P<file>[^|\s]+)\|(?P<offset>\d+)\|\d+\s+\(errormsg \d+:(?P<msg>[^\n]*?)\)"
)
_NOT_FOUND = re.compile(r"Function not found: (?P<name>[A-Za-z_][A-Za-z0-9_.]*)")


_channel: list[TextIO] = []
"""Where steps go: the original stdout (fd 1 is pointed at stderr, so that what
rego-cpp prints itself can never run into a step line)."""


def _emit(step: Mapping[str, JsonValue]) -> None:
    out = _channel[0] if _channel else sys.stdout
    out.write(json.dumps(step) + "\n")
    out.flush()


def _locate(modules: Sequence[RegoModule], text: str) -> dict[str, JsonValue] | None:
    by_name = {m.name: m for m in modules}
    match = _ERROR.search(text)
    if match and match.group("file") in by_name:
        line, column = location_of(by_name[match.group("file")].source, int(match.group("offset")))
        return {
            "file": match.group("file"),
            "line": line,
            "column": column,
            "message": match.group("msg"),
        }
    missing = _NOT_FOUND.search(text)
    if missing:
        name = missing.group("name")
        for module in modules:
            found = re.search(rf"\b{re.escape(name)}\s*\(", module.source)
            if found:
                line, column = location_of(
                    module.source, len(module.source[: found.start()].encode())
                )
                return {
                    "file": module.name,
                    "line": line,
                    "column": column,
                    "message": f"function not found: {name}",
                }
    return None


def _refusal(
    source: PolicySource, trees: dict[str, AstNode] | None = None
) -> dict[str, JsonValue] | None:
    """Parse every module (into ``trees``) and apply the allowlist and `with` rules.

    Returns the located problem (``refused`` names a refused construct), or None.
    """
    trees = {} if trees is None else trees
    for module in source.modules:
        _emit({"start": f"parse {module.name}"})
        try:
            trees[module.name] = parse_module(module.source)
        except regopy.RegoError as exc:
            return _located(exc, module, source.modules)
        except (RegoAstError, OSError) as exc:
            message = f"the parse tree could not be analysed ({exc}); refused"
            return {"file": module.name, "line": 1, "column": 1, "message": message}
    refused = check_trees(source.modules, trees)
    if refused is None:
        return None
    module, first = refused
    return {
        "file": module.name,
        "line": first.line,
        "column": first.column,
        "message": first.message,
        "refused": first.name,
    }


def _child_check(source: PolicySource) -> None:
    # The parsed modules first (allowlist of built-ins, `with` only in tests): nothing of
    # the officer's Rego is evaluated before it passes. Then evaluate each policy package
    # (never a test package, whose `with` can crash rego-cpp) to surface built-in misuse.
    problem = _refusal(source)
    if problem is not None:
        _emit({"rego_error": problem})
        return
    policy_modules = [m for m in source.modules if not m.is_test]
    test_modules = [m for m in source.modules if m.is_test]
    interpreter = regopy.Interpreter()
    interpreter.strict_built_in_errors = True
    interpreter.add_data_json(json.dumps(dict(source.data)))
    for module in policy_modules:
        if not _add(interpreter, module, source.modules):
            return
    interpreter.set_input_term("{}")
    for package in sorted({m.package for m in policy_modules if m.package}):
        _emit({"start": f"evaluate package {package}"})
        impl = rego_query(interpreter._impl, f"x := data.{package}")
        text = rego_output_string(impl)
        if text.startswith("(error") or not rego_output_ok(impl):
            where = _locate(source.modules, text)
            if where is not None:
                _emit({"rego_error": where})
                return
            if text.startswith("(error"):
                _emit({"compile_error": f"package {package} does not evaluate: {text[:300]}"})
                return
    try:
        CompiledPolicy.compile(source)
    except PolicyInputError as exc:
        _emit({"compile_error": str(exc)})
        return
    # Then the test modules: parsed only (they run in `test`).
    parser = regopy.Interpreter()
    for module in test_modules:
        if not _add(parser, module, source.modules):
            return
    _emit({"checked": True})


def _add(
    interpreter: regopy.Interpreter, module: RegoModule, all_modules: Sequence[RegoModule]
) -> bool:
    _emit({"start": f"compile {module.name}"})
    try:
        interpreter.add_module(module.name, module.source)
    except regopy.RegoError as exc:
        _emit({"rego_error": _located(exc, module, all_modules)})
        return False
    return True


def _located(
    exc: regopy.RegoError, module: RegoModule, all_modules: Sequence[RegoModule]
) -> dict[str, JsonValue]:
    # the parser names the module it was given; errors name it, so map it back
    text = str(exc).replace("module.rego|", f"{module.name}|")
    return _locate(all_modules, text) or {
        "file": module.name,
        "line": 1,
        "column": 1,
        "message": str(exc).strip()[:300],
    }


def _child_test(source: PolicySource) -> None:
    # The tree check again, so that "tested" means "passes today's allowlist" even for
    # a version stored before it (nothing of it runs when it fails).
    trees: dict[str, AstNode] = {}
    problem = _refusal(source, trees)
    if problem is not None:
        where = f"{problem['file']}:{problem['line']}:{problem['column']}"
        _emit({"result": False, "name": "allowlist", "message": f"{where}: {problem['message']}"})
        return
    policy_modules = [m for m in source.modules if not m.is_test]
    for test_module in [m for m in source.modules if m.is_test]:
        # one interpreter per test module, so that one module's trouble stays its own
        interpreter = regopy.Interpreter()
        interpreter.strict_built_in_errors = True
        interpreter.add_data_json(json.dumps(dict(source.data)))
        for module in [*policy_modules, test_module]:
            interpreter.add_module(module.name, module.source)
        for rule in test_rules(trees[test_module.name]):  # from the tree, however indented
            name = f"data.{test_module.package}.{rule}"
            _emit({"start": name})
            try:
                output = interpreter.query(f"x := {name}")
                value = output[0].bindings.get("x") if output.ok() and len(output) else None
                detail = "" if output.ok() else f": {str(output)[:200]}"
            except Exception as exc:  # RegoError, or the output parser's JSONDecodeError
                _emit({"result": False, "name": name, "message": f"error: {exc}"})
                continue
            passed = value is True
            message = "" if passed else f"got {value!r}{detail}"
            _emit({"result": passed, "name": name, "message": message})
    compiled = CompiledPolicy.compile(source)
    for sample in source.requests:
        name = f"request {sample.name}"
        _emit({"start": name})
        decision = compiled.decide(sample.request)
        passed = decision.effect is sample.expect
        message = f"expected {sample.expect.value}, got {decision.effect.value}"
        if passed and sample.reason is not None:
            passed = any(sample.reason in r for r in decision.reasons)
            message = f"no reason mentions {sample.reason!r}"
        _emit(
            {
                "result": passed,
                "name": name,
                "message": "" if passed else f"{message}: {'; '.join(decision.reasons)}",
            }
        )
    _emit({"start": "coverage"})
    _emit({"coverage": measure_coverage(source, source.requests).to_dict()})


def _child_evaluate(source: PolicySource, requests: Sequence[Mapping[str, JsonValue]]) -> None:

    compiled = CompiledPolicy.compile(source)
    for index, raw in enumerate(requests):
        _emit({"start": f"request {index}"})
        decision = compiled.decide(DecisionRequest.from_dict(raw))
        _emit({"decision": decision.to_dict(), "index": index})


# No memory rlimit: importing regopy 1.5.2 reserves about 256 GiB of virtual
# address space (VmData), so RLIMIT_AS / RLIMIT_DATA caps make ordinary
# allocations fail at random. The parent's timeout bounds a runaway policy.


def _main() -> int:
    _channel.append(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)
    job = json.loads(sys.stdin.buffer.read())
    source = PolicySource.from_dict(job["source"])
    command = job["command"]
    if command == "check":
        _child_check(source)
    elif command == "test":
        _child_test(source)
    elif command == "evaluate":
        _child_evaluate(source, job.get("requests", []))
    else:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
