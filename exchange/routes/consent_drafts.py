"""``/v1/consents/drafts`` and ``/v1/consents/{id}/revocation/draft``: statements to sign.

A client that does not carry :mod:`consent`'s code (the web console signing in
the browser with WebCrypto) asks the exchange to draft the statement: a grant
receipt for the given terms, or a revocation of one of the caller's consents,
with the caller's name and registered key, this deployment's origin, a fresh
id, nonce and signing time — built by :mod:`consent` exactly as ``ibx consent
grant|revoke`` builds it — and the exact RFC 8785 bytes to sign. The exchange
never signs and records nothing here: the client signs with its own key
and submits the statement unchanged with its signature to ``POST
/v1/consents`` (or ``.../revocation``), where it is verified like any other.
A statement altered after drafting, or signed with another key, is refused
there.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path

from consent import (
    ConsentNotFoundError,
    ConsentReceipt,
    ConsentRevokedError,
    DatasetNotOwnedError,
    DatasetScope,
    InvalidConsentError,
    NoRegisteredKeyError,
    Requester,
    Revocation,
    new_consent_id,
)
from core.clock import parse_rfc3339
from core.keys import Ed25519PublicKey
from exchange.access import Grant
from exchange.auth import get_runtime, granted
from exchange.runtime import Runtime
from exchange.schemas.consent_drafts import (
    ConsentDraftCreate,
    RevocationDraftCreate,
    StatementDraftPublic,
)

__all__ = ["router"]

router = APIRouter(tags=["consents"])

_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown, expired or revoked one"},
    403: {"description": "the active policy does not allow this (the detail names the rule)"},
    422: {"description": "the caller has no registered consent key (ibx consent register-key)"},
}


def _signing_key(runtime: Runtime, enterprise: str) -> Ed25519PublicKey:
    """The key the caller's statements must be signed with (the ledger's record of it).

    Raises:
        NoRegisteredKeyError: none registered (or the registry disagrees with the ledger).
    """
    key, disagreement = runtime.consents.registered_key(enterprise)
    if key is None:
        raise NoRegisteredKeyError(
            disagreement
            or f"{enterprise} has no registered consent key: register one first "
            "(ibx consent register-key --key KEYFILE)"
        )
    return key


def _time(text: str | None, default: datetime, what: str) -> datetime:
    if text is None:
        return default
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise InvalidConsentError(f"{what}: {exc}") from exc


def _check_scope(runtime: Runtime, enterprise: str, scope: tuple[DatasetScope, ...]) -> None:
    """The datasets are the caller's and have the fields (refused now, not after signing).

    Raises:
        UnknownDatasetError: a dataset is not registered.
        DatasetNotOwnedError: a dataset is another enterprise's.
        InvalidConsentError: a field the dataset does not have.
    """
    datasets = runtime.consents.catalog.many(s.dataset for s in scope)
    for item in scope:
        dataset = datasets[item.dataset]
        if dataset.owner != enterprise:
            raise DatasetNotOwnedError(item.dataset, owner=dataset.owner, signer=enterprise)
        unknown = sorted(set(item.fields) - set(dataset.fields))
        if unknown:
            raise InvalidConsentError(
                f"dataset {item.dataset} has no field(s) {', '.join(unknown)}"
            )


def _draft(
    kind: Literal["grant", "revocation"],
    statement: dict[str, Any],
    canonical: bytes,
    submit_to: str,
) -> StatementDraftPublic:
    return StatementDraftPublic(
        kind=kind,
        statement=statement,
        canonical=base64.b64encode(canonical).decode(),
        sha256=hashlib.sha256(canonical).hexdigest(),
        submit_to=submit_to,
    )


@router.post(
    "/v1/consents/drafts",
    responses={
        **_REFUSALS,
        400: {
            "description": "malformed terms (field, window, name), or a dataset not the caller's"
        },
        404: {"description": "a dataset in scope is not registered"},
    },
)
def draft_grant(
    body: ConsentDraftCreate,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> StatementDraftPublic:
    """The unsigned consent receipt for these terms and the bytes the caller signs.

    Nothing is recorded: sign the bytes with the enterprise's key and ``POST
    /v1/consents`` ``{"receipt": statement, "signature": base64}``.

    Raises:
        NoRegisteredKeyError: the caller has no registered consent key (422).
        InvalidConsentError: malformed terms (400).
        UnknownDatasetError, DatasetNotOwnedError: a dataset not registered (404) or not
            the caller's (400).
    """
    me = grant.identity.name
    key = _signing_key(runtime, me)
    consents = runtime.consents
    now = consents.now()
    start = _time(body.valid_from, now, "valid_from")
    end = _time(body.valid_until, start + timedelta(days=body.days), "valid_until")
    try:
        scope = tuple(DatasetScope(s.dataset, tuple(s.fields)) for s in body.scope)
    except TypeError as exc:
        raise InvalidConsentError(str(exc)) from exc
    _check_scope(runtime, me, scope)
    receipt = ConsentReceipt(
        consent_id=new_consent_id(),
        origin=consents.config.origin,
        enterprise=me,
        public_key=key,
        scope=scope,
        requester=Requester(body.requester.identity, body.requester.role, body.requester.industry),
        purposes=tuple(body.purposes),
        operations=tuple(body.operations),
        engines=tuple(body.engines),
        min_cohort=body.min_cohort,
        valid_from=start,
        valid_until=end,
        use_limit=body.use_limit,
        notice=body.notice,
        signed_at=now,
    )
    return _draft("grant", receipt.to_dict(), receipt.canonical(), "/v1/consents")


@router.post(
    "/v1/consents/{consent_id}/revocation/draft",
    responses={
        **_REFUSALS,
        404: {"description": "no such consent of the caller's"},
        422: {"description": "no registered consent key, or the consent is already revoked"},
    },
)
def draft_revocation(
    body: RevocationDraftCreate,
    consent_id: str = Path(..., min_length=1, max_length=64, description="cst_ + 32 hex digits"),
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(get_runtime),  # noqa: B008
) -> StatementDraftPublic:
    """The unsigned revocation of one of the caller's consents and the bytes to sign.

    Nothing is recorded: sign the bytes with the enterprise's key and ``POST
    /v1/consents/{consent_id}/revocation`` ``{"receipt": statement, "signature": ...}``.

    Raises:
        ConsentNotFoundError: no such consent, or another enterprise's (404, alike).
        ConsentRevokedError: it is revoked already (422).
        NoRegisteredKeyError: the caller has no registered consent key (422).
        InvalidConsentError: a reason too long (400).
    """
    me = grant.identity.name
    record = runtime.consents.get(consent_id)
    if record.enterprise != me:
        raise ConsentNotFoundError(consent_id)
    if record.revoked_at is not None:
        raise ConsentRevokedError(f"{consent_id} is already revoked", consent_id=consent_id)
    key = _signing_key(runtime, me)
    revocation = Revocation(
        consent_id=consent_id,
        origin=runtime.consents.config.origin,
        enterprise=me,
        public_key=key,
        reason=body.reason or None,
        signed_at=runtime.consents.now(),
    )
    target = f"/v1/consents/{quote(consent_id, safe='')}/revocation"
    return _draft("revocation", revocation.to_dict(), revocation.canonical(), target)
