"""The enterprise's pages: ``/console/enterprise/...`` (docs/console.md).

Its datasets, its consents with their state (and granting and revoking them,
signed in the browser: :mod:`exchange.console.enterprise_consents`), who used
its data and for what (:mod:`exchange.console.enterprise_usage`), its edge
devices and certificates and its agent's last contact. Everything is read
through the API as the signed-in enterprise, so it sees only its own.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from exchange.console import enterprise_consents, enterprise_usage
from exchange.console.api import ApiRefusal
from exchange.console.enterprise_reads import PREFIX, all_items
from exchange.console.web import ConsoleUser, duty_user, render

__all__ = ["NAV", "pages", "router"]

router = APIRouter(include_in_schema=False)
"""Every enterprise page: this module's and those of ``enterprise_*`` modules.

Each module's router carries the full prefix itself: FastAPI records an included
route's own path (not the including router's prefix) as the template the access
table (``exchange.auth.route_access``) matches, so a prefix only on the outer
router would make the pages look like unknown API routes.
"""

pages = APIRouter(prefix=PREFIX, include_in_schema=False)

NAV: list[tuple[str, str]] = [
    ("enterprise.home", "/console/enterprise"),
    ("enterprise.nav_datasets", "/console/enterprise/datasets"),
    ("enterprise.nav_consents", "/console/enterprise/consents"),
    ("enterprise.nav_usage", "/console/enterprise/usage"),
    ("enterprise.nav_devices", "/console/enterprise/devices"),
]
"""The duty's menu: (label key, path)."""

User = Annotated[ConsoleUser, Depends(duty_user("enterprise"))]


@pages.get("")
async def home(request: Request, user: User) -> Response:
    """The duty's home: who is signed in, its consents at a glance, its agent's last contact."""
    me = await user.api.get("/v1/me")
    consents = await all_items(user.api, "/v1/consents")
    states: dict[str, int] = {}
    for item in consents:
        states[item["status"]] = states.get(item["status"], 0) + 1
    try:
        contact = await user.api.get("/v1/agent/contact")
    except ApiRefusal as refusal:  # a policy version from before devices_read_own
        if refusal.status != 403:
            raise
        contact = None
    return render(request, user, "enterprise/home.html", me=me, states=states, contact=contact)


@pages.get("/datasets")
async def datasets(request: Request, user: User) -> Response:
    """The enterprise's own datasets in the catalog (metadata only)."""
    items = await all_items(user.api, "/v1/datasets", owner=user.name)
    return render(request, user, "enterprise/datasets.html", datasets=items)


@pages.get("/devices")
async def devices(request: Request, user: User) -> Response:
    """Its edge devices with their certificates, and its data agent's last contact."""
    items = await all_items(user.api, "/v1/edge/devices")
    contact = await user.api.get("/v1/agent/contact")
    return render(request, user, "enterprise/devices.html", devices=items, contact=contact)


router.include_router(pages)
router.include_router(enterprise_consents.router)
router.include_router(enterprise_usage.router)
