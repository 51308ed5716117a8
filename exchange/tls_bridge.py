"""The bridge that hands the application the verified TLS peer certificate.

uvicorn (like hypercorn) can require and verify client certificates, but it
does not pass them to the application: there is no ASGI TLS extension in its
scope. :data:`PeerCertificateProtocol` is the one place that fixes this: a
uvicorn HTTP protocol (httptools' when installed, else h11's; both through one
mixin) that, once the handshake is done, reads the verified peer certificate
from the transport's ``ssl_object`` and puts it in every request scope of
that connection as ``scope["extensions"]["tls"]`` (the ASGI
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

__all__ = ["H11PeerCertificateProtocol", "PeerCertificateProtocol", "peer_certificate_der"]

logger = logging.getLogger(__name__)

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


class _TlsScope:
    """ASGI wrapper that adds the connection's TLS facts to each request scope."""

    def __init__(self, app: ASGIApp, tls: dict[str, Any]) -> None:
        self._app = app
        self._tls = tls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            # uvicorn builds a fresh scope for every request: add to it, no copy needed
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": self._tls}
        await self._app(scope, receive, send)


def _tls_facts(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension's facts of a connection (None: not TLS)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    name = None
    if der:
        try:
            name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        except ValueError:
            name = None
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,  # Python's ssl exposes the name, not the IANA number
    }


class _PeerCertificateScope(asyncio.Protocol):
    """Mixin for a uvicorn HTTP protocol: the connection's TLS facts in every request scope."""

    app: ASGIApp

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Record the TLS facts of this connection once, right after the handshake."""
        super().connection_made(transport)
        tls = _tls_facts(transport)
        if tls is not None:
            self.app = _TlsScope(self.app, tls)


class H11PeerCertificateProtocol(_PeerCertificateScope, H11Protocol):
    """uvicorn's h11 protocol (pure Python), plus the verified peer certificate."""


PeerCertificateProtocol: type[asyncio.Protocol]
"""The protocol ``ibx serve`` runs: httptools' (C parser) when it is installed, else h11's."""

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed
    PeerCertificateProtocol = H11PeerCertificateProtocol
else:

    class HttpToolsPeerCertificateProtocol(_PeerCertificateScope, HttpToolsProtocol):
        """uvicorn's httptools protocol (llhttp, in C), plus the verified peer certificate."""

    PeerCertificateProtocol = HttpToolsPeerCertificateProtocol


def peer_certificate_der(scope: Scope) -> bytes | None:
    """The DER peer certificate the TLS layer verified for this request, if any."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    if not chain:
        return None
    return ssl.PEM_cert_to_DER_cert(chain[0])
