"""Who a token belongs to, and whether an enterprise is still active (no HTTP here).

The CLI and the HTTP layer (:mod:`exchange.auth`) both authenticate through
these, so a command starts without loading the web framework.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchange.error_table import AuthError
from exchange.identities import Identity, IdentityError, Role, Status

if TYPE_CHECKING:
    from exchange.runtime import Runtime

__all__ = ["authenticate_token", "enterprise_is_active"]


def authenticate_token(runtime: Runtime, token: str | None) -> Identity:
    """The identity of ``token``.

    Raises:
        AuthError: no token, or an unknown, expired or revoked one (one opaque message).
    """
    if not token:
        raise AuthError(
            "a bearer token is required: IBX_TOKEN, --token-file FILE, --profile NAME "
            "(ibx login) or --token"
        )
    identity = runtime.identities.authenticate(token.strip())
    if identity is None:
        raise AuthError("the token is unknown, expired or revoked")
    return identity


def enterprise_is_active(runtime: Runtime, name: str) -> bool:
    """Whether ``name`` is a registered, unrevoked enterprise.

    Edge devices act for their enterprise: once it is revoked, its devices'
    certificates and pending bootstrap tokens must stop working too.
    """
    try:
        identity = runtime.identities.get(name)
    except IdentityError:
        return False
    return identity.role is Role.ENTERPRISE and identity.status is Status.ACTIVE
