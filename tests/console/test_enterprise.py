"""The enterprise's pages in Debian's chromium against the demo's world, served by a real
``ibx serve``: a plant sees who used its data (the chart and the list with the demo's
jobs), its datasets, consents, edge device and agent; it grants a consent and revokes
it, signing each statement in the browser with its key file (``static/sign.js``:
WebCrypto Ed25519, only the signature sent); a revocation signed with another plant's
key is refused by the exchange and the page says so, the consent still active.

The consent granted here is the test's own (purpose trade_matching), so the demo's
consents that other duties' flows rely on are left as they were.
"""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, Request, expect

from exchange.console.enterprise_chart import usage_chart
from exchange.demo.cluster import EDGE_DEVICE, EDGE_PLANT
from tests.console.conftest import ConsolePages
from tests.demo_world import LiveWorld, WorldActor

PREFIX = "/console/enterprise"


def _api(world: LiveWorld, actor: WorldActor, path: str) -> dict[str, object]:
    with world.url.client(actor.token) as client:
        answer = client.get(path)
        answer.raise_for_status()
        body: dict[str, object] = answer.json()
        return body


def test_a_plant_sees_who_used_its_data_its_datasets_devices_and_agent(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    plant = console_world.actors[EDGE_PLANT.name]
    usage = _api(console_world, plant, "/v1/usage?limit=1000")["items"]
    assert isinstance(usage, list)
    jobs = {e["job_id"] or e["decision_id"] for u in usage for e in u["entries"]}
    subbrain = console_world.actors["sb-lithium-battery"]
    demo_jobs = _api(console_world, subbrain, "/v1/jobs?limit=1000")["items"]
    assert isinstance(demo_jobs, list)
    assert jobs and jobs <= {j["job_id"] for j in demo_jobs}, "the demo's jobs used its data"
    page = console_page(plant)
    page.goto(f"{console_world.url}{PREFIX}/usage")
    chart = page.locator("svg#usage-chart")
    expect(chart).to_be_visible()
    assert chart.locator("rect").count() >= 1
    expect(page.locator(".ent-legend")).to_contain_text("sb-lithium-battery")
    listed = set(page.locator("table.ent-usage tr[data-job]").evaluate_all(
        "rows => rows.map(r => r.dataset.job).filter(Boolean)"
    ))  # fmt: skip
    assert listed == jobs
    row = page.locator(f"table.ent-usage tr[data-job='{sorted(jobs)[0]}']").first
    expect(row).to_contain_text("sb-lithium-battery")
    assert re.search(r"\d+$", row.locator("td").last.inner_text().strip())  # its ledger index
    page.goto(f"{console_world.url}{PREFIX}/datasets")
    expect(page.locator("table#datasets")).to_contain_text(EDGE_PLANT.dataset)
    page.goto(f"{console_world.url}{PREFIX}/consents")
    expect(page.locator("table#consents tr[data-state='active']").first).to_be_visible()
    page.goto(f"{console_world.url}{PREFIX}/devices")
    device = page.locator(f"table#devices tr[data-device='{EDGE_DEVICE}']").first
    expect(device).to_contain_text(f"/enterprise/{EDGE_PLANT.name}/device/{EDGE_DEVICE}")
    assert page.locator("#agent-contact [data-agent-contact]").get_attribute("data-agent-contact")
    en = console_page(plant, lang="en")
    en.goto(f"{console_world.url}{PREFIX}/usage")
    expect(en.locator("h1")).to_have_text("Usage")
    expect(en.locator("section.card h2").first).to_have_text("Uses per week, by requester")


def _sign_and_submit(page: Page, key_file: object, *, expect_url: str | None) -> None:
    page.set_input_files("#key-file", str(key_file))
    if expect_url is None:
        with page.expect_navigation():
            page.click("#sign-form button[type=submit]")
    else:
        with page.expect_navigation(url=re.compile(expect_url)):
            page.click("#sign-form button[type=submit]")


def test_a_plant_grants_and_revokes_signing_in_the_browser_and_another_key_is_refused(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    plant = console_world.actors["qingchuan-lineng"]
    other = console_world.actors["lanjiang-cells"]
    page = console_page(plant, lang="en")
    page.goto(f"{console_world.url}{PREFIX}/consents/new")
    page.locator("#grant-terms input[name=field]").first.check()
    for box in page.locator("#grant-terms input[name=purpose]:checked").all():
        box.uncheck()
    page.check("#grant-terms input[name=purpose][value=trade_matching]")
    page.fill("#use_limit", "7")
    page.fill("#days", "30")
    with page.expect_navigation():
        page.click("#grant-terms button[type=submit]")
    # the exact statement, and the command that signs the same terms on the plant's machine
    statement = page.locator("#statement-bytes").inner_text()
    assert '"kind":"grant"' in statement and '"purposes":["trade_matching"]' in statement
    assert f'"enterprise":"{plant.name}"' in statement and '"use_limit":7' in statement
    command = page.locator("#cli-command").inner_text()
    assert command.startswith("ibx consent grant --key KEYFILE --dataset ")
    assert "--purpose trade_matching" in command and "--use-limit 7" in command
    posted: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST":
            posted.append(request.post_data or "")

    page.on("request", record)
    _sign_and_submit(page, plant.key_file, expect_url=r"/consents/cst_[0-9a-f]{32}\?done=granted$")
    assert plant.key_file is not None
    seed = json.loads(plant.key_file.read_text())["seed"]
    assert posted and "signature=" in posted[-1]
    assert all(seed not in body and "seed" not in body for body in posted)  # only the signature
    consent_id = page.url.split("/consents/")[1].split("?")[0]
    expect(page.locator("#consent-state [data-state]")).to_have_attribute("data-state", "active")
    detail = _api(console_world, plant, f"/v1/consents/{consent_id}")
    assert detail["receipt"]["purposes"] == ["trade_matching"]  # type: ignore[index]

    # a revocation signed with another plant's key: refused, and the page says so
    page.fill("#reason", "signed with the wrong key")
    with page.expect_navigation():
        page.click("#revoke-draft button[type=submit]")
    revocation = page.locator("#statement-bytes").inner_text()
    assert '"kind":"revocation"' in revocation and consent_id in revocation
    assert page.locator("#cli-command").inner_text() == (
        f"ibx consent revoke --key KEYFILE {consent_id} --reason 'signed with the wrong key'"
    )
    _sign_and_submit(page, other.key_file, expect_url=None)
    refusal = page.locator("#refusal")
    expect(refusal).to_have_attribute("data-code", "consent.errors.BadConsentSignatureError")
    expect(refusal).to_contain_text(f"does not verify under {plant.name}'s key")
    assert _api(console_world, plant, f"/v1/consents/{consent_id}")["status"] == "active"

    # the same statement, signed with the plant's own key: revoked
    _sign_and_submit(page, plant.key_file, expect_url=r"\?done=revoked$")
    expect(page.locator("#consent-state [data-state]")).to_have_attribute("data-state", "revoked")
    expect(page.locator("#done")).to_contain_text("Revoked")
    assert _api(console_world, plant, f"/v1/consents/{consent_id}")["status"] == "revoked"
    page.goto(f"{console_world.url}{PREFIX}/consents")
    row = page.locator(f"table#consents tr[data-consent='{consent_id}']")
    expect(row).to_have_attribute("data-state", "revoked")


def test_the_usage_chart_stacks_uses_per_week_by_requester() -> None:
    uses = [
        ("2026-11-30T08:00:00Z", "sb-a"),  # a Monday
        ("2026-12-06T23:59:59Z", "sb-a"),  # the Sunday of the same week
        ("2026-12-02T10:00:00Z", "sb-b"),
        ("2026-12-15T10:00:00Z", "sb-b"),  # two weeks later, the week between empty
    ]
    chart = usage_chart(uses)
    assert chart is not None and chart.total == 4
    assert [label for _s, label, _n in chart.legend] == ["sb-a", "sb-b"]  # most uses first
    assert [tick.label for tick in chart.x_ticks] == ["11-30", "12-07", "12-14"]
    first_week = [b for b in chart.bars if b.title.startswith("2026-11-30")]
    assert sorted((b.series, b.title) for b in first_week) == [
        (0, "2026-11-30: sb-a × 2"),
        (1, "2026-11-30: sb-b × 1"),
    ]
    bottom = max(b.y + b.height for b in first_week)
    assert abs(bottom - chart.bottom) < 0.2  # stacked from the axis up
    assert sum(b.height for b in first_week) <= chart.bottom - chart.top + 0.2
    assert usage_chart([]) is None
