"""The enterprise's private key file: made and used on the enterprise's side only.

``ibx consent keygen --out KEYFILE`` writes it with mode 0600; ``grant`` and
``revoke`` read it to sign locally. The exchange only ever sees the public key.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from consent.errors import ConsentKeyError
from core.keys import Ed25519Signer

__all__ = ["EnterpriseKey"]

logger = logging.getLogger(__name__)

_KIND = "ibx.consent.ed25519-private-key.v1"


@dataclass(frozen=True, repr=False)
class EnterpriseKey:
    """An enterprise's consent-signing key pair, loaded from its key file."""

    signer: Ed25519Signer

    def __repr__(self) -> str:
        return f"EnterpriseKey(public={self.signer.public_key.to_base64()})"

    @classmethod
    def generate(cls, path: Path) -> EnterpriseKey:
        """Create a fresh key and write it to ``path`` (mode 0600; never overwrites).

        Raises:
            ConsentKeyError: ``path`` exists or cannot be written.
        """
        signer = Ed25519Signer.generate("consent")
        body = {
            "kind": _KIND,
            "seed": base64.b64encode(signer.seed()).decode(),
            "public_key": signer.public_key.to_base64(),
        }
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise ConsentKeyError(f"{path} already exists; refusing to overwrite a key") from exc
        except OSError as exc:
            raise ConsentKeyError(f"cannot create {path}: {exc.strerror}") from exc
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(body, indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        logger.info("wrote consent key %s", signer.public_key.fingerprint()[:16])
        return cls(signer)

    @classmethod
    def load(cls, path: Path) -> EnterpriseKey:
        """Read a key file written by :meth:`generate`.

        Raises:
            ConsentKeyError: missing, readable by group or others, or malformed.
        """
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            text = path.read_text()
        except OSError as exc:
            raise ConsentKeyError(f"cannot read key file {path}: {exc.strerror}") from exc
        if os.name == "posix" and mode & 0o077:
            raise ConsentKeyError(f"key file {path} has mode {mode:o}; it must be 0600")
        try:
            body = json.loads(text)
            if body.get("kind") != _KIND:
                raise ValueError("not an ibx consent key file")
            seed = base64.b64decode(body["seed"], validate=True)
            if len(seed) != 32:
                raise ValueError("the seed is not 32 bytes")
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
            raise ConsentKeyError(f"key file {path} is malformed: {exc}") from exc
        signer = Ed25519Signer("consent", seed)
        if body.get("public_key") != signer.public_key.to_base64():
            raise ConsentKeyError(f"key file {path}: public key does not match the seed")
        return cls(signer)
