"""Key material: the master key and Ed25519 signing and verifying (no database here;
the keys stored encrypted under the master key are :mod:`core.keyring`'s).

The master key (32 random bytes) comes from ``IBX_MASTER_KEY`` (read by
``exchange``, never here) or from a key file created with mode 0600 on first
start. Every private key ibx keeps is stored as ``AES-256-GCM(master,
nonce, private, aad=purpose || name)``; the aad binds a blob to its name, so
two blobs cannot be swapped between rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from core.errors import ConfigurationError, KeyDecryptionError

__all__ = [
    "Ed25519PublicKey",
    "Ed25519Signer",
    "MasterKey",
    "verify_ed25519",
]

logger = logging.getLogger(__name__)

_NONCE = 12
_PLACEHOLDERS = {"changeme", "change-me", "secret", "dev", "test", "placeholder", "xxx"}


@dataclass(frozen=True, repr=False)
class MasterKey:
    """The 256-bit key that encrypts every private key at rest. Never logged."""

    _key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self._key) != 32:
            raise ConfigurationError("the master key must be exactly 32 bytes")

    def __repr__(self) -> str:
        return "MasterKey(<redacted>)"

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        """Decode a master key given as 64 hex digits or base64/base64url of 32 bytes.

        Raises:
            ConfigurationError: a placeholder, or not 32 bytes in either encoding.
        """
        stripped = text.strip()
        if stripped.lower() in _PLACEHOLDERS:
            raise ConfigurationError("IBX_MASTER_KEY is a placeholder; generate 32 random bytes")
        raw: bytes | None = None
        if len(stripped) == 64:
            try:
                raw = bytes.fromhex(stripped)
            except ValueError:
                raw = None
        if raw is None:
            try:
                padded = stripped + "=" * (-len(stripped) % 4)
                raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
            except (binascii.Error, ValueError) as exc:
                raise ConfigurationError("IBX_MASTER_KEY is neither hex nor base64") from exc
        if len(raw) != 32:
            raise ConfigurationError(f"IBX_MASTER_KEY must decode to 32 bytes, not {len(raw)}")
        if len(set(raw)) < 8:
            raise ConfigurationError("IBX_MASTER_KEY has too little variety to be random")
        return cls(raw)

    @classmethod
    def load_or_create(cls, path: Path) -> MasterKey:
        """Read the key file at ``path``, creating it (mode 0600) with a random key if absent.

        Raises:
            ConfigurationError: the file is readable by group or others, or malformed.
        """
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = secrets.token_bytes(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(key.hex().encode() + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            logger.info("created a new master key file at %s", path)
            return cls(key)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigurationError(
                f"master key file {path} has mode {mode:o}; it must be 0600 (chmod 600 {path})"
            )
        return cls.from_text(path.read_text())

    def fingerprint(self) -> str:
        """Hex HMAC-SHA256 of a fixed label under the key: names the key, never reveals it.

        Backups record it so a restore can say which key it needs.
        """
        return hmac.new(self._key, b"ibx/master-key/fingerprint/v1", hashlib.sha256).hexdigest()

    def encrypt(self, plaintext: bytes, *, aad: bytes) -> bytes:
        """``nonce || AES-256-GCM(plaintext)`` bound to ``aad``."""
        nonce = secrets.token_bytes(_NONCE)
        return nonce + AESGCM(self._key).encrypt(nonce, plaintext, aad)

    def decrypt(self, blob: bytes, *, aad: bytes) -> bytes:
        """Open a blob made by :meth:`encrypt` with the same ``aad``.

        Raises:
            KeyDecryptionError: wrong key, wrong aad or a modified blob (one opaque error).
        """
        try:
            return AESGCM(self._key).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
        except (InvalidTag, ValueError) as exc:
            raise KeyDecryptionError("encrypted key material did not open") from exc


@dataclass(frozen=True)
class Ed25519PublicKey:
    """A raw 32-byte Ed25519 public key."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise ValueError(f"an Ed25519 public key is 32 bytes, not {len(self.raw)}")

    @classmethod
    def from_base64(cls, text: str) -> Ed25519PublicKey:
        """Decode standard base64 of 32 bytes.

        Raises:
            ValueError: not base64 or not 32 bytes.
        """
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error as exc:
            raise ValueError("public key is not valid base64") from exc
        return cls(raw)

    def to_base64(self) -> str:
        """Standard base64 of the raw key."""
        return base64.b64encode(self.raw).decode()

    def fingerprint(self) -> str:
        """Hex SHA-256 of the raw key: a short stable name for logs and listings."""
        return hashlib.sha256(self.raw).hexdigest()


def verify_ed25519(public_key: Ed25519PublicKey, message: bytes, signature: bytes) -> bool:
    """True exactly when ``signature`` is a valid Ed25519 signature of ``message``."""
    if len(signature) != 64:
        return False
    try:
        VerifyKey(public_key.raw).verify(message, signature)
    except BadSignatureError:
        return False
    return True


class Ed25519Signer:
    """An Ed25519 private key held in memory; repr and str never show it."""

    def __init__(self, name: str, seed: bytes) -> None:
        self.name = name
        self._key = SigningKey(seed)
        self.public_key = Ed25519PublicKey(bytes(self._key.verify_key))

    @classmethod
    def generate(cls, name: str) -> Ed25519Signer:
        """A fresh random key."""
        return cls(name, secrets.token_bytes(32))

    def seed(self) -> bytes:
        """The 32-byte private seed: for encrypting at rest, never for logging."""
        return bytes(self._key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return bytes(self._key.sign(message).signature)

    def __repr__(self) -> str:
        return f"Ed25519Signer(name={self.name!r}, public={self.public_key.to_base64()})"
