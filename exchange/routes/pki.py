"""``/v1/pki``: the issuing CA's CRL (DER) and OCSP responder (RFC 6960), public; and the
security officer's revocation of a certificate (authorized by the active policy, and
signed: the body carries the officer's ``certificate.revoke`` duty)."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Path, Request, Response

from core.clock import utcnow
from core.duty import DutyError, SignedDuty, check_duty
from exchange.access import Grant
from exchange.auth import get_runtime, granted
from exchange.runtime import Runtime
from exchange.schemas.pki import RevocationCreate, RevocationPublic

__all__ = ["router"]

router = APIRouter(prefix="/v1/pki", tags=["pki"])

_MAX_OCSP = 8 * 1024


@router.get("/crl", response_class=Response)
def crl(runtime: Runtime = Depends(get_runtime)) -> Response:  # noqa: B008
    """A freshly signed CRL of the issuing CA, DER (``application/pkix-crl``)."""
    return Response(runtime.edge_pki.crl(now=utcnow()), media_type="application/pkix-crl")


@router.get("/ca", response_class=Response)
def ca_bundle(runtime: Runtime = Depends(get_runtime)) -> Response:  # noqa: B008
    """The CA chain in PEM (issuing CA, then root)."""
    return Response(
        runtime.edge_pki.authority().chain_pem(), media_type="application/pem-certificate-chain"
    )


@router.get("/ocsp/{encoded:path}", response_class=Response)
def ocsp_get(encoded: str, request: Request) -> Response:
    """Answer an OCSP request sent by GET: the URL-encoded base64 of its DER (RFC 6960 A.1)."""
    try:
        body = base64.b64decode(unquote(encoded), validate=True)
    except (binascii.Error, ValueError):
        body = b""
    answer = get_runtime(request).edge_pki.ocsp(body[:_MAX_OCSP], now=utcnow())
    return Response(answer, media_type="application/ocsp-response")


@router.post("/ocsp", response_class=Response)
async def ocsp(request: Request) -> Response:
    """Answer an OCSP request (``application/ocsp-request`` body, DER)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_OCSP:
            break
    answer = get_runtime(request).edge_pki.ocsp(body, now=utcnow())
    return Response(answer, media_type="application/ocsp-response")


_SERIAL = Path(
    ...,
    min_length=1,
    max_length=40,
    pattern="^[0-9a-f]+$",
    description="the certificate's serial number, lower-case hex (as ibx pki list prints it)",
)


@router.post(
    "/certificates/{serial}/revocation",
    response_model=RevocationPublic,
    responses={
        400: {"description": "an invalid serial or reason"},
        401: {"description": "not authenticated (or without the officer's client certificate)"},
        403: {
            "description": "the active policy does not allow this (the detail names the rule), "
            "or the duty is not the caller's valid signature on this revocation"
        },
        404: {"description": "no certificate with that serial"},
        409: {"description": "the certificate and the rest of its line are already revoked"},
    },
)
def revoke(
    body: RevocationCreate,
    serial: str = _SERIAL,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> RevocationPublic:
    """Revoke a certificate and every other still-valid one of its device's line.

    All are refused on their next request and listed by the CRL and OCSP. The
    body's duty must be the caller's own ``certificate.revoke`` on ``serial``
    with this reason, verified against the caller's ledgered key; it is
    recorded in the ledger entry.

    Raises:
        DutyError: no valid duty of the caller for this serial and reason.
    """
    number = int(serial, 16)
    now = utcnow()
    signed = SignedDuty.from_dict(body.duty)
    officer = check_duty(
        signed,
        keys=runtime.duty_keys,
        origin=runtime.settings.ledger_origin,
        action="certificate.revoke",
        subject=format(number, "x"),
        role="security_officer",
        now=now,
    )
    if officer != grant.identity.name:
        raise DutyError(f"the duty is {officer}'s, not the caller {grant.identity.name}'s")
    if dict(signed.duty.details) != {"reason": body.reason.value}:
        raise DutyError(f"the duty revokes for another reason than {body.reason.value}")
    revoked = runtime.edge_pki.revoke(number, body.reason, actor=officer, now=now, duty=signed)
    return RevocationPublic.from_revocation(revoked)
