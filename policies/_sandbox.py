"""Officer-supplied Rego runs here first: in a separate, bounded process.

regopy 1.5.2 can kill the whole process (a segmentation fault) on some
``with input as`` tests, a policy may loop for long, and a comprehension can
build an array of a hundred million elements. So proposal checks, ``test_``
rules and evaluation of not-yet-activated versions run in a child process
(``python -m policies._sandbox_child``) that reads one JSON job on stdin and
writes one JSON line per step to stdout. The parent (:func:`run_sandbox`)
bounds it three ways and turns each into a failed step with a clear message
naming the step that was running:

- **time**: killed after ``timeout`` seconds;
- **resident memory**: the parent reads the child's ``VmRSS`` from
  ``/proc/<pid>/status`` every :data:`POLL_SECONDS` and kills it past
  ``memory_limit`` bytes. (An address-space rlimit cannot be used: importing
  regopy reserves about 256 GiB of virtual memory, so ordinary allocations
  would fail at random. A cgroup would need delegation that a normal Linux
  account does not have. Where ``/proc`` is missing the bound is not enforced,
  and a warning says so);
- **environment**: the child gets only :data:`CHILD_ENVIRONMENT` variables
  (no ``IBX_*``, no cloud or database credentials), so even a built-in that
  slipped past the allowlist would find no secret to read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from policies._coverage_report import CoverageReport, CoverageThresholds
from policies._model import DecisionRequest, TestReport, TestResult
from policies._source import PolicySource
from policies.errors import (
    PolicyInputError,
    PolicySandboxError,
    RegoSourceError,
    SandboxMemoryError,
    UnsafeRegoError,
)

__all__ = ["SandboxLimits", "SandboxRun", "run_sandbox"]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 60.0
DEFAULT_MEMORY_LIMIT = 512 * 1024 * 1024
"""Resident memory the child may use (the baseline pack's checks peak near 80 MiB)."""
POLL_SECONDS = 0.01
CHILD_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "TMPDIR", "SYSTEMROOT")
"""The only variables the child inherits: what Python needs to start and find ibx."""


@dataclass(frozen=True)
class SandboxLimits:
    """How long and how much resident memory one sandbox job may take.

    Raises:
        ValueError: a non-positive timeout or a memory limit under 64 MiB.
    """

    timeout: float = DEFAULT_TIMEOUT
    memory_limit: int = DEFAULT_MEMORY_LIMIT
    """Bytes of resident memory (VmRSS); the child is killed past it."""

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError("the sandbox timeout must be positive")
        if self.memory_limit < 64 * 1024 * 1024:
            raise ValueError("the sandbox memory limit must be at least 64 MiB (regopy needs ~80)")


def child_environment() -> dict[str, str]:
    """The scrubbed environment the sandbox child runs with."""
    return {k: v for k, v in os.environ.items() if k in CHILD_ENVIRONMENT}


def resident_bytes(pid: int) -> int | None:
    """A process's resident set size from ``/proc``, or None where it cannot be read."""
    try:
        with Path(f"/proc/{pid}/status").open(encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass(frozen=True)
class SandboxRun:
    """What the child reported: every finished step, and how the run ended."""

    steps: tuple[Mapping[str, Any], ...]
    error: str | None
    """None when the child finished normally; otherwise why it did not."""
    out_of_memory: bool = False
    """The child was killed for passing its resident-memory bound."""


def run_sandbox(
    command: str,
    source: PolicySource,
    *,
    requests: Sequence[DecisionRequest] = (),
    timeout: float = DEFAULT_TIMEOUT,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> SandboxRun:
    """Run one sandbox job in a child process, bounded in time and resident memory.

    Raises:
        PolicySandboxError: the child could not be started.
    """
    limits = SandboxLimits(timeout, memory_limit)
    job = {
        "command": command,
        "source": source.to_dict(),
        "requests": [r.to_dict() for r in requests],
    }
    argv = [sys.executable, "-m", "policies._sandbox_child"]
    try:
        proc = subprocess.Popen(  # noqa: S603 -- fixed argv, our own module
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=child_environment(),
        )
    except OSError as exc:
        raise PolicySandboxError(f"cannot start the policy sandbox: {exc}") from exc
    stdout, stderr, error = _supervise(proc, json.dumps(job).encode(), limits)
    returncode = proc.returncode if error is None else None
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
    return SandboxRun(tuple(steps), error, error is not None and "resident memory" in error)


def _supervise(
    proc: subprocess.Popen[bytes], payload: bytes, limits: SandboxLimits
) -> tuple[bytes, bytes, str | None]:
    """Feed the job, collect the output; kill the child past its time or memory bound."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    outputs: dict[str, bytes] = {}

    def feed(pipe: IO[bytes]) -> None:
        with contextlib.suppress(OSError):  # a child that died early closed its end
            pipe.write(payload)
        with contextlib.suppress(OSError):
            pipe.close()

    def drain(name: str, pipe: IO[bytes]) -> None:
        with pipe:
            outputs[name] = pipe.read()

    workers = [
        threading.Thread(target=feed, args=(proc.stdin,), daemon=True),
        threading.Thread(target=drain, args=("out", proc.stdout), daemon=True),
        threading.Thread(target=drain, args=("err", proc.stderr), daemon=True),
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + limits.timeout
    watched = resident_bytes(os.getpid()) is not None  # /proc is there
    if not watched:
        logger.warning("policy sandbox: no /proc here; resident memory is not bounded")
    reason: str | None = None
    while reason is None:
        try:
            proc.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        # None while the child is between fork and exec, or exiting: nothing to bound
        rss = resident_bytes(proc.pid) if watched else None
        if rss is not None and rss > limits.memory_limit:
            reason = (
                f"the sandbox used more than {limits.memory_limit // (1024 * 1024)} MiB of "
                "resident memory and was killed"
            )
        elif time.monotonic() > deadline:
            reason = f"timed out after {limits.timeout:g} s"
    if reason is not None:
        proc.kill()
        proc.wait()
    for worker in workers:
        worker.join()
    return outputs.get("out", b""), outputs.get("err", b""), reason


def check_in_sandbox(
    source: PolicySource,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
) -> None:
    """Check ``source``'s Rego in the sandbox; refuse it with a located error.

    Every module is parsed, its tree checked (built-ins by allowlist, ``with``
    and ``test_`` rules only in test packages), then the policy packages are
    evaluated and the bundle compiled.

    Raises:
        UnsafeRegoError: a refused built-in, ``with`` or ``test_`` rule, located.
        RegoSourceError: a syntax error, located.
        PolicyInputError: the version does not compile for another reason.
        SandboxMemoryError: the check passed the resident-memory bound.
        PolicySandboxError: the check crashed or timed out.
    """
    run = run_sandbox("check", source, timeout=timeout, memory_limit=memory_limit)
    for step in run.steps:
        problem = step.get("rego_error")
        if isinstance(problem, dict) and "refused" in problem:
            raise UnsafeRegoError(
                str(problem["message"]),
                file=str(problem["file"]),
                line=int(problem["line"]),
                column=int(problem["column"]),
                construct=str(problem["refused"]),
            )
        if isinstance(problem, dict):
            raise RegoSourceError(
                str(problem["message"]),
                file=str(problem["file"]),
                line=int(problem["line"]),
                column=int(problem["column"]),
            )
        if "compile_error" in step:
            raise PolicyInputError(str(step["compile_error"]))
    if run.out_of_memory:
        raise SandboxMemoryError(f"proposal check failed: {run.error}", limit=memory_limit)
    if run.error is not None:
        raise PolicySandboxError(f"proposal check failed: {run.error}")
    if not any(step.get("checked") for step in run.steps):
        raise PolicySandboxError("proposal check did not complete")


def run_tests_in_sandbox(
    source: PolicySource,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    coverage: CoverageThresholds | None = None,
) -> TestReport:
    """Run ``source``'s ``test_`` rules and sample requests in the sandbox; measure coverage.

    A crash, a timeout or the memory bound fails the step that was running and
    the report; coverage under ``coverage`` (default :class:`CoverageThresholds`:
    every deny rule fires for some sample request) fails the report too.

    Raises:
        PolicySandboxError: the child could not be started.
    """
    run = run_sandbox("test", source, timeout=timeout, memory_limit=memory_limit)
    results = [
        TestResult(str(s["name"]), bool(s["result"]), str(s.get("message", "")))
        for s in run.steps
        if "result" in s
    ]
    measured = next((s["coverage"] for s in run.steps if isinstance(s.get("coverage"), dict)), None)
    report: CoverageReport | None = None
    if measured is not None:
        try:
            report = CoverageReport.from_dict(measured)
        except ValueError as exc:
            report = CoverageReport((), 0, f"unreadable coverage report: {exc}")
        results.extend(report.judge(coverage or CoverageThresholds()))
    if run.error is not None:
        results.append(TestResult("sandbox", False, run.error))
    return TestReport(tuple(results), run.error, report.to_dict() if report is not None else None)
