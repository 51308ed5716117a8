"""Checking a signed receipt or revocation with nothing but the file (and what you trust).

``ibx consent verify RECEIPT_FILE`` runs this without a server, as an auditor
or a counterparty would: the document must decode strictly (the same rules
the exchange applies), its signature must verify under the key it names, and
— when the caller says what it trusts — that key must be the enterprise's
known key and the document must be for the expected deployment.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass

from consent._receipt import SignedReceipt, SignedRevocation
from consent.errors import BadConsentSignatureError, InvalidConsentError
from core.keys import Ed25519PublicKey

__all__ = ["OfflineVerdict", "verify_offline"]


@dataclass(frozen=True)
class OfflineVerdict:
    """What an offline check established about one signed document."""

    document: SignedReceipt | SignedRevocation
    key_pinned: bool
    """Whether the signing key was compared with one the caller trusts (else: self-signed)."""

    @property
    def kind(self) -> str:
        """``receipt`` or ``revocation``."""
        return "receipt" if isinstance(self.document, SignedReceipt) else "revocation"


def _decode(text: str) -> SignedReceipt | SignedRevocation:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidConsentError(f"not JSON: {exc}") from exc
    try:
        return SignedReceipt.from_dict(data)
    except InvalidConsentError as as_receipt:
        try:
            return SignedRevocation.from_dict(data)
        except InvalidConsentError:
            raise as_receipt from None


def verify_offline(
    text: str,
    *,
    trusted_key: Ed25519PublicKey | None = None,
    origin: str | None = None,
) -> OfflineVerdict:
    """Decode ``text`` (a signed receipt or revocation) and verify it.

    Raises:
        InvalidConsentError: malformed, or for another deployment than ``origin``.
        BadConsentSignatureError: the signature does not verify, or the key is not
            ``trusted_key`` (one opaque error).
    """
    signed = _decode(text)
    document = signed.receipt if isinstance(signed, SignedReceipt) else signed.revocation
    if origin is not None and document.origin != origin:
        raise InvalidConsentError(
            f"the document is for deployment {document.origin!r}, not {origin!r}"
        )
    if trusted_key is not None and not hmac.compare_digest(
        trusted_key.raw, document.public_key.raw
    ):
        raise BadConsentSignatureError("the document is not signed by the trusted key")
    signed.verify(document.public_key)
    return OfflineVerdict(signed, key_pinned=trusted_key is not None)
