"""Signing in to the console and what guards a session, in Debian's chromium against a
real ``ibx serve`` over TLS on a copy of the demo's world (tests/console/conftest.py).

Each guard is attacked and seen to refuse: a missing client certificate, another duty's
page, a form or ``fetch`` without the CSRF token or from another origin, a session aged
past its idle or absolute limit, an administrator's cookie replayed without the
certificate, a sign-in posted without the form's own cookie.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

from core.clock import format_rfc3339, utcnow
from exchange.console.security_headers import CONTENT_SECURITY_POLICY

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.console.conftest import ConsolePages
    from tests.demo_world import LiveWorld

SESSION_COOKIE = "__Host-ibx-console"
HOMES = ["officer-wang", "auditor-zhao", "qingchuan-lineng", "sb-lithium-battery"]


def _session_cookie(console_page: ConsolePages, page: Page) -> dict[str, object]:
    cookies = [c for c in console_page.context(page).cookies() if c["name"] == SESSION_COOKIE]
    assert len(cookies) == 1, cookies
    return dict(cookies[0])


def _still_signed_in(page: Page, world: LiveWorld, duty: str) -> None:
    page.goto(f"{world.url}/console/{duty}")
    assert page.url == f"{world.url}/console/{duty}", "the session ended"


@pytest.mark.parametrize("name", HOMES)
def test_each_duty_signs_in_lands_on_its_home_under_the_strict_policy(
    console_world: LiveWorld, console_page: ConsolePages, name: str
) -> None:
    """The real form, each duty's home (administrators with their certificate), the CSP on
    every page, no inline code, no CSP violation, nothing asked of another origin (the
    fixture checks ``elsewhere``)."""
    actor = console_world.actors[name]
    page = console_page(actor, sign_in=False)
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text))
    first = page.goto(f"{console_world.url}/console/login")
    assert first is not None and first.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    console_page.sign_in(page, actor)
    assert page.url == f"{console_world.url}/console/{actor.duty}"
    assert name in page.inner_text("header")
    home = page.reload()
    assert home is not None and home.status == 200
    headers = home.headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("[style]").count() == 0 and page.locator("style").count() == 0
    assert not [v for v in violations if "Content Security Policy" in v], violations


def test_the_session_cookie_is_host_only_httponly_secure_and_strict(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    plant = console_world.actors["lanjiang-cells"]
    page = console_page(plant, sign_in=False)
    page.fill("#token", plant.token)
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.click("form[action='/console/login'] button[type=submit]")
    header = posted.value.header_value("set-cookie") or ""
    session = next(part for part in header.split("\n") if part.startswith(f"{SESSION_COOKIE}="))
    attributes = {a.strip().split("=")[0].lower() for a in session.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path"} <= attributes
    assert "domain" not in attributes and "samesite=strict" in session.lower()
    page.wait_for_url(f"{console_world.url}/console/enterprise")
    cookie = _session_cookie(console_page, page)
    assert cookie["httpOnly"] is True and cookie["secure"] is True
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["domain"] == "127.0.0.1"  # host-only: the __Host- prefix holds
    assert page.evaluate("document.cookie") == ""  # no script can read it
    assert plant.token not in page.content()  # the token never comes back


def test_an_officer_without_the_client_certificate_is_refused_with_the_reason(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    li = console_world.actors["officer-li"]
    page = console_page(li, sign_in=False, certificate=False)
    console_page.sign_in(page, li, expect_home=False)
    assert page.url == f"{console_world.url}/console/login"
    notice = page.inner_text("[role=alert]")
    assert notice.startswith("登录被拒绝") and "client certificate" in notice
    assert not [c for c in console_page.context(page).cookies() if c["name"] == SESSION_COOKIE]


def test_a_wrong_token_is_refused_and_a_sign_in_posted_from_elsewhere_too(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    page = console_page(None, lang="en")
    page.fill("#token", "ibx_not-a-token")
    page.click("form[action='/console/login'] button[type=submit]")
    page.wait_for_load_state("load")
    assert page.inner_text("[role=alert]").startswith("Sign-in refused:")
    console_page.sign_in(page, console_world.actors["witness-qiu"], expect_home=False)
    assert "the console has no pages for the witness role" in page.inner_text("[role=alert]")
    assert not [c for c in console_page.context(page).cookies() if c["name"] == SESSION_COOKIE]
    # a login form posted by another site: no double-submit cookie of this origin
    plant = console_world.actors["qingchuan-lineng"]
    with httpx.Client(verify=console_world.url.verify()) as client:
        answer = client.post(
            f"{console_world.url}/console/login",
            data={"token": plant.token, "login_csrf": "forged"},
            follow_redirects=False,
        )
    assert answer.status_code == 403 and SESSION_COOKIE not in answer.headers.get("set-cookie", "")


def test_a_page_of_another_duty_is_refused(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    page = console_page(console_world.actors["sb-lithium-battery"], lang="en")
    for duty in ("officer", "auditor", "enterprise"):
        answer = page.goto(f"{console_world.url}/console/{duty}")
        assert answer is not None and answer.status == 403
        assert page.get_attribute("[role=alert]", "data-code") == "duty"
        assert "belongs to another duty" in page.inner_text("[role=alert]")
        assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    _still_signed_in(page, console_world, "subbrain")


def test_a_post_without_its_csrf_token_or_from_elsewhere_is_refused_and_nothing_changes(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    """Signing out is the state change every page offers: a ``fetch`` without the header, a
    form whose hidden ``csrf`` was removed, and the right token from another origin are
    each refused (403, the CSRF page) and the session goes on; the real form ends it."""
    plant = console_world.actors["yunling-power"]
    page = console_page(plant)
    status = page.evaluate(
        "async () => (await fetch('/console/logout', {method: 'POST', headers: "
        "{'Content-Type': 'application/x-www-form-urlencoded'}, body: 'csrf=guess'})).status"
    )
    assert status == 403
    status = page.evaluate(
        "async () => (await fetch('/console/logout', {method: 'POST', "
        "headers: {'X-CSRF-Token': 'guess'}})).status"
    )
    assert status == 403
    _still_signed_in(page, console_world, "enterprise")

    page.eval_on_selector("form[action='/console/logout'] input[name=csrf]", "e => e.remove()")
    with page.expect_navigation():
        page.click("form[action='/console/logout'] button[type=submit]")
    assert page.get_attribute("[role=alert]", "data-code") == "csrf"
    assert "未执行任何操作" in page.inner_text("[role=alert]")
    _still_signed_in(page, console_world, "enterprise")

    csrf = page.get_attribute("form[action='/console/logout'] input[name=csrf]", "value")
    cookie = str(_session_cookie(console_page, page)["value"])
    with httpx.Client(verify=console_world.url.verify()) as client:
        answer = client.post(
            f"{console_world.url}/console/logout",
            data={"csrf": csrf or ""},
            headers={"Origin": "https://evil.example", "Cookie": f"{SESSION_COOKIE}={cookie}"},
            follow_redirects=False,
        )
    assert answer.status_code == 403
    _still_signed_in(page, console_world, "enterprise")

    with page.expect_navigation(url=f"{console_world.url}/console/login"):
        page.click("form[action='/console/logout'] button[type=submit]")
    page.goto(f"{console_world.url}/console/enterprise")
    assert page.url.startswith(f"{console_world.url}/console/login")


@pytest.mark.parametrize("column", ["last_seen", "expires_at"])
def test_an_expired_session_is_sent_back_to_sign_in(
    console_world: LiveWorld, console_page: ConsolePages, column: str
) -> None:
    """The session's row aged past the idle limit (``last_seen``) or its lifetime
    (``expires_at``) in the served database, instead of waiting."""
    sub = console_world.actors["sb-lithium-battery"]
    page = console_page(sub, lang="en")
    session_id = str(_session_cookie(console_page, page)["value"])
    aged = format_rfc3339(utcnow() - timedelta(days=2))
    console_world.sql(
        f"UPDATE exchange_console_sessions SET {column} = ? WHERE id_hash = ?",
        aged,
        hashlib.sha256(session_id.encode()).digest(),
    )
    page.goto(f"{console_world.url}/console/subbrain")
    assert page.url == f"{console_world.url}/console/login?expired=1"
    assert page.inner_text("[role=alert]") == "Your session ended. Sign in again."
    console_page.sign_in(page, sub)  # and signing in again works


def test_an_administrators_cookie_without_the_certificate_is_sent_back_to_sign_in(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    """An officer's session is bound to the certificate it signed in with: the cookie
    replayed from a browser without it opens nothing."""
    wang = console_world.actors["officer-wang"]
    page = console_page(wang)
    cookie = _session_cookie(console_page, page)
    thief = console_page(wang, sign_in=False, certificate=False)
    console_page.context(thief).add_cookies(
        [{"name": SESSION_COOKIE, "value": str(cookie["value"]), "url": console_world.url.url}]
    )
    thief.goto(f"{console_world.url}/console/officer")
    assert thief.url.startswith(f"{console_world.url}/console/login")
    _still_signed_in(page, console_world, "officer")


@pytest.mark.parametrize(
    ("locale", "lang", "sign_in"),
    [("zh-CN", "zh-CN", "登录"), ("en-US", "en", "Sign in"), ("fr-FR", "zh-CN", "登录")],
)
def test_chinese_by_default_english_for_an_english_browser(
    console_page: ConsolePages, locale: str, lang: str, sign_in: str
) -> None:
    page = console_page(None, lang=locale)
    assert page.get_attribute("html", "lang") == lang
    assert page.inner_text("h1") == sign_in
