"""A Fabric client identity: an MSP id, an X.509 certificate and its ECDSA P-256 key.

The Gateway checks every proposal, transaction envelope and commit-status or
events request against the signer's certificate (``msp.SerializedIdentity``).
Fabric's validators accept only low-S ECDSA signatures (``s <= n/2``), so
:meth:`FabricIdentity.sign` normalises every signature. Nothing here logs or
prints key material; the private key never appears in a ``repr``.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ledger.fabric.errors import FabricConfigError

__all__ = ["P256_ORDER", "FabricIdentity", "low_s"]

logger = logging.getLogger(__name__)

P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""The order n of the P-256 group."""

_HALF_ORDER = P256_ORDER >> 1


def low_s(signature: bytes) -> bytes:
    """The DER ECDSA P-256 ``signature`` with ``s`` replaced by ``n - s`` when ``s > n/2``.

    Both forms verify; Fabric refuses the high one (malleability).

    Raises:
        ValueError: not a DER ECDSA signature.
    """
    r, s = decode_dss_signature(signature)
    if s > _HALF_ORDER:
        s = P256_ORDER - s
    return encode_dss_signature(r, s)


@dataclass(frozen=True)
class FabricIdentity:
    """The identity that signs the ledger's Fabric requests.

    Attributes:
        msp_id: the organisation's MSP id (``Org1MSP``).
        certificate_pem: the enrolled X.509 certificate, PEM, as the MSP knows it.
        private_key: the certificate's ECDSA P-256 private key (never printed).
    """

    msp_id: str
    certificate_pem: bytes
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        if not self.msp_id:
            raise FabricConfigError("the Fabric client identity needs an MSP id")
        if not isinstance(self.private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            self.private_key.curve, ec.SECP256R1
        ):
            raise FabricConfigError("the Fabric client key must be an ECDSA P-256 key")
        certificate = _load_certificate(self.certificate_pem, "the Fabric client certificate")
        if certificate.public_key() != self.private_key.public_key():
            raise FabricConfigError(
                "the Fabric client certificate is not for this private key (its public key differs)"
            )

    @classmethod
    def from_files(
        cls, cert: Path, key: Path, msp_id: str, password: bytes | None = None
    ) -> FabricIdentity:
        """Read a certificate and a private key file (PEM; the key may be encrypted).

        Raises:
            FabricConfigError: a file is missing or unreadable, the key file is readable
                or writable by group or others, the key is not ECDSA P-256, needs a password
                that was not given or the given one is wrong, or the certificate is not the
                key's.
        """
        try:
            certificate_pem = cert.read_bytes()
        except OSError as exc:
            raise FabricConfigError(
                f"cannot read the Fabric client certificate {cert}: {exc.strerror}"
            ) from exc
        try:
            info = key.stat()
        except OSError as exc:
            raise FabricConfigError(
                f"cannot read the Fabric client key {key}: {exc.strerror}"
            ) from exc
        mode = stat.S_IMODE(info.st_mode)
        if os.name == "posix" and mode & 0o077:
            raise FabricConfigError(
                f"the Fabric client key {key} has mode {mode:04o}; only its owner may read it"
                f" (chmod 600 {key})"
            )
        try:
            key_pem = key.read_bytes()
        except OSError as exc:
            raise FabricConfigError(
                f"cannot read the Fabric client key {key}: {exc.strerror}"
            ) from exc
        private_key = _load_private_key(key_pem, password, key)
        return cls(msp_id, certificate_pem, private_key)

    def serialized(self) -> bytes:
        """The ``msp.SerializedIdentity`` bytes (MSP id and certificate PEM): a request's
        creator."""
        from fabric_protos.msp import identities_pb2  # noqa: PLC0415 -- protobuf on demand

        message = identities_pb2.SerializedIdentity(
            mspid=self.msp_id, id_bytes=self.certificate_pem
        )
        data: bytes = message.SerializeToString()
        return data

    def sign(self, message: bytes) -> bytes:
        """ECDSA-SHA256 over ``message``, DER, with a low S.

        Raises:
            Nothing: signing with a valid key does not fail.
        """
        return low_s(self.private_key.sign(message, ec.ECDSA(hashes.SHA256())))


def _load_certificate(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise FabricConfigError(f"{what} is not a PEM X.509 certificate") from exc


def _load_private_key(pem: bytes, password: bytes | None, path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        private_key = serialization.load_pem_private_key(pem, password=password)
    except TypeError as exc:
        # cryptography: a password for an unencrypted key, or none for an encrypted one
        if password is None:
            raise FabricConfigError(
                f"the Fabric client key {path} is encrypted; give its password"
            ) from exc
        raise FabricConfigError(
            f"the Fabric client key {path} is not encrypted; give no password"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        if password is not None:
            raise FabricConfigError(
                f"the Fabric client key {path} did not open: a wrong password, or not a PEM key"
            ) from exc
        raise FabricConfigError(f"the Fabric client key {path} is not a PEM private key") from exc
    if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
        private_key.curve, ec.SECP256R1
    ):
        raise FabricConfigError(f"the Fabric client key {path} is not an ECDSA P-256 key")
    return private_key
