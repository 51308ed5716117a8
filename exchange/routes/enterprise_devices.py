"""``GET /v1/edge/devices`` and ``GET /v1/agent/contact``: an enterprise's own devices.

The certificates the edge CA issued to the caller's devices (each with its
SPIFFE id, serial, validity and revocation) and when the caller's data agent
last polled for tasks. Only ever the caller's own, whatever the grant: the
action (``devices_read_own``) is the enterprise's in the shipped pack.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from core.clock import format_rfc3339, utcnow
from edge_tls import CertificateKind, CertificateRecord, DeviceId
from exchange.access import Grant
from exchange.auth import get_runtime, granted
from exchange.routes._paging import CURSOR, LIMIT, Page, paginate
from exchange.runtime import Runtime
from exchange.schemas.enterprise_devices import AgentContactPublic, DeviceCertificatePublic

__all__ = ["router"]

router = APIRouter()

_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown, expired or revoked one"},
    403: {"description": "the active policy does not allow this (the detail names the rule)"},
}


def _device_name(record: CertificateRecord, trust_domain: str) -> str:
    if record.subject is None:
        return ""
    try:
        return DeviceId.from_spiffe_id(record.subject, trust_domain).device
    except ValueError:
        return record.subject


@router.get(
    "/v1/edge/devices",
    tags=["edge enterprises"],
    responses={**_REFUSALS, 400: {"description": "a cursor not handed out here"}},
)
def devices(
    cursor: str | None = CURSOR,
    limit: int = LIMIT,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> Page[DeviceCertificatePublic]:
    """The caller's devices' certificates, by device then serial, each with its state now.

    Raises:
        CursorError: a cursor this exchange did not hand out.
    """
    now = utcnow()
    trust_domain = runtime.settings.trust_domain
    items = []
    for record in runtime.edge_pki.certificates(enterprise=grant.identity.name):
        if record.kind is not CertificateKind.DEVICE:
            continue
        state = (
            "revoked"
            if record.revoked_at is not None
            else "expired"
            if record.not_after <= now
            else "valid"
        )
        items.append(
            DeviceCertificatePublic(
                device=_device_name(record, trust_domain),
                spiffe_id=record.subject,
                serial=format(record.serial, "x"),
                fingerprint=record.fingerprint,
                not_after=format_rfc3339(record.not_after),
                revoked_at=format_rfc3339(record.revoked_at) if record.revoked_at else None,
                state=state,
            )
        )
    items.sort(key=_key)
    page, next_cursor = paginate(items, key=_key, cursor=cursor, limit=limit)
    return Page[DeviceCertificatePublic](items=page, next_cursor=next_cursor)


def _key(item: DeviceCertificatePublic) -> str:
    return f"{item.device}\x00{item.serial:>40}"


@router.get("/v1/agent/contact", tags=["agent"], responses=_REFUSALS)
def agent_contact(
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> AgentContactPublic:
    """When the caller's data agent first and last polled for tasks (null: never).

    An index row kept for display, not a signed fact (its signed statements are
    on the ledger); the time may be a few seconds old.
    """
    me = grant.identity.name
    contact = runtime.agent_contacts.last(me)
    if contact is None:
        return AgentContactPublic(enterprise=me, first_contact_at=None, last_contact_at=None)
    return AgentContactPublic(
        enterprise=me,
        first_contact_at=format_rfc3339(contact.first_contact_at),
        last_contact_at=format_rfc3339(contact.last_contact_at),
    )
