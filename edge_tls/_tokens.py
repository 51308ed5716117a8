"""One-time bootstrap tokens: how an enterprise lets one device enrol once.

A token is 256 random bits (``ibxb_`` + base64url), shown once, stored only
as its SHA-256, bound to one (enterprise, device), expiring, and spent by the
enrolment that uses it, in the same transaction as the certificate.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from core.clock import format_rfc3339, parse_rfc3339, require_aware
from edge_tls._profiles import DeviceId
from edge_tls._tables import BootstrapTokenRow
from edge_tls.errors import TokenExpiredError, TokenUnknownError, TokenUsedError

__all__ = ["TOKEN_PREFIX", "BootstrapToken", "consume_token", "hash_token", "new_token_row"]

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "ibxb_"  # noqa: S105 -- a public prefix, not a secret
_MAX_TOKEN = 200


def hash_token(token: str) -> bytes:
    """SHA-256 of a bootstrap token (256-bit random, so no slow hash is needed)."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, repr=False)
class BootstrapToken:
    """A new bootstrap token: the secret exists only here, once."""

    device: DeviceId
    token: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"BootstrapToken(device={self.device!r}, expires_at={self.expires_at!r})"


def new_token_row(
    device: DeviceId, *, now: datetime, expires_at: datetime
) -> tuple[BootstrapToken, BootstrapTokenRow]:
    """A fresh token and the row that stores its hash."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = BootstrapTokenRow(
        token_hash=hash_token(token),
        enterprise=device.enterprise,
        device=device.device,
        created_at=format_rfc3339(now),
        expires_at=format_rfc3339(expires_at),
    )
    return BootstrapToken(device, token, expires_at), row


def consume_token(
    session: Session, device_name: str, token: str, *, now: datetime
) -> tuple[DeviceId, BootstrapTokenRow]:
    """Spend ``token`` for ``device_name`` inside the caller's write transaction.

    Returns the (enterprise, device) the token was created for and its row; the
    caller stores the certificate and sets ``used_serial_hex`` in the same transaction.

    Raises:
        TokenUnknownError: not a token we issued, or one for another device.
        TokenUsedError: the token already enrolled a certificate.
        TokenExpiredError: the token is past its expiry.
    """
    when = require_aware(now, what="now")
    if not token.startswith(TOKEN_PREFIX) or len(token) > _MAX_TOKEN:
        raise TokenUnknownError("the bootstrap token is unknown or was issued for another device")
    digest = hash_token(token)
    row = session.get(BootstrapTokenRow, digest)
    if (
        row is None
        or not hmac.compare_digest(row.token_hash, digest)
        or not hmac.compare_digest(row.device.encode(), device_name.encode())
    ):
        raise TokenUnknownError("the bootstrap token is unknown or was issued for another device")
    if row.used_at is not None:
        raise TokenUsedError(
            f"this bootstrap token was already used at {row.used_at}; ask for a new one"
        )
    if when >= parse_rfc3339(row.expires_at):
        raise TokenExpiredError(
            f"this bootstrap token expired at {row.expires_at}; ask for a new one"
        )
    row.used_at = format_rfc3339(when)
    return DeviceId(row.enterprise, row.device), row
