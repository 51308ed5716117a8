"""What consent needs to know about identities, as protocols the composition root fills in.

``consent`` never imports ``exchange``: the identity registry lives there, so
``exchange`` passes an adapter implementing :class:`KeyDirectory` (whose public
key is registered to which enterprise) and :class:`RequesterDirectory` (an
identity's role and industry, for group consents). :class:`StaticDirectory` is
the in-memory implementation for tests, benchmarks and dry runs.

The registry's rows are an index, not the authority: :class:`KeyLedger` is
what the ledger recorded for an enterprise (its latest key entry), which the
consent service checks the row's key against before it verifies anything
with it (:mod:`consent._authority`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from core.keys import Ed25519PublicKey

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "KeyDirectory",
    "KeyLedger",
    "LedgeredKey",
    "RequesterDirectory",
    "RequesterProfile",
    "StaticDirectory",
]


@dataclass(frozen=True)
class RequesterProfile:
    """An active identity as a consent sees it: its name, role and industry."""

    name: str
    role: str
    industry: str | None = None


class KeyDirectory(Protocol):
    """The enterprises' registered Ed25519 public keys."""

    def enterprise_key(self, enterprise: str) -> Ed25519PublicKey | None:
        """The key registered to the active enterprise ``enterprise``, or None."""
        ...

    def enterprise_keys(self, enterprises: Collection[str]) -> dict[str, Ed25519PublicKey]:
        """:meth:`enterprise_key` of each of ``enterprises`` in one read (those with none
        are absent)."""
        ...

    def key_owner(self, key: Ed25519PublicKey) -> str | None:
        """The identity this key is registered to, or None (used to explain refusals)."""
        ...


@dataclass(frozen=True)
class LedgeredKey:
    """What the ledger records for an enterprise: the key of its latest key entry.

    ``key`` is None when the ledger says the enterprise may not sign (revoked
    after that entry, registered with another role, or registered without a
    key); ``reason`` then says why. ``index`` is the ledger index the answer
    rests on (the latest key entry, or the revocation).
    """

    enterprise: str
    key: Ed25519PublicKey | None
    index: int
    reason: str | None = None


class KeyLedger(Protocol):
    """The enterprises' keys as the ledger records them (the authority over the rows)."""

    def ledgered_keys(
        self, enterprises: Collection[str], *, session: Session | None = None
    ) -> dict[str, LedgeredKey]:
        """What the ledger records for each of ``enterprises`` (one indexed lookup for
        all); an enterprise the ledger records nothing for is absent.

        Raises:
            ledger.LedgerError: a recorded entry could not be read.
        """
        ...


class RequesterDirectory(Protocol):
    """Role and industry of requesters."""

    def requester_profile(self, name: str) -> RequesterProfile | None:
        """The active identity ``name``, or None."""
        ...


class StaticDirectory:
    """Both directories over dictionaries: a real in-memory implementation, not a mock."""

    def __init__(
        self,
        keys: Mapping[str, Ed25519PublicKey] | None = None,
        profiles: Mapping[str, RequesterProfile] | None = None,
    ) -> None:
        self._keys: dict[str, Ed25519PublicKey] = dict(keys or {})
        self._owners = {k.raw: name for name, k in self._keys.items()}
        self._profiles: dict[str, RequesterProfile] = dict(profiles or {})

    def add_enterprise(self, name: str, key: Ed25519PublicKey) -> None:
        """Register (or replace) ``name``'s key."""
        old = self._keys.get(name)
        if old is not None:
            self._owners.pop(old.raw, None)
        self._keys[name] = key
        self._owners[key.raw] = name

    def add_requester(self, profile: RequesterProfile) -> None:
        """Register (or replace) a requester."""
        self._profiles[profile.name] = profile

    def enterprise_key(self, enterprise: str) -> Ed25519PublicKey | None:
        """The registered key, or None."""
        return self._keys.get(enterprise)

    def enterprise_keys(self, enterprises: Collection[str]) -> dict[str, Ed25519PublicKey]:
        """The registered keys of ``enterprises`` that have one."""
        return {e: self._keys[e] for e in enterprises if e in self._keys}

    def key_owner(self, key: Ed25519PublicKey) -> str | None:
        """Who holds ``key``, or None."""
        return self._owners.get(key.raw)

    def requester_profile(self, name: str) -> RequesterProfile | None:
        """The requester's profile, or None."""
        return self._profiles.get(name)
