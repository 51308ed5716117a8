"""One table: every rule names a real error class, and exit codes follow HTTP statuses."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import pytest

import consent
import edge_tls
import ledger
import mpc.errors
import policies
from exchange.error_table import (
    RULES,
    ExitCode,
    RemoteRefusalError,
    exit_code_for,
    status_for,
)
from tests.conftest import initialised
from tests.in_process import ibx
from tests.zygote import ibx_argv


@pytest.mark.parametrize("rule", RULES, ids=[r.path for r in RULES])
def test_every_rule_names_an_error_class(rule) -> None:
    module, _, name = rule.path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, Exception)


CASES = [
    (
        "unauthenticated",
        edge_tls.CertificateRejectedError("revoked"),
        401,
        ExitCode.UNAUTHENTICATED,
    ),
    ("four-eyes", policies.FourEyesError("same officer"), 403, ExitCode.DENIED),
    ("consent-refused", consent.ConsentRevokedError("revoked"), 422, ExitCode.DENIED),
    ("guard", mpc.errors.DifferencingError("one enterprise"), 403, ExitCode.DENIED),
    ("bad-entry", ledger.InvalidEntryError("not JSON"), 400, ExitCode.USAGE),
    ("tampered", ledger.LedgerIntegrityError("edited", index=3), 500, ExitCode.VERIFICATION_FAILED),
    ("bad-signature", consent.BadConsentSignatureError("no"), 422, ExitCode.VERIFICATION_FAILED),
    (
        "interrupted",
        mpc.errors.JobInterruptedError("TERM", signal_number=15),
        502,
        ExitCode.INTERRUPTED,
    ),
    ("unknown", RuntimeError("boom"), 500, ExitCode.ERROR),
    ("remote-401", RemoteRefusalError("upload refused", status=401), 401, ExitCode.UNAUTHENTICATED),
    ("remote-429", RemoteRefusalError("quota", status=429), 429, ExitCode.ERROR),
]


@pytest.mark.parametrize(("name", "exc", "status", "code"), CASES, ids=[c[0] for c in CASES])
def test_exit_codes_follow_the_status_table(name, exc, status, code) -> None:
    assert status_for(exc) == status
    assert exit_code_for(exc) == code


def _ibx(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ibx_argv(), *args], capture_output=True, text=True, check=False, timeout=120
    )


def test_a_root_option_after_the_command_says_where_it_belongs(tmp_path: Path) -> None:
    done = _ibx("ledger", "verify", "--data-dir", str(tmp_path))
    assert done.returncode == ExitCode.USAGE
    assert "--data-dir is an option of ibx itself: put it before the command" in done.stderr


def test_an_invalid_setting_names_its_variable_without_library_links(tmp_path: Path) -> None:
    data = initialised(tmp_path / "data")
    done = subprocess.run(
        [*ibx_argv(), "--data-dir", str(data), "ledger", "vkey"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "IBX_TOKEN_TTL_DAYS": "many"},
    )
    assert done.returncode == ExitCode.USAGE
    assert done.stderr.startswith("ibx: invalid input: IBX_TOKEN_TTL_DAYS: ")
    assert "http" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_the_help_documents_the_exit_codes() -> None:
    done = _ibx("--help")
    assert "Exit codes: 0 ok, 1 error, 2 usage, 3 denied, 4 not authenticated" in " ".join(
        done.stdout.split()
    )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data dir with its edge PKI, and the CA bundle a device is handed."""
    data = initialised(tmp_path_factory.mktemp("ports") / "data")
    assert ibx("--data-dir", str(data), "pki", "init").returncode == 0
    bundle = data.parent / "ca.pem"
    bundle.write_text(ibx("--data-dir", str(data), "pki", "ca-bundle").stdout)
    return data, bundle


def test_a_server_on_the_wrong_port_or_none_says_what_to_try(
    deployment: tuple[Path, Path], tmp_path: Path
) -> None:
    from tests.server import free_port, running_exchange

    data, bundle = deployment
    with running_exchange(data, tls=False) as base:  # a plain-HTTP API port
        port = base.rsplit(":", 1)[1]
        done = ibx("edge", "enroll", "--server", f"https://127.0.0.1:{port}",
                   "--ca-bundle", str(bundle), "--device", "d1", "--out",
                   str(tmp_path / "d1"), "--token", "unused")  # fmt: skip
    assert done.returncode == ExitCode.ERROR
    assert "this port does not speak TLS" in done.stderr
    assert len(done.stderr.splitlines()) == 1
    nobody = ibx("login", "--exchange", f"http://127.0.0.1:{free_port()}",
                 "--ca-fingerprint", "00" * 32)  # fmt: skip
    assert nobody.returncode == ExitCode.ERROR
    assert "nothing listens there" in nobody.stderr


def test_a_device_asking_the_api_port_for_est_is_told_the_edge_port(
    deployment: tuple[Path, Path], tmp_path: Path
) -> None:
    from tests.server import free_port, running_exchange

    data, bundle = deployment
    edge = free_port()
    with running_exchange(data, "--edge-port", str(edge)) as base:
        done = ibx("edge", "enroll", "--server", base, "--ca-bundle", str(bundle),
                   "--device", "d1", "--out", str(tmp_path / "d1"),
                   "--token", "unused")  # fmt: skip
    assert done.returncode == ExitCode.ERROR
    assert f"EST is served on the edge listener on port {edge}" in done.stderr
    assert len(done.stderr.splitlines()) == 1
