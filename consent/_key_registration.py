"""Registering an enterprise's consent key: a statement signed by the key itself, and by
the key it replaces.

The exchange verifies consents against the public key registered to the
enterprise, so replacing that key is as sensitive as signing a consent: whoever
holds only the enterprise's bearer token must not be able to register a key of
their own and then sign consents in its name. A :class:`KeyRegistration` names
the deployment, the enterprise, the new key and the key it replaces (null for
the first); it is signed by the new key (proof of possession) and, when it
replaces one, by the replaced key too. The exchange accepts it only if the
replaced key is the one registered now and the statement was signed within the
allowed skew of its clock, so an old statement cannot roll a rotation back.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from consent._receipt import RECEIPT_VERSION
from consent.errors import (
    BadConsentSignatureError,
    ConsentKeyError,
    InvalidConsentError,
    WrongOriginError,
)
from core.canonical import JsonValue, canonical_bytes
from core.clock import format_rfc3339, parse_rfc3339, require_aware
from core.keys import Ed25519PublicKey, Ed25519Signer, verify_ed25519

__all__ = ["KEY_REGISTRATION_KIND", "KeyRegistration", "SignedKeyRegistration"]

logger = logging.getLogger(__name__)

KEY_REGISTRATION_KIND: Final = "key-registration"
_KEYS = {"version", "kind", "origin", "enterprise", "public_key", "previous_key", "signed_at"}


def _key(text: object, what: str) -> Ed25519PublicKey:
    if not isinstance(text, str):
        raise InvalidConsentError(f"{what} must be base64 text")
    try:
        return Ed25519PublicKey.from_base64(text)
    except ValueError as exc:
        raise InvalidConsentError(f"{what}: {exc}") from exc


def _signature(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidConsentError(f"{what} must be base64 text")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidConsentError(f"{what} is not valid base64") from exc
    if len(raw) != 64:
        raise InvalidConsentError(f"{what} must be 64 bytes of Ed25519")
    return raw


def _fingerprint(key: Ed25519PublicKey | None) -> str:
    return key.fingerprint()[:16] if key is not None else "none"


@dataclass(frozen=True)
class KeyRegistration:
    """Enterprise ``enterprise`` registers ``public_key`` for deployment ``origin``,
    replacing ``previous_key`` (None: it has none yet)."""

    origin: str
    enterprise: str
    public_key: Ed25519PublicKey
    previous_key: Ed25519PublicKey | None
    signed_at: datetime

    def __post_init__(self) -> None:
        if not self.origin or any(c.isspace() for c in self.origin) or len(self.origin) > 200:
            raise InvalidConsentError("origin must be a non-empty token without spaces")
        if not self.enterprise or len(self.enterprise) > 128:
            raise InvalidConsentError("enterprise must be a name of 1-128 characters")
        try:
            object.__setattr__(self, "signed_at", require_aware(self.signed_at, what="signed_at"))
        except ValueError as exc:
            raise InvalidConsentError(str(exc)) from exc

    def to_dict(self) -> dict[str, JsonValue]:
        """The signed object."""
        return {
            "version": RECEIPT_VERSION,
            "kind": KEY_REGISTRATION_KIND,
            "origin": self.origin,
            "enterprise": self.enterprise,
            "public_key": self.public_key.to_base64(),
            "previous_key": self.previous_key.to_base64() if self.previous_key else None,
            "signed_at": format_rfc3339(self.signed_at),
        }

    def canonical(self) -> bytes:
        """The RFC 8785 bytes both keys sign."""
        return canonical_bytes(self.to_dict())

    @classmethod
    def from_dict(cls, obj: object) -> KeyRegistration:
        """Decode :meth:`to_dict` output strictly.

        Raises:
            InvalidConsentError: wrong keys, types or values.
        """
        if not isinstance(obj, Mapping) or set(obj) != _KEYS:
            raise InvalidConsentError(f"a key registration has exactly {sorted(_KEYS)}")
        if obj["version"] != RECEIPT_VERSION or obj["kind"] != KEY_REGISTRATION_KIND:
            raise InvalidConsentError(f"not a {RECEIPT_VERSION} key registration")
        for name in ("origin", "enterprise", "signed_at"):
            if not isinstance(obj[name], str):
                raise InvalidConsentError(f"{name} must be a string")
        try:
            signed_at = parse_rfc3339(obj["signed_at"])
        except ValueError as exc:
            raise InvalidConsentError(f"signed_at: {exc}") from exc
        previous = obj["previous_key"]
        return cls(
            origin=obj["origin"],
            enterprise=obj["enterprise"],
            public_key=_key(obj["public_key"], "public_key"),
            previous_key=None if previous is None else _key(previous, "previous_key"),
            signed_at=signed_at,
        )

    def sign(
        self, signer: Ed25519Signer, previous: Ed25519Signer | None = None
    ) -> SignedKeyRegistration:
        """Sign with the new key and, when replacing one, the replaced key (enterprise side).

        Raises:
            ConsentKeyError: a signer is not the key the statement names.
        """
        if signer.public_key != self.public_key:
            raise ConsentKeyError("the signing key is not the key being registered")
        if (previous is None) != (self.previous_key is None) or (
            previous is not None and previous.public_key != self.previous_key
        ):
            raise ConsentKeyError("the replaced key must sign too, and only it")
        message = self.canonical()
        return SignedKeyRegistration(
            self, signer.sign(message), previous.sign(message) if previous else None
        )


@dataclass(frozen=True)
class SignedKeyRegistration:
    """A key registration with the new key's signature and the replaced key's."""

    registration: KeyRegistration
    signature: bytes
    previous_signature: bytes | None

    def to_dict(self) -> dict[str, JsonValue]:
        """``{"registration", "signature", "previous_signature"}`` (signatures in base64)."""
        previous = self.previous_signature
        return {
            "registration": self.registration.to_dict(),
            "signature": base64.b64encode(self.signature).decode(),
            "previous_signature": base64.b64encode(previous).decode() if previous else None,
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> SignedKeyRegistration:
        """Decode :meth:`to_dict` output (does not verify).

        Raises:
            InvalidConsentError: a malformed statement or signature.
        """
        if set(obj) != {"registration", "signature", "previous_signature"}:
            raise InvalidConsentError("a signed key registration has registration and signatures")
        previous = obj["previous_signature"]
        return cls(
            KeyRegistration.from_dict(obj["registration"]),
            _signature(obj["signature"], "signature"),
            None if previous is None else _signature(previous, "previous_signature"),
        )

    def verify(
        self,
        *,
        origin: str,
        enterprise: str,
        registered: Ed25519PublicKey | None,
        now: datetime,
        skew: timedelta,
    ) -> Ed25519PublicKey:
        """The key to register, once the statement is proved to be ``enterprise``'s, now.

        ``registered`` is the enterprise's key registered now (None if none); ``now``
        is the exchange's clock.

        Raises:
            WrongOriginError: made for another deployment.
            ConsentKeyError: made for another enterprise, or not replacing the key
                registered now, or replacing it without its signature.
            InvalidConsentError: signed further than ``skew`` from ``now``.
            BadConsentSignatureError: a signature does not verify (one opaque error).
        """
        reg = self.registration
        if reg.origin != origin:
            raise WrongOriginError(f"made for {reg.origin!r}; this deployment is {origin!r}")
        if reg.enterprise != enterprise:
            raise ConsentKeyError(f"the registration is {reg.enterprise}'s, not {enterprise}'s")
        if reg.previous_key != registered:
            raise ConsentKeyError(
                f"{enterprise}'s registered key is {_fingerprint(registered)}; the registration "
                f"replaces {_fingerprint(reg.previous_key)}"
            )
        if abs(reg.signed_at - now) > skew:
            raise InvalidConsentError(
                f"signed at {format_rfc3339(reg.signed_at)}, more than {skew} from the "
                f"exchange's clock ({format_rfc3339(now)})"
            )
        message = reg.canonical()
        if not verify_ed25519(reg.public_key, message, self.signature):
            raise BadConsentSignatureError("the registration's signatures do not verify")
        if reg.previous_key is not None and (
            self.previous_signature is None
            or not verify_ed25519(reg.previous_key, message, self.previous_signature)
        ):
            raise BadConsentSignatureError("the registration's signatures do not verify")
        logger.info("verified a key registration of %s", enterprise)
        return reg.public_key
