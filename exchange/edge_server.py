"""The edge TLS listener: mutual TLS for devices on its own port and its own app.

The listener runs uvicorn with :class:`exchange.tls_bridge.PeerCertificateProtocol`,
which hands the verified client certificate to the application.

The listener speaks TLS 1.2 and 1.3 only, with ECDHE + AEAD suites, no
compression and no renegotiation; its server certificate is issued by the
edge issuing CA at start-up and its key exists only in memory and in a
temporary file deleted right after loading.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Sequence

import uvicorn
from fastapi import FastAPI

from core.clock import utcnow
from core.errors import ConfigurationError
from edge_tls import ServerCredentials
from exchange.errors import install_problem_handlers
from exchange.routes import edge as edge_routes
from exchange.routes import edge_results as edge_result_routes
from exchange.routes import est as est_routes
from exchange.routes import pki as pki_routes
from exchange.runtime import Runtime
from exchange.server_tls import server_ssl_context
from exchange.tls_bridge import PeerCertificateProtocol

__all__ = [
    "create_edge_app",
    "edge_server_config",
    "edge_ssl_context",
    "serve_together",
]

logger = logging.getLogger(__name__)


def edge_ssl_context(credentials: ServerCredentials, trust_pem: str) -> ssl.SSLContext:
    """A server context: TLS 1.2-1.3, strong suites, optional client certs from ``trust_pem``.

    Client certificates are optional at the TLS layer (simpleenroll authenticates
    with a bootstrap token instead); every device route requires one. The same
    context as the API's (:func:`exchange.server_tls.server_ssl_context`).

    Raises:
        ssl.SSLError: the credentials do not load.
    """
    return server_ssl_context(credentials, trust_pem)


def create_edge_app(runtime: Runtime) -> FastAPI:
    """The application behind the edge listener: EST, CRL/OCSP and the device routes only.

    The device routes include ``GET /v1/edge/results/{job_id}``: the device's
    enterprise's own share of a released job, nothing else.
    """
    app = FastAPI(
        title="ibx edge", version="0.1.0", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    app.include_router(est_routes.router)
    app.include_router(pki_routes.router)
    app.include_router(edge_routes.device_router)
    app.include_router(edge_result_routes.router)
    return app


def edge_server_config(
    runtime: Runtime,
    *,
    host: str,
    port: int,
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    log_level: str = "info",
) -> uvicorn.Config:
    """A uvicorn config for the edge listener with a fresh server certificate.

    Raises:
        CaNotInitializedError: ``ibx pki init`` has not run.
        ConfigurationError: upload limits that cannot hold (an hourly quota below one batch).
    """
    try:
        runtime.edge_readings  # noqa: B018 - build the upload quota now, not at the first upload
    except ValueError as exc:
        raise ConfigurationError(f"edge upload limits: {exc}") from exc
    names = tuple(dict.fromkeys([*hosts, *([host] if host not in ("0.0.0.0", "::") else [])]))  # noqa: S104
    credentials = runtime.edge_pki.issue_server_certificate(names, now=utcnow())
    context = edge_ssl_context(credentials, runtime.edge_pki.authority().chain_pem())

    def factory(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return context

    return uvicorn.Config(
        create_edge_app(runtime),
        host=host,
        port=port,
        http=PeerCertificateProtocol,
        ssl_context_factory=factory,
        log_level=log_level,
        server_header=False,
        lifespan="off",
    )


async def serve_together(servers: Sequence[uvicorn.Server]) -> None:
    """Run several uvicorn servers on one event loop; when one stops, stop them all."""
    tasks = [asyncio.create_task(server.serve()) for server in servers]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
