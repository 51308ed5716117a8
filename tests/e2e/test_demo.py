"""`make demo`: the lithium-battery cluster's story runs to the end, as told, and cleans up.

The story runs once for the whole test session (``python -m exchange.demo`` in
a fresh directory that already holds a stale ``.ibx-demo``, stdin not a
terminal: the ``demo_run`` fixture, shared with the console's tests, which
serve a copy of its files); each test reads what it printed, the files it
left, and the processes it did not leave.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.demo_world import DemoRun

Told = DemoRun
"""One run of the demo (:class:`tests.demo_world.DemoRun`)."""


def _processes_under(path: Path) -> list[str]:
    """Command lines of running processes that name ``path`` (the demo's leftovers)."""
    left = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            left.append(cmdline)
    return left


@pytest.fixture(scope="module")
def told(demo_run: DemoRun) -> Told:
    """The session's one run of the story (``demo_run``, tests/demo_world.py)."""
    return demo_run


def test_the_story_runs_to_the_end_and_leaves_nothing_running(told: Told) -> None:
    assert told.code == 0, told.out[-3000:] + told.err[-3000:]
    headings = re.findall(r"^== (\d+)\. ", told.out, re.M)
    assert headings == [str(n) for n in range(1, 11)]
    assert "demo finished in" in told.out
    assert not (told.cwd / ".ibx-demo" / "stale-from-an-earlier-run").exists()  # wiped first
    assert _processes_under(told.cwd) == []
    assert "Traceback" not in told.err
    assert "Request: " not in told.out + told.err  # no per-request Casbin log lines


def test_officers_and_plants_act_with_their_own_files(told: Told) -> None:
    work = told.cwd / ".ibx-demo"
    two = told.step(2)
    assert re.search(r"officer-wang proposes the baseline pack.*ledger #\d+", two)
    assert re.search(r"officer-li approves it, a signed duty .*ledger #\d+", two)
    assert "four eyes: proposed by officer-wang, approved by officer-li" in two
    assert "auditor auditor-zhao" in two and "witness witness-qiu" in two
    for name in ("officer-wang", "officer-li"):
        assert (work / "officers" / name / "officer.key").stat().st_mode & 0o077 == 0
        assert (work / "officers" / name / "token").stat().st_mode & 0o077 == 0
    assert not (work / "init-keys").exists()  # the officers' copies were handed over
    three = told.step(3)
    assert len(re.findall(r"consent signed, ledger #\d+", three)) == 5
    assert "5 ibx agent processes started" in three
    four = told.step(4)
    assert "enrols over EST" in four and "uploads them over mutual TLS" in four
    commands = (work / "commands.log").read_text()
    assert "ibx_" not in commands  # tokens travel in files, never in a command line
    assert "request submit" in commands and "audit verify" in commands


def test_the_sub_brain_sees_results_decided_before_any_agent(told: Told) -> None:
    six = told.step(6)
    decision = int(re.search(r"decision on ledger #(\d+)", six).group(1))  # type: ignore[union-attr]
    agents = re.search(r"5 agents each verified .*: ledger ((?:#\d+(?:, )?)+)", six)
    assert agents, six
    contributions = [int(i) for i in re.findall(r"#(\d+)", agents.group(1))]
    assert len(contributions) == 5 and min(contributions) > decision
    mean = re.search(r"released: ([\d.]+) kWh .*over 5 plants \(in the clear, .*: ([\d.]+)\)", six)
    assert mean and abs(float(mean.group(1)) - float(mean.group(2))) < 0.05
    assert re.search(r"median [\d.]+, quartiles [\d.]+, [\d.]+, [\d.]+", six)
    assert len(re.findall(r": \d+% of the other plants use less energy", six)) == 5
    psi = re.search(r"(\d+) suppliers in common \(in the clear: (\d+)\)", six)
    assert psi and psi.group(1) == psi.group(2)


def test_denials_name_the_rule_and_who_was_left_out(told: Told) -> None:
    seven = told.step(7)
    assert "DENIED by the policy (exit 3)" in seven
    assert "purpose benchmarking is not whitelisted for core data" in seven
    assert re.search(r"two plants only .*DENIED \(exit 3\), ledger #\d+", seven)
    assert "left out: lanjiang-cells: min_cohort; qingchuan-lineng: min_cohort" in seven


def test_a_revoked_plant_is_left_out_of_the_next_job(told: Told) -> None:
    eight = told.step(8)
    assert re.search(r"Shimen Battery\) revokes its consent cst_\w+, .*ledger #\d+", eight)
    assert "4 plants included; left out: shimen-battery (revoked" in eight
    assert "released over 4 plants" in eight


def test_the_witness_cosigns_and_the_auditor_verifies_traces_and_reports(told: Told) -> None:
    assert "cosigns it and keeps it" in told.step(5)
    assert re.search(r"consistency proof from the checkpoint it kept \(size \d+\)", told.step(9))
    ten = told.step(10)
    assert re.search(r"witness witness-qiu\+\w+\+\S+: cosigned 2 checkpoint\(s\)", ten)
    assert re.search(r"ibx audit verify .*: ok: \d+ entries, 3 checkpoints", ten)
    assert "FINDING" not in ten
    assert re.search(r"├── #\d+ decision: allowed, engine he, 5 participant", ten)
    assert re.search(r"└── #\d+ result sha256 [0-9a-f]{64}, cohort 5", ten)
    report = told.cwd / ".ibx-demo" / "report.html"
    assert "ibx audit report: .ibx-demo/report.html" in ten
    assert "<svg" in report.read_text(encoding="utf-8")
    assert "ibx audit alerts:" in ten
    assert "the consortium ledger (a Hyperledger Fabric channel) is off" in ten
    assert "(docs/fabric.md)" in ten


def test_the_end_prints_the_console_url_and_who_signs_in_with_what(told: Told) -> None:
    """Not on a terminal (stdin here is not one), the demo stops as before and says how the
    console is served again; each duty's sign-in line carries the token, administrators'
    their client certificate and a PKCS#12 file that opens with the printed passphrase."""
    from cryptography.hazmat.primitives.serialization import pkcs12

    work = told.cwd / ".ibx-demo"
    end = told.out[told.out.index("== demo finished in") :]
    url = (work / "console.url").read_text().strip()
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", url)
    assert f"{url}/console" in end and ".ibx-demo/ca-bundle.pem" in end
    assert "make console (serves .ibx-demo/data on the same URL)" in end
    for duty, name, token_file in (
        ("security officer", "officer-wang", work / "officers/officer-wang/token"),
        ("security officer", "officer-li", work / "officers/officer-li/token"),
        ("auditor", "auditor-zhao", work / "auditor/token"),
        ("enterprise", "qingchuan-lineng", work / "plants/qingchuan-lineng/token"),
        ("sub-brain", "sb-lithium-battery", work / "sub-brain/token"),
    ):
        token = token_file.read_text().strip()
        assert re.search(rf"^    {duty} +{name} +{re.escape(token)}$", end, re.M), end
    assert "witness-qiu" not in end.split("What to look at next:")[0]  # no console pages
    passphrase = re.search(r"passphrase (\S+)$", end, re.M)
    assert passphrase
    for home, name in (("officers/officer-wang", "officer-wang"), ("auditor", "auditor-zhao")):
        p12 = work / home / f"{name}.p12"
        assert f".ibx-demo/{home}/{name}.p12" in end and p12.stat().st_mode & 0o077 == 0
        bundle = pkcs12.load_pkcs12(p12.read_bytes(), passphrase.group(1).encode())
        assert bundle.key is not None and bundle.cert is not None


def test_make_console_serves_the_demos_world_again_until_stopped(
    told: Told, tmp_path: Path
) -> None:
    """``make console`` (``python -m exchange.demo console``) on a copy of the run: the same
    sign-in lines, a console a printed token signs in to, the plants' agents; SIGINT stops
    everything."""
    import shutil

    import httpx

    shutil.copytree(told.cwd / ".ibx-demo", tmp_path / ".ibx-demo", symlinks=True)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    (tmp_path / ".ibx-demo" / "console.url").write_text(f"https://127.0.0.1:{port}\n")
    with (
        taken,
        subprocess.Popen(
            [sys.executable, "-m", "exchange.demo", "console"],
            cwd=tmp_path,
            env={k: v for k, v in os.environ.items() if not k.startswith("IBX_")},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc,
    ):
        assert proc.stdout is not None and proc.stderr is not None
        lines: list[str] = []
        try:
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("Ctrl-C stops"):
                    break
            said = "".join(lines)
            served = re.search(
                r"^ibx serve: (https://127\.0\.0\.1:(\d+)) on .ibx-demo/data, 5 ", said, re.M
            )
            assert served and served.group(2) != str(port), said  # the demo's port was taken
            url = served.group(1)
            token = re.search(r"^    enterprise +qingchuan-lineng +(\S+)$", said, re.M)
            assert token and f"{url}/console" in said
            ca = tmp_path / ".ibx-demo" / "ca-bundle.pem"
            with httpx.Client(base_url=url, verify=ssl.create_default_context(cafile=ca)) as web:
                form = web.get("/console/login")
                csrf = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
                assert form.status_code == 200 and csrf
                signed = web.post(
                    "/console/login", data={"token": token.group(1), "login_csrf": csrf.group(1)}
                )
                assert signed.status_code == 303
                assert signed.headers["location"] == "/console/enterprise"
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0
    assert _processes_under(tmp_path) == []


@pytest.mark.slow  # a second run of the whole story (about 40 s)
def test_on_a_terminal_the_demo_keeps_the_console_open_until_ctrl_c(tmp_path: Path) -> None:
    """stdin a terminal (a person ran ``make demo``): at the end the exchange keeps serving
    the printed console URL; Ctrl-C (SIGINT) stops it and the agents, exit 0."""
    import pty

    import httpx

    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "exchange.demo"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("IBX_")},
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        os.close(follower)
        assert proc.stdout is not None
        said: list[str] = []
        try:
            for line in proc.stdout:
                said.append(line)
                if line.startswith("What to look at next:"):
                    break
            text = "".join(said)
            assert "keep running for the console (Ctrl-C stops them all)" in text, text[-2000:]
            url = (tmp_path / ".ibx-demo" / "console.url").read_text().strip()
            assert f"{url}/console" in text and "make console" not in text
            ca = ssl.create_default_context(cafile=tmp_path / ".ibx-demo" / "ca-bundle.pem")
            assert httpx.get(f"{url}/console/login", verify=ca).status_code == 200
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            os.close(leader)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 0
    assert _processes_under(tmp_path) == []


@pytest.mark.slow  # a second run, stopped half-way (about 20 s)
def test_a_stopped_demo_stops_every_process_it_started(tmp_path: Path) -> None:
    """SIGTERM (a supervisor; Ctrl-C takes the same path, KeyboardInterrupt) once the agents
    run: exit 130, and no server, agent or command is left behind."""
    with subprocess.Popen(
        [sys.executable, "-m", "exchange.demo"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("IBX_")},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if "ibx agent processes started" in line:
                    break
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 130
    assert _processes_under(tmp_path) == []


_NETWORK_TO_DEMO = {
    "IBX_FABRIC_GATEWAY": "IBX_LEDGER_FABRIC_GATEWAY",
    "IBX_FABRIC_TLS_ROOT": "IBX_LEDGER_FABRIC_TLS_ROOT",
    "IBX_FABRIC_SERVER_NAME": "IBX_LEDGER_FABRIC_SERVER_NAME",
    "IBX_FABRIC_MSP_ID": "IBX_LEDGER_FABRIC_MSP_ID",
    "IBX_FABRIC_CERT": "IBX_LEDGER_FABRIC_CERT",
    "IBX_FABRIC_KEY": "IBX_LEDGER_FABRIC_KEY",
    "IBX_FABRIC_CHANNEL": "IBX_LEDGER_FABRIC_CHANNEL",
    "IBX_FABRIC_CHAINCODE": "IBX_LEDGER_FABRIC_CHAINCODE",
}


@pytest.mark.slow  # a second run of the whole story (about 50 s)
@pytest.mark.fabric
@pytest.mark.parametrize("mode", ["full", "anchor"])
def test_the_demo_ships_to_a_real_fabric_channel_and_the_auditor_checks_it(
    tmp_path: Path, mode: str
) -> None:
    """With ``IBX_LEDGER_FABRIC_*`` (from the network's ``IBX_FABRIC_*``), ``ibx serve``
    ships the story's ledger and the auditor's export agrees with the channel."""
    found = {demo: os.environ.get(network, "") for network, demo in _NETWORK_TO_DEMO.items()}
    if not all(v for k, v in found.items() if k != "IBX_LEDGER_FABRIC_SERVER_NAME"):
        pytest.skip("no Fabric network: set IBX_FABRIC_* (docs/fabric.md)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
    env.update({k: v for k, v in found.items() if v})
    env.update({"IBX_LEDGER_FABRIC_MODE": mode, "IBX_LEDGER_FABRIC_ANCHOR_SECONDS": "2"})
    done = subprocess.run(
        [sys.executable, "-m", "exchange.demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    told = Told(tmp_path, done.returncode, done.stdout, done.stderr)
    assert told.code == 0, told.out[-3000:] + told.err[-3000:]
    assert re.search(
        rf"ships the ledger to the consortium's Fabric channel .*{mode} mode\) as log "
        r"demo-[0-9a-f]{8}\.ibx\.localhost/ledger",
        told.step(1),
    )
    ten = told.step(10)
    assert re.search(rf"ibx audit verify --fabric .*: fabric {mode}: .* agrees \(lag \d+", ten)
    assert "the consortium's copy agrees" in ten and "FINDING" not in ten
    assert _processes_under(tmp_path) == []
