"""``ibx serve --workers N``: N processes answer on one port; a signal to the parent stops them
all, and a worker that dies stops the rest (the service manager restarts the whole)."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.server import CA_BUNDLE_NAME, TEST_AUTH_LIMITS, free_port


@dataclass(frozen=True)
class Served:
    proc: subprocess.Popen[bytes]
    base: str
    verify: ssl.SSLContext
    log: Path

    def workers(self) -> list[int]:
        """The pids of the parent's live child processes."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in children.read_text().split()]


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@contextmanager
def serving(data_dir: Path, *extra: str) -> Iterator[Served]:
    port = free_port()
    log = data_dir.parent / f"serve-{port}.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "exchange.cli", "--data-dir", str(data_dir), "serve"),
                *("--host", "127.0.0.1", "--port", str(port), *extra),
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, **TEST_AUTH_LIMITS},
        )
    base = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text(errors="replace")
            try:
                verify = ssl.create_default_context(cafile=str(data_dir / CA_BUNDLE_NAME))
                if httpx.get(f"{base}/healthz", verify=verify, timeout=1).status_code == 200:
                    break
            except (httpx.TransportError, ssl.SSLError, FileNotFoundError):
                pass
            assert time.monotonic() < deadline, "ibx serve did not come up"
            time.sleep(0.1)
        yield Served(proc, base, verify, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_two_workers_answer_on_one_port_and_stop_together(tmp_path: Path) -> None:
    data_dir = initialised(tmp_path / "data")
    runtime = Runtime(Settings(data_dir=data_dir))
    token = runtime.identities.create("sb", Role.SUBBRAIN, industry="lithium-battery").token
    runtime.close()
    edge_port = free_port()
    with serving(data_dir, "--workers", "2", "--edge-port", str(edge_port)) as served:
        workers = served.workers()
        assert len(workers) == 2
        cacerts = httpx.get(  # the edge listener, served by one of them
            f"https://127.0.0.1:{edge_port}/.well-known/est/cacerts", verify=served.verify
        )
        assert cacerts.status_code == 200 and cacerts.content
        started = set(
            map(int, re.findall(r"Started server process \[(\d+)\]", served.log.read_text()))
        )
        assert started == set(workers)
        before = {pid: _cpu_ticks(pid) for pid in workers}
        for _ in range(40):  # new connections: the kernel spreads them over the workers
            with httpx.Client(verify=served.verify, base_url=served.base) as client:
                for _ in range(10):
                    answer = client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
                    assert answer.status_code == 200 and answer.json()["name"] == "sb"
        for pid in workers:  # each has done requests (hashing 40 connections to one: 2**-39)
            assert _cpu_ticks(pid) - before[pid] >= 2, (pid, before, _cpu_ticks(pid))
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(timeout=30) == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_a_worker_that_dies_stops_the_others(tmp_path: Path) -> None:
    data_dir = initialised(tmp_path / "data")
    with serving(data_dir, "--workers", "2") as served:
        first, second = served.workers()
        os.kill(first, signal.SIGKILL)
        assert served.proc.wait(timeout=30) == 1
        assert "exited with -9; stopping the others" in served.log.read_text()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{second}").exists() and "Z" not in _state(second):
            assert time.monotonic() < deadline, "the other worker is still running"
            time.sleep(0.05)
