"""CSR validation: every refusal the issue lists, as a named table, plus the accepted keys."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from edge_tls import (
    CsrCaRequestError,
    CsrError,
    CsrMalformedError,
    CsrNameError,
    CsrSignatureError,
    DeviceId,
    WeakKeyError,
    validate_csr,
)

DEVICE = DeviceId("factory-a", "press-7")
DOMAIN = "ibx.localhost"
SPIFFE = DEVICE.spiffe_id(DOMAIN)


def _csr(
    key: object = None,
    *,
    cn: str = "press-7",
    extra_subject: list[x509.NameAttribute[str]] | None = None,
    extensions: list[x509.ExtensionType] | None = None,
) -> bytes:
    signing_key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    name = [x509.NameAttribute(NameOID.COMMON_NAME, cn), *(extra_subject or [])]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(name))
    for ext in extensions or []:
        builder = builder.add_extension(ext, critical=False)
    algorithm = None if isinstance(signing_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(signing_key, algorithm)  # type: ignore[arg-type]
    return base64.encodebytes(csr.public_bytes(Encoding.DER))


def _bad_signature() -> bytes:
    der = bytearray(base64.b64decode(_csr()))
    der[-1] ^= 0x01  # the last byte of the ECDSA signature's s value
    return base64.encodebytes(bytes(der))


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass(frozen=True)
class Refusal:
    make: Callable[[], bytes]
    error: type[CsrError]


REFUSALS = {
    "rsa-1024": Refusal(lambda: _csr(rsa.generate_private_key(65537, 1024)), WeakKeyError),
    "rsa-2048": Refusal(lambda: _csr(rsa.generate_private_key(65537, 2048)), WeakKeyError),
    "p-192": Refusal(lambda: _csr(ec.generate_private_key(ec.SECP192R1())), WeakKeyError),
    "secp256k1": Refusal(lambda: _csr(ec.generate_private_key(ec.SECP256K1())), WeakKeyError),
    "bad-signature": Refusal(_bad_signature, CsrSignatureError),
    "other-common-name": Refusal(lambda: _csr(cn="press-8"), CsrNameError),
    "other-organisation": Refusal(
        lambda: _csr(extra_subject=[x509.NameAttribute(NameOID.ORGANIZATION_NAME, "factory-b")]),
        CsrNameError,
    ),
    "dns-san": Refusal(
        lambda: _csr(extensions=[x509.SubjectAlternativeName([x509.DNSName("exchange.local")])]),
        CsrNameError,
    ),
    "other-device-uri": Refusal(
        lambda: _csr(
            extensions=[
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(SPIFFE.replace("press-7", "press-8"))]
                )
            ]
        ),
        CsrNameError,
    ),
    "ca-basic-constraints": Refusal(
        lambda: _csr(extensions=[x509.BasicConstraints(ca=True, path_length=None)]),
        CsrCaRequestError,
    ),
    "key-cert-sign": Refusal(lambda: _csr(extensions=[_ca_usage()]), CsrCaRequestError),
    "not-base64": Refusal(lambda: b"this is not a CSR!", CsrMalformedError),
    "empty": Refusal(lambda: b"", CsrMalformedError),
    "truncated-der": Refusal(lambda: base64.b64decode(_csr())[:40], CsrMalformedError),
}


@pytest.mark.parametrize("case", REFUSALS.values(), ids=REFUSALS.keys())
def test_refused(case: Refusal) -> None:
    with pytest.raises(case.error) as info:
        validate_csr(case.make(), DEVICE, trust_domain=DOMAIN)
    assert str(info.value)  # a clear message, never empty


def test_weak_key_names_the_key() -> None:
    with pytest.raises(WeakKeyError) as info:
        validate_csr(_csr(rsa.generate_private_key(65537, 1024)), DEVICE, trust_domain=DOMAIN)
    assert info.value.key_type == "rsa-1024"
    assert "RSA-1024" in str(info.value)


ACCEPTED = {
    "p-256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p-384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


@pytest.mark.parametrize("make_key", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_keys(make_key: Callable[[], object]) -> None:
    request = validate_csr(_csr(make_key()), DEVICE, trust_domain=DOMAIN)
    assert request.device == DEVICE


def test_own_spiffe_uri_and_raw_der_and_pem_are_accepted() -> None:
    body = _csr(extensions=[x509.SubjectAlternativeName([x509.UniformResourceIdentifier(SPIFFE)])])
    der = base64.b64decode(body)
    validate_csr(body, DEVICE, trust_domain=DOMAIN)
    validate_csr(der, DEVICE, trust_domain=DOMAIN)
    pem = x509.load_der_x509_csr(der).public_bytes(Encoding.PEM)
    validate_csr(pem, DEVICE, trust_domain=DOMAIN)
