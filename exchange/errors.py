"""RFC 9457 problem details: one table from error roots to HTTP statuses.

No ``HTTPException`` is raised below ``exchange/``; packages raise their own
errors and this module turns them into ``application/problem+json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import consent
import edge_tls
import ledger
import policies
from core.errors import CanonicalJsonError, ConfigurationError, IbxError
from mpc import errors as mpc_errors

__all__ = ["AuthError", "ForbiddenError", "NotFoundError", "install_problem_handlers", "status_for"]

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class AuthError(IbxError):
    """Missing, unknown, expired or revoked credentials (one opaque message)."""

    title = "authentication required"


class ForbiddenError(IbxError):
    """An authenticated identity that may not do this."""

    title = "forbidden"


class NotFoundError(IbxError):
    """A named thing that does not exist."""

    title = "not found"


@dataclass(frozen=True)
class _Rule:
    error: type[BaseException]
    status: int


# Most specific first; the first matching rule wins.
_TABLE: tuple[_Rule, ...] = (
    _Rule(AuthError, 401),
    _Rule(ForbiddenError, 403),
    _Rule(NotFoundError, 404),
    _Rule(ledger.TreeSizeError, 400),
    _Rule(ledger.EntryTooLargeError, 413),
    _Rule(ledger.InvalidEntryError, 400),
    _Rule(ledger.LedgerIntegrityError, 500),
    _Rule(ledger.ProofError, 400),
    _Rule(ledger.CheckpointError, 400),
    _Rule(edge_tls.BootstrapTokenError, 401),
    _Rule(edge_tls.IdentityMismatchError, 403),
    _Rule(edge_tls.CertificateRejectedError, 401),
    _Rule(edge_tls.CsrError, 400),
    _Rule(edge_tls.CaNotInitializedError, 503),
    _Rule(edge_tls.CaAlreadyInitializedError, 409),
    _Rule(edge_tls.SerialNotFoundError, 404),
    _Rule(edge_tls.AlreadyRevokedError, 409),
    _Rule(edge_tls.SealingKeyMissingError, 409),
    _Rule(edge_tls.BatchTooLargeError, 413),
    _Rule(edge_tls.UploadQuotaError, 429),
    _Rule(edge_tls.EnrollmentError, 400),
    _Rule(consent.ConsentAccessError, 403),
    _Rule(consent.ConsentNotFoundError, 404),
    _Rule(consent.UnknownDatasetError, 404),
    _Rule(consent.DatasetExistsError, 409),
    _Rule(consent.ReplayedNonceError, 409),
    _Rule(consent.ConsentRefusedError, 422),
    _Rule(consent.ConsentError, 400),
    _Rule(policies.OfficerRequiredError, 403),
    _Rule(policies.FourEyesError, 403),
    _Rule(policies.PolicyNotFoundError, 404),
    _Rule(policies.PolicyLifecycleError, 409),
    _Rule(policies.PolicySandboxError, 422),
    _Rule(policies.OpaServerError, 502),
    _Rule(policies.PolicyInputError, 422),
    _Rule(policies.PolicyError, 400),
    _Rule(mpc_errors.PartyTimeoutError, 504),
    _Rule(mpc_errors.PartyError, 502),
    _Rule(mpc_errors.DeploymentError, 500),
    _Rule(mpc_errors.ReleaseRefusedError, 403),
    _Rule(mpc_errors.CustodianError, 403),
    _Rule(mpc_errors.InvalidContributionError, 422),
    _Rule(CanonicalJsonError, 400),
    _Rule(ConfigurationError, 500),
    _Rule(IbxError, 400),
)

_EXTRA_RULES: list[_Rule] = []


def register_status(error: type[BaseException], status: int) -> None:
    """Map a package error root (or leaf) to an HTTP status, ahead of the defaults."""
    _EXTRA_RULES.append(_Rule(error, status))


def status_for(exc: BaseException) -> int:
    """The HTTP status for an ibx error."""
    for rule in (*_EXTRA_RULES, *_TABLE):
        if isinstance(exc, rule.error):
            return rule.status
    return 500


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
        return problem(status, exc.title, str(exc))

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
