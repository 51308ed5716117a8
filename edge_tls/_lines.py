"""A device's line of certificates: every certificate ever issued to one device identity.

The rules, applied inside the caller's write transaction:

* at most one certificate of a line is valid: issuing a new one (enrolment or
  renewal) supersedes every other still-valid one (revoked, reason ``superseded``);
* revoking any certificate of a line revokes every one still valid, ancestors
  and descendants alike; with ``key-compromise`` the reason of those already
  revoked is raised to key-compromise (their revocation time is kept), so a
  relying party that trusts superseded certificates for old signatures stops;
* the CRL and OCSP read the same rows through :func:`entry`, so they agree.
  Superseded certificates leave the CRL once expired (RFC 5280 §3.3 allows it),
  so weekly renewals do not grow it forever; every other reason stays listed.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clock import format_rfc3339, parse_rfc3339, require_aware
from edge_tls._profiles import CertificateKind, DeviceId
from edge_tls._revocation import RevocationReason, RevokedCertificate
from edge_tls._tables import CertificateRow

__all__ = ["entry", "line_of", "revoke_line", "revoked_entries", "supersede"]

logger = logging.getLogger(__name__)


def line_of(session: Session, device: DeviceId) -> list[CertificateRow]:
    """Every device certificate of ``device``, oldest first (locked for update)."""
    return list(
        session.execute(
            select(CertificateRow)
            .where(
                CertificateRow.enterprise == device.enterprise,
                CertificateRow.device == device.device,
                CertificateRow.kind == CertificateKind.DEVICE.value,
            )
            .order_by(CertificateRow.not_before)
            .with_for_update()
        ).scalars()
    )


def supersede(session: Session, device: DeviceId, *, now: datetime) -> list[str]:
    """Revoke (``superseded``) every still-valid certificate of ``device``'s line.

    Raises:
        ValueError: a naive ``now``.
    """
    stamp = format_rfc3339(require_aware(now, what="now").replace(microsecond=0))
    superseded = []
    for row in line_of(session, device):
        if row.revoked_at is None:
            row.revoked_at = stamp
            row.revocation_reason = RevocationReason.SUPERSEDED.value
            superseded.append(row.serial_hex)
    return superseded


def revoke_line(
    session: Session, row: CertificateRow, reason: RevocationReason, *, stamp: str
) -> list[CertificateRow]:
    """Revoke ``row``'s whole line (a server certificate alone); the rows changed."""
    if row.kind == CertificateKind.DEVICE.value and row.enterprise and row.device:
        line = line_of(session, DeviceId(row.enterprise, row.device))
    else:
        line = [row]
    changed: list[CertificateRow] = []
    for member in line:
        if member.revoked_at is None:
            member.revoked_at = stamp
            member.revocation_reason = reason.value
            changed.append(member)
        elif reason is RevocationReason.KEY_COMPROMISE and member.revocation_reason != reason.value:
            member.revocation_reason = reason.value
            changed.append(member)
    return changed


def entry(row: CertificateRow) -> RevokedCertificate:
    """The CRL/OCSP view of a revoked row (one place, so the CRL and OCSP agree)."""
    return RevokedCertificate(
        int(row.serial_hex, 16),
        parse_rfc3339(row.revoked_at or ""),
        RevocationReason(row.revocation_reason or "unspecified"),
    )


def revoked_entries(session: Session, *, now: datetime) -> list[RevokedCertificate]:
    """What the CRL lists at ``now``: every revoked certificate but expired superseded ones."""
    expired_superseded = (CertificateRow.revocation_reason == RevocationReason.SUPERSEDED.value) & (
        CertificateRow.not_after <= format_rfc3339(now)
    )
    rows = session.execute(
        select(CertificateRow).where(CertificateRow.revoked_at.is_not(None), ~expired_superseded)
    ).scalars()
    return [entry(row) for row in rows]
