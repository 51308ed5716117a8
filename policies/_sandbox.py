"""Officer-supplied Rego runs here first: in a separate, time-limited process.

regopy 1.5.2 can kill the whole process (a segmentation fault) on some
``with input as`` tests, and a policy may loop for long. So proposal checks,
``test_`` rules and evaluation of not-yet-activated versions run in a child
process (``python -m policies._sandbox_child``) that reads one JSON job on stdin and
writes one JSON line per step to stdout. The parent (:func:`run_sandbox`)
turns a crash or a timeout into a failed step with a clear message, naming the
step that was running.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from policies._model import DecisionRequest, TestReport, TestResult
from policies._source import PolicySource
from policies.errors import PolicyInputError, PolicySandboxError, RegoSourceError

__all__ = ["SandboxRun", "run_sandbox"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0


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
    argv = [sys.executable, "-m", "policies._sandbox_child"]
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
        stderr = proc.stderr
    except subprocess.TimeoutExpired as exc:
        stdout, returncode, stderr = exc.stdout or b"", None, b""
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
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            error = f"the Rego evaluator crashed ({name})"
        else:
            last = stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:]
            error = f"the sandbox exited with status {returncode}" + (
                f" ({last[0][:200]})" if last else ""
            )
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

    Raises:
        PolicySandboxError: the child could not be started.
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
