"""Signed duties: an administrator's act as a statement signed by their own key.

A security officer who proposes, tests, approves or activates a policy
version, registers an administrative identity or revokes a certificate (and an
auditor, for what they sign) does not hand the service a name to trust: they
sign a :class:`Duty` with the Ed25519 key registered to them on the ledger,
and the service verifies it (:func:`check_duty`) before it acts. The statement
and its signature go into the ledger entry of the act (``"duty"`` in its
payload), so an auditor verifies the act offline against the same key.

Wire form (the bytes signed are the RFC 8785 encoding of ``statement``)::

    {"statement": {"kind": "ibx.duty/v1", "origin": "<ledger origin>",
                   "actor": "officer-wang", "action": "policy.approve",
                   "subject": "<what the act is about>", "details": {...},
                   "signed_at": "<RFC 3339>"},
     "signature": "<base64 of the 64-byte Ed25519 signature>"}

``subject`` names the thing acted on: a policy version hash, the name of the
identity registered, a certificate serial. ``details`` carries what else the
act fixes (for ``identity.create``: ``role`` and ``public_key``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Protocol

from core.canonical import JsonValue, canonical_bytes
from core.clock import format_rfc3339, parse_rfc3339, require_aware
from core.errors import IbxError
from core.keys import Ed25519PublicKey, Ed25519Signer, verify_ed25519

__all__ = [
    "DUTY_ACTIONS",
    "DUTY_KIND",
    "DUTY_SKEW",
    "Duty",
    "DutyError",
    "DutyKeys",
    "SignedDuty",
    "check_duty",
]

DUTY_KIND: Final = "ibx.duty/v1"
DUTY_SKEW: Final = timedelta(minutes=5)
"""How far ``signed_at`` may be from the verifying service's clock."""

DUTY_ACTIONS: Final = frozenset(
    {
        "policy.propose",
        "policy.test",
        "policy.approve",
        "policy.activate",
        "identity.create",
        "identity.revoke",
        "certificate.revoke",
        "alert.acknowledge",
    }
)
_FIELDS: Final = frozenset({"kind", "origin", "actor", "action", "subject", "details", "signed_at"})


class DutyError(IbxError):
    """A duty that is unsigned, signed by the wrong key, or not the act asked for."""

    title = "signed duty refused"


@dataclass(frozen=True)
class Duty:
    """What an administrator signs: who, which act, on what, when, for which deployment."""

    origin: str
    actor: str
    action: str
    subject: str
    signed_at: datetime
    details: Mapping[str, JsonValue] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_aware(self.signed_at)
        if self.action not in DUTY_ACTIONS:
            raise ValueError(f"unknown duty action {self.action!r}")
        for name in ("origin", "actor", "subject"):
            if not getattr(self, name):
                raise ValueError(f"a duty's {name} must not be empty")

    def to_dict(self) -> dict[str, JsonValue]:
        """The statement object whose RFC 8785 bytes are signed."""
        return {
            "kind": DUTY_KIND,
            "origin": self.origin,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": dict(self.details),
            "signed_at": format_rfc3339(self.signed_at),
        }

    def signed_bytes(self) -> bytes:
        """The bytes the actor signs."""
        return canonical_bytes(self.to_dict())

    def sign(self, signer: Ed25519Signer) -> SignedDuty:
        """Sign this duty with the actor's key."""
        return SignedDuty(self, signer.sign(self.signed_bytes()))

    @classmethod
    def from_dict(cls, obj: Mapping[str, JsonValue]) -> Duty:
        """Parse a statement object.

        Raises:
            DutyError: not a duty statement of this version, or a malformed field.
        """
        if set(obj) != _FIELDS or obj.get("kind") != DUTY_KIND:
            raise DutyError(f"a duty statement has exactly the fields of {DUTY_KIND}")
        texts = {name: obj[name] for name in ("origin", "actor", "action", "subject", "signed_at")}
        details = obj["details"]
        if not all(isinstance(value, str) for value in texts.values()) or not isinstance(
            details, dict
        ):
            raise DutyError("a duty statement's fields are strings and details an object")
        try:
            return cls(
                origin=str(texts["origin"]),
                actor=str(texts["actor"]),
                action=str(texts["action"]),
                subject=str(texts["subject"]),
                signed_at=parse_rfc3339(str(texts["signed_at"])),
                details=details,
            )
        except ValueError as exc:
            raise DutyError(f"malformed duty statement: {exc}") from exc


@dataclass(frozen=True)
class SignedDuty:
    """A duty and the actor's signature over its canonical bytes."""

    duty: Duty
    signature: bytes

    def verify(self, key: Ed25519PublicKey) -> bool:
        """True exactly when ``key`` signed this duty."""
        return verify_ed25519(key, self.duty.signed_bytes(), self.signature)

    def to_dict(self) -> dict[str, JsonValue]:
        """The wire and ledger form: ``{"statement": {...}, "signature": base64}``."""
        return {
            "statement": self.duty.to_dict(),
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, JsonValue]) -> SignedDuty:
        """Parse the wire form.

        Raises:
            DutyError: not ``{"statement", "signature"}``, or a malformed part.
        """
        statement, signature = obj.get("statement"), obj.get("signature")
        if set(obj) != {"statement", "signature"} or not isinstance(statement, dict):
            raise DutyError('a signed duty is {"statement": {...}, "signature": "<base64>"}')
        if not isinstance(signature, str):
            raise DutyError("a duty's signature is base64 text")
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DutyError("a duty's signature is not valid base64") from exc
        if len(raw) != 64:
            raise DutyError("a duty's signature is 64 bytes")
        return cls(Duty.from_dict(statement), raw)


class DutyKeys(Protocol):
    """Where a service finds an actor's key: the key the ledger records for them."""

    def duty_key(self, actor: str, role: str) -> Ed25519PublicKey:
        """The key registered on the ledger to ``actor``, an active identity of ``role``.

        Raises:
            DutyError: no such active identity of that role, or no key on the ledger
                for it (or a stored key that disagrees with the ledger).
        """
        ...


def check_duty(
    signed: SignedDuty,
    *,
    keys: DutyKeys,
    origin: str,
    action: str,
    subject: str,
    role: str,
    now: datetime,
    skew: timedelta = DUTY_SKEW,
) -> str:
    """Verify that ``signed`` is ``action`` on ``subject`` by an active ``role``; the actor.

    Raises:
        DutyError: another deployment, act or subject; signed too long ago or in
            the future; an actor who is not an active ``role`` with a ledgered
            key; or a signature that does not verify under that key.
    """
    duty = signed.duty
    if duty.origin != origin:
        raise DutyError(f"the duty was signed for deployment {duty.origin!r}, not {origin!r}")
    if duty.action != action or duty.subject != subject:
        raise DutyError(
            f"the duty signs {duty.action} on {duty.subject!r}, not {action} on {subject!r}"
        )
    if abs(duty.signed_at - require_aware(now)) > skew:
        raise DutyError(
            f"the duty was signed at {format_rfc3339(duty.signed_at)}, more than "
            f"{int(skew.total_seconds())} s from now; sign it again"
        )
    key = keys.duty_key(duty.actor, role)
    if not signed.verify(key):
        raise DutyError(f"the duty's signature does not verify under {duty.actor}'s ledgered key")
    return duty.actor
