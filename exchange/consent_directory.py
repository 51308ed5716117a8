"""The adapter consent needs: the identity registry seen as consent's directories.

``consent`` may not import ``exchange``; it declares :class:`consent.KeyDirectory`
and :class:`consent.RequesterDirectory`, and the runtime passes this adapter.
"""

from __future__ import annotations

from collections.abc import Collection

from consent import RequesterProfile
from core.keys import Ed25519PublicKey
from exchange.identities import IdentityError, IdentityRegistry, Role, Status

__all__ = ["IdentityDirectory"]


class IdentityDirectory:
    """Enterprise keys and requester profiles from the identity registry."""

    def __init__(self, registry: IdentityRegistry) -> None:
        self._registry = registry

    def enterprise_key(self, enterprise: str) -> Ed25519PublicKey | None:
        """The key of the active enterprise ``enterprise``, or None."""
        try:
            identity = self._registry.get(enterprise)
        except IdentityError:
            return None
        if identity.role is not Role.ENTERPRISE or identity.status is not Status.ACTIVE:
            return None
        return identity.public_key

    def enterprise_keys(self, enterprises: Collection[str]) -> dict[str, Ed25519PublicKey]:
        """The keys of those of ``enterprises`` that are active enterprises, in one query."""
        return self._registry.active_keys(enterprises, role=Role.ENTERPRISE)

    def key_owner(self, key: Ed25519PublicKey) -> str | None:
        """The enterprise holding ``key`` (a scan of enterprises: only on refusal paths)."""
        for identity in self._registry.list(role=Role.ENTERPRISE):
            if identity.public_key == key:
                return identity.name
        return None

    def requester_profile(self, name: str) -> RequesterProfile | None:
        """Role and industry of the active identity ``name``, or None."""
        try:
            identity = self._registry.get(name)
        except IdentityError:
            return None
        if identity.status is not Status.ACTIVE:
            return None
        return RequesterProfile(identity.name, identity.role.value, identity.industry)
