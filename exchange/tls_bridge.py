"""The bridge that hands the application the verified TLS peer certificate.

uvicorn (like hypercorn) can require and verify client certificates, but it
does not pass them to the application: there is no ASGI TLS extension in its
scope. :class:`PeerCertificateProtocol` is the one place that fixes this: a
uvicorn h11 protocol that, once the handshake is done, reads the verified
peer certificate from the transport's ``ssl_object`` and puts it in every
request scope of that connection as ``scope["extensions"]["tls"]`` (the ASGI
TLS extension's ``client_cert_chain``, PEM). Routes read it through
:func:`peer_certificate_der` and check it against the registry on every
request, so a revocation counts immediately.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from cryptography import x509
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["PeerCertificateProtocol", "peer_certificate_der"]

logger = logging.getLogger(__name__)

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class _TlsScope:
    """ASGI wrapper that adds the connection's TLS facts to each request scope."""

    def __init__(self, app: ASGIApp, tls: dict[str, Any]) -> None:
        self._app = app
        self._tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = self._tls
            scope = {**scope, "extensions": extensions}
        await self._app(scope, receive, send)


class PeerCertificateProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus the verified peer certificate in the request scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Record the TLS facts of this connection once, right after the handshake."""
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            return
        der = ssl_object.getpeercert(binary_form=True)
        name = None
        if der:
            try:
                name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
            except ValueError:
                name = None
        tls: dict[str, Any] = {
            "server_cert": None,
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "client_cert_name": name,
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
            "cipher_suite": None,  # Python's ssl exposes the name, not the IANA number
        }
        self.app = _TlsScope(self.app, tls)


def peer_certificate_der(scope: Scope) -> bytes | None:
    """The DER peer certificate the TLS layer verified for this request, if any."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    return ssl.PEM_cert_to_DER_cert(chain[0])
