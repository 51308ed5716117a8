"""The loop: an exchange that is down costs one line per outage, never an exit; signals stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from consent import EnterpriseKey
from core.keys import Ed25519Signer
from exchange.agent import AgentConfig, AgentState, CsvSource, assemble_agent
from exchange.client import ExchangeClient
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from ledger import NoteVerifier
from tests.conftest import initialised
from tests.server import free_port
from tests.zygote import ibx_argv


def test_an_unreachable_exchange_is_one_line_per_outage_and_the_agent_keeps_trying(
    tmp_path: Path,
) -> None:
    key = EnterpriseKey.generate(tmp_path / "k.key")
    client = ExchangeClient.remote(f"http://127.0.0.1:{free_port()}", token="t", timeout=1)
    said: list[str] = []
    warned: list[str] = []
    agent = assemble_agent(
        client,
        enterprise="plant-a",
        signer=key.signer,
        ledger_key=NoteVerifier("log", Ed25519Signer.generate("l").public_key),
        source=CsvSource(tmp_path / "absent.csv"),
        state=AgentState.open(tmp_path / "state"),
        say=said.append,
        warn=warned.append,
        config=AgentConfig(wait=1, first_backoff=0.01, max_backoff=0.05),
    )
    runner = threading.Thread(target=agent.run)
    runner.start()
    time.sleep(0.8)
    agent.stop()
    runner.join(timeout=5)
    assert not runner.is_alive()
    assert len(warned) == 1, warned
    assert "exchange unreachable" in warned[0]
    assert said == []


def test_ibx_agent_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    data_dir = initialised(tmp_path / "server", ledger_origin="loop.ibx.localhost/ledger")
    runtime = Runtime(Settings(data_dir=data_dir))
    try:
        key = EnterpriseKey.generate(tmp_path / "consent.key")
        token = runtime.identities.create(
            "plant-a", Role.ENTERPRISE, industry="lithium-battery", public_key=key.signer.public_key
        ).token
        (tmp_path / "ledger.vkey").write_text(runtime.ledger.vkey() + "\n")
    finally:
        runtime.close()
    (tmp_path / "plant.csv").write_text("energy_kwh\n1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
    env["IBX_TOKEN"] = token
    proc = subprocess.Popen(
        [*ibx_argv(), "--data-dir", str(data_dir), "agent",
         "--enterprise", "plant-a", "--key", str(tmp_path / "consent.key"),
         "--source", str(tmp_path / "plant.csv"), "--ledger-vkey", str(tmp_path / "ledger.vkey"),
         "--poll", "20"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "serving" in first, first + (proc.stderr.read() if proc.stderr else "")
        time.sleep(0.5)  # inside the long poll
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 5  # the idle long poll is interrupted, not waited out
    assert "stopped" in out
    assert token not in out + err
    state = tmp_path / "ibx-agent-plant-a"
    assert state.is_dir() and (state.stat().st_mode & 0o777) == 0o700
