"""Mount the console on the exchange's application (``ibx serve`` → ``/console``)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from exchange.console import auth_pages
from exchange.console.api import ApiRefusal
from exchange.console.security_headers import ConsoleSecurityHeaders
from exchange.console.web import (
    CsrfRefused,
    LoginRequired,
    NotYourDuty,
    labels_for,
    refusal_page,
    render,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["DUTIES", "install_console"]

DUTIES: Final = ("officer", "auditor", "enterprise", "subbrain")
"""The duty modules: ``exchange.console.<duty>`` with ``router`` and ``NAV``."""

_STATIC = Path(__file__).resolve().parent / "static"


def install_console(app: FastAPI, sessions: Any) -> None:
    """Add the console's pages, static files, headers and error pages to ``app``.

    ``sessions`` is the deployment's :class:`exchange.console_sessions.ConsoleSessions`.
    """
    app.state.console_sessions = sessions
    menus: dict[str, Sequence[tuple[str, str]]] = {}
    app.include_router(auth_pages.router)
    for duty in DUTIES:
        module = importlib.import_module(f"exchange.console.{duty}")
        app.include_router(module.router)
        menus[duty] = tuple(module.NAV)
    app.state.console_menus = menus
    app.mount("/console/static", StaticFiles(directory=_STATIC), name="console-static")
    app.add_middleware(ConsoleSecurityHeaders)

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = "/console/login?expired=1" if exc.expired else "/console/login"
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(NotYourDuty)
    async def _duty(request: Request, _exc: NotYourDuty) -> Response:
        return _forbidden(request, "not_your_duty", "duty")

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _exc: CsrfRefused) -> Response:
        return _forbidden(request, "csrf_refused", "csrf")

    @app.exception_handler(ApiRefusal)
    async def _refused(request: Request, exc: ApiRefusal) -> Response:
        return refusal_page(request, None, exc)


def _forbidden(request: Request, detail_key: str, code: str) -> Response:
    """The 403 page for a refusal the console itself makes (another duty's page, CSRF)."""
    t = labels_for(request)
    return render(
        request,
        None,
        "error.html",
        status_code=403,
        title=t("refused_title"),
        detail=t(detail_key),
        code=code,
    )
