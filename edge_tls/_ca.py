"""The certificate authority in memory: a root, an issuing CA and the issuing key.

No I/O here; :mod:`edge_tls._registry` stores the keys (encrypted under the
master key) and every issued certificate. Only the issuing CA signs end-entity
certificates, CRLs and OCSP responses; the root key signs the issuing CA once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from edge_tls._profiles import (
    CertificateKind,
    DeviceId,
    DevicePublicKey,
    PkiConfig,
    build_certificate,
)

__all__ = [
    "CertificateAuthority",
    "GeneratedAuthority",
    "certs_only",
    "load_private_key_der",
    "parse_certs_only",
    "private_key_der",
]

logger = logging.getLogger(__name__)


def certs_only(certificates: list[x509.Certificate]) -> bytes:
    """DER of a certs-only (degenerate) PKCS#7 SignedData, as EST returns (RFC 7030 §4.1.3)."""
    return pkcs7.serialize_certificates(certificates, Encoding.DER)


def parse_certs_only(der: bytes) -> list[x509.Certificate]:
    """The certificates of a certs-only PKCS#7 (DER).

    Raises:
        ValueError: not a PKCS#7 certs-only structure.
    """
    return pkcs7.load_der_pkcs7_certificates(der)


@dataclass(frozen=True, repr=False)
class GeneratedAuthority:
    """A freshly generated CA and its root key (which only the registry persists)."""

    authority: CertificateAuthority
    root_key: ec.EllipticCurvePrivateKey = field(repr=False)


@dataclass(frozen=True, repr=False)
class CertificateAuthority:
    """Root and issuing certificates plus the issuing CA's private key (never shown)."""

    root: x509.Certificate
    issuing: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey = field(repr=False)
    config: PkiConfig

    def __repr__(self) -> str:
        return f"CertificateAuthority(issuing={self.issuing.subject.rfc4514_string()!r})"

    @classmethod
    def generate(cls, *, now: datetime, config: PkiConfig) -> GeneratedAuthority:
        """A new root and issuing CA, both ECDSA P-256.

        Raises:
            ValueError: ``now`` is naive.
        """
        root_key = ec.generate_private_key(ec.SECP256R1())
        root = build_certificate(
            CertificateKind.ROOT,
            public_key=root_key.public_key(),
            issuer=None,
            issuer_key=root_key,
            now=now,
            lifetime=config.root_lifetime,
            config=config,
        )
        issuing_key = ec.generate_private_key(ec.SECP256R1())
        issuing = build_certificate(
            CertificateKind.ISSUING,
            public_key=issuing_key.public_key(),
            issuer=root,
            issuer_key=root_key,
            now=now,
            lifetime=config.issuing_lifetime,
            config=config,
        )
        return GeneratedAuthority(cls(root, issuing, issuing_key, config), root_key)

    @property
    def chain(self) -> list[x509.Certificate]:
        """Issuing CA first, then the root."""
        return [self.issuing, self.root]

    def chain_pem(self) -> str:
        """The chain in PEM (issuing CA, then root): the trust bundle for clients."""
        return "".join(c.public_bytes(Encoding.PEM).decode() for c in self.chain)

    def cacerts(self) -> bytes:
        """The EST ``/cacerts`` payload: certs-only PKCS#7 DER of the chain."""
        return certs_only(self.chain)

    def issue_device(
        self, public_key: DevicePublicKey, device: DeviceId, *, now: datetime
    ) -> x509.Certificate:
        """A short-lived client certificate for ``device``.

        Raises:
            ValueError: ``now`` is naive.
        """
        return build_certificate(
            CertificateKind.DEVICE,
            public_key=public_key,
            issuer=self.issuing,
            issuer_key=self.issuing_key,
            now=now,
            lifetime=self.config.device_lifetime,
            config=self.config,
            device=device,
        )

    def issue_server(
        self, public_key: DevicePublicKey, hosts: tuple[str, ...], *, now: datetime
    ) -> x509.Certificate:
        """A TLS server certificate for the edge listener.

        Raises:
            ValueError: ``now`` is naive or no hosts are given.
        """
        return build_certificate(
            CertificateKind.SERVER,
            public_key=public_key,
            issuer=self.issuing,
            issuer_key=self.issuing_key,
            now=now,
            lifetime=self.config.server_lifetime,
            config=self.config,
            hosts=hosts,
        )

    def verify_issued(self, cert: x509.Certificate) -> None:
        """Check that the issuing CA signed ``cert``.

        Raises:
            ValueError: another issuer name, or a signature that does not verify.
        """
        try:
            cert.verify_directly_issued_by(self.issuing)
        except (ValueError, TypeError) as exc:
            raise ValueError("not issued by this CA") from exc
        except InvalidSignature as exc:
            raise ValueError("signature does not verify against this CA") from exc


def private_key_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 DER, only ever passed straight to the master key's encrypt."""
    return key.private_bytes(
        Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key_der(der: bytes) -> ec.EllipticCurvePrivateKey:
    """The inverse of :func:`private_key_der`.

    Raises:
        ValueError: not an EC private key.
    """
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the stored CA key is not an EC key")
    return key
