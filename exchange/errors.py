"""RFC 9457 problem details for every error (statuses from :mod:`exchange.error_table`).

No ``HTTPException`` is raised below ``exchange/``; packages raise their own
errors and this module turns them into ``application/problem+json``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import IbxError
from exchange.error_table import (
    AuthError,
    ForbiddenError,
    NotFoundError,
    error_code,
    register_status,
    status_for,
)

__all__ = [
    "AuthError",
    "ForbiddenError",
    "NotFoundError",
    "install_problem_handlers",
    "problem",
    "register_status",
    "status_for",
]

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: object) -> JSONResponse:
    """An ``application/problem+json`` response."""
    body: dict[str, object] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error, expected or not, to a problem+json response."""

    @app.exception_handler(IbxError)
    async def _ibx(_request: Request, exc: IbxError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            logger.error("request failed: %s: %s", type(exc).__name__, exc)
        response = problem(status, exc.title, str(exc), code=error_code(exc))
        retry_after = getattr(exc, "retry_after", None)  # e.g. AuthLockedOutError (429)
        if isinstance(retry_after, int) and retry_after > 0:
            response.headers["Retry-After"] = str(retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "location": ".".join(str(p) for p in err.get("loc", ())),
                "message": err.get("msg", ""),
            }
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
        return problem(400, "invalid request", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "error")
        return problem(exc.status_code, title, str(exc.detail) if exc.detail else "")

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error: %s", type(exc).__name__)
        return problem(500, "internal error", "the server could not complete the request")
