"""Security review: bad CLI input gives one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from core.clock import utcnow
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.in_process import ibx
from tests.zygote import ibx_argv


def _ibx(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
    return subprocess.run(
        [*ibx_argv(), "--data-dir", str(data_dir), *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def enterprise(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data = initialised(tmp_path_factory.mktemp("cli") / "data")
    created = ibx("--data-dir", str(data), "identity", "create", "--role", "enterprise",
                  "--name", "ent-a")  # fmt: skip
    assert created.returncode == 0, created.stderr
    return data, created.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def files(enterprise: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A consent key (made by ``ibx consent keygen``) and a self-signed CA, shared by the cases."""
    data, _token = enterprise
    folder = tmp_path_factory.mktemp("cli-files")
    keygen = ibx("--data-dir", str(data), "consent", "keygen", "--out", str(folder / "k"))
    assert keygen.returncode == 0, keygen.stderr
    (folder / "ca.pem").write_bytes(_self_signed_pem())
    return folder


def _self_signed_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


CASES = {
    "consent-check-missing-request-file": (
        ("consent", "check", "--request", "@/nonexistent/request.json"),
        1,
        "/nonexistent/request.json",
    ),
    "consent-grant-days-overflow": (
        (
            "consent",
            "grant",
            "--key",
            "{key}",
            "--dataset",
            "d:f",
            "--purpose",
            "benchmarking",
            "--operation",
            "mean",
            "--requester",
            "ent-a",
            "--days",
            "99999999999",
        ),
        2,
        "out of range",
    ),
    "edge-token-ttl-overflow": (
        ("edge", "token", "create", "--enterprise", "ent-a", "--device", "d1", "--ttl", "9" * 25),
        2,
        "out of range",
    ),
    "edge-token-create-exchange-unreachable": (
        (
            "edge",
            "token",
            "create",
            "--enterprise",
            "ent-a",
            "--device",
            "d1",
            "--exchange",
            "http://127.0.0.1:1",
        ),
        1,
        "cannot reach the server",
    ),
    "edge-enroll-bad-url": (
        (
            "edge",
            "enroll",
            "--server",
            "not-a-url",
            "--ca-bundle",
            "{ca}",
            "--device",
            "d1",
            "--token",
            "ibxb_x",
            "--out",
            "{out}",
        ),
        1,
        "cannot reach the server",
    ),
    "mpc-psi-missing-file": (
        ("mpc", "psi", "--left", "/nonexistent/a.txt", "--right", "/nonexistent/b.txt"),
        1,
        "/nonexistent/a.txt",
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_one_line_without_traceback(
    enterprise: tuple[Path, str],
    files: Path,
    tmp_path: Path,
    case: tuple[tuple[str, ...], int, str],
) -> None:
    data, token = enterprise
    args, code, needle = case
    key, ca = files / "k", files / "ca.pem"
    args = tuple(
        a.replace("{key}", str(key)).replace("{ca}", str(ca)).replace("{out}", str(tmp_path / "o"))
        for a in args
    )
    with_token = args[0] not in ("mpc",) and args[:2] != ("edge", "enroll")
    result = _ibx(data, *args, *(("--token", token) if with_token else ()))
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ibx: ")
    assert needle in lines[0]


def _ledger_size(data_dir: Path) -> int:
    """The ledger's size, read from the data dir's database (no process, no write)."""
    runtime = Runtime(Settings(data_dir=data_dir))
    try:
        return runtime.ledger.size()
    finally:
        runtime.close()


@pytest.mark.parametrize(
    "entry_type",
    ["policy.approve", "consent.grant", "identity.create", "edge.certificate.revoke", "mpc.key.x"],
)
def test_operator_cannot_append_records_owned_by_the_packages(
    enterprise: tuple[Path, str], entry_type: str
) -> None:
    """Separation of duties: the sysadmin's ``ledger append`` cannot forge a policy
    approval, a consent, an identity change, a revocation or a key operation."""
    data, _token = enterprise
    forged = '{"version": "0123456789abcdef", "officer": "officer-b"}\n'
    before = _ledger_size(data)
    args = ("ledger", "append", "--type", entry_type, "--actor", "officer-b")
    result = ibx("--data-dir", str(data), *args, stdin=forged)  # the entry point, in process
    assert result.returncode == 3, result.stdout  # denied
    assert "reserved" in result.stderr
    assert _ledger_size(data) == before


def test_operator_appends_records_of_their_own_types(enterprise: tuple[Path, str]) -> None:
    """What the reserved types leave the sysadmin: an operational note is appended."""
    data, _token = enterprise
    before = _ledger_size(data)
    note = _ibx(data, "ledger", "append", "--type", "ops.note", stdin='{"k": 1}\n')
    assert note.returncode == 0, note.stderr
    assert note.stdout.split() == [str(before)] and _ledger_size(data) == before + 1
