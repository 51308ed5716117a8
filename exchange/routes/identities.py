"""``/v1/identities``: the system administrator registers and revokes identities over HTTPS.

An administrator's registration or revocation carries the security officer's
signed duty (signed on the officer's machine, ``ibx identity create ... --key``);
the registry verifies it against the officer's ledgered key before anything is
written, so the system administrator who calls the route cannot register an
administrator on their own (separation of duties).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Response

from core.duty import SignedDuty
from core.keys import Ed25519PublicKey
from exchange.access import Grant
from exchange.auth import get_runtime, granted
from exchange.identities import IdentityError
from exchange.runtime import Runtime
from exchange.schemas.identities import (
    IdentityCreate,
    IdentityPublic,
    IdentityRevocation,
    NewIdentity,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/identities", tags=["identity"])

_REFUSALS: dict[int | str, dict[str, str]] = {
    400: {"description": "a malformed name, key or duty; an administrator without key or duty"},
    401: {"description": "not authenticated (or without the client certificate)"},
    403: {"description": "the policy does not allow it, or the duty is not an officer's valid one"},
}


def _duty(body: IdentityCreate | IdentityRevocation) -> SignedDuty | None:
    return SignedDuty.from_dict(body.duty) if body.duty is not None else None


@router.post(
    "",
    response_model=NewIdentity,
    status_code=201,
    responses={**_REFUSALS, 409: {"description": "the name is taken"}},
)
def create(
    body: IdentityCreate,
    response: Response,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> NewIdentity:
    """Register an identity; its bearer token is in the answer, this once.

    Raises:
        IdentityError: a malformed name or key, a taken name, an administrator
            without key or duty.
        DutyError: the duty is not a security officer's valid signature on this
            registration.
    """
    key = None
    if body.public_key is not None:
        try:
            key = Ed25519PublicKey.from_base64(body.public_key)
        except ValueError as exc:
            raise IdentityError(f"public_key: {exc}") from exc
    issued = runtime.identities.create(
        body.name,
        body.role,
        public_key=key,
        industry=body.industry,
        actor=grant.identity.name,
        duty=_duty(body),
    )
    response.headers["Cache-Control"] = "no-store"
    return NewIdentity.issued(issued)


@router.post(
    "/{name}/revocation",
    response_model=IdentityPublic,
    responses={
        **_REFUSALS,
        404: {"description": "no such identity"},
        409: {"description": "already revoked, or the last officer"},
    },
)
def revoke(
    body: IdentityRevocation,
    name: str = Path(..., min_length=1, max_length=128),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> IdentityPublic:
    """Revoke an identity: its token stops working at once.

    Raises:
        IdentityError: no such identity, already revoked, an administrator without a
            duty, or the last security officer.
        DutyError: the duty is not a security officer's valid signature on this revocation.
    """
    revoked = runtime.identities.revoke(name, actor=grant.identity.name, duty=_duty(body))
    return IdentityPublic.of(revoked)
