"""Signing in and out: ``/console/login``, ``/console/logout``, ``/console``."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from exchange.console.web import (
    DUTY_OF_ROLE,
    SESSION_COOKIE,
    LoginRequired,
    check_csrf,
    current_user,
    labels_for,
    peer_certificate,
    render,
    sessions,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

LOGIN_COOKIE = "__Host-ibx-console-login"
"""The sign-in form's CSRF cookie (double submit): a form posted from elsewhere lacks it."""


@router.get("/console")
@router.get("/console/")
async def home(request: Request) -> Response:
    """The signed-in user's duty home, or the sign-in page."""
    from starlette.concurrency import run_in_threadpool

    try:
        user = await run_in_threadpool(current_user, request)
    except LoginRequired:
        return RedirectResponse("/console/login", status_code=303)
    return RedirectResponse(f"/console/{user.duty}", status_code=303)


@router.get("/console/login")
async def login_page(request: Request, expired: int = 0) -> Response:
    """The sign-in form (with a fresh double-submit CSRF value)."""
    value = secrets.token_urlsafe(24)
    t = labels_for(request)
    response = render(
        request,
        None,
        "login.html",
        login_csrf=value,
        message=t("session_expired") if expired else None,
    )
    response.set_cookie(
        LOGIN_COOKIE, value, max_age=600, path="/", secure=True, httponly=True, samesite="strict"
    )
    return response


@router.post("/console/login")
async def login(
    request: Request,
    token: Annotated[str, Form(max_length=512)],
    login_csrf: Annotated[str, Form(max_length=100)],
) -> Response:
    """Open a session for the token (and an administrator's client certificate)."""
    from starlette.concurrency import run_in_threadpool

    from exchange.errors import AuthError

    t = labels_for(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), login_csrf.encode()):
        return render(
            request,
            None,
            "error.html",
            status_code=403,
            title=t("refused_title"),
            detail=t("csrf_refused"),
            code="csrf",
        )
    source = request.client.host if request.client else "unknown"
    try:
        session = await run_in_threadpool(
            request.app.state.console_sessions.open,
            token,
            certificate=peer_certificate(request),
            source=source,
        )
    except AuthError as exc:
        value = secrets.token_urlsafe(24)
        response = render(
            request,
            None,
            "login.html",
            status_code=401,
            login_csrf=value,
            message=t("login_failed", reason=str(exc)),
        )
        response.set_cookie(
            LOGIN_COOKIE,
            value,
            max_age=600,
            path="/",
            secure=True,
            httponly=True,
            samesite="strict",
        )
        return response
    redirect = RedirectResponse(f"/console/{DUTY_OF_ROLE[session.role]}", status_code=303)
    redirect.set_cookie(
        SESSION_COOKIE,
        session.session_id,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    redirect.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return redirect


@router.post("/console/logout")
async def logout(request: Request, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    """End the session. Signing out changes state like any form: without this session's
    CSRF token (or from another origin) it is refused and the session goes on; without a
    live session there is nothing to end, and the browser goes to the sign-in page."""
    from starlette.concurrency import run_in_threadpool

    session_id = request.cookies.get(SESSION_COOKIE)
    store = sessions(request)
    session = await run_in_threadpool(
        store.resume, session_id, certificate=peer_certificate(request)
    )
    if session is not None:
        await check_csrf(request, session.csrf)  # CsrfRefused: the 403 page, nothing ended
        await run_in_threadpool(store.close, session_id)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response
