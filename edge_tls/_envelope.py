"""Signed batch envelopes: what a device seals, and how the enterprise checks who signed it.

Sealing to the enterprise's public key proves nothing about the sender (anyone
can seal to a public key, the exchange operator included). So the device signs
each batch with the private key of its client certificate (the key the CA
bound to its SPIFFE ID) and puts the signature, the certificate and a header
naming itself inside the sealed plaintext. The enterprise, after opening,
verifies the certificate against the deployment CA it pinned (RFC 5280 path
validation by ``cryptography.x509.verification``), that the certificate is a
device of *its own* enterprise and the very device the header names, and the
signature over the header (which carries the readings' SHA-256).

Wire format (UTF-8 JSON; the signed bytes are the RFC 8785 form of the header)::

    {"format": "ibx.edge.batch.v1", "certificate": <base64 DER>,
     "header": {"enterprise", "device", "serial", "certificate_sha256",
                "sealed_at", "nonce", "readings_sha256"},
     "readings": <base64>, "signature": <base64>}

signature = Sign(device key, ``b"ibx/edge-batch/v1\\x00" || JCS(header)``): ECDSA
with SHA-256 (P-256) or SHA-384 (P-384), or Ed25519.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from core.canonical import canonical_bytes
from core.clock import format_rfc3339, parse_rfc3339, require_aware
from edge_tls._profiles import DeviceId, fingerprint
from edge_tls.errors import BatchFormatError, BatchVerificationError

__all__ = [
    "BATCH_FORMAT",
    "BatchHeader",
    "DevicePrivateKey",
    "SignedBatch",
    "device_of",
    "sign_batch",
]

logger = logging.getLogger(__name__)

BATCH_FORMAT = "ibx.edge.batch.v1"
_DOMAIN = b"ibx/edge-batch/v1\x00"

DevicePrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""The key types a device may hold (those the CSR validator accepts)."""


def device_of(certificate: x509.Certificate) -> DeviceId:
    """The device a certificate names in its one SPIFFE URI SAN.

    Raises:
        BatchVerificationError: no (or more than one) device SPIFFE ID.
    """
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        (uri,) = sans.get_values_for_type(x509.UniformResourceIdentifier)
        trust_domain = uri.removeprefix("spiffe://").split("/", 1)[0]
        return DeviceId.from_spiffe_id(uri, trust_domain)
    except (x509.ExtensionNotFound, ValueError) as exc:
        raise BatchVerificationError(
            "the signer certificate names no device", reason="not-a-device"
        ) from exc


@dataclass(frozen=True)
class BatchHeader:
    """What the device signs: who it is, to whom, when, and the readings' digest."""

    enterprise: str
    device: str
    serial: str
    certificate_sha256: str
    sealed_at: datetime
    nonce: str
    readings_sha256: str

    def __post_init__(self) -> None:
        DeviceId(self.enterprise, self.device)  # raises ValueError on a malformed name
        require_aware(self.sealed_at, what="sealed_at")
        for name, value, length in (
            ("certificate_sha256", self.certificate_sha256, 64),
            ("readings_sha256", self.readings_sha256, 64),
            ("nonce", self.nonce, 32),
        ):
            if len(value) != length or value.strip("0123456789abcdef"):
                raise ValueError(f"{name} must be {length} lower-case hex digits")

    def to_dict(self) -> dict[str, str]:
        """The header as JSON members (the signed form is their RFC 8785 encoding)."""
        return {
            "enterprise": self.enterprise,
            "device": self.device,
            "serial": self.serial,
            "certificate_sha256": self.certificate_sha256,
            "sealed_at": format_rfc3339(self.sealed_at),
            "nonce": self.nonce,
            "readings_sha256": self.readings_sha256,
        }

    @classmethod
    def from_dict(cls, value: object) -> BatchHeader:
        """Parse the header members.

        Raises:
            BatchFormatError: missing, extra or ill-typed members.
        """
        fields = (
            "enterprise",
            "device",
            "serial",
            "certificate_sha256",
            "sealed_at",
            "nonce",
            "readings_sha256",
        )
        if not isinstance(value, dict) or set(value) != set(fields):
            raise BatchFormatError("the batch header has the wrong members", reason="format")
        if not all(isinstance(value[name], str) for name in fields):
            raise BatchFormatError("the batch header members must be strings", reason="format")
        try:
            return cls(
                value["enterprise"],
                value["device"],
                value["serial"],
                value["certificate_sha256"],
                parse_rfc3339(value["sealed_at"]),
                value["nonce"],
                value["readings_sha256"],
            )
        except ValueError as exc:
            raise BatchFormatError(
                f"the batch header is malformed: {exc}", reason="format"
            ) from exc

    def signed_bytes(self) -> bytes:
        """The bytes the signature covers: a domain tag, then the RFC 8785 header."""
        return _DOMAIN + canonical_bytes(self.to_dict())


@dataclass(frozen=True)
class SignedBatch:
    """A batch of readings with its device's signature and certificate (still unverified)."""

    header: BatchHeader
    certificate: x509.Certificate
    readings: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        """The plaintext that goes into the sealed box."""
        body = {
            "format": BATCH_FORMAT,
            "certificate": base64.b64encode(self.certificate.public_bytes(Encoding.DER)).decode(),
            "header": self.header.to_dict(),
            "readings": base64.b64encode(self.readings).decode(),
            "signature": base64.b64encode(self.signature).decode(),
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, plaintext: bytes) -> SignedBatch:
        """Parse an opened batch.

        Raises:
            BatchFormatError: not a signed batch envelope of this format.
        """
        try:
            body = json.loads(plaintext)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BatchFormatError(
                "the opened batch is not a signed batch envelope (no signature)", reason="format"
            ) from exc
        if not isinstance(body, dict) or body.get("format") != BATCH_FORMAT:
            raise BatchFormatError(
                f"the opened batch is not a {BATCH_FORMAT} envelope", reason="format"
            )
        try:
            certificate = x509.load_der_x509_certificate(_b64(body, "certificate"))
        except ValueError as exc:
            raise BatchFormatError(
                "the signer certificate does not parse", reason="format"
            ) from exc
        return cls(
            BatchHeader.from_dict(body.get("header")),
            certificate,
            _b64(body, "readings"),
            _b64(body, "signature"),
        )

    def verify(
        self,
        *,
        enterprise: str,
        roots: list[x509.Certificate],
        intermediates: list[x509.Certificate],
    ) -> DeviceId:
        """Check that a device of ``enterprise`` certified by the pinned CA signed this batch.

        The certificate is validated (RFC 5280, clientAuth) at the signed
        ``sealed_at`` time, so a batch pulled after its signer's certificate
        expired or was superseded still verifies; revocation for key
        compromise is the caller's check (it needs the CRL).

        Raises:
            BatchVerificationError: the chain, the enterprise, the device, the
                certificate binding, the digest or the signature does not hold.
        """
        header = self.header
        try:
            verifier = (
                PolicyBuilder().store(Store(roots)).time(header.sealed_at).build_client_verifier()
            )
            verifier.verify(self.certificate, intermediates)
        except (VerificationError, ValueError) as exc:
            raise BatchVerificationError(
                f"the signer certificate does not chain to the pinned CA: {exc}", reason="chain"
            ) from exc
        signer = device_of(self.certificate)
        if signer.enterprise != enterprise or header.enterprise != enterprise:
            raise BatchVerificationError(
                f"the batch is signed by a device of {signer.enterprise!r}, not of {enterprise!r}",
                reason="foreign-enterprise",
            )
        if signer.device != header.device:
            raise BatchVerificationError(
                f"the batch claims device {header.device!r} but is signed by {signer.device!r}",
                reason="other-device",
            )
        if header.certificate_sha256 != fingerprint(self.certificate) or header.serial != format(
            self.certificate.serial_number, "x"
        ):
            raise BatchVerificationError(
                "the header names another certificate than the one enclosed", reason="binding"
            )
        if hashlib.sha256(self.readings).hexdigest() != header.readings_sha256:
            raise BatchVerificationError(
                "the readings do not match the signed digest", reason="digest"
            )
        _verify_signature(self.certificate, self.signature, header.signed_bytes())
        return signer


def _b64(body: dict[str, object], name: str) -> bytes:
    value = body.get(name)
    if not isinstance(value, str):
        raise BatchFormatError(f"the batch envelope has no {name}", reason="format")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BatchFormatError(
            f"the batch envelope's {name} is not base64", reason="format"
        ) from exc


def _verify_signature(certificate: x509.Certificate, signature: bytes, message: bytes) -> None:
    key = certificate.public_key()
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(_hash_for(key.curve)))
        else:
            raise BatchVerificationError(
                "the signer's key type cannot sign batches", reason="key-type"
            )
    except InvalidSignature as exc:
        raise BatchVerificationError(
            "the signature does not verify under the signer certificate", reason="signature"
        ) from exc


def _hash_for(curve: ec.EllipticCurve) -> hashes.HashAlgorithm:
    return hashes.SHA384() if isinstance(curve, ec.SECP384R1) else hashes.SHA256()


def sign_batch(
    readings: bytes,
    key: DevicePrivateKey,
    certificate: x509.Certificate,
    *,
    now: datetime,
) -> SignedBatch:
    """Sign ``readings`` as the device of ``certificate`` (whose key ``key`` must be).

    Raises:
        BatchVerificationError: ``certificate`` names no device, or its key is not ``key``'s.
        ValueError: empty readings or a naive ``now``.
    """
    if not readings:
        raise ValueError("refusing to sign an empty batch")
    device = device_of(certificate)
    header = BatchHeader(
        enterprise=device.enterprise,
        device=device.device,
        serial=format(certificate.serial_number, "x"),
        certificate_sha256=fingerprint(certificate),
        sealed_at=require_aware(now, what="now"),
        nonce=secrets.token_hex(16),
        readings_sha256=hashlib.sha256(readings).hexdigest(),
    )
    message = header.signed_bytes()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        signature = key.sign(message)
    else:
        signature = key.sign(message, ec.ECDSA(_hash_for(key.curve)))
    signed = SignedBatch(header, certificate, readings, signature)
    _verify_signature(certificate, signature, message)  # the key is the certificate's
    return signed
