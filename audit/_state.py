"""The exchange's rows as served: the ``state`` line of an export (docs/audit.md).

The exchange keeps security state in rows (a consent's revocation and use
count, an identity's role, status and key, the active policy version) that are
an index of the ledger, never the authority. ``GET /v1/audit/state`` serves
them and the export carries them, so ``ibx audit verify`` can reconcile each row
with what the ledger says (:mod:`audit._reconcile`)::

    {"consents": [{"consent_id", "enterprise", "receipt_hash", "ledger_index",
                   "revoked", "use_count"}, ...],
     "identities": [{"name", "role", "status", "public_key"}, ...],
     "active_policy": "<version hash>" | null}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from audit.errors import ExportFormatError
from core.canonical import JsonValue

__all__ = ["ServedConsent", "ServedIdentity", "ServedState"]

_CONSENT_KEYS = frozenset(
    {"consent_id", "enterprise", "receipt_hash", "ledger_index", "revoked", "use_count"}
)
_IDENTITY_KEYS = frozenset({"name", "role", "status", "public_key"})
_STATE_KEYS = frozenset({"consents", "identities", "active_policy"})


def _text(obj: Mapping[str, Any], key: str, what: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value:
        raise ExportFormatError(f"state: {what}.{key} is a non-empty string")
    return value


def _count(obj: Mapping[str, Any], key: str, what: str) -> int:
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ExportFormatError(f"state: {what}.{key} is a non-negative integer")
    return value


def _exact(obj: object, keys: frozenset[str], what: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping) or set(obj) != keys:
        raise ExportFormatError(f"state: {what} is an object with exactly {sorted(keys)}")
    return obj


@dataclass(frozen=True)
class ServedConsent:
    """A consent row: which receipt, at which ledger index, revoked or not, used how often."""

    consent_id: str
    enterprise: str
    receipt_hash: str
    ledger_index: int
    revoked: bool
    use_count: int

    def to_dict(self) -> dict[str, JsonValue]:
        """The JSON form."""
        return {
            "consent_id": self.consent_id,
            "enterprise": self.enterprise,
            "receipt_hash": self.receipt_hash,
            "ledger_index": self.ledger_index,
            "revoked": self.revoked,
            "use_count": self.use_count,
        }

    @classmethod
    def from_dict(cls, obj: object) -> ServedConsent:
        """Parse the JSON form.

        Raises:
            ExportFormatError: another shape.
        """
        data = _exact(obj, _CONSENT_KEYS, "a consent")
        if not isinstance(data["revoked"], bool):
            raise ExportFormatError("state: a consent's revoked is true or false")
        return cls(
            _text(data, "consent_id", "consent"),
            _text(data, "enterprise", "consent"),
            _text(data, "receipt_hash", "consent"),
            _count(data, "ledger_index", "consent"),
            data["revoked"],
            _count(data, "use_count", "consent"),
        )


@dataclass(frozen=True)
class ServedIdentity:
    """An identity row: role, status (``active``/``revoked``) and base64 public key."""

    name: str
    role: str
    status: str
    public_key: str | None

    def to_dict(self) -> dict[str, JsonValue]:
        """The JSON form."""
        return {
            "name": self.name,
            "role": self.role,
            "status": self.status,
            "public_key": self.public_key,
        }

    @classmethod
    def from_dict(cls, obj: object) -> ServedIdentity:
        """Parse the JSON form.

        Raises:
            ExportFormatError: another shape.
        """
        data = _exact(obj, _IDENTITY_KEYS, "an identity")
        key = data["public_key"]
        if key is not None and not isinstance(key, str):
            raise ExportFormatError("state: an identity's public_key is base64 text or null")
        return cls(
            _text(data, "name", "identity"),
            _text(data, "role", "identity"),
            _text(data, "status", "identity"),
            key,
        )


@dataclass(frozen=True)
class ServedState:
    """Every row the reconciliation reads, as the exchange served them."""

    consents: tuple[ServedConsent, ...]
    identities: tuple[ServedIdentity, ...]
    active_policy: str | None

    def to_dict(self) -> dict[str, JsonValue]:
        """The ``state`` line's object."""
        return {
            "consents": [c.to_dict() for c in self.consents],
            "identities": [i.to_dict() for i in self.identities],
            "active_policy": self.active_policy,
        }

    @classmethod
    def from_dict(cls, obj: object) -> ServedState:
        """Parse the ``state`` line's object.

        Raises:
            ExportFormatError: another shape (names the first wrong member).
        """
        data = _exact(obj, _STATE_KEYS, "the state")
        consents, identities = data["consents"], data["identities"]
        if not isinstance(consents, list) or not isinstance(identities, list):
            raise ExportFormatError("state: consents and identities are lists")
        active = data["active_policy"]
        if active is not None and not isinstance(active, str):
            raise ExportFormatError("state: active_policy is a version hash or null")
        return cls(
            tuple(ServedConsent.from_dict(c) for c in consents),
            tuple(ServedIdentity.from_dict(i) for i in identities),
            active,
        )
