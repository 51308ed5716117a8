"""Administrators' keys as the ledger records them: what a signed duty is verified with.

:class:`LedgerDutyKeys` implements :class:`core.duty.DutyKeys`. The key of an
actor is never the registry row's word alone: it is the key of the latest
``identity.create`` / ``identity.public_key`` entry about the actor (found
through the ledger's subject index, then read and checked as an entry), and
the row must agree with it. The identity must be active with the role asked
for, in the row and on the ledger (no ``identity.revoke`` entry about it, the
role its ``identity.create`` entry registered). An administrator's
registration entry must itself carry a valid duty of an officer whose key was
on the ledger before it (down to the bootstrap officers of ``ibx init``), so
an entry appended by whoever holds the ledger key does not make an officer.

A disagreement between the row and the ledger is refused and raised as an
``audit.alert`` (rule ``row.mismatch``, critical), recorded in a transaction
of its own: call :meth:`LedgerDutyKeys.duty_key` (through
:func:`core.duty.check_duty`) before opening the write transaction of the act.

Nothing about an identity's status is cached: every call reads the row and the
ledger again, so a revocation counts at once. Only the verdict on an
administrator's registration entry, which is immutable once on the ledger, is
remembered by its index.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final, Protocol

from pydantic import ValidationError

from core.alerts import Alert, Severity
from core.duty import DutyError, SignedDuty
from core.keys import Ed25519PublicKey
from exchange.identities import (
    ADMINISTRATIVE_ROLES,
    Identity,
    IdentityNotFoundError,
    Role,
    Status,
)
from exchange.identity_entries import IdentityCreateEntry, PublicKeyEntry, parse_duty

if TYPE_CHECKING:
    import ledger

__all__ = ["BOOTSTRAP_WINDOW", "IdentityLookup", "LedgerDutyKeys"]

logger = logging.getLogger(__name__)

KEY_TYPES: Final = ("identity.create", "identity.public_key", "identity.revoke")
BOOTSTRAP_WINDOW: Final = 10_000
"""A bootstrap registration must be among the ledger's first entries (``ibx init``; a
deployment adopted from before identities were signed may have a few thousand)."""
_MAX_DEPTH: Final = 32
ALERT_ACTOR: Final = "exchange"


class IdentityLookup(Protocol):
    """Where the rows are read: the identity registry."""

    def get(self, name: str) -> Identity:
        """The identity called ``name``.

        Raises:
            IdentityNotFoundError: no such identity.
        """
        ...


class LedgerDutyKeys:
    """:class:`core.duty.DutyKeys` over the identity registry and the ledger."""

    def __init__(self, identities: IdentityLookup, log: ledger.Ledger) -> None:
        self._identities = identities
        self._ledger = log
        self._verified: set[int] = set()
        """Indices of administrators' registration entries whose duty chain verified."""

    def duty_key(self, actor: str, role: str) -> Ed25519PublicKey:
        """The key the ledger records for ``actor``, an active identity of ``role``.

        Raises:
            DutyError: no active identity ``actor`` of ``role``; no key on the ledger
                for it; a revocation or another role on the ledger; an
                administrator's registration without a valid officer's duty; or
                a row whose key disagrees with the ledger (also raised as an alert).
        """
        try:
            identity = self._identities.get(actor)
        except IdentityNotFoundError as exc:
            raise DutyError(f"{actor!r} is no identity of this exchange") from exc
        if identity.status is not Status.ACTIVE or identity.role.value != role:
            raise DutyError(f"{actor!r} is not an active {role}")
        index, key = self._ledgered_key(actor, role)
        if identity.public_key is None or identity.public_key.raw != key.raw:
            self._alert(
                actor,
                f"the stored public key of {actor} is not the key the ledger records for it "
                f"(entry {index}); its signed acts are refused",
                evidence=(index,),
                details={
                    "row_key": identity.public_key.to_base64() if identity.public_key else None,
                    "ledger_key": key.to_base64(),
                },
            )
            raise DutyError(
                f"the stored key of {actor!r} disagrees with the ledger (entry {index}); "
                "refused and raised as an alert"
            )
        return key

    def _ledgered_key(
        self, name: str, role: str, *, before: int | None = None, depth: int = 0
    ) -> tuple[int, Ed25519PublicKey]:
        """The index of the entry that recorded ``name``'s key (before ``before``) and the key.

        With ``before`` None the identity must still be unrevoked on the ledger.

        Raises:
            DutyError: as :meth:`duty_key` (except the row comparison).
        """
        if depth > _MAX_DEPTH:
            raise DutyError(f"the registration chain of {name!r} is too long to verify")
        hits = [
            hit
            for hit in self._ledger.find([name], KEY_TYPES)
            if hit.subject == name and (before is None or hit.index < before)
        ]
        created = [hit.index for hit in hits if hit.type == "identity.create"]
        if not created:
            raise DutyError(f"the ledger records no registration of {name!r}")
        first = created[0]
        create = self._create_entry(first, name)
        if create.role != role:
            self._alert(
                name,
                f"{name} is registered on the ledger as {create.role}, not {role}",
                evidence=(first,),
                details={"ledger_role": create.role, "asked_role": role},
            )
            raise DutyError(f"the ledger registered {name!r} as {create.role}, not {role}")
        if before is None and any(hit.type == "identity.revoke" for hit in hits):
            revoked = max(hit.index for hit in hits if hit.type == "identity.revoke")
            self._alert(
                name,
                f"{name} is active in the registry but revoked on the ledger (entry {revoked})",
                evidence=(revoked,),
            )
            raise DutyError(f"{name!r} was revoked (ledger entry {revoked})")
        if Role(role) in ADMINISTRATIVE_ROLES:
            self._check_registration(first, create, depth=depth)
        latest = max(hit.index for hit in hits if hit.type != "identity.revoke")
        key_text = create.public_key
        if latest != first:
            key_text = self._public_key_entry(latest, name).public_key
        if key_text is None:
            raise DutyError(f"the ledger records no public key for {name!r}")
        try:
            return latest, Ed25519PublicKey.from_base64(key_text)
        except ValueError as exc:
            raise DutyError(f"ledger entry {latest} holds a malformed key for {name!r}") from exc

    def _check_registration(self, index: int, create: IdentityCreateEntry, *, depth: int) -> None:
        """An administrator's registration: a bootstrap at init, or an officer's valid duty.

        Raises:
            DutyError: neither.
        """
        if index in self._verified:
            return
        if create.bootstrap:
            self._check_bootstrap(index)
        else:
            if create.duty is None:
                raise DutyError(
                    f"the registration of {create.name!r} (entry {index}) carries no officer's duty"
                )
            signed = parse_duty(create.duty)
            self._check_registration_duty(index, create, signed, depth=depth)
        self._verified.add(index)

    def _check_registration_duty(
        self, index: int, create: IdentityCreateEntry, signed: SignedDuty, *, depth: int
    ) -> None:
        duty = signed.duty
        expected = {"role": create.role, "public_key": create.public_key}
        if (
            duty.action != "identity.create"
            or duty.subject != create.name
            or dict(duty.details) != expected
            or duty.origin != self._ledger.config.origin
        ):
            raise DutyError(
                f"the duty in the registration of {create.name!r} (entry {index}) is not "
                "an identity.create of that name, role and key on this ledger"
            )
        _, key = self._ledgered_key(
            duty.actor, Role.SECURITY_OFFICER.value, before=index, depth=depth + 1
        )
        if not signed.verify(key):
            raise DutyError(
                f"the duty in the registration of {create.name!r} (entry {index}) is not "
                f"signed by {duty.actor}'s ledgered key"
            )

    def _check_bootstrap(self, index: int) -> None:
        """A bootstrap registration comes before every other registration on the ledger.

        Raises:
            DutyError: it is not among the first entries, or another registration
                precedes it.
        """
        if index >= BOOTSTRAP_WINDOW:
            raise DutyError(
                f"a bootstrap registration at entry {index} is not one of the deployment's "
                f"first {BOOTSTRAP_WINDOW} entries"
            )
        start = 0
        while start < index:
            page = self._ledger.entries(start, index - start)
            for earlier in page:
                if earlier.type != "identity.create":
                    continue
                if not IdentityCreateEntry.model_validate(earlier.payload).bootstrap:
                    raise DutyError(
                        f"the bootstrap registration at entry {index} follows another "
                        f"registration (entry {earlier.index})"
                    )
            start += len(page)

    def _create_entry(self, index: int, name: str) -> IdentityCreateEntry:
        entry = self._ledger.entry(index)
        try:
            parsed = IdentityCreateEntry.model_validate(entry.payload)
        except ValidationError as exc:
            raise DutyError(f"ledger entry {index} is not a valid identity.create") from exc
        if entry.type != "identity.create" or parsed.name != name:
            raise DutyError(f"ledger entry {index} is not the registration of {name!r}")
        return parsed

    def _public_key_entry(self, index: int, name: str) -> PublicKeyEntry:
        entry = self._ledger.entry(index)
        try:
            parsed = PublicKeyEntry.model_validate(entry.payload)
        except ValidationError as exc:
            raise DutyError(f"ledger entry {index} is not a valid identity.public_key") from exc
        if entry.type != "identity.public_key" or parsed.name != name:
            raise DutyError(f"ledger entry {index} is not a key of {name!r}")
        return parsed

    def _alert(
        self,
        subject: str,
        message: str,
        *,
        evidence: Sequence[int],
        details: dict[str, str | None] | None = None,
    ) -> None:
        """Record a ``row.mismatch`` alert in its own transaction (the refusal follows)."""
        alert = Alert(
            rule="row.mismatch",
            severity=Severity.CRITICAL,
            subject=subject,
            message=message,
            evidence=tuple(evidence),
            details=dict(details or {}),
        )
        self._ledger.record(alert.event(ALERT_ACTOR))
        logger.warning("alert row.mismatch on %s: %s", subject, message)
