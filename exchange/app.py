"""The FastAPI application, built from settings in :func:`create_app`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from exchange.errors import install_problem_handlers
from exchange.routes import edge as edge_routes
from exchange.routes import ledger as ledger_routes
from exchange.routes import pki as pki_routes
from exchange.runtime import Runtime
from exchange.settings import Settings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """Build the exchange: runtime, routes and RFC 9457 error handling.

    Raises:
        ConfigurationError: the settings cannot be used.
    """
    rt = runtime or Runtime(settings or Settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        rt.close()

    app = FastAPI(title="ibx exchange", version="0.1.0", lifespan=lifespan)
    app.state.runtime = rt
    install_problem_handlers(app)
    app.include_router(ledger_routes.router)
    app.include_router(pki_routes.router)
    app.include_router(edge_routes.enterprise_router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
