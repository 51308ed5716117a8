"""What the officer's page modules share: the user dependencies, the versions, times, CLI text."""

from __future__ import annotations

import re
from typing import Annotated, Any, Final

from fastapi import Depends, Request

from core.clock import parse_rfc3339
from exchange.console.api import ApiRefusal, ConsoleApi
from exchange.console.web import ConsoleUser, duty_form_user, duty_user

__all__ = [
    "PREFIX",
    "STEPS",
    "Officer",
    "OfficerForm",
    "all_versions",
    "cli_command",
    "not_a_version",
    "short",
    "when",
]

PREFIX: Final = "/console/officer"
"""Every officer page's path starts here. Each page module's router carries it itself:
FastAPI records an included route's own path as the template the access log and the
route table read, so a prefix only on the including router would be lost."""

Officer = Annotated[ConsoleUser, Depends(duty_user("officer"))]
"""A signed-in security officer (GET pages)."""

OfficerForm = Annotated[ConsoleUser, Depends(duty_form_user("officer"))]
"""A signed-in security officer whose form carries this session's CSRF token (POST)."""

STEPS: Final = ("test", "approve", "activate")
"""The signed steps taken on a stored version (``propose`` makes one)."""

_MAX_PAGES: Final = 50


async def all_versions(api: ConsoleApi) -> list[dict[str, Any]]:
    """Every stored version, oldest proposal first (``GET /v1/policies``, every page).

    Raises:
        ApiRefusal: the API refused.
    """
    versions: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        page = await api.get("/v1/policies", cursor=cursor, limit=1000)
        versions += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return versions


def when(value: str | None) -> str:
    """An RFC 3339 time as ``YYYY-MM-DD HH:MM:SS UTC`` (empty for none)."""
    if not value:
        return ""
    return f"{parse_rfc3339(value):%Y-%m-%d %H:%M:%S} UTC"


def short(version: str | None) -> str:
    """A version hash as listings show it."""
    return version[:12] if version else ""


def cli_command(request: Request, *words: str) -> str:
    """The ``ibx`` command doing the same against this exchange (the key file stays local)."""
    base = f"{request.url.scheme}://{request.url.netloc}"
    return " ".join(
        ("ibx", *words, "--key", "KEYFILE", "--exchange", base, "--client-cert", "CERT.pem")
    )


_REF = re.compile(r"[0-9a-f]{8,64}")


def not_a_version(ref: str) -> ApiRefusal | None:
    """A 404 for a reference that is not a version hash or a prefix of 8+ hex digits (so no
    other text reaches an API path), else None."""
    if _REF.fullmatch(ref):
        return None
    return ApiRefusal(404, "not found", f"{ref[:80]!r} is not a policy version", None)
