"""Who is calling and what they may do, for every HTTP route (see :mod:`exchange.access`).

One app-wide dependency, :func:`enforce_access`, runs before every route: it
looks the matched route up in :data:`exchange.access.ROUTES`, authenticates
the bearer token (and, for administrators, the second factor) and asks the
policy decision point. Routes read the result with ``Depends(granted)``.
"""

from __future__ import annotations

from fastapi import Depends, Request

from core.clock import utcnow
from exchange.access import ROUTES, Access, Grant, authorize
from exchange.credentials import authenticate_token, enterprise_is_active
from exchange.errors import AuthError, ForbiddenError
from exchange.identities import Identity
from exchange.runtime import Runtime

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
    runtime = get_runtime(request)
    guard = None if _is_local(request) else runtime.auth_guard
    source = request.client.host if request.client else "unknown"
    if guard is not None:
        guard.check(source, now=utcnow())
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("send Authorization: Bearer <token>")
    try:
        return authenticate_token(runtime, token)
    except AuthError:
        if guard is not None:
            guard.failed(source, now=utcnow())
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


def enforce_access(request: Request) -> Grant | None:
    """App-wide dependency: authorize the call by the table and the decision point.

    Returns None for public routes, else the :class:`Grant`.

    Raises:
        AuthLockedOutError: too many failed authentications from this source (429).
        AuthError: not authenticated (or an administrator without a second factor).
        ForbiddenError: the policy allows none of the route's actions.
    """
    access = route_access(request)
    if access.public:
        return None
    identity = bearer_identity(request)
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
