"""TLS for the exchange's listeners: the API (``ibx serve``) and the edge port.

Both speak TLS 1.2 and 1.3 only, with ECDHE + AEAD suites, no compression
and no renegotiation. Both request a client certificate (optional at the TLS
layer) and verify it against the deployment CA; the verified certificate
reaches the application through :class:`exchange.tls_bridge.PeerCertificateProtocol`
(administrators' second factor on the API, the device identity on the edge
port).

The API's server certificate comes from the deployment CA by default (a
fresh key at every start, recorded on the ledger like any issuance, the key
kept in memory only) or from ``--tls-cert``/``--tls-key`` files. Plain HTTP
is for loopback only: it would carry bearer tokens in clear text.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import ssl
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from core.clock import utcnow
from core.errors import IbxError
from edge_tls import ServerCredentials
from exchange.deployment_ca import ensure_deployment_ca, write_ca_bundle
from exchange.runtime import Runtime
from exchange.tls_bridge import PeerCertificateProtocol

__all__ = [
    "ApiListener",
    "UnsafeListenerError",
    "api_listener",
    "api_server_config",
    "check_listener",
    "is_loopback",
    "server_ssl_context",
]

logger = logging.getLogger(__name__)

# TLS 1.2 suites: forward secret, AEAD only. TLS 1.3 suites are all AEAD (OpenSSL defaults).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!SHA1:!DSS:!PSK:!SRP"

_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 - names of "every address", compared, not bound


class UnsafeListenerError(IbxError):
    """A listener configuration that would expose credentials (e.g. plain HTTP off loopback)."""

    title = "unsafe listener"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _base_context(trust_pem: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_SINGLE_ECDH_USE
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=trust_pem)
    return context


def server_ssl_context(credentials: ServerCredentials, trust_pem: str) -> ssl.SSLContext:
    """A server context with in-memory credentials; client certificates (optional) from
    ``trust_pem``.

    The key passes through a mode-0600 temporary file deleted right after
    loading (Python's ssl loads keys only from files).

    Raises:
        ssl.SSLError: the credentials do not load.
    """
    context = _base_context(trust_pem)
    with tempfile.TemporaryDirectory(prefix="ibx-tls-") as tmp:
        chain = Path(tmp) / "chain.pem"
        key = Path(tmp) / "key.pem"
        chain.write_bytes(credentials.chain_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(credentials.key_pem)
        context.load_cert_chain(chain, key)
    return context


def file_ssl_context(cert: Path, key: Path | None, trust_pem: str) -> ssl.SSLContext:
    """A server context with the certificate chain and key of ``--tls-cert``/``--tls-key``.

    Raises:
        UnsafeListenerError: the files do not hold a usable certificate and key.
    """
    context = _base_context(trust_pem)
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise UnsafeListenerError(
            f"--tls-cert {cert} / --tls-key {key or cert}: cannot load them "
            f"({getattr(exc, 'strerror', None) or exc})"
        ) from exc
    return context


@dataclass(frozen=True)
class ApiListener:
    """How the API listens: the URL clients use, the CA bundle to verify it, the TLS context."""

    url: str
    ca_bundle: Path | None
    """The deployment CA's chain (None: plain HTTP, or a certificate from --tls-cert)."""
    context: ssl.SSLContext | None
    """None: plain HTTP on loopback."""
    ca_created: bool = False
    """Whether this start created the deployment CA."""

    def describe(self) -> str:
        """One line telling a user what to pass to reach this API."""
        if self.context is None:
            return (
                f"serving plain HTTP on {self.url} (loopback only; --plain-http): "
                f"clients use --exchange {self.url}"
            )
        if self.ca_bundle is None:
            return (
                f"serving {self.url}: clients use --exchange {self.url} and --ca-bundle "
                "with the CA that issued --tls-cert"
            )
        return f"serving {self.url}: clients use --exchange {self.url} --ca-bundle {self.ca_bundle}"


def _url_host(host: str, names: Sequence[str]) -> str:
    shown = host if host not in _WILDCARDS else next(iter(names), "localhost")
    return f"[{shown}]" if ":" in shown else shown


def _certificate_names(host: str, names: Sequence[str]) -> tuple[str, ...]:
    extra: list[str] = []
    if host in _WILDCARDS:
        machine = socket.gethostname()
        if _DNS_NAME.fullmatch(machine):
            extra.append(machine)
    else:
        extra.append(host)
    return tuple(dict.fromkeys([*names, *extra, "localhost", "127.0.0.1", "::1"]))


def check_listener(
    *, host: str, tls_cert: Path | None, tls_key: Path | None, plain_http: bool
) -> None:
    """Refuse listener options that would expose credentials or contradict each other.

    Raises:
        UnsafeListenerError: ``plain_http`` on a non-loopback host, ``plain_http``
            together with ``tls_cert``/``tls_key``, or ``tls_key`` without ``tls_cert``.
    """
    if plain_http:
        if tls_cert is not None or tls_key is not None:
            raise UnsafeListenerError("--plain-http and --tls-cert/--tls-key exclude each other")
        if not is_loopback(host):
            raise UnsafeListenerError(
                f"--plain-http would send bearer tokens in clear text, so it listens only on a "
                f"loopback address (127.0.0.1, ::1, localhost), not on {host or 'every address'}; "
                "drop --plain-http to serve TLS"
            )
    elif tls_key is not None and tls_cert is None:
        raise UnsafeListenerError("--tls-key needs --tls-cert")


def api_listener(
    runtime: Runtime,
    *,
    host: str,
    port: int,
    names: Sequence[str] = (),
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    plain_http: bool = False,
) -> ApiListener:
    """Decide how the API listens, creating the deployment CA first if it has none.

    Raises:
        UnsafeListenerError: ``plain_http`` on a non-loopback host, ``plain_http``
            together with ``tls_cert``, ``tls_key`` without ``tls_cert``, or unusable files.
    """
    check_listener(host=host, tls_cert=tls_cert, tls_key=tls_key, plain_http=plain_http)
    if plain_http:
        logger.info("serving plain HTTP on %s:%d (loopback only)", host, port)
        return ApiListener(f"http://{_url_host(host, names)}:{port}", None, None)
    now = utcnow()
    deployment_ca = ensure_deployment_ca(runtime.edge_pki, actor="exchange", now=now)
    ca = deployment_ca.authority
    trust = ca.chain_pem()
    url = f"https://{_url_host(host, names)}:{port}"
    if tls_cert is not None:
        context = file_ssl_context(tls_cert, tls_key, trust)
        return ApiListener(url, None, context, ca_created=deployment_ca.created)
    names_in_cert = _certificate_names(host, names)
    credentials = runtime.edge_pki.issue_server_certificate(names_in_cert, now=now)
    bundle = write_ca_bundle(ca, runtime.data_dir)
    context = server_ssl_context(credentials, trust)
    return ApiListener(url, bundle, context, ca_created=deployment_ca.created)


def api_server_config(
    app: FastAPI, listener: ApiListener, *, host: str, port: int, log_level: str = "info"
) -> uvicorn.Config:
    """A uvicorn config for the API: TLS with the peer-certificate bridge, or plain HTTP.

    HTTP is parsed by httptools and the event loop is uvloop when they are installed
    (they are dependencies; uvicorn's ``auto`` loop picks uvloop).

    ``X-Forwarded-For`` is not trusted, from anyone: the client address (what the
    failed-authentication lockout counts by) is the TCP peer's. A TLS-terminating
    proxy in front would hide administrators' client certificates anyway.
    """
    if listener.context is None:
        return uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level=log_level,
            server_header=False,
            proxy_headers=False,
            access_log=False,  # exchange.access_log logs each request, without its query
        )
    context = listener.context

    def factory(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return context

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=PeerCertificateProtocol,
        ssl_context_factory=factory,
        log_level=log_level,
        server_header=False,
        proxy_headers=False,
        access_log=False,  # exchange.access_log logs each request, without its query
    )
