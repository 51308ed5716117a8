"""What the CA hands out: issued certificates, authenticated devices, listener credentials."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from edge_tls._ca import certs_only
from edge_tls._profiles import CertificateKind, DeviceId, fingerprint

__all__ = ["CertificateRecord", "DeviceCertificate", "IssuedCertificate", "ServerCredentials"]


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate the issuing CA just signed."""

    certificate: x509.Certificate
    device: DeviceId

    @property
    def serial(self) -> int:
        """The certificate's serial number."""
        return self.certificate.serial_number

    @property
    def fingerprint(self) -> str:
        """Hex SHA-256 of the DER certificate."""
        return fingerprint(self.certificate)

    def certs_only(self) -> bytes:
        """The EST response payload: certs-only PKCS#7 DER holding the new certificate."""
        return certs_only([self.certificate])


@dataclass(frozen=True)
class DeviceCertificate:
    """A device authenticated by a currently valid, unrevoked client certificate."""

    device: DeviceId
    serial: int
    fingerprint: str
    not_after: datetime


@dataclass(frozen=True, repr=False)
class ServerCredentials:
    """The edge listener's certificate chain and private key, both PEM."""

    chain_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:
        return "ServerCredentials(<chain>, key=<redacted>)"


@dataclass(frozen=True)
class CertificateRecord:
    """One row of the CA's register, for listings."""

    serial: int
    fingerprint: str
    kind: CertificateKind
    subject: str | None
    not_after: datetime
    revoked_at: datetime | None
