"""Who is calling: bearer tokens over HTTP, ``--token``/``IBX_TOKEN`` on the CLI."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request

from exchange.credentials import authenticate_token, enterprise_is_active
from exchange.errors import AuthError, ForbiddenError
from exchange.identities import Identity, Role
from exchange.runtime import Runtime

__all__ = [
    "authenticate_token",
    "caller",
    "enterprise_is_active",
    "get_runtime",
    "require_role",
]


def get_runtime(request: Request) -> Runtime:
    """The runtime that ``create_app`` attached to the application."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def caller(request: Request) -> Identity:
    """FastAPI dependency: the identity behind ``Authorization: Bearer``.

    Raises:
        AuthError: missing or invalid credentials.
    """
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        raise AuthError("send Authorization: Bearer <token>")
    return authenticate_token(get_runtime(request), token)


def require_role(*roles: Role) -> Callable[[Identity], Identity]:
    """FastAPI dependency factory: the caller, if it holds one of ``roles``.

    Raises:
        ForbiddenError: the caller has another role.
    """

    def _check(identity: Identity = Depends(caller)) -> Identity:  # noqa: B008
        if identity.role not in roles:
            wanted = ", ".join(r.value for r in roles)
            raise ForbiddenError(
                f"this needs the role {wanted}; {identity.name} is {identity.role}"
            )
        return identity

    return _check
