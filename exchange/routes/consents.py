"""``/v1/consents`` and ``/v1/usage``: signed consents in; receipts, checks and usage out.

An enterprise signs a consent (and a revocation) on its own machine with its
own key and submits the signed statement; the exchange verifies it against
the key registered to that enterprise (:mod:`consent`) and never sees the
private key. A statement is accepted only from the enterprise that signed it.

Reading follows the grant the policy pack gives (:mod:`exchange.access`):
``all`` scope (auditors) reads every consent and its usage, ``own`` scope
(enterprises) only its own. Another enterprise's consent answers 404, exactly
like one that does not exist, so its id, owner and existence are not
disclosed (the same for a revocation of it).

``PUT /v1/me/consent-key`` registers or rotates the caller's consent key: a
statement signed by the new key and by the key it replaces
(:class:`consent.SignedKeyRegistration`), so a bearer token alone cannot swap
the key consents are verified with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query

from consent import (
    ConsentAccessError,
    ConsentKeyError,
    ConsentNotFoundError,
    ConsentRecord,
    ConsentRequest,
    ConsentUsage,
    InvalidConsentError,
    SignedKeyRegistration,
    SignedReceipt,
    SignedRevocation,
)
from exchange.access import Grant
from exchange.auth import get_runtime, granted
from exchange.identities import IdentityError
from exchange.routes._paging import CURSOR, LIMIT, Page, paginate
from exchange.runtime import Runtime
from exchange.schemas.consents import (
    ConsentCheck,
    ConsentDetail,
    ConsentKeyPublic,
    ConsentKeyRegistrationCreate,
    ConsentPublic,
    ConsentUsagePublic,
    CoverageReportPublic,
    SignedReceiptCreate,
    SignedRevocationCreate,
)

__all__ = ["router"]

router = APIRouter(tags=["consents"])

T = TypeVar("T")


def _consent_id_path() -> Any:
    """A fresh ``{consent_id}`` path parameter."""
    return Path(..., min_length=1, max_length=64, description="cst_ + 32 hex digits")


def _enterprise_query() -> Any:
    """A fresh ``?enterprise=`` parameter (FastAPI binds each one to its route)."""
    return Query(
        None,
        min_length=1,
        max_length=128,
        description="whose (own scope: only the caller's own; all scope: default every enterprise)",
    )


_UNAUTHENTICATED: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown, expired or revoked one"}
}
_DENIED: dict[int | str, dict[str, Any]] = {
    403: {"description": "the active policy does not allow this (the detail names the rule)"}
}
_REFUSED: dict[int | str, dict[str, Any]] = {
    422: {
        "description": "refused: not signed by the enterprise's registered key, made for "
        "another deployment, replayed, expired or already revoked (the title says which)"
    }
}


def _ledger_order(index: int) -> str:
    """A paging key that sorts as the ledger index does."""
    return f"{index:020d}"


def _decode(decode: Callable[[Any], T], body: dict[str, Any]) -> T:
    """A signed statement decoded strictly; anything malformed is the sender's error.

    Raises:
        InvalidConsentError: the statement is not well formed.
    """
    try:
        return decode(body)
    except InvalidConsentError:
        raise
    except (TypeError, ValueError, KeyError) as exc:
        raise InvalidConsentError(f"malformed signed statement: {exc}") from exc


def _submitted_by_signer(grant: Grant, enterprise: str, what: str) -> None:
    """Refuse a statement submitted by anyone but the enterprise that signed it.

    Raises:
        ConsentAccessError: the caller is not that enterprise.
    """
    if enterprise != grant.identity.name:
        raise ConsentAccessError(
            f"{grant.identity.name} may submit only its own {what}; this one is {enterprise}'s"
        )


@router.post(
    "/v1/consents",
    status_code=201,
    responses={
        **_UNAUTHENTICATED,
        **_DENIED,
        400: {"description": "a malformed receipt, an unknown requester or field"},
        404: {"description": "a dataset in scope is not registered"},
        409: {"description": "the consent id or nonce was seen before"},
        **_REFUSED,
    },
)
def submit_consent(
    body: SignedReceiptCreate,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> ConsentDetail:
    """Submit a consent the caller signed with its own key; it is verified and ledgered.

    Raises:
        InvalidConsentError: malformed, signed in the future, unknown requester or field.
        ConsentAccessError: the receipt is another enterprise's (403).
        ConsentRefusedError: wrong origin, no or another registered key, a bad
            signature, expired, replayed (see :meth:`consent.ConsentService.grant`).
        DatasetError: a dataset in scope is unknown or another enterprise's.
    """
    signed = _decode(SignedReceipt.from_dict, body.model_dump())
    _submitted_by_signer(grant, signed.receipt.enterprise, "consents")
    record = runtime.consents.grant(signed, actor=grant.identity.name)
    return ConsentDetail.of(record, now=runtime.consents.now())


@router.get(
    "/v1/consents",
    responses={**_UNAUTHENTICATED, **_DENIED, 400: {"description": "an invalid cursor"}},
)
def list_consents(
    enterprise: str | None = _enterprise_query(),
    cursor: str | None = CURSOR,
    limit: int = LIMIT,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> Page[ConsentPublic]:
    """Consents in order of acceptance, each with its state at the exchange's clock.

    Raises:
        ConsentAccessError: own scope asking for another enterprise's consents (403).
        CursorError: a cursor this exchange did not hand out (400).
    """
    enterprise = _whose(grant, enterprise)
    now = runtime.consents.now()
    records = runtime.consents.list(enterprise=enterprise)
    page, next_cursor = paginate(
        records, key=lambda r: _ledger_order(r.ledger_index), cursor=cursor, limit=limit
    )
    return Page[ConsentPublic](
        items=[ConsentPublic.of(r, now=now) for r in page], next_cursor=next_cursor
    )


@router.post(
    "/v1/consents/check",
    responses={
        **_UNAUTHENTICATED,
        **_DENIED,
        400: {"description": "a malformed request, or a stated time off the exchange's clock"},
        404: {"description": "a requested dataset is not registered"},
    },
)
def check(
    body: ConsentCheck,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> CoverageReportPublic:
    """Which consents on file cover the caller's request now, per owner, and why not the rest.

    Validity is judged at the exchange's clock; a stated ``time`` further from
    it than the allowed skew is refused.

    Raises:
        ConsentAccessError: a request on behalf of another requester (403).
        InvalidConsentError: malformed, or a stated time off the clock (400).
        UnknownDatasetError: a requested dataset is not registered (404).
    """
    me = grant.identity.name
    requester = body.requester if body.requester is not None else me
    if requester != me:
        raise ConsentAccessError(f"{me} may check only its own requests, not {requester}'s")
    request = body.model_dump(mode="json")
    request["requester"] = requester
    if request["time"] is None:
        del request["time"]
    report = runtime.consents.covering_consents(ConsentRequest.from_dict(request))
    return CoverageReportPublic.of(report)


@router.get(
    "/v1/consents/{consent_id}",
    responses={
        **_UNAUTHENTICATED,
        **_DENIED,
        404: {"description": "no such consent, or (own scope) not the caller's"},
    },
)
def show_consent(
    consent_id: str = _consent_id_path(),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> ConsentDetail:
    """A consent in full: the receipt, the enterprise's signature, its state now.

    Raises:
        ConsentNotFoundError: no such consent, or (own scope) another enterprise's (404).
    """
    return ConsentDetail.of(_readable(grant, runtime, consent_id), now=runtime.consents.now())


@router.post(
    "/v1/consents/{consent_id}/revocation",
    responses={
        **_UNAUTHENTICATED,
        **_DENIED,
        400: {"description": "a malformed revocation, or one of another consent"},
        404: {"description": "no such consent of the caller's"},
        409: {"description": "the nonce was seen before"},
        **_REFUSED,
    },
)
def revoke_consent(
    body: SignedRevocationCreate,
    consent_id: str = _consent_id_path(),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> ConsentDetail:
    """Submit a revocation the caller signed with its own key; it binds every later decision.

    Raises:
        InvalidConsentError: malformed, signed in the future, or naming another consent (400).
        ConsentAccessError: the revocation is another enterprise's (403).
        ConsentNotFoundError: no such consent of the caller's (404).
        ConsentRefusedError: as for a grant, or the consent is already revoked.
    """
    signed = _decode(SignedRevocation.from_dict, body.model_dump())
    revocation = signed.revocation
    if revocation.consent_id != consent_id:
        raise InvalidConsentError(
            f"the revocation is of {revocation.consent_id}, not of {consent_id}"
        )
    _submitted_by_signer(grant, revocation.enterprise, "revocations")
    record = runtime.consents.get(consent_id)
    if record.enterprise != grant.identity.name:
        raise ConsentNotFoundError(consent_id)
    revoked = runtime.consents.revoke(signed, actor=grant.identity.name)
    return ConsentDetail.of(revoked, now=runtime.consents.now())


@router.get(
    "/v1/usage",
    responses={**_UNAUTHENTICATED, **_DENIED, 400: {"description": "an invalid cursor"}},
)
def usage(
    enterprise: str | None = _enterprise_query(),
    cursor: str | None = CURSOR,
    limit: int = LIMIT,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> Page[ConsentUsagePublic]:
    """Who used an enterprise's data: each of its consents, with every decision and job
    that relied on it, read back from the ledger.

    Raises:
        ConsentAccessError: own scope asking about another enterprise's data (403).
        CursorError: a cursor this exchange did not hand out (400).
    """
    enterprise = _whose(grant, enterprise)
    consents = runtime.consents
    if enterprise is not None:
        usages = consents.usage(enterprise)
    else:
        owners = sorted({r.enterprise for r in consents.list()})
        usages = sorted(
            (u for owner in owners for u in consents.usage(owner)),
            key=lambda u: u.record.ledger_index,
        )
    page, next_cursor = paginate(usages, key=_usage_key, cursor=cursor, limit=limit)
    now = consents.now()
    return Page[ConsentUsagePublic](
        items=[ConsentUsagePublic.of(u, now=now) for u in page], next_cursor=next_cursor
    )


@router.put(
    "/v1/me/consent-key",
    responses={
        **_UNAUTHENTICATED,
        **_DENIED,
        400: {
            "description": "malformed, another enterprise's, not replacing the key registered "
            "now (or without its signature), or signed too far from the exchange's clock"
        },
        422: {"description": "made for another deployment, or a signature does not verify"},
    },
)
def register_consent_key(
    body: ConsentKeyRegistrationCreate,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> ConsentKeyPublic:
    """Register or rotate the caller's consent key (signed by the new key and the replaced one).

    Consents signed with a replaced key stop verifying.

    Raises:
        ConsentKeyError: another enterprise's statement, or one not replacing the key
            registered now, or without the replaced key's signature (400).
        InvalidConsentError: malformed, or signed too far from the exchange's clock (400).
        WrongOriginError, BadConsentSignatureError: another deployment's; a bad signature.
    """
    me = grant.identity
    signed = _decode(SignedKeyRegistration.from_dict, body.model_dump())
    consents = runtime.consents
    registered, _ = consents.registered_key(me.name)  # the ledger's key, not the row's
    key = signed.verify(
        origin=consents.config.origin,
        enterprise=me.name,
        registered=registered,
        now=consents.now(),
        skew=consents.config.clock_skew,
    )
    try:
        runtime.identities.set_public_key(me.name, key, actor=me.name)
    except IdentityError as exc:
        raise ConsentKeyError(str(exc)) from exc
    return ConsentKeyPublic(
        enterprise=me.name, public_key=key.to_base64(), key_fingerprint=key.fingerprint()
    )


def _usage_key(item: ConsentUsage) -> str:
    return _ledger_order(item.record.ledger_index)


def _whose(grant: Grant, enterprise: str | None) -> str | None:
    """Whose consents a listing shows: own scope only ever the caller's.

    Raises:
        ConsentAccessError: own scope asking for another enterprise's.
    """
    if not grant.own_only:
        return enterprise
    me = grant.identity.name
    if enterprise is not None and enterprise != me:
        raise ConsentAccessError(f"{me} may see only its own consents, not those of {enterprise}")
    return me


def _readable(grant: Grant, runtime: Runtime, consent_id: str) -> ConsentRecord:
    """The consent, if the grant reaches it.

    Raises:
        ConsentNotFoundError: no such consent, or (own scope) another enterprise's.
    """
    record = runtime.consents.get(consent_id)
    if grant.own_only and record.enterprise != grant.identity.name:
        raise ConsentNotFoundError(consent_id)
    return record
