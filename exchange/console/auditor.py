"""The auditor's pages: ``/console/auditor/...`` (docs/console.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from exchange.console.web import ConsoleUser, duty_user, render

__all__ = ["NAV", "router"]

router = APIRouter(prefix="/console/auditor", include_in_schema=False)

NAV: list[tuple[str, str]] = [("auditor.home", "/console/auditor")]
"""The duty's menu: (label key, path)."""

User = Annotated[ConsoleUser, Depends(duty_user("auditor"))]


@router.get("")
async def home(request: Request, user: User) -> Response:
    """The duty's home: who is signed in, as the API sees them."""
    me = await user.api.get("/v1/me")
    return render(request, user, "auditor/home.html", me=me)
