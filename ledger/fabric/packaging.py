"""The ledger chaincode's Fabric package: chaincode-as-a-service (``ibx ledger chaincode-package``).

A Fabric chaincode package is a gzip tar holding ``metadata.json`` and
``code.tar.gz`` (``core/chaincode/persistence/chaincode_package.go``). For a
chaincode run as a service the metadata's type is ``ccaas`` and the code is
only ``connection.json``: where the service listens, how long to wait for it,
and, with TLS, the CA of its certificate (``ccaas_builder/cmd/build``). The
package id the peer prints is ``LABEL:hex(SHA-256(package bytes))``
(``persistence.PackageID``).

The bytes are deterministic — entries in a fixed order, mode 0644, owner 0,
modification time 0, gzip without a name or time — so the same options give the
same package id on every organisation's machine. No key goes into a package:
with client authentication it holds the ccaas builder's templates, and each
peer's builder fills in that peer's own client key and certificate.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = [
    "CLIENT_CERT_TEMPLATE",
    "CLIENT_KEY_TEMPLATE",
    "CODE_FILE",
    "METADATA_FILE",
    "ChaincodePackage",
    "build_package",
    "check_label",
]

METADATA_FILE = "metadata.json"
"""The package's metadata (``persistence.MetadataFile``)."""
CODE_FILE = "code.tar.gz"
"""The package's code archive (``persistence.CodePackageFile``)."""
CONNECTION_FILE = "connection.json"
"""What the ccaas builder reads from the code archive."""

CLIENT_KEY_TEMPLATE = "{{.client_key}}"
"""What the ccaas builder replaces with the peer's TLS client key (a Go template)."""
CLIENT_CERT_TEMPLATE = "{{.client_cert}}"
"""What the ccaas builder replaces with the peer's TLS client certificate."""

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
"""``persistence.LabelRegexp``: ``^[[:alnum:]][[:alnum:]_.+-]*$``."""
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True)
class ChaincodePackage:
    """A package file's bytes and the id Fabric gives it once installed."""

    data: bytes
    package_id: str


def check_label(label: str) -> str:
    """``label`` if Fabric accepts it as a package label.

    Raises:
        ValueError: empty, or characters other than alphanumerics and ``._+-`` (first:
            alphanumeric).
    """
    if not _LABEL.fullmatch(label):
        raise ValueError(
            f"invalid label {label!r}: alphanumerics and '.+-_' only, starting with an alphanumeric"
        )
    return label


def _check_address(address: str) -> str:
    host, sep, port = address.rpartition(":")
    if not sep or not _HOST.fullmatch(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--address {address!r} is not HOST:PORT (the peer dials it)")
    return address


def _check_root_cert(root_cert: str) -> str:
    from cryptography import x509  # noqa: PLC0415 -- only with TLS

    try:
        x509.load_pem_x509_certificates(root_cert.encode())
    except ValueError as exc:
        raise ValueError("the root certificate is not a PEM certificate") from exc
    return root_cert


def _template(name: str) -> dict[str, Any]:
    text = resources.files("ledger.fabric.package").joinpath(name).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _json(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _tar_gz(files: list[tuple[str, bytes]]) -> bytes:
    """A gzip tar of regular files, byte-for-byte the same for the same files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build_package(
    address: str, label: str, root_cert: str | None, *, client_auth: bool = False
) -> ChaincodePackage:
    """The ccaas package of the ledger chaincode listening at ``address``.

    ``root_cert``: PEM CA of the service's TLS certificate; the peer then dials over
    TLS. ``client_auth``: the service demands the peer's client certificate
    (``ibx ledger chaincode --client-ca``); the package holds no key, only the ccaas
    builder's templates ``{{.client_key}}`` and ``{{.client_cert}}``, which each peer
    fills in from its own ``CHAINCODE_AS_A_SERVICE_BUILDER_CONFIG``.

    Raises:
        ValueError: a label Fabric refuses, an address that is not HOST:PORT, a root
            certificate that is not PEM, or client authentication without TLS.
    """
    check_label(label)
    connection = _template(CONNECTION_FILE)
    connection["address"] = _check_address(address)
    if client_auth and root_cert is None:
        raise ValueError("client authentication needs TLS: give the root certificate too")
    if root_cert is not None:
        connection["tls_required"] = True
        connection["root_cert"] = _check_root_cert(root_cert)
    if client_auth:
        connection["client_auth_required"] = True
        connection["client_key"] = CLIENT_KEY_TEMPLATE
        connection["client_cert"] = CLIENT_CERT_TEMPLATE
    metadata = _template(METADATA_FILE)
    metadata["label"] = label
    code = _tar_gz([(CONNECTION_FILE, _json(connection))])
    data = _tar_gz([(METADATA_FILE, _json(metadata)), (CODE_FILE, code)])
    return ChaincodePackage(data, f"{label}:{hashlib.sha256(data).hexdigest()}")
