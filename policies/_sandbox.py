"""Officer-supplied Rego runs here first: in a separate, time-limited process.

regopy 1.5.2 can kill the whole process (a segmentation fault) on some
``with input as`` tests, and a policy may loop for long. So proposal checks,
``test_`` rules and evaluation of not-yet-activated versions run in a child
process (``python -m policies._sandbox``) that reads one JSON job on stdin and
writes one JSON line per step to stdout. The parent (:func:`run_sandbox`)
turns a crash or a timeout into a failed step with a clear message, naming the
step that was running.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.canonical import JsonValue
from policies._model import DecisionRequest, TestReport, TestResult
from policies._source import PolicySource, RegoModule, location_of
from policies.errors import PolicyInputError, PolicySandboxError, RegoSourceError

__all__ = ["SandboxRun", "run_sandbox"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
_ERROR = re.compile(
    r"\(error \d+:(?P<file>[^|\s]+)\|(?P<offset>\d+)\|\d+\s+\(errormsg \d+:(?P<msg>[^\n]*?)\)"
)
_NOT_FOUND = re.compile(r"Function not found: (?P<name>[A-Za-z_][A-Za-z0-9_.]*)")
_TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]*)\b", re.MULTILINE)


@dataclass(frozen=True)
class SandboxRun:
    """What the child reported: every finished step, and how the run ended."""

    steps: tuple[Mapping[str, Any], ...]
    error: str | None
    """None when the child finished normally; otherwise why it did not."""


def run_sandbox(
    command: str,
    source: PolicySource,
    *,
    requests: Sequence[DecisionRequest] = (),
    timeout: float = DEFAULT_TIMEOUT,
) -> SandboxRun:
    """Run one sandbox job in a child process.

    Raises:
        PolicySandboxError: the child could not be started.
    """
    job = {
        "command": command,
        "source": source.to_dict(),
        "requests": [r.to_dict() for r in requests],
    }
    argv = [sys.executable, "-m", "policies._sandbox"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
    try:
        proc = subprocess.run(  # noqa: S603 -- fixed argv, our own module
            argv,
            input=json.dumps(job).encode(),
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        stdout, returncode, error = proc.stdout, proc.returncode, None
    except subprocess.TimeoutExpired as exc:
        stdout, returncode = exc.stdout or b"", None
        error = f"timed out after {timeout:g} s"
    except OSError as exc:
        raise PolicySandboxError(f"cannot start the policy sandbox: {exc}") from exc
    steps: list[Mapping[str, Any]] = []
    for raw in stdout.decode("utf-8", errors="replace").splitlines():
        try:
            step = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(step, dict):
            steps.append(step)
    if error is None and returncode is not None and returncode != 0:
        if returncode < 0:
            name = signal.Signals(-returncode).name
            error = f"the Rego evaluator crashed ({name})"
        else:
            error = f"the sandbox exited with status {returncode}"
    if error is not None:
        started = [s["start"] for s in steps if "start" in s]
        done = {s.get("name") for s in steps if "result" in s}
        running = next((s for s in reversed(started) if s not in done), None)
        if running is not None:
            error += f" while running {running}"
        logger.warning("policy sandbox %s: %s", command, error)
    return SandboxRun(tuple(steps), error)


def check_in_sandbox(source: PolicySource, *, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Compile ``source``'s Rego in the sandbox; refuse it with a located error.

    Raises:
        RegoSourceError: a syntax or type error, with file, line and column.
        PolicyInputError: the version does not compile for another reason.
        PolicySandboxError: the check crashed or timed out.
    """
    run = run_sandbox("check", source, timeout=timeout)
    for step in run.steps:
        problem = step.get("rego_error")
        if isinstance(problem, dict):
            raise RegoSourceError(
                str(problem["message"]),
                file=str(problem["file"]),
                line=int(problem["line"]),
                column=int(problem["column"]),
            )
        if "compile_error" in step:
            raise PolicyInputError(str(step["compile_error"]))
    if run.error is not None:
        raise PolicySandboxError(f"proposal check failed: {run.error}")
    if not any(step.get("checked") for step in run.steps):
        raise PolicySandboxError("proposal check did not complete")


def run_tests_in_sandbox(source: PolicySource, *, timeout: float = DEFAULT_TIMEOUT) -> TestReport:
    """Run ``source``'s ``test_`` rules and sample requests in the sandbox.

    A crash or timeout fails the step that was running and the report.
    """
    run = run_sandbox("test", source, timeout=timeout)
    results = [
        TestResult(str(s["name"]), bool(s["result"]), str(s.get("message", "")))
        for s in run.steps
        if "result" in s
    ]
    if run.error is not None:
        results.append(TestResult("sandbox", False, run.error))
    return TestReport(tuple(results), run.error)


# --- the child ---------------------------------------------------------------------------


def _emit(step: Mapping[str, JsonValue]) -> None:
    sys.stdout.write(json.dumps(step) + "\n")
    sys.stdout.flush()


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


def _child_check(source: PolicySource) -> None:
    import regopy  # noqa: PLC0415 -- loaded only in the child

    from policies._engine import CompiledPolicy  # noqa: PLC0415

    interpreter = regopy.Interpreter()
    interpreter.strict_built_in_errors = True
    interpreter.add_data_json(json.dumps(dict(source.data)))
    for module in source.modules:
        _emit({"start": f"compile {module.name}"})
        try:
            interpreter.add_module(module.name, module.source)
        except regopy.RegoError as exc:
            located = _locate(source.modules, str(exc)) or {
                "file": module.name,
                "line": 1,
                "column": 1,
                "message": str(exc).strip()[:300],
            }
            _emit({"rego_error": located})
            return
    for package in sorted({m.package for m in source.modules if m.package}):
        if package.endswith("_test"):
            continue
        _emit({"start": f"evaluate package {package}"})
        from regopy.rego_shared import rego_output_ok, rego_output_string, rego_query  # noqa: PLC0415

        interpreter.set_input_term("{}")
        impl = rego_query(interpreter._impl, f"x := data.{package}")
        text = rego_output_string(impl)
        if text.startswith("(error") or not rego_output_ok(impl):
            where = _locate(source.modules, text)
            if where is not None:
                _emit({"rego_error": where})
                return
            if text.startswith("(error"):
                _emit(
                    {"compile_error": f"package {package} does not evaluate: {text.strip()[:300]}"}
                )
                return
    try:
        CompiledPolicy.compile(source)
    except PolicyInputError as exc:
        _emit({"compile_error": str(exc)})
        return
    _emit({"checked": True})


def _child_test(source: PolicySource) -> None:
    import regopy  # noqa: PLC0415

    from policies._engine import CompiledPolicy  # noqa: PLC0415

    interpreter = regopy.Interpreter()
    interpreter.strict_built_in_errors = True
    interpreter.add_data_json(json.dumps(dict(source.data)))
    for module in source.modules:
        interpreter.add_module(module.name, module.source)
    for module in source.modules:
        for rule in dict.fromkeys(_TEST_RULE.findall(module.source)):
            name = f"data.{module.package}.{rule}"
            _emit({"start": name})
            try:
                output = interpreter.query(f"x := {name}")
                value = output[0].bindings.get("x") if output.ok() and len(output) else None
            except Exception as exc:  # RegoError, or the output parser's JSONDecodeError
                _emit({"result": False, "name": name, "message": f"error: {exc}"})
                continue
            passed = value is True
            _emit({"result": passed, "name": name, "message": "" if passed else f"got {value!r}"})
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


def _child_evaluate(source: PolicySource, requests: Sequence[Mapping[str, JsonValue]]) -> None:
    from policies._engine import CompiledPolicy  # noqa: PLC0415

    compiled = CompiledPolicy.compile(source)
    for index, raw in enumerate(requests):
        _emit({"start": f"request {index}"})
        decision = compiled.decide(DecisionRequest.from_dict(raw))
        _emit({"decision": decision.to_dict(), "index": index})


def _main() -> int:
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
