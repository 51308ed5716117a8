"""The OpenAPI document, completed: every operation's problem answers, auth and headers.

FastAPI documents what routes declare. This adds, once, to every operation:

* the RFC 9457 problem answers it can give (:data:`PROBLEM_STATUSES`; public
  routes cannot answer 401/403), as ``application/problem+json`` with the
  :class:`~exchange.schemas.problem.Problem` schema — replacing FastAPI's
  default 422 ``HTTPValidationError``, which this API never sends (invalid
  input is a 400 problem, :mod:`exchange.errors`);
* the bearer-token security requirement, except on public routes;
* the ``Idempotency-Key`` request header on POSTs to write routes
  (:mod:`exchange.idempotency`), and the ``X-Request-ID`` header of every
  answer (:mod:`exchange.request_id`).

Which routes are public or write is read from :data:`exchange.access.ROUTES`,
the one table, so the document cannot disagree with what is enforced.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from exchange.access import ROUTES
from exchange.errors import PROBLEM_JSON
from exchange.idempotency import HEADER as IDEMPOTENCY_HEADER
from exchange.idempotency import MAX_KEY_LENGTH
from exchange.request_id import HEADER as REQUEST_ID_HEADER
from exchange.schemas.problem import Problem

__all__ = ["PROBLEM_STATUSES", "install_complete_openapi"]

PROBLEM_STATUSES: dict[int, str] = {
    400: "invalid request: malformed input (each invalid input is named)",
    401: "authentication required: no token, or an unknown, expired or revoked one "
    "(administrators: also no client certificate)",
    403: "forbidden: the active policy does not allow this caller this action "
    "(the detail names the rule)",
    404: "not found",
    409: "conflict with the current state (exists already, already revoked, a request "
    "with this Idempotency-Key still running)",
    413: "the request body (or an upload) is too large",
    422: "refused: well-formed, but the exchange will not do it (e.g. an Idempotency-Key "
    "reused with another body)",
    429: "too many requests: a quota or the authentication-failure limit",
    500: "internal error (no detail is given; the request id finds it in the logs)",
}
"""The problem answers documented on every operation."""

_AUTH_STATUSES = (401, 403)
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")


def install_complete_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` return the completed document (built once, then cached)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with problem answers, security and headers on every operation."""
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    problem_schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem_schema.pop("$defs", {}))
    schemas["Problem"] = problem_schema
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "the identity's bearer token (ibx_...); administrators also present "
        "their client certificate over TLS",
    }
    components.setdefault("headers", {})[REQUEST_ID_HEADER] = {
        "description": "this request's id: the caller's well-formed X-Request-ID, else a new "
        "one; every log line of the request carries it",
        "schema": {"type": "string", "maxLength": 128},
    }
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            if method in _METHODS:
                _complete_operation(path, method.upper(), operation)
    if not _mentions(document.get("paths", {}), "HTTPValidationError"):
        for name in _VALIDATION_SCHEMAS:
            schemas.pop(name, None)
    return document


def _complete_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    access = ROUTES.get((method, path))
    public = access is not None and access.public
    responses: dict[str, Any] = operation.setdefault("responses", {})
    validation = responses.get("422")
    if validation is not None and _mentions(validation, "HTTPValidationError"):
        del responses["422"]
    for status, description in PROBLEM_STATUSES.items():
        if public and status in _AUTH_STATUSES:
            continue
        answer = responses.setdefault(str(status), {"description": description})
        problem_content = answer.setdefault("content", {}).setdefault(PROBLEM_JSON, {})
        problem_content.setdefault("schema", _PROBLEM_REF)
    for answer in responses.values():
        answer.setdefault("headers", {}).setdefault(
            REQUEST_ID_HEADER, {"$ref": f"#/components/headers/{REQUEST_ID_HEADER}"}
        )
    if not public:
        operation.setdefault("security", [{"bearer": []}])
    if method == "POST" and access is not None and access.write:
        parameters = operation.setdefault("parameters", [])
        if not any(p.get("name") == IDEMPOTENCY_HEADER for p in parameters):
            parameters.append(
                {
                    "name": IDEMPOTENCY_HEADER,
                    "in": "header",
                    "required": False,
                    "description": "a retry with the same key and body within 24 h replays "
                    "the first answer and does not act again",
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_KEY_LENGTH,
                        "pattern": "^[!-~]+$",
                    },
                }
            )


def _mentions(value: object, name: str) -> bool:
    """Whether a ``$ref`` anywhere in ``value`` names schema ``name``."""
    if isinstance(value, dict):
        ref = value.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[-1] == name:
            return True
        return any(_mentions(v, name) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, name) for v in value)
    return False
