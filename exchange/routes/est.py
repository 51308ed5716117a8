"""``/.well-known/est``: EST enrolment (RFC 7030) on the edge TLS listener.

Responses are what RFC 7030 gives: base64 certs-only PKCS#7 on success
(``Content-Transfer-Encoding: base64``); on refusal a 4xx/5xx with a plain,
human-readable message (§4.2.3), 401 with ``WWW-Authenticate: Basic`` when
the client must authenticate. Errors elsewhere are RFC 9457 problem details.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from core.clock import utcnow
from edge_tls import (
    BootstrapTokenError,
    CertificateRejectedError,
    DeviceId,
    EnrollmentError,
)
from exchange.auth import enterprise_is_active, get_runtime
from exchange.errors import status_for
from exchange.routes.edge import require_active_enterprise
from exchange.runtime import Runtime
from exchange.tls_bridge import peer_certificate_der

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/.well-known/est", tags=["est"])

_PKCS7 = "application/pkcs7-mime"
_CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
_MAX_BODY = 16 * 1024
_REALM = 'Basic realm="ibx-est", charset="UTF-8"'


def _b64(der: bytes) -> bytes:
    return base64.encodebytes(der)


def _refusal(exc: EnrollmentError) -> PlainTextResponse:
    status = status_for(exc)
    headers = {"WWW-Authenticate": _REALM} if status == 401 else None
    if status >= 500:
        logger.error("EST request failed: %s", type(exc).__name__)
    return PlainTextResponse(f"{exc.title}: {exc}\n", status_code=status, headers=headers)


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


async def _body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            break
    return body


def _admit(runtime: Runtime) -> Callable[[DeviceId], None]:
    def admit(device: DeviceId) -> None:
        if not enterprise_is_active(runtime, device.enterprise):
            raise BootstrapTokenError(
                f"the enterprise {device.enterprise!r} of this token is not an active identity"
            )

    return admit


@router.get("/cacerts")
def cacerts(request: Request) -> Response:
    """The CA chain as base64 certs-only PKCS#7 (RFC 7030 §4.1)."""
    try:
        der = get_runtime(request).edge_pki.authority().cacerts()
    except EnrollmentError as exc:
        return _refusal(exc)
    return Response(_b64(der), media_type=_PKCS7, headers={"Content-Transfer-Encoding": "base64"})


@router.post("/simpleenroll")
async def simpleenroll(request: Request) -> Response:
    """Enrol with HTTP Basic ``DEVICE_ID:TOKEN`` and a base64 PKCS#10 body (RFC 7030 §4.2)."""
    credentials = _basic_credentials(request)
    if credentials is None:
        return _refusal(
            BootstrapTokenError("send HTTP Basic credentials DEVICE_ID:BOOTSTRAP_TOKEN")
        )
    body = await _body(request)
    runtime = get_runtime(request)
    try:
        issued = runtime.edge_pki.enroll(
            credentials[0], credentials[1], body, now=utcnow(), admit=_admit(runtime)
        )
    except EnrollmentError as exc:
        logger.info("simpleenroll refused for %r: %s", credentials[0], type(exc).__name__)
        return _refusal(exc)
    return Response(
        _b64(issued.certs_only()),
        media_type=_CERTS_ONLY,
        headers={"Content-Transfer-Encoding": "base64"},
    )


@router.post("/simplereenroll")
async def simplereenroll(request: Request) -> Response:
    """Re-enrol with the current client certificate over mutual TLS (RFC 7030 §4.2.2)."""
    runtime = get_runtime(request)
    body = await _body(request)
    try:
        now = utcnow()
        peer = runtime.edge_pki.authenticate(peer_certificate_der(request.scope), now=now)
        require_active_enterprise(runtime, peer)
        issued = runtime.edge_pki.reenroll(peer, body, now=now)
    except CertificateRejectedError as exc:
        logger.info("simplereenroll refused: %s", type(exc).__name__)
        return _refusal(exc)
    except EnrollmentError as exc:
        return _refusal(exc)
    return Response(
        _b64(issued.certs_only()),
        media_type=_CERTS_ONLY,
        headers={"Content-Transfer-Encoding": "base64"},
    )
