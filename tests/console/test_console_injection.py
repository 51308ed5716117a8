"""Markup injected into the console, and the console framed, in Debian's chromium against a
real ``ibx serve`` (tests/console/conftest.py).

Text a user or another party controls comes back in the pages: a search term in its
field, a request's datasets and fields in the form and in the command shown beside
it. Each is shown as text (Jinja2 autoescaping), never as markup. Markup that got into a page
anyway would not run: the Content-Security-Policy refuses inline script. And no page,
not even one of the console's own, may frame the console (``frame-ancestors 'none'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.console.conftest import ConsolePages
    from tests.demo_world import LiveWorld

TEXT = '</textarea><img src=x onerror="window.pwned=1"><script>window.pwned=1</script>'
ATTRIBUTE = '"><img src=x onerror="window.pwned=1">'


def _nothing_ran(page: Page) -> None:
    assert page.locator("img[src=x]").count() == 0, "markup from the input became an element"
    assert page.evaluate("() => window.pwned") is None


def test_injected_markup_is_text_inline_script_is_refused_and_framing_too(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    base = f"{console_world.url}/console/subbrain"
    page = console_page(console_world.actors["sb-lithium-battery"], lang="en")

    # a search term in an attribute
    page.goto(f"{base}/catalog?q={ATTRIBUTE}")
    assert page.input_value("#q") == ATTRIBUTE
    _nothing_ran(page)

    # datasets and a field in the form, and in the equivalent command beside it
    page.goto(f"{base}/request")
    page.check("#by-datasets")
    page.fill("#datasets", TEXT)
    page.fill("#fields", ATTRIBUTE)
    with page.expect_navigation():
        page.click("#preview-button")
    assert page.input_value("#datasets") == TEXT
    assert page.input_value("#fields") == ATTRIBUTE
    assert "<script>window.pwned=1</script>" in page.inner_text("#cli")  # shown as text
    _nothing_ran(page)

    # markup that got in anyway: the CSP refuses to run an inline script
    refused = page.evaluate(
        """() => new Promise((resolve) => {
          document.addEventListener("securitypolicyviolation",
            (e) => resolve(e.violatedDirective), {once: true});
          const script = document.createElement("script");
          script.textContent = "window.pwned = 1";
          document.body.appendChild(script);
        })"""
    )
    assert str(refused).startswith("script-src")
    assert page.evaluate("() => window.pwned") is None

    # framed by another page (the user is signed in): the browser refuses to show it
    other = console_page.context(page).new_page()
    other.set_content(f'<iframe id="framed" src="{base}/catalog"></iframe>')
    frames = [f for f in other.frames if f != other.main_frame]
    assert len(frames) == 1
    assert frames[0].url.startswith("chrome-error:"), frames[0].url  # blocked, not loaded
    assert other.frame_locator("#framed").locator("#q").count() == 0
