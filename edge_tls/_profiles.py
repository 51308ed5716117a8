"""Certificate profiles (RFC 5280): what the CA puts in each kind of certificate.

Every field of an issued certificate comes from here, never from the CSR: the
CSR contributes only its public key. Device certificates carry exactly one
URI SAN, the SPIFFE ID ``spiffe://<trust-domain>/enterprise/<E>/device/<D>``.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from core.clock import require_aware

__all__ = [
    "CertificateKind",
    "DeviceId",
    "DevicePublicKey",
    "PkiConfig",
    "build_certificate",
    "fingerprint",
    "key_fingerprint",
]

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9.-]{0,252}$")

DevicePublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
"""The key types a device may enrol (P-256 and P-384 checked by the CSR validator)."""

CaPrivateKey = ec.EllipticCurvePrivateKey


class CertificateKind(enum.StrEnum):
    """The certificate profiles this CA issues."""

    ROOT = "root"
    ISSUING = "issuing"
    DEVICE = "device"
    SERVER = "server"


@dataclass(frozen=True)
class PkiConfig:
    """Lifetimes and limits of the edge PKI (defaults documented in docs/edge.md)."""

    trust_domain: str = "ibx.localhost"
    device_lifetime: timedelta = timedelta(days=7)
    server_lifetime: timedelta = timedelta(days=30)
    issuing_lifetime: timedelta = timedelta(days=5 * 365)
    root_lifetime: timedelta = timedelta(days=10 * 365)
    token_ttl: timedelta = timedelta(hours=24)
    max_token_ttl: timedelta = timedelta(days=30)
    crl_lifetime: timedelta = timedelta(days=1)
    backdate: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if not _TRUST_DOMAIN.fullmatch(self.trust_domain):
            raise ValueError(f"trust domain {self.trust_domain!r} is not a lower-case DNS name")
        if not timedelta(minutes=5) <= self.device_lifetime <= timedelta(days=366):
            raise ValueError("device certificate lifetime must be between 5 minutes and a year")
        if self.token_ttl > self.max_token_ttl:
            raise ValueError("default token ttl exceeds the maximum token ttl")


@dataclass(frozen=True)
class DeviceId:
    """An edge terminal's identity: its enterprise and its own name."""

    enterprise: str
    device: str

    def __post_init__(self) -> None:
        for label, value in (("enterprise", self.enterprise), ("device", self.device)):
            if not _NAME.fullmatch(value):
                raise ValueError(
                    f"{label} name {value!r} must be 1-64 letters, digits or . _ -, "
                    "starting with a letter or digit"
                )

    def spiffe_id(self, trust_domain: str) -> str:
        """``spiffe://<trust-domain>/enterprise/<E>/device/<D>``."""
        return f"spiffe://{trust_domain}/enterprise/{self.enterprise}/device/{self.device}"

    @classmethod
    def from_spiffe_id(cls, uri: str, trust_domain: str) -> DeviceId:
        """Parse a device SPIFFE ID of ``trust_domain``.

        Raises:
            ValueError: another trust domain or not a device path.
        """
        prefix = f"spiffe://{trust_domain}/enterprise/"
        if not uri.startswith(prefix):
            raise ValueError(f"{uri!r} is not a device of trust domain {trust_domain}")
        parts = uri[len(prefix) :].split("/")
        if len(parts) != 3 or parts[1] != "device":
            raise ValueError(f"{uri!r} is not a device SPIFFE ID")
        return cls(parts[0], parts[2])


def fingerprint(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the certificate's DER encoding."""
    return cert.fingerprint(hashes.SHA256()).hex()


def key_fingerprint(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the certificate's SubjectPublicKeyInfo (stable across renewals)."""
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def _usage(*, signature: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class _Subject:
    name: x509.Name
    sans: tuple[x509.GeneralName, ...]


def _subject(
    kind: CertificateKind,
    *,
    trust_domain: str,
    device: DeviceId | None,
    hosts: tuple[str, ...],
) -> _Subject:
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ibx")
    if kind is CertificateKind.ROOT:
        cn = f"ibx edge root CA ({trust_domain})"
        return _Subject(x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, cn)]), ())
    if kind is CertificateKind.ISSUING:
        cn = f"ibx edge issuing CA ({trust_domain})"
        return _Subject(x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, cn)]), ())
    if kind is CertificateKind.DEVICE:
        assert device is not None
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, device.enterprise),
                x509.NameAttribute(NameOID.COMMON_NAME, device.device),
            ]
        )
        return _Subject(name, (x509.UniformResourceIdentifier(device.spiffe_id(trust_domain)),))
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    common = x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "ibx edge")
    return _Subject(x509.Name([org, common]), tuple(sans))


def build_certificate(
    kind: CertificateKind,
    *,
    public_key: DevicePublicKey,
    issuer: x509.Certificate | None,
    issuer_key: CaPrivateKey,
    now: datetime,
    lifetime: timedelta,
    config: PkiConfig,
    device: DeviceId | None = None,
    hosts: tuple[str, ...] = (),
) -> x509.Certificate:
    """Sign a certificate of profile ``kind`` (``issuer=None``: self-signed root).

    Raises:
        ValueError: a naive ``now``, a device certificate without a device, a
            server certificate without hosts.
    """
    when = require_aware(now, what="now")
    if kind is CertificateKind.DEVICE and device is None:
        raise ValueError("a device certificate needs a device id")
    if kind is CertificateKind.SERVER and not hosts:
        raise ValueError("a server certificate needs at least one host name")
    subject = _subject(kind, trust_domain=config.trust_domain, device=device, hosts=hosts)
    issuer_name = subject.name if issuer is None else issuer.subject
    not_after = when + lifetime
    if issuer is not None:
        not_after = min(not_after, issuer.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject.name)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(when - config.backdate)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    # The issuer's key is always this CA's EC key (the root signs itself and the issuing CA).
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
        critical=False,
    )
    if kind in (CertificateKind.ROOT, CertificateKind.ISSUING):
        path_length = 1 if kind is CertificateKind.ROOT else 0
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=path_length), critical=True
        ).add_extension(_usage(signature=kind is CertificateKind.ISSUING, cert_sign=True), True)
    else:
        eku = (
            ExtendedKeyUsageOID.CLIENT_AUTH
            if kind is CertificateKind.DEVICE
            else ExtendedKeyUsageOID.SERVER_AUTH
        )
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(signature=True, cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectAlternativeName(list(subject.sans)), critical=False)
        )
    return builder.sign(issuer_key, hashes.SHA256())
