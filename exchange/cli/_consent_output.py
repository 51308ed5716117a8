"""What ``ibx consent list`` and ``consent usage`` print: their records and table cells."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from consent import ConsentRecord, UsageEntry
from core.canonical import JsonValue
from core.clock import format_rfc3339

__all__ = ["CONSENT_HEADERS", "ConsentListing", "UsageListing", "consent_cells"]

logger = logging.getLogger(__name__)

CONSENT_HEADERS = (
    "consent",
    "enterprise",
    "requester",
    "scope",
    "purposes",
    "operations",
    "engines",
    "min cohort",
    "valid until",
    "uses",
    "status",
)
"""The table headers of ``consent list`` on a terminal, one per :func:`consent_cells` cell."""


@dataclass(frozen=True)
class ConsentListing:
    """A consent as ``consent list --json`` prints it: the receipt and its state at ``now``."""

    record: ConsentRecord
    now: datetime

    def to_dict(self) -> dict[str, JsonValue]:
        """Stable JSON fields; ``receipt`` is the signed receipt's own JSON form."""
        record = self.record
        revoked = record.revoked_at
        return {
            "consent_id": record.consent_id,
            "enterprise": record.enterprise,
            "status": record.status(self.now),
            "use_count": record.use_count,
            "accepted_at": format_rfc3339(record.accepted_at),
            "ledger_index": record.ledger_index,
            "revoked_at": format_rfc3339(revoked) if revoked is not None else None,
            "revocation_ledger_index": record.revocation_ledger_index,
            "receipt": record.signed.receipt.to_dict(),
        }


@dataclass(frozen=True)
class UsageListing:
    """One consent with every decision and job behind it (``consent usage --json``)."""

    consent: ConsentListing
    entries: tuple[UsageEntry, ...]

    def to_dict(self) -> dict[str, JsonValue]:
        """Stable JSON fields: the consent's listing and its ``entries`` in ledger order."""
        receipt = self.consent.record.signed.receipt
        return {
            "consent_id": receipt.consent_id,
            "requester": receipt.requester.describe(),
            "status": self.consent.record.status(self.consent.now),
            "decisions": sum(1 for e in self.entries if e.kind == "decision"),
            "entries": [
                {
                    "kind": e.kind,
                    "time": format_rfc3339(e.time),
                    "decision_id": e.decision_id,
                    "job_id": e.job_id,
                    "status": e.status,
                    "requester": e.requester,
                    "purpose": e.purpose,
                    "operation": e.operation,
                    "engine": e.engine,
                    "ledger_index": e.ledger_index,
                }
                for e in self.entries
            ],
        }


def consent_cells(record: ConsentRecord, now: datetime) -> tuple[str, ...]:
    """The cells of one consent's row under :data:`CONSENT_HEADERS`, its state at ``now``."""
    r = record.signed.receipt
    return (
        r.consent_id,
        r.enterprise,
        r.requester.describe(),
        ",".join(s.dataset + ":" + "+".join(s.fields) for s in r.scope),
        ",".join(p.value for p in r.purposes),
        ",".join(o.value for o in r.operations),
        ",".join(e.value for e in r.engines),
        str(r.min_cohort),
        format_rfc3339(r.valid_until),
        f"{record.use_count}/{'-' if r.use_limit is None else r.use_limit}",
        record.status(now),
    )
