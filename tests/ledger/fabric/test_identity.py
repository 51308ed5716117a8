"""The Fabric client identity: key file checks, low-S ECDSA signatures, the serialized creator."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from fabric_protos.msp import identities_pb2

from ledger.fabric.errors import FabricConfigError
from ledger.fabric.identity import P256_ORDER, FabricIdentity, low_s
from tests.ledger.fabric.fabric_pki import FabricPki, is_low_s, verify_signature


@pytest.fixture(scope="module")
def pki() -> FabricPki:
    return FabricPki.generate(organisations=2)


def _write_key(path: Path, pem: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(pem)
    path.chmod(mode)
    return path


def test_signatures_are_low_s_and_verify(pki: FabricPki, tmp_path: Path) -> None:
    files = pki.write_client(tmp_path)
    identity = FabricIdentity.from_files(files.certificate, files.key, "Org1MSP")
    # about half of raw ECDSA signatures are high-S: 64 signatures meet both cases
    for i in range(64):
        message = f"proposal {i}".encode()
        signature = identity.sign(message)
        assert is_low_s(signature)
        assert verify_signature(pki.client.certificate, message, signature)
        public_key = pki.client.certificate.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(signature, message, ec.ECDSA(hashes.SHA256()))


def test_low_s_turns_a_high_s_signature_into_the_valid_low_one(pki: FabricPki) -> None:
    message = b"envelope payload"
    high = pki.client.sign_high_s(message)
    assert not is_low_s(high)
    fixed = low_s(high)
    assert is_low_s(fixed)
    assert verify_signature(pki.client.certificate, message, fixed)
    r, s = decode_dss_signature(fixed)
    assert encode_dss_signature(r, P256_ORDER - s) == high
    assert low_s(fixed) == fixed


def test_serialized_is_the_msp_identity(pki: FabricPki, tmp_path: Path) -> None:
    files = pki.write_client(tmp_path)
    identity = FabricIdentity.from_files(files.certificate, files.key, "Org1MSP")
    parsed = identities_pb2.SerializedIdentity.FromString(identity.serialized())
    assert parsed.mspid == "Org1MSP"
    assert parsed.id_bytes == pki.client.certificate_pem
    assert identity.serialized() == pki.client.serialized()


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644], ids=oct)
def test_a_key_file_others_can_read_is_refused(pki: FabricPki, tmp_path: Path, mode: int) -> None:
    files = pki.write_client(tmp_path)
    files.key.chmod(mode)
    with pytest.raises(FabricConfigError, match=r"mode 0\d+; only its owner") as info:
        FabricIdentity.from_files(files.certificate, files.key, "Org1MSP")
    assert "chmod 600" in str(info.value)


def test_a_certificate_of_another_key_is_refused(pki: FabricPki, tmp_path: Path) -> None:
    files = pki.write_client(tmp_path)
    other = pki.organisations[0].issue("someone-else@org1.example.com")
    files.certificate.write_bytes(other.certificate_pem)
    with pytest.raises(FabricConfigError, match="not for this private key"):
        FabricIdentity.from_files(files.certificate, files.key, "Org1MSP")


def test_an_encrypted_key_opens_with_its_password_only(pki: FabricPki, tmp_path: Path) -> None:
    files = pki.write_client(tmp_path, password=b"correct horse")
    identity = FabricIdentity.from_files(files.certificate, files.key, "Org1MSP", b"correct horse")
    assert verify_signature(pki.client.certificate, b"m", identity.sign(b"m"))
    with pytest.raises(FabricConfigError, match="encrypted; give its password"):
        FabricIdentity.from_files(files.certificate, files.key, "Org1MSP")
    with pytest.raises(FabricConfigError, match="wrong password") as info:
        FabricIdentity.from_files(files.certificate, files.key, "Org1MSP", b"wrong")
    assert "correct horse" not in str(info.value)


def test_a_password_for_a_plain_key_is_refused(pki: FabricPki, tmp_path: Path) -> None:
    files = pki.write_client(tmp_path)
    with pytest.raises(FabricConfigError, match="not encrypted"):
        FabricIdentity.from_files(files.certificate, files.key, "Org1MSP", b"unneeded")


def test_keys_that_are_not_p256_are_refused(pki: FabricPki, tmp_path: Path) -> None:
    files = pki.write_client(tmp_path)
    p384 = ec.generate_private_key(ec.SECP384R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    for key in (p384, ed):
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_key(files.key, pem)
        with pytest.raises(FabricConfigError, match="not an ECDSA P-256 key"):
            FabricIdentity.from_files(files.certificate, files.key, "Org1MSP")


def test_unreadable_or_malformed_files_are_named(pki: FabricPki, tmp_path: Path) -> None:
    files = pki.write_client(tmp_path)
    with pytest.raises(FabricConfigError, match="cannot read the Fabric client certificate"):
        FabricIdentity.from_files(tmp_path / "missing.pem", files.key, "Org1MSP")
    with pytest.raises(FabricConfigError, match="cannot read the Fabric client key"):
        FabricIdentity.from_files(files.certificate, tmp_path / "missing-key.pem", "Org1MSP")
    _write_key(files.key, b"not a key")
    with pytest.raises(FabricConfigError, match="not a PEM private key"):
        FabricIdentity.from_files(files.certificate, files.key, "Org1MSP")
    files.certificate.write_bytes(b"not a certificate")
    _write_key(files.key, pki.client.key_pem())
    with pytest.raises(FabricConfigError, match=r"not a PEM X\.509 certificate"):
        FabricIdentity.from_files(files.certificate, files.key, "Org1MSP")
    with pytest.raises(FabricConfigError, match="MSP id"):
        FabricIdentity("", pki.client.certificate_pem, pki.client.private_key)


def test_the_key_is_never_printed(pki: FabricPki) -> None:
    identity = FabricIdentity("Org1MSP", pki.client.certificate_pem, pki.client.private_key)
    text = repr(identity)
    assert "private_key" not in text
    secret = pki.client.private_key.private_numbers().private_value
    assert str(secret) not in text
    assert format(secret, "x") not in text
