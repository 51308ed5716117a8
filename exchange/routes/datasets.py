"""``/v1/datasets``: the catalog (metadata only; the data stays on its owner's agent).

An enterprise registers its datasets (the caller is the owner) and lists its
own with ``owner=<me>``; sub-brains and auditors browse and search the whole
catalog. Who may do which is the policy pack's (``register_dataset``,
``read_metadata``); the catalog's rules (id syntax, one registration per id)
are :mod:`consent`'s.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Depends, Path, Query

from consent import Classification, Dataset
from core.clock import utcnow
from exchange.access import Grant
from exchange.auth import current_runtime, granted
from exchange.identities import Role
from exchange.loop_reads import run_read
from exchange.routes._paging import CURSOR, LIMIT, Page, cursor_after, cursor_for
from exchange.runtime import Runtime
from exchange.schemas.datasets import DatasetCreate, DatasetPublic

__all__ = ["router"]

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

_DENIED: dict[int | str, dict[str, Any]] = {
    403: {"description": "the active policy does not allow this (the detail names the rule)"}
}
_UNAUTHENTICATED: dict[int | str, dict[str, Any]] = {
    401: {"description": "no token, or an unknown, expired or revoked one"}
}


@router.post(
    "",
    status_code=201,
    responses={
        **_UNAUTHENTICATED,
        **_DENIED,
        400: {"description": "a malformed dataset id or field list"},
        409: {"description": "the dataset id is already registered"},
    },
)
def register(
    body: DatasetCreate,
    grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> DatasetPublic:
    """Register a dataset owned by the caller (metadata only), recorded on the ledger.

    Raises:
        InvalidConsentError: a malformed id or field list (400).
        DatasetExistsError: the id is taken (409).
    """
    dataset = runtime.consents.catalog.register(
        body.dataset_id,
        owner=grant.identity.name,
        fields=body.fields,
        classification=body.classification,
        description=body.description,
        now=utcnow(),
    )
    return DatasetPublic.of(dataset)


@router.get(
    "",
    responses={**_UNAUTHENTICATED, **_DENIED, 400: {"description": "an invalid filter or cursor"}},
)
async def catalog(  # noqa: PLR0917 -- one parameter per filter
    owner: str | None = Query(None, min_length=1, max_length=128, description="its owner"),
    industry: str | None = Query(
        None, min_length=1, max_length=64, description="its owner's industry"
    ),
    field: str | None = Query(None, min_length=1, max_length=64, description="has this field"),
    classification: Classification | None = None,
    q: str | None = Query(
        None, min_length=1, max_length=128, description="in the id or description (any case)"
    ),
    cursor: str | None = CURSOR,
    limit: int = LIMIT,
    _grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> Page[DatasetPublic]:
    """Browse and search the catalog, by id; every filter given must match.

    ``owner``: the enterprise that registered it; ``industry``: its owner's
    industry; ``field``: it has this field; ``classification``; ``q``: a
    substring of its id or description, in any case.

    Raises:
        CursorError: a cursor this exchange did not hand out (400).
    """
    # reads only: on the event loop with SQLite
    return await run_read(
        runtime, _search, runtime, owner, industry, field, classification, q, cursor, limit
    )


def _search(  # noqa: PLR0917 -- the route's filters, passed on
    runtime: Runtime,
    owner: str | None,
    industry: str | None,
    field: str | None,
    classification: Classification | None,
    q: str | None,
    cursor: str | None,
    limit: int,
) -> Page[DatasetPublic]:
    owners = None
    if industry is not None:  # the enterprises of that industry: one query on its index
        owners = runtime.identities.names(role=Role.ENTERPRISE, industry=industry)
    found = runtime.consents.catalog.search(  # filtered and paged by the database
        limit=limit + 1,  # one more: whether a next page exists
        after=cursor_after(cursor),
        owner=owner,
        owners=owners,
        field=field,
        classification=classification,
        text=q,
    )
    page = found[:limit]
    next_cursor = cursor_for(page[-1].dataset_id) if len(found) > limit else None
    return Page[DatasetPublic](items=[_public(d) for d in page], next_cursor=next_cursor)


@functools.lru_cache(maxsize=4096)
def _public(dataset: Dataset) -> DatasetPublic:
    """The public form of a catalog entry, built once per entry (both are frozen)."""
    return DatasetPublic.of(dataset)


@router.get(
    "/{dataset_id}",
    responses={**_UNAUTHENTICATED, **_DENIED, 404: {"description": "no such dataset"}},
)
def show(
    dataset_id: str = Path(..., min_length=1, max_length=128),
    _grant: Grant = Depends(granted),  # noqa: B008
    runtime: Runtime = Depends(current_runtime),  # noqa: B008
) -> DatasetPublic:
    """One catalog entry.

    Raises:
        UnknownDatasetError: no dataset with this id (404).
    """
    return DatasetPublic.of(runtime.consents.catalog.get(dataset_id))
