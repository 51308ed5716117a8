"""``/v1/pki``: the issuing CA's CRL (DER) and OCSP responder (RFC 6960); public."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Request, Response

from core.clock import utcnow
from exchange.auth import get_runtime
from exchange.runtime import Runtime

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
