"""``ibx audit report``: the HTML file opened in headless Chromium, with the network blocked.

The report of the shared real ledger (:mod:`tests.audit.traced_ledger`) is
written with the CLI and opened from disk in Debian's ``chromium``, driven by
Playwright (never ``playwright install``). Every request that is not the file
itself is aborted and recorded, and none may be attempted: the report needs no
network. Then what renders is checked: each section's heading, the charts as
SVG of non-zero size, the tables' rows, the alert's markup shown as text, and
"None in this period" where a period has nothing.

Skips when chromium or Playwright is absent, except under ``CI=true`` (where
``.ci/run`` installs chromium) when it fails.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from audit import LedgerExport, build_report
from audit._report import NONE_IN_PERIOD
from tests.audit.traced_ledger import MARKUP, TracedLedger, ibx, traced_ledger

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
TITLES = (
    "Decisions over time / 决策趋势",
    "Denials by reason / 拒绝原因",
    "Data use per enterprise / 企业数据使用",
    "Key operations / 密钥操作",
    "Certificates issued and revoked / 证书签发与吊销",
    "Alerts / 风险告警",
)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} under CI=true (.ci/run installs Debian's chromium)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> TracedLedger:
    return traced_ledger(tmp_path_factory)


@pytest.fixture(scope="module")
def period() -> tuple[date, date]:
    today = datetime.now(UTC).date()
    return today - timedelta(days=1), today + timedelta(days=1)


@pytest.fixture(scope="module")
def report(
    built: TracedLedger, period: tuple[date, date], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    start, end = period
    code, stdout, err = ibx(
        "audit", "report", "--export", str(built.export), "--from", start.isoformat(),
        "--to", end.isoformat(), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert stdout.startswith(f"wrote {out}: ")
    return out


@pytest.fixture(scope="module")
def browser(built: TracedLedger) -> Iterator[Browser]:
    """One browser for the module, launched after the ledger is built (Playwright's sync
    API runs an event loop in this thread, and the build's in-process client needs its own)."""
    if not CHROMIUM.is_file():
        _unavailable(f"Debian's chromium is not installed ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


class _Opened:
    """A page on a report file, every other request aborted and remembered."""

    def __init__(self, browser: Browser, path: Path) -> None:
        self.context = browser.new_context()
        self.attempted: list[str] = []
        self.context.route("**/*", self._route)
        self.page: Page = self.context.new_page()
        self.page.on("request", lambda request: self._seen(request.url))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_load_state("load")

    def _seen(self, url: str) -> None:
        if not url.startswith("file://") and url not in self.attempted:
            self.attempted.append(url)

    def _route(self, route: Any) -> None:
        url = route.request.url
        if url.startswith("file://"):
            route.continue_()
        else:
            self._seen(url)
            route.abort()

    def rows(self, section: str) -> list[list[str]]:
        cells = self.page.locator(f"section#{section} table.data tbody tr")
        return [
            [c.strip() for c in cells.nth(i).locator("td").all_inner_texts()]
            for i in range(cells.count())
        ]


@pytest.fixture(scope="module")
def opened(browser: Browser, report: Path) -> Iterator[_Opened]:
    page = _Opened(browser, report)
    yield page
    page.context.close()


def test_nothing_is_fetched_and_no_script_runs(opened: _Opened, report: Path) -> None:
    assert opened.attempted == []
    assert opened.page.title().startswith("ibx audit report")
    assert opened.page.locator("script, img, link, iframe, object").count() == 0
    text = report.read_text(encoding="utf-8")
    links = re.findall(r'\b(?:src|href)="([^"]*)"', text)
    assert links and all(link.startswith("#") for link in links), links
    assert "<link" not in text and "@import" not in text and "@font-face" not in text


def test_each_section_has_its_heading_in_order(opened: _Opened) -> None:
    headings = opened.page.locator("section h2").all_inner_texts()
    assert [h.strip() for h in headings] == list(TITLES)
    assert opened.page.locator("h1").inner_text().startswith("Audit report")


def test_charts_are_inline_svg_of_nonzero_size(opened: _Opened) -> None:
    for section in ("decisions", "denials", "data-use", "keys", "certificates", "alerts"):
        chart = opened.page.locator(f"section#{section} figure.chart svg")
        assert chart.count() == 1, section
        box = chart.bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 50, (section, box)
        assert chart.locator("text").count() > 0  # labels kept as text (svg.fonttype none)


def test_tables_have_the_rows_of_the_ledger(opened: _Opened, built: TracedLedger) -> None:
    data_use = {row[0]: row[1:] for row in opened.rows("data-use")}
    assert data_use == {name: ["1", "1", "0", "1"] for name in built.consents}
    keys = {row[0]: row[1:] for row in opened.rows("keys")}
    assert keys == {
        "mpc.key.decrypt": ["1", "1"], "mpc.key.destroy": ["1", "1"],
        "mpc.key.generate": ["1", "1"],
    }  # fmt: skip
    certificates = {row[0]: row[1:] for row in opened.rows("certificates")}
    assert certificates == {
        "edge.certificate.issue": ["2", "2"], "edge.certificate.revoke": ["1", "1"],
    }  # fmt: skip
    days = opened.rows("decisions")  # one row a day (two if the build crossed midnight)
    totals = [sum(int(row[i]) for row in days) for i in (1, 2, 3)]
    assert totals[0] == built.entry_types["authz.decision"] - 2
    assert totals[2] == built.entry_types["pipeline.decision"]
    denials = opened.rows("denials")
    assert denials and all(int(row[1]) >= 1 for row in denials)
    denied = {i for row in denials for i in re.findall(r"#(\d+)", row[2])}
    assert totals[1] == len(denied) == 2
    line = "casbin: no line lets subbrain sb-lb {} in domain lithium-battery"
    assert {row[0]: row[1] for row in denials} == {
        line.format("catalog_register dataset"): "1",
        line.format("edge_token_create edge"): "1",
    }


def test_alert_markup_is_shown_as_text(opened: _Opened) -> None:
    [alert] = opened.rows("alerts")
    assert alert[2:5] == ["risk.denial_burst", "warning", "sb-lb"]
    assert alert[5] == f"3 denials in 10 minutes {MARKUP}"
    assert opened.page.title() != "owned"


def test_the_blocker_sees_a_page_that_fetches(browser: Browser, tmp_path: Path) -> None:
    """The check above is not vacuous: a page with an outside image is caught trying."""
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<!DOCTYPE html><img src="http://127.0.0.1:9/pixel.png">', encoding="utf-8")
    page = _Opened(browser, leaky)
    try:
        assert page.attempted == ["http://127.0.0.1:9/pixel.png"]
    finally:
        page.context.close()


def test_an_empty_period_says_none_in_each_section(
    browser: Browser, built: TracedLedger, tmp_path: Path
) -> None:
    empty = build_report(LedgerExport.read(built.export), date(2001, 1, 1), date(2001, 1, 31))
    path = tmp_path / "empty.html"
    empty.write(path)
    page = _Opened(browser, path)
    try:
        assert page.attempted == []
        notes = page.page.locator("section p.none").all_inner_texts()
        assert [n.strip() for n in notes] == [NONE_IN_PERIOD] * len(TITLES)
        assert page.page.locator("section svg, section table").count() == 0
    finally:
        page.context.close()


def test_the_same_export_gives_the_same_bytes(
    built: TracedLedger, period: tuple[date, date], report: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again.html"
    start, end = period
    code, _, err = ibx(
        "audit", "report", "--export", str(built.export), "--from", start.isoformat(),
        "--to", end.isoformat(), "--out", str(again),
    )  # fmt: skip
    assert code == 0, err
    assert again.read_bytes() == report.read_bytes()
    code, _, err = ibx(
        "audit", "report", "--export", str(built.export), "--from", start.isoformat(),
        "--to", end.isoformat(), "--out", str(again),
    )  # fmt: skip
    assert code == 2 and "--force" in err


def test_a_period_that_ends_before_it_starts_is_a_usage_error(built: TracedLedger) -> None:
    code, _, err = ibx(
        "audit", "report", "--export", str(built.export), "--from", "2026-02-01",
        "--to", "2026-01-01", "--out", "/nonexistent/r.html",
    )  # fmt: skip
    assert code == 2 and "before it starts" in err
