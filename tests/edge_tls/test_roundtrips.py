"""Round-trips and invariants (Hypothesis): SPIFFE IDs, certs-only PKCS#7, sealed boxes, CSRs."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import utcnow
from core.keys import Ed25519Signer
from edge_tls import (
    CertificateAuthority,
    DeviceId,
    PkiConfig,
    build_csr,
    certs_only,
    open_batch,
    parse_certs_only,
    seal_batch,
    sealing_public_key,
    validate_csr,
)

NAMES = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
DOMAINS = st.from_regex(r"\A[a-z0-9][a-z0-9.-]{0,30}\Z")
_CA = CertificateAuthority.generate(now=utcnow(), config=PkiConfig()).authority


@given(NAMES, NAMES, DOMAINS)
def test_spiffe_id_round_trip(enterprise: str, device: str, domain: str) -> None:
    ident = DeviceId(enterprise, device)
    assert DeviceId.from_spiffe_id(ident.spiffe_id(domain), domain) == ident


@settings(max_examples=20, deadline=None)
@given(NAMES, NAMES)
def test_issued_certificate_round_trips_through_certs_only(enterprise: str, device: str) -> None:
    ident = DeviceId(enterprise, device)
    key = ec.generate_private_key(ec.SECP256R1())
    request = validate_csr(build_csr(key, device), ident, trust_domain="ibx.localhost")
    cert = _CA.issue_device(request.public_key, ident, now=utcnow())
    (back,) = parse_certs_only(certs_only([cert]))
    assert back == cert
    chain = parse_certs_only(_CA.cacerts())
    assert sorted(c.fingerprint(hashes.SHA256()) for c in chain) == sorted(
        c.fingerprint(hashes.SHA256()) for c in _CA.chain
    )  # a SET OF: DER orders it, not the issuer


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=1, max_size=4096))
def test_seal_open_round_trip(plaintext: bytes) -> None:
    enterprise = Ed25519Signer.generate("e")
    sealed = seal_batch(plaintext, sealing_public_key(enterprise.public_key.raw))
    assert plaintext not in sealed or len(plaintext) < 4
    assert open_batch(sealed, enterprise.seed()) == plaintext
    assert base64.b64encode(sealed)
