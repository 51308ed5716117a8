"""The chaincode-as-a-service package (``ledger.fabric.packaging``, ``chaincode-package``).

The layout is Fabric's (``core/chaincode/persistence/chaincode_package.go``,
``ccaas_builder/cmd/build``); the package id is ``LABEL:hex(SHA-256(file))``
(``persistence.PackageID``). With ``IBX_FABRIC_PEER_BIN`` (and ``FABRIC_CFG_PATH``)
set, Fabric's own ``peer lifecycle chaincode calculatepackageid`` checks the id.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ledger.fabric.packaging import build_package
from tests.in_process import ibx


def _root_cert() -> str:
    """A real self-signed CA certificate in PEM."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "chaincode TLS CA")])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
        return [(m, tar.extractfile(m).read()) for m in members]  # type: ignore[union-attr]


def _open(data: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The metadata and connection documents of a package, checking the tar layout."""
    outer = _members(data)
    assert [m.name for m, _ in outer] == ["metadata.json", "code.tar.gz"]
    inner = _members(outer[1][1])
    assert [m.name for m, _ in inner] == ["connection.json"]
    for member, _ in outer + inner:
        assert member.isreg() and member.mode == 0o644
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
            0,
            0,
            0,
            "",
            "",
        )
    for blob in (data, outer[1][1]):
        assert blob[:2] == b"\x1f\x8b" and blob[4:8] == bytes(4)  # gzip, no modification time
    return json.loads(outer[0][1]), json.loads(inner[0][1])


def test_the_package_is_fabrics_ccaas_layout() -> None:
    package = build_package("ibx-chaincode.org1.example:9999", "ibx-ledger_1", None)
    metadata, connection = _open(package.data)
    assert metadata == {"label": "ibx-ledger_1", "type": "ccaas"}
    assert connection == {
        "address": "ibx-chaincode.org1.example:9999",
        "dial_timeout": "10s",
        "tls_required": False,
    }
    assert package.package_id == "ibx-ledger_1:" + hashlib.sha256(package.data).hexdigest()


def test_with_a_root_certificate_the_peer_dials_over_tls() -> None:
    pem = _root_cert()
    _, connection = _open(build_package("127.0.0.1:9999", "ibx-ledger", pem).data)
    assert connection["tls_required"] is True and connection["root_cert"] == pem
    assert "client_key" not in connection  # no key ever goes into a package


def test_client_authentication_leaves_the_key_to_each_peers_builder() -> None:
    """The service demands the peer's client certificate; the shared package holds the ccaas
    builder's templates, never a key (``ccaas_builder/cmd/build``: ``execTempl``)."""
    pem = _root_cert()
    package = build_package("127.0.0.1:9999", "ibx-ledger", pem, client_auth=True)
    _, connection = _open(package.data)
    assert connection["client_auth_required"] is True
    assert (connection["client_key"], connection["client_cert"]) == (
        "{{.client_key}}",
        "{{.client_cert}}",
    )
    with pytest.raises(ValueError, match="needs TLS"):
        build_package("127.0.0.1:9999", "ibx-ledger", None, client_auth=True)


def test_the_same_options_give_the_same_bytes() -> None:
    pem = _root_cert()
    first = build_package("127.0.0.1:9999", "ibx-ledger", pem)
    assert build_package("127.0.0.1:9999", "ibx-ledger", pem) == first
    assert build_package("127.0.0.1:9998", "ibx-ledger", pem).package_id != first.package_id
    assert build_package("127.0.0.1:9999", "ibx-ledger", None).package_id != first.package_id
    with gzip.open(io.BytesIO(first.data)) as unzipped:
        assert b"127.0.0.1" not in unzipped.read()[:512]  # no host or file name in headers


@pytest.mark.parametrize(
    "label", ["", "-ibx", "_ibx", "ibx ledger", "ibx:1", "ibx/1", "ïbx"], ids=repr
)
def test_a_label_fabric_refuses_is_refused(label: str) -> None:
    with pytest.raises(ValueError, match="invalid label"):
        build_package("127.0.0.1:9999", label, None)


@pytest.mark.parametrize(
    "address", ["nohost", "host:", ":9999", "host:0", "host:65536", "a b:1", "host:99x"]
)
def test_an_address_that_is_not_host_port_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        build_package(address, "ibx-ledger", None)


def test_a_root_certificate_that_is_not_pem_is_refused() -> None:
    with pytest.raises(ValueError, match="not a PEM certificate"):
        build_package("127.0.0.1:9999", "ibx-ledger", "not a certificate")


def test_the_command_writes_the_package_and_prints_its_id(tmp_path: Path) -> None:
    out = tmp_path / "ibx-ledger.tar.gz"
    ca = tmp_path / "ca.pem"
    ca.write_text(_root_cert())
    argv = ["ledger", "chaincode-package", "--address", "127.0.0.1:9999", "--out", str(out)]
    done = ibx(*argv, "--root-cert", str(ca), "--json")
    assert done.returncode == 0, done
    expected = build_package("127.0.0.1:9999", "ibx-ledger", ca.read_text())
    assert json.loads(done.stdout) == {
        "file": str(out),
        "label": "ibx-ledger",
        "package_id": expected.package_id,
    }
    assert out.read_bytes() == expected.data
    again = ibx(*argv)
    assert again.returncode == 2 and "--force" in again.stderr and again.stderr.count("\n") == 1
    forced = ibx(*argv, "--force", "--label", "ibx-ledger_2")
    assert forced.returncode == 0 and "package id ibx-ledger_2:" in forced.stdout
    bad = ibx("ledger", "chaincode-package", "--address", "127.0.0.1:9999", "--label", "-x",
              "--out", str(tmp_path / "x.tar.gz"))  # fmt: skip
    assert bad.returncode == 2 and "invalid label" in bad.stderr and bad.stderr.count("\n") == 1
    assert not (tmp_path / "x.tar.gz").exists()


def test_fabrics_peer_computes_the_same_package_id(tmp_path: Path) -> None:
    peer = os.environ.get("IBX_FABRIC_PEER_BIN")
    if not peer:
        pytest.skip("set IBX_FABRIC_PEER_BIN (and FABRIC_CFG_PATH) to check with Fabric's peer")
    package = build_package("127.0.0.1:9999", "ibx-ledger_1", _root_cert())
    path = tmp_path / "ibx-ledger.tar.gz"
    path.write_bytes(package.data)
    done = subprocess.run(
        [peer, "lifecycle", "chaincode", "calculatepackageid", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == package.package_id
