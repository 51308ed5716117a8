"""What every console page shares: the signed-in user, CSRF, rendering, refusals.

A page handler takes ``user: ConsoleUser = Depends(duty_user("officer"))``
(GET) or ``Depends(duty_form_user("officer"))`` (POST: the CSRF token is
checked first), reads and writes through ``user.api`` (:mod:`exchange.console.api`)
and answers ``render(request, user, "officer/x.html", ...)``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from exchange.console.api import ApiRefusal, ConsoleApi
from exchange.console.i18n import Labels, negotiate

__all__ = [
    "DUTY_OF_ROLE",
    "SESSION_COOKIE",
    "ConsoleUser",
    "CsrfRefused",
    "LoginRequired",
    "NotYourDuty",
    "check_csrf",
    "current_user",
    "duty_form_user",
    "duty_user",
    "labels_for",
    "peer_certificate",
    "refusal_page",
    "render",
    "sessions",
    "templates",
]

SESSION_COOKIE = "__Host-ibx-console"
"""The session cookie: HttpOnly, Secure, SameSite=Strict, Path=/ (the ``__Host-``
prefix makes the browser refuse it otherwise)."""

DUTY_OF_ROLE: Mapping[str, str] = {
    "security_officer": "officer",
    "auditor": "auditor",
    "enterprise": "enterprise",
    "subbrain": "subbrain",
}
"""Which pages a role opens: ``/console/<duty>/...``."""

templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "templates"))


class SessionStore(Protocol):
    """What the console needs of :class:`exchange.console_sessions.ConsoleSessions`."""

    def resume(self, session_id: str | None, *, certificate: bytes | None) -> Any:
        """The live session or None."""
        ...

    def close(self, session_id: str | None) -> None:
        """End a session."""
        ...


class LoginRequired(Exception):  # noqa: N818 -- control flow: back to the sign-in page
    """No live session: the browser is sent to the sign-in page."""

    def __init__(self, expired: bool = False) -> None:
        super().__init__("sign in")
        self.expired = expired


class NotYourDuty(Exception):  # noqa: N818 -- a 403 page
    """The page belongs to another duty."""


class CsrfRefused(Exception):  # noqa: N818 -- a 403 page
    """A form without this session's CSRF token (or from another origin)."""


@dataclass
class ConsoleUser:
    """The signed-in identity of this request."""

    name: str
    role: str
    duty: str
    csrf: str
    session_id: str = field(repr=False)
    api: ConsoleApi = field(repr=False)
    lang: str = "zh"


def labels_for(request: Request) -> Labels:
    """The labels in the browser's language."""
    return Labels(negotiate(request.headers.get("accept-language")))


def sessions(request: Request) -> SessionStore:
    """The session store the application was built with."""
    store: SessionStore = request.app.state.console_sessions
    return store


def peer_certificate(request: Request) -> bytes | None:
    """The browser's verified TLS client certificate (DER), if it presented one."""
    import ssl

    tls = (request.scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    return ssl.PEM_cert_to_DER_cert(chain[0]) if chain else None


def current_user(request: Request) -> ConsoleUser:
    """The signed-in user (any duty).

    Raises:
        LoginRequired: no live session.
    """
    session_id = request.cookies.get(SESSION_COOKIE)
    session = sessions(request).resume(session_id, certificate=peer_certificate(request))
    if session is None:
        raise LoginRequired(expired=session_id is not None)
    return ConsoleUser(
        name=session.identity,
        role=session.role,
        duty=DUTY_OF_ROLE.get(session.role, ""),
        csrf=session.csrf,
        session_id=session.session_id,
        api=ConsoleApi(request, session.token),
        lang=negotiate(request.headers.get("accept-language")),
    )


def duty_user(duty: str) -> Callable[[Request], Awaitable[ConsoleUser]]:
    """Dependency: the signed-in user, who must hold ``duty`` (else a 403 page)."""

    async def dependency(request: Request) -> ConsoleUser:
        from starlette.concurrency import run_in_threadpool

        user = await run_in_threadpool(current_user, request)
        if user.duty != duty:
            raise NotYourDuty
        return user

    return dependency


def duty_form_user(duty: str) -> Callable[[Request], Awaitable[ConsoleUser]]:
    """Dependency for a state-changing request: :func:`duty_user`, then the CSRF token
    (form field ``csrf`` or header ``X-CSRF-Token``) and a same-origin check."""
    get_user = duty_user(duty)

    async def dependency(request: Request) -> ConsoleUser:
        user = await get_user(request)
        await check_csrf(request, user.csrf)
        return user

    return dependency


async def check_csrf(request: Request, expected: str) -> None:
    """Refuse a request whose CSRF token is not ``expected`` or that came from another site.

    Raises:
        CsrfRefused: it is.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CsrfRefused
    origin = request.headers.get("origin")
    # The console's pages say Referrer-Policy: no-referrer, so a browser posts their forms
    # with "Origin: null"; that is this origin only when the browser itself says so
    # (Sec-Fetch-Site, which no script can set). Any other origin is refused.
    opaque_but_ours = origin == "null" and site == "same-origin"
    if (
        origin is not None
        and not opaque_but_ours
        and origin != f"{request.url.scheme}://{request.url.netloc}"
    ):
        raise CsrfRefused
    presented = request.headers.get("x-csrf-token")
    if presented is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            value = form.get("csrf")
            presented = value if isinstance(value, str) else None
    if presented is None or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise CsrfRefused


def render(
    request: Request,
    user: ConsoleUser | None,
    template: str,
    *,
    status_code: int = 200,
    nav: Sequence[tuple[str, str]] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render a page with the labels, the user, the CSRF token and the duty's menu."""
    t = labels_for(request)
    menu = list(nav) if nav is not None else (_menu(request, user.duty) if user else [])
    return templates.TemplateResponse(
        request,
        template,
        {"t": t, "lang": t.lang, "user": user, "nav": menu, "path": request.url.path, **context},
        status_code=status_code,
    )


def _menu(request: Request, duty: str) -> list[tuple[str, str]]:
    menus: Mapping[str, Sequence[tuple[str, str]]] = request.app.state.console_menus
    return list(menus.get(duty, ()))


def refusal_page(request: Request, user: ConsoleUser | None, refusal: ApiRefusal) -> Response:
    """The API's refusal, shown as a page with its status."""
    if refusal.status == 401:
        sessions(request).close(request.cookies.get(SESSION_COOKIE))
        return RedirectResponse("/console/login?expired=1", status_code=303)
    return render(
        request,
        user,
        "error.html",
        status_code=refusal.status,
        title=refusal.title,
        detail=refusal.detail,
        code=refusal.code,
    )
