"""Who is calling and what they may do, for every HTTP route (see :mod:`exchange.access`).

One app-wide dependency, :func:`enforce_access`, runs before every route: it
looks the matched route up in :data:`exchange.access.ROUTES`, authenticates
the bearer token (and, for administrators, the second factor) and asks the
policy decision point. Routes read the result with ``Depends(granted)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from core.clock import utcnow
from exchange.access import CONSOLE, ROUTES, Access, Grant, authorize
from exchange.credentials import authenticate_token, enterprise_is_active
from exchange.errors import AuthError, ForbiddenError
from exchange.identities import Identity
from exchange.loop_reads import reads_on_loop
from exchange.runtime import Runtime

if TYPE_CHECKING:
    from exchange.auth_lockout import AuthFailureGuard

__all__ = [
    "LOCAL_EXTENSION",
    "authenticate_token",
    "current_runtime",
    "enforce_access",
    "enterprise_is_active",
    "get_runtime",
    "granted",
]

LOCAL_EXTENSION = "ibx.local"
"""ASGI scope extension set only by the in-process transport of the CLI's local mode
(:mod:`exchange.client`): the caller holds the deployment's data dir and master key."""


def get_runtime(request: Request) -> Runtime:
    """The runtime that ``create_app`` attached to the application."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def current_runtime(request: Request) -> Runtime:
    """:func:`get_runtime` as a route dependency that runs on the event loop (no I/O, so
    no worker-thread hop as a plain ``def`` dependency would take)."""
    return get_runtime(request)


def route_access(request: Request) -> Access:
    """The table entry of the matched route.

    Raises:
        ForbiddenError: the route is not in the table (fail closed).
    """
    route = request.scope.get("route")
    path = getattr(route, "path_format", None)  # "/x/{rest}", not "/x/{rest:path}"
    served = str(request.scope.get("path", ""))  # a nested router's route knows only its tail
    if path is not None and (served == "/console" or served.startswith("/console/")):
        # The console's pages sign in by session and call this API with the session's
        # token for everything they show or change (exchange/console/api.py): each of
        # those calls passes this table.
        return CONSOLE
    access = ROUTES.get((request.method, path)) if path else None
    if access is None and request.method == "HEAD" and path:
        access = ROUTES.get(("GET", path))
    if access is None:
        raise ForbiddenError(f"no access rule for {request.method} {path}; denied")
    return access


def _is_local(request: Request) -> bool:
    """Whether the request came through the CLI's in-process transport (never the network)."""
    extensions = request.scope.get("extensions") or {}
    return extensions.get(LOCAL_EXTENSION) is True


def _checked_source(request: Request) -> tuple[AuthFailureGuard | None, str]:
    """The lockout guard (None in the local mode) and the client address, checked by it.

    Raises:
        AuthLockedOutError: the source is locked out or must wait (429, Retry-After).
    """
    guard = None if _is_local(request) else get_runtime(request).auth_guard
    source = request.client.host if request.client else "unknown"
    if guard is not None:
        guard.check(source, now=utcnow())
    return guard, source


def _bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer``.

    Raises:
        AuthError: no such header.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("send Authorization: Bearer <token>")
    return token


def bearer_identity(request: Request) -> Identity:
    """The identity behind ``Authorization: Bearer``.

    A source (client address) that presented bad tokens too often is slowed,
    then locked out for a while (:mod:`exchange.auth_lockout`) — checked
    before its token is looked at. The in-process local mode is exempt: its
    caller holds the data dir and the master key already.

    Raises:
        AuthLockedOutError: the source is locked out or must wait (429, Retry-After).
        AuthError: missing, unknown, expired, rotated or revoked token.
    """
    guard, source = _checked_source(request)
    token = _bearer_token(request)
    try:
        return authenticate_token(get_runtime(request), token)
    except AuthError:
        if guard is not None:
            guard.failed(source, now=utcnow())
        raise


async def _bearer_identity_on_loop(request: Request) -> Identity:
    """:func:`bearer_identity` with its read on the event loop; a failure is counted in
    the thread pool (a lockout is recorded on the ledger: a write).

    Raises:
        AuthLockedOutError: the source is locked out or must wait (429, Retry-After).
        AuthError: missing, unknown, expired, rotated or revoked token.
    """
    guard, source = _checked_source(request)
    token = _bearer_token(request)
    try:
        return authenticate_token(get_runtime(request), token)
    except AuthError:
        if guard is not None:
            await run_in_threadpool(guard.failed, source, now=utcnow())
        raise


def has_second_factor(request: Request, identity: Identity) -> bool:
    """Whether the caller proved the second factor: the in-process local mode (it holds
    the data dir), or a verified client certificate issued for ``identity``."""
    if _is_local(request):
        return True
    from exchange.tls_bridge import peer_certificate_der

    der = peer_certificate_der(request.scope)
    if der is None:
        return False
    return get_runtime(request).admin_certificates.belongs_to(der, identity.name, identity=identity)


async def enforce_access(request: Request) -> Grant | None:
    """App-wide dependency: authorize the call by the table and the decision point.

    Returns None for public routes, else the :class:`Grant`. Its reads run on
    the event loop with SQLite (:mod:`exchange.loop_reads`); a write route (its
    decision is recorded on the ledger), or any route on another database, is
    authorized in the thread pool.

    Raises:
        AuthLockedOutError: too many failed authentications from this source (429).
        AuthError: not authenticated (or an administrator without a second factor).
        ForbiddenError: the policy allows none of the route's actions.
    """
    access = route_access(request)
    if access.public:
        return None
    if access.write or not reads_on_loop(get_runtime(request)):
        return await run_in_threadpool(_authenticated_and_authorized, request, access)
    return _authorized(request, access, await _bearer_identity_on_loop(request))


def _authenticated_and_authorized(request: Request, access: Access) -> Grant:
    """:func:`bearer_identity`, then :func:`_authorized` (all of it in a worker thread).

    Raises:
        AuthLockedOutError: too many failed authentications from this source (429).
        AuthError: not authenticated (or an administrator without a second factor).
        ForbiddenError: the policy allows none of the route's actions.
    """
    return _authorized(request, access, bearer_identity(request))


def _authorized(request: Request, access: Access, identity: Identity) -> Grant:
    """The grant of ``identity`` for the route.

    Raises:
        AuthError: an administrator without a second factor.
        ForbiddenError: the policy allows none of the route's actions.
    """
    resource_id = request.path_params.get(access.resource_param) if access.resource_param else None
    grant = authorize(
        get_runtime(request),
        identity,
        access,
        resource_id=str(resource_id) if resource_id is not None else None,
        second_factor=has_second_factor(request, identity),
    )
    request.state.grant = grant
    return grant


async def granted(grant: Grant | None = Depends(enforce_access)) -> Grant:  # noqa: B008
    """Route dependency: the caller's grant (the route must not be public).

    ``async``: it does no I/O, so it runs on the event loop instead of taking a
    worker thread (FastAPI runs every plain ``def`` dependency in the threadpool).
    """
    if grant is None:
        raise ForbiddenError("this route is public and has no caller")
    return grant
