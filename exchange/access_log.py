"""The outermost layer of every request: its id, its access-log line, and the last resort
for an error nothing else mapped.

:class:`RequestContext` is pure ASGI middleware (no per-request framework
objects). For each HTTP request it

* takes the caller's well-formed ``X-Request-ID`` or makes one
  (:mod:`exchange.request_id`), runs the request with it in the logging
  context and returns it in the response's ``X-Request-ID`` header;
* logs one access line when the response is done, on the ``exchange.access_log``
  logger at INFO: method, the route's path *template* (never the concrete path
  or the query string, which may carry identifiers a caller did not mean to
  log), status, duration and, once authenticated, the caller's name. Headers,
  tokens and bodies are never logged;
* turns an exception that escaped every handler into a 500 problem with no
  detail (RFC 9457), logged with the request id, its type and where it was
  raised (file, line and function of each frame) — never its message, which
  may quote data (a database error quotes its parameters) — and no traceback
  reaches a client.
"""

from __future__ import annotations

import logging
import time
import traceback

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exchange.errors import problem
from exchange.request_id import HEADER, in_request, request_id_from
from exchange.route_match import route_template

__all__ = ["RequestContext", "access_line", "log_requests"]

logger = logging.getLogger(__name__)

_HEADER = HEADER.lower().encode()
UNMATCHED = "<unmatched>"
"""The path logged for a request that matched no route (its raw path is not logged)."""


def log_requests() -> None:
    """Turn the access log on: one INFO line per request on this module's logger.

    ``ibx serve`` calls it (and turns uvicorn's own access log off, which would
    print each path with its query string); the CLI's in-process local mode
    does not, so a command's stderr carries no access lines.
    """
    logger.setLevel(logging.INFO)


def access_line(
    method: str, template: str, status: int, duration_s: float, caller: str | None
) -> str:
    """One access-log line: ``method path-template status duration caller``."""
    who = caller if caller is not None else "-"
    return f"{method} {template} {status} {duration_s * 1000:.1f}ms caller={who}"


def _where(exc: BaseException) -> str:
    """Where ``exc`` was raised: its last frames as ``file:line func``, innermost first."""
    frames = traceback.extract_tb(exc.__traceback__)[-8:]
    return " < ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames[::-1])


def _caller(scope: Scope) -> str | None:
    state = scope.get("state")
    grant = state.get("grant") if isinstance(state, dict) else None
    identity = getattr(grant, "identity", None)
    name = getattr(identity, "name", None)
    return name if isinstance(name, str) else None


class RequestContext:
    """ASGI middleware: request id, access log, and a problem for any unmapped error."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers") or [])
        scope.setdefault("state", {})  # one dict the routes' request.state writes into
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != _HEADER
                ]
                headers.append((_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        with in_request(request_id):
            try:
                await self._app(scope, receive, send_with_id)
            except Exception as exc:
                logger.error("unexpected error: %s at %s", type(exc).__name__, _where(exc))
                if status == 0:  # nothing sent yet: answer with a problem, not a traceback
                    await problem(500, "internal error", "")(scope, receive, send_with_id)
            finally:
                if logger.isEnabledFor(logging.INFO):
                    logger.info(
                        "%s",
                        access_line(
                            scope.get("method", "-"),
                            route_template(scope, any_method=True) or UNMATCHED,
                            status,
                            time.perf_counter() - started,
                            _caller(scope),
                        ),
                    )
