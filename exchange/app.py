"""The FastAPI application, built from settings in :func:`create_app`."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.access_log import RequestContext
from exchange.auth import enforce_access
from exchange.console import install_console
from exchange.errors import install_problem_handlers, problem
from exchange.fabric_shipping import FabricShipping, check_fabric_settings
from exchange.idempotency import Idempotency, IdempotencyStore
from exchange.openapi import install_complete_openapi
from exchange.pipeline.sweeper import PipelineSweeper
from exchange.request_id import install_log_context
from exchange.risk_watch import RiskWatch, load_rules
from exchange.routes import ROUTERS
from exchange.routes import alerts as alert_routes
from exchange.routes import audit as audit_routes
from exchange.runtime import Runtime
from exchange.settings import Settings, take_secret_environment
from exchange.status import readiness

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
"""Largest request body the HTTP API reads (JSON requests are small; ledger payloads are
bounded at 64 KiB too)."""

MAX_CONTRIBUTION_BODY = 256 * 1024 * 1024
"""Largest body of a data agent's contribution (HE ciphertexts: about 440 kB of base64 per
4,096 values)."""

_LARGE_BODIES = re.compile(r"^/v1/agent/jobs/[^/]+/contributions$")
"""Paths whose bodies may be up to :data:`MAX_CONTRIBUTION_BODY`."""


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 before any route parses them.

    The body is read (at most ``limit`` + one chunk) and replayed to the application, so
    a declared ``Content-Length`` and a chunked upload are bounded alike. Only a caller
    whose bearer token ``authenticate`` accepts may send a contribution-sized body: for
    anyone else the contribution route has the default limit, so an unauthenticated
    client cannot make the server buffer large bodies.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY,
        large: int = MAX_CONTRIBUTION_BODY,
        authenticate: Callable[[str], object | None] | None = None,
    ) -> None:
        self._app = app
        self._default = limit
        self._large = large
        self._authenticate = authenticate

    async def _limit(self, scope: Scope) -> int:
        if not _LARGE_BODIES.match(scope.get("path", "")) or self._authenticate is None:
            return self._default
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    known = await run_in_threadpool(self._authenticate, token.strip())
                    return self._default if known is None else self._large
        return self._default

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem(413, "payload too large", f"a request body may be at most {limit} bytes")
        await response(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = await self._limit(scope)
        for name, value in scope.get("headers", ()):
            if name != b"content-length":
                continue
            if not value.isdigit():
                await problem(400, "invalid request", "malformed Content-Length")(
                    scope, receive, send
                )
                return
            if len(value) > 12 or int(value) > limit:
                await self._too_large(scope, receive, send, limit)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self._app(scope, _replay([message], receive), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self._app(scope, _replay([body], receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def create_app(
    settings: Settings | None = None,
    *,
    runtime: Runtime | None = None,
    edge_port: int | None = None,
) -> FastAPI:
    """Build the exchange: runtime, routes, RFC 9457 error handling and the HTTP layers.

    Every request passes, outermost first: :class:`~exchange.access_log.RequestContext`
    (request id, access log, a 500 problem for any unmapped error), the body limit,
    :class:`~exchange.idempotency.Idempotency` (``Idempotency-Key`` on write POSTs),
    then the app-wide access check and the route.

    ``edge_port`` is the port of the mutual-TLS edge listener, if one runs: a
    device that asks this (API) port for EST is told where to go instead.

    Raises:
        ConfigurationError: the settings cannot be used (a risk rules file that is
            group- or world-writable or does not parse among them).
    """
    secrets = take_secret_environment()  # before anything runs, whoever built the settings
    rt = runtime or Runtime(settings or Settings.from_environment(secrets))
    risk_rules = load_rules(rt.settings)  # a writable or malformed rules file stops us here
    check_fabric_settings(rt)  # likewise incomplete Fabric settings or unreadable key files

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        sweeper = PipelineSweeper.start(rt)  # one process of ibx serve --workers N holds it
        watch = await RiskWatch.start(rt, risk_rules)  # likewise: one evaluator
        fabric = FabricShipping.start(rt)  # likewise: one shipper to the Fabric channel
        try:
            yield
        finally:
            if fabric is not None:
                await run_in_threadpool(fabric.stop)
            await watch.stop()
            if sweeper is not None:
                await sweeper.stop()
            rt.close()

    app = FastAPI(
        title="ibx exchange",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # the interactive pages load third-party scripts; OpenAPI stays
        redoc_url=None,
        dependencies=[Depends(enforce_access)],  # every route, by exchange.access.ROUTES
    )
    app.state.runtime = rt
    install_log_context()
    # add_middleware wraps: the last added runs first
    app.add_middleware(
        Idempotency,
        store=IdempotencyStore(rt.db, rt.master_key),
        authenticate=lambda token: rt.identities.authenticate(token),  # noqa: PLW0108 - built on first use
    )
    app.add_middleware(
        _BodyLimit,
        limit=MAX_BODY,
        authenticate=lambda token: rt.identities.authenticate(token),  # noqa: PLW0108 - built on first use
    )
    app.add_middleware(RequestContext)
    install_problem_handlers(app)
    install_complete_openapi(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(audit_routes.router)
    app.include_router(alert_routes.router)
    install_console(app, rt.console_sessions)  # /console: pages that call this API

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        """Liveness: the process answers (no I/O)."""
        return {"status": "ok"}

    @app.api_route("/.well-known/est/{rest:path}", methods=["GET", "POST"], include_in_schema=False)
    def est_elsewhere(rest: str) -> JSONResponse:
        """EST lives on the edge listener, not here: say which port."""
        where = (
            f"the edge listener on port {edge_port} (https://HOST:{edge_port}/.well-known/est/"
            f"{rest}, mutual TLS)"
            if edge_port is not None
            else "the edge listener, which this exchange does not run (ibx serve --edge-port N)"
        )
        return problem(
            404, "not found", f"this is the exchange's API port; EST is served on {where}"
        )

    @app.get("/readyz", include_in_schema=False, response_model=None)
    def readyz() -> dict[str, object] | JSONResponse:
        """Readiness: the database answers and the ledger head verifies (503 otherwise)."""
        checks = readiness(rt)
        failed = [check for check in checks if not check.ok]
        if not failed:
            return {"status": "ready"}
        for check in failed:  # details are for operators' logs, not for anonymous callers
            logger.error("not ready: %s: %s", check.name, check.detail)
        return problem(503, "not ready", "failing: " + ", ".join(c.name for c in failed))

    return app
