"""The security officer's pages: ``/console/officer/...`` (docs/console.md)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from exchange.console.web import ConsoleUser, duty_user, render

__all__ = ["NAV", "router"]

router = APIRouter(prefix="/console/officer", include_in_schema=False)

NAV: list[tuple[str, str]] = [("officer.home", "/console/officer")]
"""The duty's menu: (label key, path)."""

User = Annotated[ConsoleUser, Depends(duty_user("officer"))]


@router.get("")
async def home(request: Request, user: User) -> Response:
    """The duty's home: who is signed in, as the API sees them."""
    me = await user.api.get("/v1/me")
    return render(request, user, "officer/home.html", me=me)
