"""The catalog search: ``/console/subbrain/catalog`` (``GET /v1/datasets``).

Datasets by keyword (id or description), their owners' industry, a field and
a classification, a page at a time; ticked datasets open the request form
with them selected (a GET form: nothing changes).
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from exchange.console.api import ApiRefusal
from exchange.console.web import ConsoleUser, duty_user, render

__all__ = ["CLASSIFICATIONS", "router"]

router = APIRouter(prefix="/console/subbrain", include_in_schema=False)

User = Annotated[ConsoleUser, Depends(duty_user("subbrain"))]

CLASSIFICATIONS: Final = ("general", "important", "core")
"""Data classifications (一般/重要/核心数据), least strict first."""

_PAGE = 25


@router.get("/catalog")
async def catalog(  # noqa: PLR0917 -- one parameter per filter
    request: Request,
    user: User,
    q: Annotated[str, Query(max_length=128)] = "",
    industry: Annotated[str, Query(max_length=64)] = "",
    field: Annotated[str, Query(max_length=64)] = "",
    classification: Annotated[str, Query(max_length=16)] = "",
    cursor: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """Search the catalog; every filter given must match."""
    filters = {
        "q": q.strip(),
        "industry": industry.strip(),
        "field": field.strip(),
        "classification": classification if classification in CLASSIFICATIONS else "",
    }
    refusal: ApiRefusal | None = None
    page: dict[str, object] = {"items": [], "next_cursor": None}
    try:
        page = await user.api.get(
            "/v1/datasets",
            limit=_PAGE,
            cursor=cursor or None,
            **{k: v or None for k, v in filters.items()},
        )
    except ApiRefusal as exc:
        if exc.status == 401:
            raise
        refusal = exc
    return render(
        request,
        user,
        "subbrain/catalog.html",
        filters=filters,
        items=page["items"],
        next_cursor=page["next_cursor"],
        paged=bool(cursor),
        classifications=CLASSIFICATIONS,
        refusal=refusal,
    )
