"""Runs an MPC job on N party processes, with a deadline and nothing left behind.

The runner is the relay: it writes each party's job file (the spec and only
that party's sealed envelopes, which it cannot open), starts one OS process
per party in the party's own working directory and process group, waits for
all of them until the deadline, and kills every process group it started in
a ``finally``. A party that fails or does not answer in time fails the job:
no partial result is returned.

Nothing outlives the runner. While a job runs (on the main thread), SIGTERM
and SIGHUP raise :class:`mpc.errors.JobInterruptedError` — their default
action would end the interpreter without running the ``finally`` — and
SIGINT raises ``KeyboardInterrupt`` as usual; the previous handlers come
back afterwards. Signals are held while a party is being started and while
the parties are killed, so none is started unrecorded or left half-killed.
Each party (:mod:`mpc._party_main`, told the runner's pid) also asks the
kernel to kill it when the runner dies (Linux ``PR_SET_PDEATHSIG``), which
covers a runner killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from mpc.deployment import MpcDeployment
from mpc.dp_order import OrderCounts
from mpc.errors import CohortTooSmallError, JobInterruptedError, PartyError, PartyTimeoutError
from mpc.guard import DominanceVerdict
from mpc.mpc_spec import MpcJobSpec, MpcResult
from mpc.sharing import DealtInput

__all__ = ["MpcRunner", "RunnerConfig"]

logger = logging.getLogger(__name__)

_PROJECT_ROOT = Path(__file__).resolve().parents[1]

_HELD = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
"""Signals held while a party starts and while the parties are killed."""

_CONVERTED = (signal.SIGTERM, signal.SIGHUP)
"""Signals whose default action would skip the runner's ``finally``."""


@contextlib.contextmanager
def _held_signals() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP (they are delivered when the block ends)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def _interrupts_raise(job_id: str) -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`JobInterruptedError` (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; PDEATHSIG still applies
        return

    def interrupt(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        raise JobInterruptedError(
            f"job {job_id!r}: {name} received; every compute party was stopped",
            signal_number=signum,
        )

    previous = {}
    for signum in _CONVERTED:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            previous[signum] = signal.signal(signum, interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@dataclass(frozen=True)
class RunnerConfig:
    """``deadline`` in seconds for the whole job; ``party_command`` starts one party."""

    deadline: float = 60.0
    host: str = "127.0.0.1"
    unsafe_no_tls: bool = False
    """Plain TCP between the parties (tests on one host only; a warning is logged)."""
    party_command: tuple[str, ...] = field(
        default_factory=lambda: (sys.executable, "-m", "mpc._party_main")
    )


def _free_ports(host: str, count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class MpcRunner:
    """Starts the parties of one job and collects their agreed outcome."""

    def __init__(self, deployment: MpcDeployment, config: RunnerConfig | None = None) -> None:
        self._deployment = deployment
        self._config = config or RunnerConfig()
        self.last_pids: tuple[int, ...] = ()

    def run(self, spec: MpcJobSpec, inputs: Sequence[DealtInput]) -> MpcResult:
        """Run ``spec`` on the dealt inputs.

        Raises:
            PartyTimeoutError: a party did not finish before the deadline (all killed).
            PartyError: a party failed, the parties disagree, or their order counts are
                malformed.
            CohortTooSmallError: after refused contributions were dropped, too few remain.
            JobInterruptedError: SIGTERM or SIGHUP arrived (every party was stopped);
                SIGINT raises ``KeyboardInterrupt`` the same way.
        """
        cfg = self._config
        dep = self._deployment
        ports = _free_ports(cfg.host, dep.parties)
        addresses = ",".join(f"{cfg.host}:{port}" for port in ports)
        procs: list[subprocess.Popen[bytes]] = []
        outs: list[Path] = []
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        with _interrupts_raise(spec.job_id):
            try:
                self._start(spec, inputs, addresses=addresses, env=env, procs=procs, outs=outs)
                self._wait(spec, procs, outs)
            finally:
                with _held_signals():
                    _stop(procs)
        return self._collect(spec, outs)

    def _start(
        self,
        spec: MpcJobSpec,
        inputs: Sequence[DealtInput],
        *,
        addresses: str,
        env: dict[str, str],
        procs: list[subprocess.Popen[bytes]],
        outs: list[Path],
    ) -> None:
        """Write each party's job file and start it; ``procs`` lists every started party."""
        cfg = self._config
        dep = self._deployment
        for index in range(dep.parties):
            work = dep.party_dir(index)
            jobs = work / "jobs"
            jobs.mkdir(exist_ok=True)
            job_file = jobs / f"{spec.job_id}.json"
            out = jobs / f"{spec.job_id}.out.json"
            out.unlink(missing_ok=True)
            envelopes = [
                e.to_dict() for dealt in inputs for e in dealt.envelopes if e.party == index
            ]
            job_file.write_text(json.dumps({"spec": spec.to_dict(), "envelopes": envelopes}))
            command = [
                *cfg.party_command,
                "--index",
                str(index),
                "--parties",
                addresses,
                "--job",
                str(job_file),
                "--out",
                str(out),
                "--dir",
                str(work),
                "--runner-pid",
                str(os.getpid()),
            ]
            if cfg.unsafe_no_tls:
                logger.warning("job %s: party %d runs without TLS", spec.job_id, index)
                command.append("--unsafe-no-tls")
            with (jobs / f"{spec.job_id}.log").open("wb") as log, _held_signals():
                procs.append(
                    subprocess.Popen(  # noqa: S603 - our own interpreter and module
                        command,
                        cwd=work,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
                self.last_pids = tuple(p.pid for p in procs)
            outs.append(out)

    def _wait(
        self, spec: MpcJobSpec, procs: Sequence[subprocess.Popen[bytes]], outs: Sequence[Path]
    ) -> None:
        deadline = time.monotonic() + self._config.deadline
        while True:
            codes = [p.poll() for p in procs]
            for index, code in enumerate(codes):
                if code not in (None, 0):
                    raise PartyError(
                        f"job {spec.job_id!r}: party {index} failed: {_error_of(outs[index])}"
                    )
            if all(code == 0 for code in codes):
                return
            if time.monotonic() > deadline:
                silent = [i for i, code in enumerate(codes) if code is None]
                raise PartyTimeoutError(
                    f"job {spec.job_id!r}: parties {silent} did not answer within "
                    f"{self._config.deadline:g} s; the job failed and every party was stopped",
                    parties=tuple(silent),
                )
            time.sleep(0.02)

    def _collect(self, spec: MpcJobSpec, outs: Sequence[Path]) -> MpcResult:
        outcomes = [json.loads(out.read_text()) for out in outs]
        first = outcomes[0]
        if "error" in first:
            raise CohortTooSmallError(
                f"job {spec.job_id!r}: {first['error']}; {len(first.get('dropped', {}))} left out",
                cohort=int(first.get("cohort", 0)),
                minimum=spec.min_cohort,
            )
        local = ("bytes_sent", "peak_rss_bytes")
        public = [{k: v for k, v in o.items() if k not in local} for o in outcomes]
        if any(p != public[0] for p in public[1:]):
            raise PartyError(f"job {spec.job_id!r}: the parties' outcomes disagree")
        stats = first.get("statistics", {})
        counts = first.get("order_counts")
        try:
            order_counts = (
                None
                if counts is None
                else OrderCounts(
                    spec.order_candidates,
                    tuple(int(v) for v in counts["below"]),
                    tuple(int(v) for v in counts["above"]),
                    int(first["cohort"]),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PartyError(f"job {spec.job_id!r}: malformed order counts ({exc})") from exc
        return MpcResult(
            job_id=spec.job_id,
            cohort=int(first["cohort"]),
            statistics=tuple((name, tuple(values)) for name, values in sorted(stats.items())),
            rank_tags=tuple(int(v) for v in first.get("rank_tags", [])),
            dominance=DominanceVerdict(
                spec.dominance, tuple(first.get("dominated", [False] * len(spec.dominance)))
            ),
            dropped=tuple(sorted(first.get("dropped", {}).items())),
            order_counts=order_counts,
            bytes_sent=sum(int(o.get("bytes_sent", 0)) for o in outcomes),
            peak_party_rss=max(int(o.get("peak_rss_bytes", 0)) for o in outcomes),
        )


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Kill the process group of every party not yet reaped, and reap it."""
    for proc in procs:
        if proc.returncode is None:  # unreaped: its pid (and group id) cannot be reused
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _error_of(out: Path) -> str:
    try:
        return str(json.loads(out.read_text()).get("error", "no error recorded"))
    except (OSError, ValueError):
        return "it exited without an outcome"
