"""PKCS#10 validation: proof of possession, key strength, names and CA rights.

The CSR contributes its public key and nothing else; but a CSR that *asks*
for something it may not have (another name, CA rights) is refused rather
than silently trimmed, so a misconfigured or hostile device learns why.
"""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from edge_tls._profiles import DeviceId, DevicePublicKey
from edge_tls.errors import (
    CsrCaRequestError,
    CsrMalformedError,
    CsrNameError,
    CsrSignatureError,
    WeakKeyError,
)

__all__ = ["MAX_CSR_BYTES", "EnrollmentRequest", "decode_csr", "validate_csr"]

logger = logging.getLogger(__name__)

MAX_CSR_BYTES = 16 * 1024
_CURVES: tuple[type[ec.EllipticCurve], ...] = (ec.SECP256R1, ec.SECP384R1)


@dataclass(frozen=True)
class EnrollmentRequest:
    """A CSR that passed every check: the key to certify, for ``device``."""

    device: DeviceId
    public_key: DevicePublicKey
    csr: x509.CertificateSigningRequest


def decode_csr(body: bytes) -> x509.CertificateSigningRequest:
    """Decode an EST request body: base64 DER (RFC 7030 §4.2.1), raw DER, or PEM.

    Raises:
        CsrMalformedError: too large, or not a PKCS#10 request in any of those forms.
    """
    if not body or len(body) > MAX_CSR_BYTES:
        raise CsrMalformedError(f"the request body must be 1 to {MAX_CSR_BYTES} bytes")
    try:
        if body.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(body.strip())
        if body[:1] == b"\x30":
            return x509.load_der_x509_csr(body)
        der = base64.b64decode(b"".join(body.split()), validate=True)
        return x509.load_der_x509_csr(der)
    except (ValueError, binascii.Error) as exc:
        raise CsrMalformedError("the body is not a base64 DER PKCS#10 request") from exc


def _check_key(csr: x509.CertificateSigningRequest) -> DevicePublicKey:
    try:
        key = csr.public_key()
    except (ValueError, TypeError) as exc:  # unsupported algorithms fail to load
        raise WeakKeyError(
            "the CSR's key type is not supported; use P-256, P-384 or Ed25519",
            key_type="unsupported",
        ) from exc
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, _CURVES):
            return key
        raise WeakKeyError(
            f"curve {key.curve.name} is refused; use P-256, P-384 or Ed25519",
            key_type=f"ec-{key.curve.name}",
        )
    if isinstance(key, rsa.RSAPublicKey):
        raise WeakKeyError(
            f"RSA-{key.key_size} keys are refused; use P-256, P-384 or Ed25519",
            key_type=f"rsa-{key.key_size}",
        )
    raise WeakKeyError(
        f"{type(key).__name__} keys are refused; use P-256, P-384 or Ed25519",
        key_type=type(key).__name__,
    )


def _check_names(csr: x509.CertificateSigningRequest, device: DeviceId, trust_domain: str) -> None:
    expected_uri = device.spiffe_id(trust_domain)
    for attribute in csr.subject:
        if attribute.oid == NameOID.COMMON_NAME and attribute.value == device.device:
            continue
        if attribute.oid == NameOID.ORGANIZATION_NAME and attribute.value == device.enterprise:
            continue
        shown = attribute.rfc4514_string()
        raise CsrNameError(
            f"the CSR subject asks for {shown}; a device may only ask for CN={device.device}",
            requested=shown,
        )
    try:
        sans = csr.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return
    assert isinstance(sans.value, x509.SubjectAlternativeName)
    for name in sans.value:
        if isinstance(name, x509.UniformResourceIdentifier) and name.value == expected_uri:
            continue
        shown = f"{type(name).__name__}:{name.value}"
        raise CsrNameError(
            f"the CSR asks for the name {shown}; this device may only be {expected_uri}",
            requested=shown,
        )


def _check_ca_rights(csr: x509.CertificateSigningRequest) -> None:
    for extension in csr.extensions:
        value = extension.value
        if isinstance(value, x509.BasicConstraints) and value.ca:
            raise CsrCaRequestError("the CSR asks to be a CA (basicConstraints cA=TRUE)")
        if isinstance(value, x509.KeyUsage) and (value.key_cert_sign or value.crl_sign):
            raise CsrCaRequestError("the CSR asks for keyCertSign or cRLSign key usage")


def validate_csr(
    body: bytes | x509.CertificateSigningRequest, device: DeviceId, *, trust_domain: str
) -> EnrollmentRequest:
    """Check a CSR for ``device``: decoding, key, proof of possession, names, CA rights.

    Raises:
        CsrMalformedError: not a PKCS#10 request.
        WeakKeyError: a key other than P-256, P-384 or Ed25519.
        CsrSignatureError: the signature does not verify (no proof of possession).
        CsrNameError: a subject attribute or SAN other than the device's own.
        CsrCaRequestError: basicConstraints cA or certificate/CRL signing asked for.
    """
    csr = body if isinstance(body, x509.CertificateSigningRequest) else decode_csr(body)
    key = _check_key(csr)
    try:
        valid = csr.is_signature_valid
    except (ValueError, TypeError) as exc:
        raise CsrSignatureError("the CSR's signature cannot be checked") from exc
    if not valid:
        raise CsrSignatureError(
            "the CSR's signature does not verify: no proof of possession of the key"
        )
    try:
        _check_names(csr, device, trust_domain)
        _check_ca_rights(csr)
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise CsrMalformedError(f"the CSR's extensions cannot be parsed: {exc}") from exc
    return EnrollmentRequest(device=device, public_key=key, csr=csr)
