"""Receipts whose signature has verified, kept so a check does not verify them again.

A consent check (:meth:`consent.ConsentService.use`) reads each candidate's
row in its transaction -- the stored receipt bytes, the signature, the use
count and the revocation -- and judges it at the exchange's clock. Decoding
the receipt and verifying its Ed25519 signature are the costly part, and
their answer depends only on the stored bytes, the signature and the
enterprise's registered key. :class:`VerifiedReceipts` remembers, per
consent, the bytes, the signature and the key a signature verified under,
with the decoded receipt; a later check that reads the very same bytes,
signature and key uses that receipt without verifying again. Anything else
-- a receipt or signature altered in the database, the enterprise's key
rotated or revoked -- misses and is verified afresh (and refused). The
revocation and the use count are never cached: they come from the row read
in the check's own transaction, so a revocation is seen at once.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime

from consent._check import ConsentRecord
from consent._receipt import ConsentReceipt, SignedReceipt
from core.clock import parse_rfc3339
from core.keys import Ed25519PublicKey

__all__ = ["StoredGrant", "VerifiedReceipts"]


@dataclass(frozen=True)
class StoredGrant:
    """The columns of a consent row that a check reads (signed bytes as stored)."""

    consent_id: str
    receipt: bytes
    signature: bytes
    accepted_at: str
    ledger_index: int
    use_count: int
    revoked_at: str | None
    revocation_ledger_index: int | None


@dataclass(frozen=True)
class _Verified:
    receipt: bytes
    signature: bytes
    key: Ed25519PublicKey
    signed: SignedReceipt
    accepted_text: str
    accepted_at: datetime


class VerifiedReceipts:
    """Per consent id: the receipt whose signature verified, and under what (thread-safe)."""

    def __init__(self, limit: int = 65_536) -> None:
        self._limit = limit
        self._kept: dict[str, _Verified] = {}
        self._lock = threading.Lock()

    def record_of(
        self, grant: StoredGrant, registered: Ed25519PublicKey | None
    ) -> tuple[ConsentRecord, bool]:
        """The record of ``grant``, and whether its signature already verified over exactly
        these bytes under ``registered`` (then it need not be verified again).

        Raises:
            InvalidConsentError: the stored receipt cannot be decoded.
            ValueError: a stored time or the receipt's JSON is malformed.
        """
        kept = self._kept.get(grant.consent_id)
        hit = (
            kept is not None and kept.receipt == grant.receipt and kept.signature == grant.signature
        )
        if kept is not None and hit:
            signed = kept.signed
            accepted = (
                kept.accepted_at
                if kept.accepted_text == grant.accepted_at
                else parse_rfc3339(grant.accepted_at)
            )
            verified = registered is not None and kept.key == registered
        else:
            signed = SignedReceipt(
                ConsentReceipt.from_dict(json.loads(grant.receipt)), grant.signature
            )
            accepted = parse_rfc3339(grant.accepted_at)
            verified = False
        record = ConsentRecord(
            signed=signed,
            accepted_at=accepted,
            ledger_index=grant.ledger_index,
            use_count=grant.use_count,
            revoked_at=parse_rfc3339(grant.revoked_at) if grant.revoked_at else None,
            revocation_ledger_index=grant.revocation_ledger_index,
        )
        return record, verified

    def verified(self, grant: StoredGrant, record: ConsentRecord, key: Ed25519PublicKey) -> None:
        """Remember that ``record`` (decoded from ``grant``) verified under ``key``."""
        kept = _Verified(
            receipt=grant.receipt,
            signature=grant.signature,
            key=key,
            signed=record.signed,
            accepted_text=grant.accepted_at,
            accepted_at=record.accepted_at,
        )
        with self._lock:
            if len(self._kept) >= self._limit and grant.consent_id not in self._kept:
                self._kept.clear()  # rare: a deployment with more live consents than the limit
            self._kept[grant.consent_id] = kept

    def forget(self, consent_id: str) -> None:
        """Drop what is kept for ``consent_id`` (nothing to drop is fine)."""
        with self._lock:
            self._kept.pop(consent_id, None)
