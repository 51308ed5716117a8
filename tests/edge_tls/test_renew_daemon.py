"""Issue 10: ``ibx edge renew --daemon`` renews at two thirds of the lifetime, like step.

The schedule is pure and checked with Hypothesis; the daemon is run for real:
a real ``ibx serve --edge-port`` process, a device enrolled over EST, and
``ibx edge renew --daemon`` as a subprocess that is watched renewing,
revoked under, and stopped with SIGTERM and SIGINT. The backoff is watched
against a real port that refuses connections until the edge listener starts.
"""

from __future__ import annotations

import itertools
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from core.clock import utcnow
from edge_tls import (
    CertificateExpiredError,
    CertificateValidity,
    DeviceCredentials,
    DeviceId,
    RenewalDaemon,
    RenewalRefusedError,
    RenewalSchedule,
    RevocationReason,
    StopSignal,
    build_csr,
    reenroll,
)
from exchange.cli import app
from exchange.edge_server import edge_server_config
from tests.edge_tls.conftest import Pki, RunningServer, client_context, make_pki
from tests.zygote import ibx_argv

runner = CliRunner()

DEVICE_FILES = {"device.key", "device.pem", "ca.pem", "edge.json"}


# --- the schedule (pure) ---------------------------------------------------

_T0 = datetime(2026, 1, 1, tzinfo=UTC)
lifetimes = st.integers(min_value=1, max_value=10 * 365 * 86400 * 10**6).map(
    lambda us: timedelta(microseconds=us)
)
schedules = st.builds(
    RenewalSchedule,
    period=st.none() | st.integers(1, 10**12).map(lambda us: timedelta(microseconds=us)),
)
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(lifetime=lifetimes, offset=st.floats(-2.0, 0.999999), schedule=schedules)
def test_renewal_is_never_in_the_past_and_always_within_the_lifetime(
    lifetime: timedelta, offset: float, schedule: RenewalSchedule
) -> None:
    validity = CertificateValidity(_T0, _T0 + lifetime)
    now = _T0 + lifetime * offset
    if now >= validity.not_after:
        return
    at = schedule.renew_at(validity, now=now)
    assert now <= at < validity.not_after
    assert at <= max(now, schedule.due(validity))  # never later than two thirds
    if schedule.period is None:
        assert at == max(now, _T0 + lifetime * 2 // 3)
    else:
        assert at <= now + schedule.period


@given(lifetime=lifetimes, late=st.integers(0, 10**9))
def test_an_expired_certificate_has_no_renewal_time(lifetime: timedelta, late: int) -> None:
    validity = CertificateValidity(_T0, _T0 + lifetime, serial=0xABC)
    with pytest.raises(CertificateExpiredError, match="enrol this device again") as caught:
        RenewalSchedule().renew_at(validity, now=validity.not_after + timedelta(microseconds=late))
    assert caught.value.serial == 0xABC


@given(attempt=st.integers(0, 10_000), jitter=jitters)
def test_backoff_is_bounded(attempt: int, jitter: float) -> None:
    schedule = RenewalSchedule()
    delay = schedule.retry_delay(attempt, jitter=jitter)
    assert schedule.retry_min <= delay <= schedule.retry_max
    base = min(timedelta(seconds=30) * 2 ** min(attempt, 20), timedelta(minutes=10))
    assert base / 2 <= delay <= base


@given(attempt=st.integers(0, 60), jitter=jitters, lifetime=lifetimes, offset=st.floats(0, 1))
def test_a_retry_is_after_now_bounded_and_before_expiry(
    attempt: int, jitter: float, lifetime: timedelta, offset: float
) -> None:
    schedule = RenewalSchedule()
    validity = CertificateValidity(_T0, _T0 + lifetime)
    now = _T0 + lifetime * offset
    if now >= validity.not_after:
        return
    at = schedule.retry_at(attempt, validity, now=now, jitter=jitter)
    assert schedule.retry_min <= at - now <= schedule.retry_max  # never hammering
    if validity.not_after - now >= 2 * schedule.retry_min:
        assert at < validity.not_after  # keeps trying while the certificate lasts


def test_step_numbers() -> None:
    """A 7-day device certificate backdated 5 min; 30 s doubling to 10 min without jitter."""
    schedule = RenewalSchedule()
    validity = CertificateValidity(_T0 - timedelta(minutes=5), _T0 + timedelta(days=7))
    due = _T0 - timedelta(minutes=5) + (timedelta(days=7, minutes=5) * 2) // 3
    assert schedule.renew_at(validity, now=_T0) == due
    assert schedule.renew_at(validity, now=due + timedelta(hours=1)) == due + timedelta(hours=1)
    delays = [schedule.retry_delay(n, jitter=0.0).total_seconds() for n in range(7)]
    assert delays == [30, 60, 120, 240, 480, 600, 600]
    assert schedule.retry_delay(3, jitter=0.999999) > timedelta(seconds=120)
    soon = validity.not_after - timedelta(seconds=10)
    assert schedule.retry_at(5, validity, now=soon, jitter=0.0) == soon + timedelta(seconds=5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"numerator": 3, "denominator": 3}, "not in"),
        ({"period": timedelta(0)}, "positive"),
        ({"retry_min": timedelta(minutes=20)}, "retry_min"),
    ],
    ids=["fraction-one", "zero-period", "min-above-max"],
)
def test_schedule_refuses_bounds_that_cannot_hold(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RenewalSchedule(**kwargs)  # type: ignore[arg-type]


# --- a real server and real devices -----------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    built = make_pki(tmp_path_factory.mktemp("renew"))
    yield built
    built.runtime.close()


@pytest.fixture(scope="module")
def served(pki: Pki) -> Iterator[str]:
    """A real ``ibx serve --edge-port`` process; yields its edge URL."""
    port, edge_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [*ibx_argv(), "--data-dir", str(pki.runtime.settings.data_dir),
         "serve", "--port", str(port), "--edge-port", str(edge_port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"https://127.0.0.1:{edge_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(url + "/.well-known/est/cacerts", verify=client_context(pki), timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "ibx serve did not come up"
                time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def _enrol(pki: Pki, url: str, device: str, out: Path) -> DeviceCredentials:
    result = runner.invoke(
        app,
        ["edge", "enroll", "--server", url, "--ca-bundle", str(pki.ca_bundle),
         "--device", device, "--token", pki.token(device), "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return DeviceCredentials(out)


class Daemon:
    """``ibx edge renew --daemon`` as a subprocess, its stderr read line by line."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [*ibx_argv(), "edge", "renew", "--daemon",
             "--dir", str(directory), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, count: int = 1, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while sum(text in line for line in self.lines) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {count} x {text!r} in time: {self.lines}"
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            assert line is not None, f"the daemon exited ({self.process.poll()}): {self.lines}"
            self.lines.append(line)
        return [line for line in self.lines if text in line]

    def finish(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.process.stderr is not None:
            self.process.stderr.close()
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.finish()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.kill()


def _crl_reason(pki: Pki, serial: int) -> x509.ReasonFlags | None:
    crl = x509.load_der_x509_crl(pki.runtime.edge_pki.crl(now=utcnow()))
    revoked = crl.get_revoked_certificate_by_serial_number(serial)
    if revoked is None:
        return None
    reason: x509.ReasonFlags = revoked.extensions.get_extension_for_class(
        x509.CRLReason
    ).value.reason
    return reason


def test_the_daemon_renews_again_and_again_then_stops_cleanly_on_sigterm(
    pki: Pki, served: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    credentials = _enrol(pki, served, "kiln-1", tmp_path / "kiln-1")
    first = credentials.certificate().serial_number
    first_inode = credentials.cert_path.stat().st_ino
    hook_log = tmp_path / "hook.log"
    hook = shlex.join([
        sys.executable, "-c",
        "import os, sys; open(sys.argv[1], 'a').write("
        "os.environ['IBX_EDGE_SERIAL'] + ' ' + os.environ['IBX_EDGE_CERT'] + '\\n')",
        str(hook_log),
    ])  # fmt: skip
    daemon = Daemon(credentials.directory, "--renew-period", "1s", "--exec", hook)
    daemons.append(daemon)
    renewed = daemon.wait_for("renewed kiln-1: serial ", count=2)
    serials = [int(line.split("serial ")[1].split(",")[0], 16) for line in renewed]
    assert len({first, *serials}) == 3  # a new certificate each time

    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.finish() == 0, daemon.lines
    assert "stopped after" in daemon.lines[-1]
    assert "Traceback" not in "\n".join(daemon.lines)
    assert {p.name for p in credentials.directory.iterdir()} == DEVICE_FILES  # no temp file left
    assert credentials.key_path.stat().st_mode & 0o777 == 0o600
    assert credentials.cert_path.stat().st_ino != first_inode  # replaced by rename, not rewritten
    final = credentials.certificate()
    key = credentials.private_key().public_key()
    assert final.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    renewals_logged = [line for line in daemon.lines if "renewed kiln-1" in line]
    assert final.serial_number == int(renewals_logged[-1].split("serial ")[1].split(",")[0], 16)
    assert "PRIVATE KEY" not in "\n".join(daemon.lines)

    # the line rules: every earlier certificate superseded, only the newest valid
    for serial in [first, *[s for s in serials if s != final.serial_number]]:
        assert _crl_reason(pki, serial) == x509.ReasonFlags.superseded
    assert _crl_reason(pki, final.serial_number) is None
    with httpx.Client(
        verify=client_context(pki, credentials.cert_path, credentials.key_path)
    ) as client:
        assert client.get(served + "/v1/edge/whoami").status_code == 200

    hooked = hook_log.read_text().splitlines()
    assert len(hooked) == len(renewals_logged)  # --exec ran after each renewal
    assert hooked[-1] == f"{final.serial_number:x} {credentials.cert_path}"


def test_a_revoked_device_stops_its_daemon_with_one_line(
    pki: Pki, served: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Attack: the line is revoked while the daemon runs; it must stop, not hammer."""
    credentials = _enrol(pki, served, "kiln-2", tmp_path / "kiln-2")
    daemon = Daemon(credentials.directory, "--renew-period", "1s")
    daemons.append(daemon)
    daemon.wait_for("renewed kiln-2: serial ")
    serial = credentials.certificate().serial_number
    pki.runtime.edge_pki.revoke(
        serial, RevocationReason.KEY_COMPROMISE, actor="officer", now=utcnow()
    )
    revoked_at = time.monotonic()
    code = daemon.finish(timeout=30)
    assert code == 4, daemon.lines  # not authenticated: the certificate line is revoked
    assert time.monotonic() - revoked_at < 15  # at its next attempt, not after retries
    assert "Traceback" not in "\n".join(daemon.lines)
    assert daemon.lines[-1].startswith("ibx: renewal refused: "), daemon.lines
    assert "(401)" in daemon.lines[-1]
    assert "revoked" in daemon.lines[-1]
    assert "new bootstrap token" in daemon.lines[-1]
    assert sum("refused" in line for line in daemon.lines) == 1  # one attempt, no retries
    assert not any(line.startswith("error:") or " error: " in line for line in daemon.lines)
    assert credentials.certificate().serial_number == serial  # nothing overwritten
    assert {p.name for p in credentials.directory.iterdir()} == DEVICE_FILES


def test_without_a_period_it_waits_for_two_thirds_and_ctrl_c_stops_it(
    pki: Pki, served: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    credentials = _enrol(pki, served, "kiln-3", tmp_path / "kiln-3")
    cert = credentials.certificate()
    daemon = Daemon(credentials.directory)
    daemons.append(daemon)
    (line,) = daemon.wait_for("renewing at ")
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    due = cert.not_valid_before_utc + lifetime * 2 // 3
    assert f"renewing at {due:%Y-%m-%dT%H:%M:%SZ}" in line
    assert f"valid until {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}" in line
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.finish(timeout=15) == 0, daemon.lines
    assert "stopped after 0 renewal(s)" in daemon.lines[-1]
    assert credentials.certificate().serial_number == cert.serial_number


def test_an_expired_certificate_exits_at_once_saying_to_enrol_again(
    pki: Pki, served: str, tmp_path: Path
) -> None:
    past = utcnow() - timedelta(days=30)
    device = DeviceId(pki.enterprise, "kiln-old")
    token = pki.runtime.edge_pki.create_token(device, actor=pki.enterprise, now=past).token
    key = DeviceCredentials.new_key()
    issued = pki.runtime.edge_pki.enroll("kiln-old", token, build_csr(key, "kiln-old"), now=past)
    credentials = DeviceCredentials(tmp_path / "kiln-old")
    credentials.save(
        key, issued.certificate, server=served, device="kiln-old", ca_pem=pki.ca_bundle.read_bytes()
    )
    done = subprocess.run(
        [*ibx_argv(), "edge", "renew", "--daemon",
         "--dir", str(credentials.directory)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 4
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("ibx: client certificate refused: certificate ")
    assert "expired at" in lines[0]
    assert "enrol this device again with a new bootstrap token" in lines[0]


# --- the driver against a port that refuses, then a listener -----------------


def test_failures_back_off_and_the_next_attempt_renews_once_the_server_is_back(
    pki: Pki, tmp_path: Path
) -> None:
    port = _free_port()
    down = f"https://127.0.0.1:{port}"
    # enrol through a listener of our own, then point the device at the dead port
    config = edge_server_config(pki.runtime, host="127.0.0.1", port=0, log_level="warning")
    with RunningServer(config) as running:
        enrolled_at = f"https://127.0.0.1:{running.port}"
        credentials = _enrol(pki, enrolled_at, "kiln-4", tmp_path / "k4")
    meta = (credentials.directory / "edge.json").read_text()
    (credentials.directory / "edge.json").write_text(meta.replace(enrolled_at, down))
    assert credentials.server() == down
    first = credentials.certificate().serial_number

    schedule = RenewalSchedule(
        period=timedelta(milliseconds=50),
        retry_initial=timedelta(milliseconds=200),
        retry_max=timedelta(milliseconds=800),
        retry_min=timedelta(milliseconds=100),
    )
    reports: list[tuple[float, str]] = []
    outcome: list[object] = []
    with StopSignal() as stop:
        daemon = RenewalDaemon(
            credentials,
            schedule,
            stop=stop,
            report=lambda line: reports.append((time.monotonic(), line)),
            after_renewal=lambda renewal: stop.set(),
            timeout=5.0,
        )
        worker = threading.Thread(target=lambda: outcome.append(daemon.run()), daemon=True)
        worker.start()
        deadline = time.monotonic() + 30
        while sum("failed" in line for _, line in reports) < 3:
            assert time.monotonic() < deadline, reports
            time.sleep(0.05)
        live = edge_server_config(pki.runtime, host="127.0.0.1", port=port, log_level="warning")
        with RunningServer(live):
            worker.join(timeout=30)
        assert not worker.is_alive(), reports
    assert outcome == [1], reports
    failures = [(t, line) for t, line in reports if "failed" in line]
    assert all(line.startswith("error: renewal attempt ") for _, line in failures)
    assert all("cannot reach " + down in line for _, line in failures)
    assert all("the certificate expires" in line for _, line in failures)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(failures)]
    assert all(gap >= 0.09 for gap in gaps), gaps  # never below retry_min
    assert all(gap <= 0.8 + 6.0 for gap in gaps), gaps  # backoff cap (+ a connect attempt)
    assert any("renewed kiln-4" in line for _, line in reports)
    assert credentials.certificate().serial_number != first


def test_one_shot_renewal_of_a_superseded_certificate_is_refused(
    pki: Pki, served: str, tmp_path: Path
) -> None:
    """Attack: a copy of the device dir kept after a renewal cannot renew a second branch."""
    credentials = _enrol(pki, served, "kiln-5", tmp_path / "kiln-5")
    copy = tmp_path / "copy"
    copy.mkdir(mode=0o700)
    for name in DEVICE_FILES:
        (copy / name).write_bytes((credentials.directory / name).read_bytes())
    reenroll(credentials)
    with pytest.raises(RenewalRefusedError, match=r"\(401\).*revoked") as caught:
        reenroll(DeviceCredentials(copy))
    assert caught.value.status == 401


# --- an interrupted save is finished or undone -----------------------------


def _stage(path: Path, data: bytes) -> None:
    staged = path.with_name(path.name + ".new")
    staged.write_bytes(data)
    staged.chmod(0o600)


def test_a_save_cut_short_after_the_key_rename_is_finished(pki: Pki, tmp_path: Path) -> None:
    key = DeviceCredentials.new_key()
    issued = pki.runtime.edge_pki.enroll(
        "kiln-6", pki.token("kiln-6"), build_csr(key, "kiln-6"), now=utcnow()
    )
    credentials = DeviceCredentials(tmp_path / "kiln-6")
    credentials.save(key, issued.certificate, server="https://x", device="kiln-6", ca_pem=b"")
    new_key = DeviceCredentials.new_key()
    renewed = pki.runtime.edge_pki.enroll(
        "kiln-6", pki.token("kiln-6"), build_csr(new_key, "kiln-6"), now=utcnow()
    )
    pem = new_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    credentials.key_path.write_bytes(pem)  # the key was renamed, the crash came before the cert
    _stage(credentials.cert_path, renewed.certificate.public_bytes(serialization.Encoding.PEM))
    done = credentials.finish_pending()
    assert done is not None and "finished" in done
    assert credentials.certificate().serial_number == renewed.serial
    assert not list(credentials.directory.glob("*.new"))


def test_a_half_written_staged_certificate_is_dropped(pki: Pki, tmp_path: Path) -> None:
    key = DeviceCredentials.new_key()
    issued = pki.runtime.edge_pki.enroll(
        "kiln-7", pki.token("kiln-7"), build_csr(key, "kiln-7"), now=utcnow()
    )
    credentials = DeviceCredentials(tmp_path / "kiln-7")
    credentials.save(key, issued.certificate, server="https://x", device="kiln-7")
    whole = issued.certificate.public_bytes(serialization.Encoding.PEM)
    _stage(
        credentials.key_path,
        DeviceCredentials.new_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _stage(credentials.cert_path, whole[: len(whole) // 2])
    done = credentials.finish_pending()
    assert done is not None and "removed" in done
    assert credentials.certificate().serial_number == issued.serial
    assert credentials.key_path.read_bytes() == key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert not list(credentials.directory.glob("*.new"))
    assert credentials.finish_pending() is None
