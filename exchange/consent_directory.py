"""The adapter consent needs: the identity registry seen as consent's directories.

``consent`` may not import ``exchange``; it declares :class:`consent.KeyDirectory`,
:class:`consent.RequesterDirectory` and :class:`consent.KeyLedger`, and the
runtime passes this adapter. The registry's rows give the keys as stored; the
ledger gives them as recorded (:meth:`IdentityDirectory.ledgered_keys`): the
latest ``identity.create`` / ``identity.public_key`` entry about an enterprise,
found through the ledger's subject index (the registry indexes its entries
under the identity's name), unless an ``identity.revoke`` follows it or the
``identity.create`` entry registered another role. The consent service believes
the ledger and raises the rows that disagree.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Collection
from typing import TYPE_CHECKING, Final

from pydantic import ValidationError

from consent import LedgeredKey, RequesterProfile
from core.keys import Ed25519PublicKey
from exchange.identities import IdentityError, IdentityRegistry, Role, Status
from exchange.identity_entries import IdentityCreateEntry, PublicKeyEntry

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    import ledger

__all__ = ["KEY_ENTRY_TYPES", "IdentityDirectory"]

_CREATE: Final = IdentityCreateEntry.TYPE
_PUBLIC_KEY: Final = PublicKeyEntry.TYPE
_REVOKE: Final = "identity.revoke"
KEY_ENTRY_TYPES: Final = (_CREATE, _PUBLIC_KEY, _REVOKE)
"""The entries that say which key an identity signs with (or that it no longer may)."""
_CACHE_LIMIT: Final = 65_536


class IdentityDirectory:
    """Enterprise keys and requester profiles from the identity registry, and the
    enterprises' keys as the ledger records them."""

    def __init__(self, registry: IdentityRegistry, log: ledger.Ledger | None = None) -> None:
        self._registry = registry
        self._ledger = log
        self._entries: dict[int, tuple[str, str | None, str | None]] = {}
        """Ledger index -> (name, role or None, key or None) of a read key entry:
        entries never change, so each is read once."""
        self._lock = threading.Lock()

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

    def ledgered_keys(
        self, enterprises: Collection[str], *, session: Session | None = None
    ) -> dict[str, LedgeredKey]:
        """What the ledger records for each of ``enterprises``: one subject-index lookup
        for all, then each key entry read once per process (by its index).

        An enterprise with no key entry on the ledger is absent. Without a ledger
        (a directory built for a dry run) nothing is recorded: every one is absent.

        Raises:
            ledger.LedgerError: the index or an entry could not be read.
        """
        if self._ledger is None or not enterprises:
            return {}
        wanted = sorted(set(enterprises))
        hits: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for hit in self._ledger.find(wanted, KEY_ENTRY_TYPES, session=session):
            hits[hit.subject].append((hit.index, hit.type))
        found: dict[str, LedgeredKey] = {}
        for name, entries in hits.items():
            answer = self._ledgered(name, sorted(entries))
            if answer is not None:
                found[name] = answer
        return found

    def _ledgered(self, name: str, entries: list[tuple[int, str]]) -> LedgeredKey | None:
        """The answer for ``name`` from its key entries (index order)."""
        created = [index for index, kind in entries if kind == _CREATE]
        if not created:
            return None
        _, role, _ = self._read(created[0], name)
        if role != Role.ENTERPRISE.value:
            return LedgeredKey(
                name, None, created[0], f"the ledger registered {name} as {role}, not enterprise"
            )
        revoked = [index for index, kind in entries if kind == _REVOKE]
        if revoked:
            return LedgeredKey(name, None, revoked[-1], f"the ledger records {name} as revoked")
        latest = max(index for index, kind in entries if kind != _REVOKE)
        _, _, key_text = self._read(latest, name)
        if key_text is None:
            return LedgeredKey(name, None, latest, f"the ledger records no key for {name}")
        try:
            key = Ed25519PublicKey.from_base64(key_text)
        except ValueError:
            return LedgeredKey(name, None, latest, f"ledger entry {latest} holds a malformed key")
        return LedgeredKey(name, key, latest)

    def _read(self, index: int, name: str) -> tuple[str, str | None, str | None]:
        """(name, role, key) of the key entry at ``index``, read once; an entry that is not
        a valid key entry of ``name`` reads as (name, None, None): no key."""
        with self._lock:
            kept = self._entries.get(index)
        if kept is not None and kept[0] == name:
            return kept
        assert self._ledger is not None
        entry = self._ledger.entry(index)
        parsed: tuple[str, str | None, str | None] = (name, None, None)
        try:
            if entry.type == _CREATE:
                create = IdentityCreateEntry.model_validate(entry.payload)
                if create.name == name:
                    parsed = (name, create.role, create.public_key)
            elif entry.type == _PUBLIC_KEY:
                rotated = PublicKeyEntry.model_validate(entry.payload)
                if rotated.name == name:
                    parsed = (name, None, rotated.public_key)
        except ValidationError:
            pass
        with self._lock:
            if len(self._entries) >= _CACHE_LIMIT:
                self._entries.clear()
            self._entries[index] = parsed
        return parsed
