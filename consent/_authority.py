"""Rows are an index: a consent's row checked against the ledger entries about it, at use.

Whoever can write the database can set a revoked consent's row back to
active, reset its use count, delete a revoked consent so its receipt can be
granted again, or swap an enterprise's registered key. None of that can
change the ledger. So at the moment a row is used, the consent service asks
the ledger's subject index (:meth:`ledger.Ledger.find`) what was recorded
about it -- one indexed lookup for all the consents of a check, never one per
consent -- and believes the ledger:

- a ``consent.revoke`` about a consent whose row says active: refused as
  revoked;
- more ``consent.use`` entries about a use-limited consent than its row
  counts: the ledger's count is the count;
- a ``consent.grant`` already recorded for the receipt (``receipt:<hash>``) or
  a ``consent.revoke`` for its consent id, when its row is gone: the grant is
  refused as a replay;
- an enterprise row whose key is not the key the ledger records for it
  (:class:`consent.KeyLedger`): the ledger's key is the one consents are
  verified with, so a consent signed with the swapped-in key is refused.

Every disagreement is raised as an ``audit.alert`` (rule ``row.mismatch``,
critical, actor ``ibx``) whose evidence is the ledger indices it rests on,
recorded in a transaction of its own before the refusal (or, inside a
caller's write transaction, which a second writer would wait on forever, in
that transaction). One disagreement is reported once per process, not on
every check that meets it again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy.orm import Session

from consent._directory import KeyLedger, LedgeredKey
from consent.entries import GrantEntry, RevokeEntry, UseEntry, receipt_subject
from core.alerts import Alert, Severity
from core.canonical import JsonValue
from core.keys import Ed25519PublicKey
from ledger import Ledger

__all__ = ["ALERT_ACTOR", "ALERT_RULE", "LedgerAuthority", "LedgerFacts", "PendingAlerts"]

logger = logging.getLogger(__name__)

ALERT_ACTOR: Final = "ibx"
ALERT_RULE: Final = "row.mismatch"
_REVOKE: Final = RevokeEntry.TYPE
_USE: Final = UseEntry.TYPE
_GRANT: Final = GrantEntry.TYPE


@dataclass(frozen=True)
class LedgerFacts:
    """What the ledger says about one consent: its revocation and (when asked) how many
    ``consent.use`` entries cite it."""

    revocation: int | None = None
    uses: int = 0


@dataclass
class PendingAlerts:
    """Alerts found during a check, recorded once the caller knows where (see module doc)."""

    items: list[tuple[Alert, tuple[str, ...] | None]] = field(default_factory=list)

    def add(self, alert: Alert, once: tuple[str, ...] | None) -> None:
        """Queue ``alert``; ``once`` identifies the disagreement (None: report every time)."""
        self.items.append((alert, once))

    def __bool__(self) -> bool:
        return bool(self.items)


def mismatch(
    subject: str,
    message: str,
    *,
    evidence: Iterable[int],
    details: Mapping[str, JsonValue] | None = None,
) -> Alert:
    """A critical ``row.mismatch`` alert about ``subject``."""
    return Alert(
        rule=ALERT_RULE,
        severity=Severity.CRITICAL,
        subject=subject,
        message=message,
        evidence=tuple(sorted(set(evidence))),
        details=dict(details or {}),
    )


class LedgerAuthority:
    """The ledger's word on consents and enterprise keys, and the alerts when rows disagree."""

    def __init__(self, log: Ledger, keys: KeyLedger | None = None) -> None:
        self._ledger = log
        self._keys = keys
        self._reported: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()

    # -- consents --------------------------------------------------------------------------

    def facts(
        self, session: Session | None, unrevoked: Collection[str], limited: Collection[str]
    ) -> dict[str, LedgerFacts]:
        """Per consent: its ``consent.revoke`` entry, among ``unrevoked`` (rows that say
        active), and the number of its ``consent.use`` entries, among ``limited``
        (receipts with a use limit). One lookup when no consent is limited; otherwise
        a second, counted by the database (the uses of an unlimited consent are never
        read: they grow with every decision).

        Raises:
            ledger.LedgerError: the index could not be read.
        """
        revoked: dict[str, int] = {}
        uses: dict[str, int] = {}
        if unrevoked:
            for hit in self._ledger.find(list(unrevoked), [_REVOKE], session=session):
                revoked.setdefault(hit.subject, hit.index)
        if limited:
            uses = self._ledger.count(list(limited), [_USE], session=session)
        return {cid: LedgerFacts(revoked.get(cid), uses.get(cid, 0)) for cid in {*revoked, *uses}}

    def use_entries(self, session: Session | None, consent_id: str) -> list[int]:
        """The indices of the ``consent.use`` entries citing ``consent_id`` (an alert's
        evidence).

        Raises:
            ledger.LedgerError: the index could not be read.
        """
        return [hit.index for hit in self._ledger.find([consent_id], [_USE], session=session)]

    def replay_evidence(
        self, session: Session | None, consent_id: str, receipt_hash: str
    ) -> list[int]:
        """Ledger indices showing this receipt was granted (or its consent revoked) before.

        Raises:
            ledger.LedgerError: the index could not be read.
        """
        hits = self._ledger.find(
            [consent_id, receipt_subject(receipt_hash)], [_GRANT, _REVOKE], session=session
        )
        return sorted({hit.index for hit in hits})

    # -- keys ------------------------------------------------------------------------------

    def keys(
        self,
        enterprises: Collection[str],
        rows: Mapping[str, Ed25519PublicKey],
        pending: PendingAlerts,
        *,
        session: Session | None = None,
    ) -> tuple[dict[str, Ed25519PublicKey], dict[str, str]]:
        """The key each of ``enterprises`` signs with, by the ledger, and why any row was
        not believed.

        ``rows`` are the keys the registry's rows give. Without a :class:`KeyLedger`
        they are taken as they are. With one, the ledger's key is the key; a row
        that disagrees (another key, a key the ledger does not record, an
        enterprise the ledger revoked) queues a ``row.mismatch`` alert and is named
        in the second mapping (enterprise -> what disagrees).

        Raises:
            ledger.LedgerError: the index or a key entry could not be read.
        """
        if self._keys is None or not enterprises:
            return {e: rows[e] for e in enterprises if e in rows}, {}
        ledgered = self._keys.ledgered_keys(enterprises, session=session)
        keys: dict[str, Ed25519PublicKey] = {}
        disagreements: dict[str, str] = {}
        for enterprise in enterprises:
            row = rows.get(enterprise)
            led = ledgered.get(enterprise)
            verdict = _key_verdict(enterprise, row, led)
            if led is not None and led.key is not None and row is not None:
                keys[enterprise] = led.key
            if verdict is None:
                continue
            disagreements[enterprise] = verdict
            pending.add(
                mismatch(
                    enterprise,
                    f"{verdict}; consents are verified with the ledger's key only",
                    evidence=() if led is None else (led.index,),
                    details={
                        "row_key": row.to_base64() if row is not None else None,
                        "ledger_key": (
                            led.key.to_base64() if led is not None and led.key else None
                        ),
                    },
                ),
                (
                    "key",
                    enterprise,
                    str(led.index if led else -1),
                    row.to_base64() if row else "",
                ),
            )
        return keys, disagreements

    # -- alerts ----------------------------------------------------------------------------

    def report(self, pending: PendingAlerts, *, session: Session | None = None) -> list[int]:
        """Record the pending alerts not reported before; their ledger indices.

        Without ``session`` each is recorded in a transaction of its own (call this
        outside any write transaction of the caller); with it, in that transaction.

        Raises:
            ledger.LedgerError: recording failed.
        """
        indices: list[int] = []
        for alert, once in pending.items:
            if once is not None:
                with self._lock:
                    if once in self._reported:
                        continue
                    self._reported.add(once)
            recorded = self._ledger.record(alert.event(ALERT_ACTOR), session=session)
            indices.append(recorded.index)
            logger.warning("alert %s on %s: %s", alert.rule, alert.subject, alert.message)
        pending.items.clear()
        return indices


def _key_verdict(
    enterprise: str, row: Ed25519PublicKey | None, led: LedgeredKey | None
) -> str | None:
    """What disagrees between ``enterprise``'s row key and the ledger, or None."""
    if led is None:
        if row is None:
            return None
        return f"{enterprise} has a stored key but the ledger records no key for it"
    if led.key is None:
        if row is None:
            return None
        why = led.reason or "the ledger records no key for it"
        return f"{enterprise} has a stored key but {why} (entry {led.index})"
    if row is None:
        return None  # the row withholds what the ledger grants: nothing is signed with it
    if row != led.key:
        return (
            f"the stored key of {enterprise} ({row.fingerprint()[:16]}) is not the key the "
            f"ledger records for it (entry {led.index}: {led.key.fingerprint()[:16]})"
        )
    return None
