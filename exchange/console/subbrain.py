"""The sub-brain's pages: ``/console/subbrain/...`` (docs/console.md).

* ``/console/subbrain``: who is signed in, the latest jobs;
* ``/catalog``: datasets by keyword, industry, field, classification
  (:mod:`exchange.console.subbrain_catalog`);
* ``/request``: the request form, previewed before submission — what policy
  and consents would allow, and why not (``POST /v1/requests/preview``) —
  then submitted (:mod:`exchange.console.subbrain_request`);
* ``/jobs``, ``/jobs/{id}``: jobs with their states; a released result with its
  chart, its numbers and its hash checked against the ledger
  (:mod:`exchange.console.subbrain_jobs`).

Every read and write goes through the API as the signed-in sub-brain.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from exchange.console import subbrain_catalog, subbrain_jobs, subbrain_request
from exchange.console.web import ConsoleUser, duty_user, render

__all__ = ["NAV", "router"]

router = APIRouter(include_in_schema=False)
"""Every sub-brain page: this module's and those of the ``subbrain_*`` modules.

Each module's router carries the full prefix itself: FastAPI records an included
route's own path (not the including router's prefix) as the template the access
table (``exchange.auth.route_access``) matches.
"""

pages = APIRouter(prefix="/console/subbrain", include_in_schema=False)

NAV: list[tuple[str, str]] = [
    ("subbrain.home", "/console/subbrain"),
    ("subbrain.catalog", "/console/subbrain/catalog"),
    ("subbrain.request", "/console/subbrain/request"),
    ("subbrain.jobs", "/console/subbrain/jobs"),
]
"""The duty's menu: (label key, path)."""

User = Annotated[ConsoleUser, Depends(duty_user("subbrain"))]

_RECENT = 8


@pages.get("")
async def home(request: Request, user: User) -> Response:
    """The duty's home: who is signed in, as the API sees them, and the latest jobs."""
    me = await user.api.get("/v1/me")
    jobs = await subbrain_jobs.latest(user, _RECENT)
    return render(request, user, "subbrain/home.html", me=me, jobs=jobs)


router.include_router(pages)
router.include_router(subbrain_catalog.router)
router.include_router(subbrain_request.router)
router.include_router(subbrain_jobs.router)
