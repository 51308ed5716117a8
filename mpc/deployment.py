"""An MPC deployment: one working directory per compute party, with its TLS and box keys.

MPyC's ``--ssl`` loads ``.config/party_{i}.crt``, ``.config/party_{i}.key`` and
``.config/mpyc_ca.crt`` from the party's working directory; a party that
connects to party ``j`` checks the peer's certificate against the CA and the
host name ``MPyC party {j}``, and a listening party requires a client
certificate from the same CA. :meth:`MpcDeployment.create` makes a
per-deployment CA (ECDSA P-256) and issues each party a certificate whose
subject CN and DNS subject-alternative name are exactly that name.

Each party also gets an X25519 key pair (``.config/party_{i}.box``, mode
0600): enterprises seal every share to its party's public key, so neither the
relay nor another party can read it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from nacl.public import PrivateKey

from mpc.errors import DeploymentError

__all__ = ["MpcDeployment", "party_name"]

logger = logging.getLogger(__name__)

_LIFETIME = dt.timedelta(days=30)


def party_name(index: int) -> str:
    """The name MPyC checks a peer's certificate against."""
    return f"MPyC party {index}"


def _write_private(path: Path, data: bytes) -> None:
    # O_CREAT's mode applies only to new files: replace any existing file so an
    # old, wider mode is never kept for a new private key.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@dataclass(frozen=True)
class MpcDeployment:
    """The party directories of one deployment, and the parties' public box keys."""

    base_dir: Path
    parties: int
    box_public_keys: tuple[bytes, ...]

    @property
    def threshold(self) -> int:
        """Shamir degree: honest majority, ``(parties - 1) // 2``."""
        return (self.parties - 1) // 2

    def party_dir(self, index: int) -> Path:
        """Working directory of party ``index``."""
        return self.base_dir / f"party{index}"

    @classmethod
    def create(cls, base_dir: Path, *, parties: int = 3, now: dt.datetime) -> MpcDeployment:
        """Make a CA and every party's directory, certificate and box key.

        Raises:
            DeploymentError: fewer than 3 parties (no honest majority), or ``now`` naive.
        """
        if parties < 3:
            raise DeploymentError("an honest majority needs at least 3 parties")
        if now.tzinfo is None:
            raise DeploymentError("now must be timezone-aware")
        _issue_tls(base_dir, parties, now)
        box_keys: list[bytes] = []
        for index in range(parties):
            box = PrivateKey.generate()
            _write_private(
                base_dir / f"party{index}" / ".config" / f"party_{index}.box", bytes(box)
            )
            box_keys.append(bytes(box.public_key))
        (base_dir / "box_public_keys").write_text("\n".join(k.hex() for k in box_keys) + "\n")
        logger.info("created an MPC deployment of %d parties in %s", parties, base_dir)
        return cls(base_dir, parties, tuple(box_keys))

    def certificates_expire(self) -> dt.datetime:
        """When the first of the parties' TLS certificates expires.

        Raises:
            DeploymentError: a certificate that is missing or does not parse.
        """
        ends = []
        for index in range(self.parties):
            path = self.party_dir(index) / ".config" / f"party_{index}.crt"
            try:
                cert = x509.load_pem_x509_certificate(path.read_bytes())
            except (OSError, ValueError) as exc:
                raise DeploymentError(f"party {index}'s certificate {path} is unreadable") from exc
            ends.append(cert.not_valid_after_utc)
        return min(ends)

    def renew_certificates(self, *, now: dt.datetime) -> None:
        """A new CA and new party certificates (30 days); the box keys stay.

        Shares already sealed to the parties' box keys still open: a job
        collecting while the certificates are renewed is not disturbed.

        Raises:
            DeploymentError: ``now`` naive.
        """
        if now.tzinfo is None:
            raise DeploymentError("now must be timezone-aware")
        _issue_tls(self.base_dir, self.parties, now)
        logger.info("renewed the MPC parties' certificates in %s", self.base_dir)

    @classmethod
    def from_dir(cls, base_dir: Path) -> MpcDeployment:
        """Load a deployment made by :meth:`create`.

        Raises:
            DeploymentError: the directory is missing or incomplete.
        """
        listing = base_dir / "box_public_keys"
        try:
            keys = tuple(bytes.fromhex(line) for line in listing.read_text().split())
        except (OSError, ValueError) as exc:
            raise DeploymentError(f"no MPC deployment in {base_dir}") from exc
        deployment = cls(base_dir, len(keys), keys)
        for index in range(deployment.parties):
            config = deployment.party_dir(index) / ".config"
            for name in (f"party_{index}.crt", f"party_{index}.key", "mpyc_ca.crt"):
                if not (config / name).is_file():
                    raise DeploymentError(f"party {index} lacks {config / name}")
        return deployment


def _issue_tls(base_dir: Path, parties: int, now: dt.datetime) -> None:
    """A fresh deployment CA and one certificate and TLS key per party, in its directory."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ibx MPC deployment CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    for index in range(parties):
        config = base_dir / f"party{index}" / ".config"
        config.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = party_name(index)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + _LIFETIME)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        (config / f"party_{index}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(
            config / f"party_{index}.key",
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        (config / "mpyc_ca.crt").write_bytes(ca_pem)
