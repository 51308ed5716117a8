"""The exchange's rows reconciled with the ledger (``ibx audit verify`` item 6).

Rows are an index of signed, ledgered statements. An operator with the
database can edit them: un-revoke a consent, reset its use count, delete it
and replay its receipt, swap an enterprise's key, flip the active policy
version. Each such edit leaves a row that disagrees with what the ledger
establishes (:class:`audit._invariants.LedgerFacts`); each disagreement is a
``row.*`` finding naming the row and the entry it contradicts.

:func:`check_entries` is what the verifier calls: the invariants across the
entries and, with a ``state`` line, this reconciliation, from one pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from audit._facts import ParsedEntryLike
from audit._findings import Finding
from audit._invariants import LedgerFacts, derive_facts
from audit._state import ServedState
from audit.errors import ExportFormatError
from core.canonical import JsonValue

__all__ = ["check_entries", "reconcile"]


def check_entries(
    entries: Sequence[ParsedEntryLike],
    *,
    origin: str,
    state: Mapping[str, JsonValue] | None = None,
) -> list[Finding]:
    """The invariants across ``entries`` and, given the export's ``state``, every row
    that disagrees with the ledger; a ``state`` of the wrong shape is one finding."""
    findings, facts = derive_facts(entries, origin=origin)
    if state is None:
        return findings
    try:
        served = ServedState.from_dict(state)
    except ExportFormatError as exc:
        findings.append(Finding("state.malformed", None, str(exc)))
        return findings
    findings.extend(reconcile(served, facts))
    return findings


def reconcile(state: ServedState, facts: LedgerFacts) -> list[Finding]:
    """Each served row that disagrees with ``facts``, as a ``row.*`` finding."""
    return [*_consents(state, facts), *_identities(state, facts), *_policy(state, facts)]


def _consents(state: ServedState, facts: LedgerFacts) -> list[Finding]:
    findings: list[Finding] = []
    rows = {row.consent_id: row for row in state.consents}
    for cid, fact in facts.consents.items():
        row = rows.pop(cid, None)
        if row is None:
            findings.append(
                Finding(
                    "row.consent_missing",
                    fact.granted,
                    f"consent {cid} of {fact.enterprise} is granted on the ledger but has no row",
                )
            )
            continue
        where = f"the row of consent {cid} ({fact.enterprise})"
        if row.receipt_hash != fact.receipt_hash or row.enterprise != fact.enterprise:
            findings.append(
                Finding(
                    "row.consent_receipt",
                    fact.granted,
                    f"{where} holds another receipt than the one granted at #{fact.granted}",
                )
            )
        if row.ledger_index != fact.granted:
            findings.append(
                Finding(
                    "row.consent_index",
                    row.ledger_index,
                    f"{where} points at #{row.ledger_index}, but the consent was granted at "
                    f"#{fact.granted}: the row was deleted and its receipt granted again",
                )
            )
        if fact.revoked is not None and not row.revoked:
            findings.append(
                Finding(
                    "row.consent_unrevoked",
                    fact.revoked,
                    f"{where} is not revoked, but the ledger revoked it at #{fact.revoked}",
                )
            )
        elif fact.revoked is None and row.revoked:
            findings.append(
                Finding(
                    "row.consent_revoked",
                    fact.granted,
                    f"{where} is revoked, but no revocation of it is on the ledger",
                )
            )
        if row.use_count != len(fact.uses):
            last = fact.uses[-1] if fact.uses else fact.granted
            findings.append(
                Finding(
                    "row.use_count",
                    last,
                    f"{where} counts {row.use_count} use(s); the ledger records "
                    f"{len(fact.uses)} consent.use entries for it",
                )
            )
    for cid, row in sorted(rows.items()):
        findings.append(
            Finding(
                "row.consent_unknown",
                None,
                f"consent {cid} of {row.enterprise} has a row but was never granted on the ledger",
            )
        )
    return findings


def _identities(state: ServedState, facts: LedgerFacts) -> list[Finding]:
    findings: list[Finding] = []
    rows = {row.name: row for row in state.identities}
    for name, fact in facts.identities.items():
        row = rows.pop(name, None)
        if row is None:
            findings.append(
                Finding(
                    "row.identity_missing",
                    fact.created,
                    f"identity {name} is registered on the ledger but has no row",
                )
            )
            continue
        if row.role != fact.role:
            findings.append(
                Finding(
                    "row.identity_role",
                    fact.created,
                    f"the row of {name} says {row.role}; the ledger registered {fact.role}",
                )
            )
        ledger_status = "active" if fact.active else "revoked"
        if row.status != ledger_status:
            findings.append(
                Finding(
                    "row.identity_status",
                    fact.revoked if fact.revoked is not None else fact.created,
                    f"the row of {name} is {row.status}; on the ledger it is {ledger_status}",
                )
            )
        ledger_key = fact.key.to_base64() if fact.key is not None else None
        if row.public_key != ledger_key:
            findings.append(
                Finding(
                    "row.identity_key",
                    fact.key_index,
                    f"the row of {name} holds another public key than the one the ledger "
                    f"registered at #{fact.key_index}",
                )
            )
    for name, row in sorted(rows.items()):
        findings.append(
            Finding(
                "row.identity_unknown",
                None,
                f"identity {name} ({row.role}) has a row but was never registered on the ledger",
            )
        )
    return findings


def _policy(state: ServedState, facts: LedgerFacts) -> list[Finding]:
    if state.active_policy == facts.active_policy:
        return []
    served = (state.active_policy or "none")[:12]
    recorded = (facts.active_policy or "none")[:12]
    return [
        Finding(
            "row.active_policy",
            facts.activated,
            f"the active policy row names {served}, but the latest policy.activate on the "
            f"ledger is {recorded}",
        )
    ]
