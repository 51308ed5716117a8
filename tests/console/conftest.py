"""The console's browser tests: one served copy of the demo's world, one browser.

The fixtures (engineers K, L, M, N build their duty's flow on them)::

    def test_officer_flow(console_world: LiveWorld, console_page: ConsolePages) -> None:
        wang = console_world.actors["officer-wang"]
        page = console_page(wang)                  # signed in, on /console/officer (Chinese)
        page.goto(f"{console_world.url}/console/officer/policies")
        ...
        en = console_page(console_world.actors["officer-li"], lang="en")
        ...
        assert console_page.elsewhere == []        # also checked at the test's end

``console_world`` (:class:`tests.demo_world.LiveWorld`, one for the package)
  A **copy** of the ``make demo`` story's work dir (the story runs once per
  session: the ``demo_run`` fixture), served by a real ``ibx serve`` over TLS,
  with the agents of the four plants whose consent stands running on the
  copy (so a sub-brain's request submitted in the browser computes; call
  :func:`tests.demo_world.wait_for_agents` first if you need them up; they
  take some seconds to start). What the story released stands: the HE mean
  of ``kwh_per_kwh`` over five plants and of ``yield_pct`` over four, so the
  disclosure guard refuses a four-plant mean of ``kwh_per_kwh`` (it would
  solve the revoked plant's value); a mean of ``energy_mwh``,
  ``output_gwh`` or ``cells_million`` over the four consenting plants
  (``--industry lithium-battery --engine he --reduce mean``) is released
  (checked: 4 participants, 4 contributions).

  - ``console_world.url``: the base URL (``https://127.0.0.1:PORT``, a str;
    ``.url.ca_bundle`` / ``console_world.ca_bundle``: the CA that trusts it;
    ``console_world.url.client(token)``: an httpx client of the API).
  - ``console_world.actors[name]`` → :class:`tests.demo_world.WorldActor`
    with ``name``, ``role``, ``duty``, ``token``, ``home``, ``token_file``,
    ``key_file`` (officers: ``officer.key``; auditor: ``auditor.key``;
    enterprises: ``consent.key``; the ibx key-file JSON ``sign.js`` opens),
    ``client_cert``/``client_key`` (PEM; officers and the auditor).
    Names: ``officer-wang`` (proposed the baseline pack), ``officer-li``
    (approved it), ``auditor-zhao``, ``sb-lithium-battery`` (the sub-brain),
    the plants ``qingchuan-lineng``, ``lanjiang-cells``, ``xinghe-storage``
    (the edge plant), ``yunling-power``, ``shimen-battery`` (revoked its
    consent in step 8), and ``witness-qiu`` (no console pages).
    ``console_world.of_role("enterprise")`` lists a role's actors.
  - ``console_world.ibx(actor, *args)``: run an ``ibx`` command as the actor
    against the served copy (their token file, client certificate).
  - ``console_world.sql(statement, *params)``: a statement on the served
    SQLite database (e.g. age ``exchange_console_sessions.last_seen``).
  - ``console_world.demo``: the original run (:class:`tests.demo_world.DemoRun`:
    ``out``, ``step(n)``); ``console_world.work``: the copy's directory.

``browser`` (one for the package)
  Debian's chromium (``/usr/bin/chromium``) through Playwright's sync API,
  headless; skipped when either is absent, failed under ``CI=true``. It is
  closed when the package's last test ends: while Playwright's sync API is
  running, ``asyncio.run`` fails in this thread, so **a console test must not
  call ``asyncio.run``** (use ``console_world.url.client()`` or ``ibx``).

``console_page(actor, *, lang="zh", sign_in=True, certificate=True)`` → a Playwright ``Page``
  A new browser context (HTTPS errors ignored: the deployment CA is not the
  system's; an administrator's client certificate offered for the exchange's
  origin; locale ``zh-CN`` or ``en-US``, hence ``Accept-Language``), with a
  route guard that **aborts and records every request not to the exchange's
  origin** (``console_page.elsewhere``; the fixture fails the test if any
  was made), signed in through the real sign-in form and landed on the
  duty's home. ``actor=None`` (or ``sign_in=False``) gives a page that has not
  signed in; ``certificate=False`` an administrator's browser without their
  client certificate; ``console_page.sign_in(page, actor, expect_home=False)``
  submits the form again. ``console_page.context(page)`` is its ``BrowserContext``
  (cookies, a second page). Every context is closed at the test's end.
  Screenshots for ``docs/console/``: ``page.screenshot(path=...)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.demo_world import DemoRun, LiveWorld, WorldActor, live_world

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Route

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "ConsolePages"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
)
"""Chromium on this machine's closed network, as root (docs: .library machines/python.md)."""
LOCALES = {"zh": "zh-CN", "en": "en-US"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} under CI=true (.ci/run installs Debian's chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="package")
def console_world(
    demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveWorld]:
    """The demo's world, copied and served, its consenting plants' agents running."""
    with live_world(demo_run, tmp_path_factory.mktemp("console-world")) as world:
        yield world


@pytest.fixture(scope="package")
def browser(console_world: LiveWorld) -> Iterator[Browser]:
    """Debian's chromium, headless, through Playwright's sync API (launched after the world,
    closed when the package's last test ends)."""
    del console_world  # only its order: the world is built before the browser's loop runs
    if not CHROMIUM.is_file():
        _unavailable(f"Debian's chromium is not installed ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            launched.close()


class ConsolePages:
    """``console_page(actor, lang=..)``: signed-in pages, each in a context of its own."""

    def __init__(self, browser: Browser, world: LiveWorld) -> None:
        self.browser = browser
        self.world = world
        self.origin = world.url.url
        self.elsewhere: list[str] = []
        """Every request made to another origin (aborted), in order."""
        self._contexts: list[BrowserContext] = []
        self._context_of: dict[int, BrowserContext] = {}

    def __call__(
        self,
        actor: WorldActor | None = None,
        *,
        lang: str = "zh",
        sign_in: bool = True,
        certificate: bool = True,
    ) -> Page:
        """A page in a new context; signed in as ``actor`` (on their duty's home) unless
        ``actor`` is None or ``sign_in`` is False (then on the sign-in page). ``lang``:
        ``zh``, ``en`` or any browser locale (``fr-FR``); ``certificate=False``: an
        administrator's browser without their client certificate."""
        options: dict[str, Any] = {"ignore_https_errors": True, "locale": LOCALES.get(lang, lang)}
        if certificate and actor is not None and actor.client_cert and actor.client_key:
            options["client_certificates"] = [
                {
                    "origin": self.origin,
                    "certPath": str(actor.client_cert),
                    "keyPath": str(actor.client_key),
                }
            ]
        context = self.browser.new_context(**options)
        context.set_default_timeout(30_000)
        self._contexts.append(context)
        context.route("**/*", self._guard)
        page = context.new_page()
        self._context_of[id(page)] = context
        if actor is not None and sign_in:
            self.sign_in(page, actor)
        else:
            page.goto(f"{self.origin}/console/login")
        return page

    def sign_in(self, page: Page, actor: WorldActor, *, expect_home: bool = True) -> None:
        """Fill the sign-in form with ``actor``'s token and submit; by default wait for their
        duty's home."""
        page.goto(f"{self.origin}/console/login")
        page.fill("#token", actor.token)
        if expect_home and actor.duty:
            with page.expect_navigation(url=f"{self.origin}/console/{actor.duty}"):
                page.click("form[action='/console/login'] button[type=submit]")
        else:
            page.click("form[action='/console/login'] button[type=submit]")
            page.wait_for_load_state("load")

    def context(self, page: Page) -> BrowserContext:
        """The context ``page`` was opened in."""
        return self._context_of[id(page)]

    def _guard(self, route: Route) -> None:
        url = route.request.url
        if url == self.origin or url.startswith(self.origin + "/"):
            route.continue_()
            return
        self.elsewhere.append(url)
        route.abort()

    def close(self) -> None:
        """Close every context opened."""
        for context in self._contexts:
            context.close()
        self._contexts.clear()
        self._context_of.clear()


@pytest.fixture
def console_page(browser: Browser, console_world: LiveWorld) -> Iterator[ConsolePages]:
    """The page factory (see the module docstring); fails the test if any page asked
    another origin for anything."""
    pages = ConsolePages(browser, console_world)
    try:
        yield pages
    finally:
        pages.close()
    assert pages.elsewhere == [], f"requests to other origins: {pages.elsewhere}"
