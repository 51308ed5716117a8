"""``/v1/edge``: device routes (mutual TLS only) and the enterprise's own routes.

A device reaches nothing but its own routes: the edge listener serves only
EST, the CRL/OCSP and :data:`device_router`, and every device route
authenticates the peer certificate against the registry on each request.
The enterprise's routes (bootstrap tokens, pulling its sealed batches) are on
the API and authorized like every other route (:mod:`exchange.access`).
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from core.clock import format_rfc3339, utcnow
from edge_tls import (
    CertificateRejectedError,
    DeviceCertificate,
    DeviceId,
    EnrollmentError,
    SealingKeyMissingError,
    UploadQuotaError,
    sealing_public_key,
)
from exchange.access import Grant
from exchange.auth import enterprise_is_active, get_runtime, granted
from exchange.error_table import ForbiddenError
from exchange.errors import problem, status_for
from exchange.identities import Role, Status
from exchange.routes._paging import CURSOR, LIMIT, CursorError, Page, cursor_after, cursor_for
from exchange.runtime import Runtime
from exchange.schemas.edge import BootstrapTokenCreate, BootstrapTokenPublic, SealedBatchPublic
from exchange.tls_bridge import peer_certificate_der

__all__ = ["device_router", "enterprise_router"]

device_router = APIRouter(prefix="/v1/edge", tags=["edge devices"])
enterprise_router = APIRouter(prefix="/v1/edge", tags=["edge enterprises"])

_SEALED_TYPES = ("application/octet-stream", "")
_MAX_BATCH_ID = (1 << 53) - 1
_DENIED: dict[int | str, dict[str, Any]] = {
    403: {"description": "the active policy does not allow this (the detail names the rule)"}
}
_UNAUTHENTICATED: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown, expired or revoked one"}
}


def current_device(request: Request) -> DeviceCertificate:
    """FastAPI dependency: the device behind the verified client certificate, checked now.

    Raises:
        CertificateRejectedError: no certificate, or an unknown, revoked or expired one,
            or one of a device whose enterprise is no longer an active identity.
    """
    runtime = get_runtime(request)
    device = runtime.edge_pki.authenticate(peer_certificate_der(request.scope), now=utcnow())
    require_active_enterprise(runtime, device)
    return device


def require_active_enterprise(runtime: Runtime, device: DeviceCertificate) -> None:
    """Refuse a device whose enterprise identity was revoked (or never existed).

    Raises:
        CertificateRejectedError: the device's enterprise is not an active identity.
    """
    if not enterprise_is_active(runtime, device.device.enterprise):
        raise CertificateRejectedError(
            f"the enterprise {device.device.enterprise!r} of this device is not an active identity"
        )


def _sealing_key(runtime: Runtime, enterprise: str) -> bytes:
    identity = runtime.identities.get(enterprise)
    if (
        identity.role is not Role.ENTERPRISE
        or identity.status is not Status.ACTIVE
        or identity.public_key is None
    ):
        raise SealingKeyMissingError(
            f"enterprise {enterprise!r} has no active registered public key to seal readings to"
        )
    return sealing_public_key(identity.public_key.raw)


@device_router.get("/whoami")
def whoami(device: DeviceCertificate = Depends(current_device)) -> dict[str, str]:  # noqa: B008
    """The device's identity as the exchange sees it."""
    return {
        "enterprise": device.device.enterprise,
        "device": device.device.device,
        "serial": format(device.serial, "x"),
        "not_after": format_rfc3339(device.not_after),
    }


@device_router.get("/sealing-key")
def sealing_key(
    request: Request,
    device: DeviceCertificate = Depends(current_device),  # noqa: B008
) -> dict[str, str]:
    """The X25519 key of the device's own enterprise, to seal batches to (base64)."""
    key = _sealing_key(get_runtime(request), device.device.enterprise)
    return {
        "enterprise": device.device.enterprise,
        "x25519_public_key": base64.b64encode(key).decode(),
    }


@device_router.post("/readings", status_code=201, response_model=None)
async def upload_readings(
    request: Request,
    device: DeviceCertificate = Depends(current_device),  # noqa: B008
) -> dict[str, object] | JSONResponse:
    """Store one sealed batch (``application/octet-stream``, a SealedBox) and record its hash.

    Checked before anything is stored: the media type (415), the size (413),
    the sealed-box structure (400) and the device's hourly quota (429 with
    ``Retry-After``); all as problem+json.
    """
    runtime = get_runtime(request)
    _sealing_key(runtime, device.device.enterprise)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in _SEALED_TYPES:
        return problem(
            415,
            "unsupported media type",
            f"a batch is one sealed box sent as application/octet-stream, not {media_type}",
        )
    store = runtime.edge_readings
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > store.quota.max_batch_bytes:
            break
    try:
        batch = store.store(device, body, now=utcnow())
    except UploadQuotaError as exc:
        refused = problem(status_for(exc), exc.title, str(exc), retry_after=exc.retry_after)
        refused.headers["Retry-After"] = str(exc.retry_after)
        return refused
    return {"batch": batch.id, "sha256": batch.sha256}


@enterprise_router.post(
    "/tokens",
    status_code=201,
    responses={
        **_UNAUTHENTICATED,
        403: {
            "description": "the active policy does not allow this (the detail names the rule), "
            "or `enterprise` is not the caller"
        },
        400: {"description": "a malformed device name"},
    },
)
def create_token(
    body: BootstrapTokenCreate,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> BootstrapTokenPublic:
    """A one-time bootstrap token for one of the caller's own devices (shown once).

    Raises:
        ForbiddenError: ``enterprise`` names someone other than the caller.
        EnrollmentError: a malformed device name.
    """
    caller = grant.identity
    if body.enterprise is not None and body.enterprise != caller.name:
        raise ForbiddenError(
            f"{caller.name} creates bootstrap tokens for its own devices only, "
            f"not {body.enterprise}'s"
        )
    try:
        device = DeviceId(caller.name, body.device)
    except ValueError as exc:
        raise EnrollmentError(str(exc)) from exc
    ttl = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
    issued = runtime.edge_pki.create_token(device, actor=caller.name, now=utcnow(), ttl=ttl)
    return BootstrapTokenPublic(
        enterprise=device.enterprise,
        device=device.device,
        token=issued.token,
        expires_at=issued.expires_at,
    )


def _batch_key(batch_id: int) -> str:
    """A batch id as a cursor key that sorts like the id."""
    return f"{batch_id:020d}"


def _start_after(cursor: str | None, after: int) -> int:
    key = cursor_after(cursor)
    if key is None:
        return after
    if not (key.isascii() and key.isdigit()) or len(key) != len(_batch_key(0)):
        raise CursorError("the cursor is not one this exchange handed out")
    if int(key) > _MAX_BATCH_ID:
        raise CursorError("the cursor is not one this exchange handed out")
    return int(key)


@enterprise_router.get(
    "/readings",
    response_model=Page[SealedBatchPublic],
    responses={**_UNAUTHENTICATED, **_DENIED, 400: {"description": "a cursor not handed out here"}},
)
def pull_readings(
    after: int = Query(
        0, ge=0, le=_MAX_BATCH_ID, description="start after this batch id (when no cursor)"
    ),
    cursor: str | None = CURSOR,
    limit: int = LIMIT,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> Page[SealedBatchPublic]:
    """The caller's own sealed batches, oldest first, ciphertext in base64.

    Only batches sealed to the caller are listed, whatever the grant: nobody
    pulls another enterprise's batches (which its key would not open anyway).

    Raises:
        CursorError: a cursor this exchange did not hand out.
    """
    start = _start_after(cursor, after)
    batches = runtime.edge_readings.batches(grant.identity.name, after=start, limit=limit + 1)
    page = batches[:limit]
    more = len(batches) > limit
    return Page[SealedBatchPublic](
        items=[
            SealedBatchPublic(
                id=b.id,
                device=b.device,
                sha256=b.sha256,
                received_at=format_rfc3339(b.received_at),
                ciphertext=base64.b64encode(b.ciphertext).decode(),
            )
            for b in page
        ],
        next_cursor=cursor_for(_batch_key(page[-1].id)) if more and page else None,
    )
