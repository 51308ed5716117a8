"""A throwaway Fabric PKI for the Gateway double: organisation CAs, identities, TLS.

Each :class:`Organisation` is an MSP: a self-signed ECDSA P-256 root CA that
issues its members' certificates (a client that signs proposals, a peer that
signs endorsements). A separate TLS CA issues the Gateway double's server
certificate for ``localhost`` and ``127.0.0.1``, as a Fabric network's TLS CA
does for its peers. Signatures are ECDSA-SHA256, DER, low-S, as Fabric's
validators require (:func:`is_low_s`).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.x509.oid import NameOID
from fabric_protos.msp import identities_pb2

__all__ = [
    "P256_HALF_ORDER",
    "ClientFiles",
    "FabricPki",
    "Identity",
    "Organisation",
    "is_low_s",
    "serialize_identity",
    "verify_signature",
]

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
P256_HALF_ORDER = _P256_ORDER >> 1
"""Fabric refuses an ECDSA signature whose ``s`` is above this (``bccsp/sw/ecdsa.go``)."""

_VALIDITY = datetime.timedelta(days=2)


def is_low_s(signature: bytes) -> bool:
    """Whether a DER ECDSA signature has ``s <= n/2``.

    Raises:
        ValueError: not a DER ECDSA signature.
    """
    _, s = decode_dss_signature(signature)
    return s <= P256_HALF_ORDER


def verify_signature(certificate: x509.Certificate, message: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is a low-S ECDSA-SHA256 signature of ``message`` by the
    certificate's P-256 key, as Fabric's MSP verifies one (never raises)."""
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    try:
        if not is_low_s(signature):
            return False
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def serialize_identity(msp_id: str, certificate_pem: bytes) -> bytes:
    """``msp.SerializedIdentity{mspid, id_bytes}``: how Fabric names a signer."""
    return bytes(
        identities_pb2.SerializedIdentity(
            mspid=msp_id, id_bytes=certificate_pem
        ).SerializeToString()
    )


def _name(common_name: str, organisation: str, unit: str | None = None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ]
    if unit is not None:
        attributes.insert(1, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    return x509.Name(attributes)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Identity:
    """A member of an MSP: its certificate and ECDSA P-256 key (never printed)."""

    msp_id: str
    certificate_pem: bytes
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        """The parsed certificate."""
        return x509.load_pem_x509_certificate(self.certificate_pem)

    def serialized(self) -> bytes:
        """The ``msp.SerializedIdentity`` bytes Fabric's headers carry."""
        return serialize_identity(self.msp_id, self.certificate_pem)

    def sign(self, message: bytes) -> bytes:
        """ECDSA-SHA256 over ``message``, DER, low-S."""
        signature = self.private_key.sign(message, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(signature)
        if s > P256_HALF_ORDER:
            s = _P256_ORDER - s
        return encode_dss_signature(r, s)

    def sign_high_s(self, message: bytes) -> bytes:
        """The same signature with ``s`` replaced by ``n - s``: valid ECDSA, refused by Fabric."""
        r, s = decode_dss_signature(self.sign(message))
        return encode_dss_signature(r, _P256_ORDER - s)

    def key_pem(self, password: bytes | None = None) -> bytes:
        """The private key as PKCS#8 PEM (encrypted under ``password`` when given)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password)
            if password
            else serialization.NoEncryption()
        )
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )


@dataclass(frozen=True)
class Organisation:
    """An MSP: its id and its root CA (which signs every member's certificate)."""

    msp_id: str
    ca_certificate_pem: bytes
    ca_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def generate(cls, msp_id: str, domain: str) -> Organisation:
        """A new organisation with a fresh self-signed CA ``ca.<domain>``."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(f"ca.{domain}", domain)
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
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
            .sign(key, hashes.SHA256())
        )
        return cls(msp_id, _pem(certificate), key)

    @property
    def ca_certificate(self) -> x509.Certificate:
        """The parsed root CA certificate."""
        return x509.load_pem_x509_certificate(self.ca_certificate_pem)

    def issue(self, common_name: str, unit: str = "client") -> Identity:
        """A member certificate (organisational unit ``client``, ``peer``, ...) and its key."""
        key = ec.generate_private_key(ec.SECP256R1())
        ca = self.ca_certificate
        now = _now()
        organisation = ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, str(organisation), unit))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.ca_key, hashes.SHA256())
        )
        return Identity(self.msp_id, _pem(certificate), key)

    def validates(self, certificate: x509.Certificate, at: datetime.datetime) -> bool:
        """Whether this CA issued ``certificate`` and it is valid at ``at`` (an MSP's
        ``Validate``: chain to the root, validity period, not a CA itself)."""
        ca = self.ca_certificate
        if certificate.issuer != ca.subject:
            return False
        if not certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc:
            return False
        try:
            certificate.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):
            return False
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            return True
        return not constraints.value.ca


@dataclass(frozen=True)
class ClientFiles:
    """A client identity and the TLS root written out as a Fabric client reads them."""

    certificate: Path
    key: Path
    tls_root: Path


@dataclass(frozen=True)
class FabricPki:
    """The consortium's PKI for tests.

    Attributes:
        organisations: the channel's MSPs (``Org1MSP``, ``Org2MSP``, ...).
        client: the ledger's client identity, a member of the first organisation.
        peers: one endorsing peer identity per organisation, in the same order.
        tls_ca_pem: the TLS CA's certificate (the clients' TLS root).
        tls_server_cert_pem: the Gateway's TLS certificate, for localhost and 127.0.0.1.
        tls_server_key_pem: its key.
    """

    organisations: tuple[Organisation, ...]
    client: Identity
    peers: tuple[Identity, ...]
    tls_ca_pem: bytes
    tls_server_cert_pem: bytes
    tls_server_key_pem: bytes = field(repr=False)

    @classmethod
    def generate(cls, organisations: int = 3) -> FabricPki:
        """A fresh PKI: ``organisations`` MSPs, a peer in each, a client in the first."""
        orgs = tuple(
            Organisation.generate(f"Org{i}MSP", f"org{i}.example.com")
            for i in range(1, organisations + 1)
        )
        peers = tuple(
            org.issue(f"peer0.org{i}.example.com", "peer") for i, org in enumerate(orgs, 1)
        )
        client = orgs[0].issue("ledger@org1.example.com", "client")
        tls_ca = Organisation.generate("tls", "tls.example.com")
        server_cert, server_key = _tls_server(tls_ca)
        return cls(orgs, client, peers, tls_ca.ca_certificate_pem, server_cert, server_key)

    def organisation(self, msp_id: str) -> Organisation | None:
        """The channel's MSP of that id, if any."""
        return next((org for org in self.organisations if org.msp_id == msp_id), None)

    def write_client(
        self,
        directory: Path,
        identity: Identity | None = None,
        *,
        password: bytes | None = None,
        tls_root_pem: bytes | None = None,
    ) -> ClientFiles:
        """Write ``identity`` (default :attr:`client`), its key (mode 0600) and the TLS root.

        Raises:
            OSError: the directory cannot be written.
        """
        who = identity or self.client
        directory.mkdir(parents=True, exist_ok=True)
        certificate = directory / "client-cert.pem"
        key = directory / "client-key.pem"
        tls_root = directory / "tls-root.pem"
        certificate.write_bytes(who.certificate_pem)
        key.touch(mode=0o600, exist_ok=True)
        key.chmod(0o600)
        key.write_bytes(who.key_pem(password))
        tls_root.write_bytes(tls_root_pem or self.tls_ca_pem)
        return ClientFiles(certificate, key, tls_root)


def _tls_server(tls_ca: Organisation) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    ca = tls_ca.ca_certificate
    now = _now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost", "tls.example.com"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("peer0.org1.example.com"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(tls_ca.ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _pem(certificate), key_pem
