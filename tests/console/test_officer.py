"""The security officer's pages in a real browser against a real ``ibx serve``.

Officer 王 (officer-wang) proposes a new policy version in the browser, first
signing with the wrong key file (李's: the exchange refuses the duty and the
page says so), then with his own; he tests it and finds approve and activate
disabled for himself, with the reason; posting a signed approval anyway, he
gets the API's four-eyes refusal on the page. Officer 李 (officer-li) compares
it with the active version side by side, approves and activates it, each step
signed in her browser with her key file; the version shows active, and the
decision playground answers under it. A version whose sample request expects the wrong
answer fails its test, and the page names the failing case.

The new version adds one deny line nobody in the demo's world is affected by
(a sysadmin may not take part in an MPC for intelligent equipment), so the
other duties' tests, sharing the world, decide as before.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.console.conftest import ConsolePages
    from tests.demo_world import LiveWorld, WorldActor

NEW_LINE = "p, sysadmin, intelligent-equipment, dataset, mpc_participate, deny"


def _sign_step(page: Page, step: str, key_file: str) -> None:
    """Open ``key_file`` in the step's signing form, sign and send it; wait for the answer."""
    card = page.locator(f"[data-step-card={step}]")
    card.locator("input[data-sign-key]").set_input_files(key_file)
    with page.expect_navigation():
        card.locator(f"button[data-step={step}]").click()


def _signed_form(world: LiveWorld, officer: WorldActor, step: str, version: str) -> dict[str, str]:
    """The ``statement`` and ``signature`` fields of a signing form, signed here with
    ``officer``'s key file (what ``static/sign.js`` would post)."""
    from core.clock import utcnow
    from core.duty import Duty
    from exchange.cli._duties import load_signer

    assert officer.key_file is not None
    with world.url.client() as client:
        origin = client.get("/v1/ledger/checkpoint").text.split("\n", 1)[0]
    duty = Duty(origin, officer.name, f"policy.{step}", version, utcnow(), {})
    signed = duty.sign(load_signer(officer.key_file))
    return {
        "statement": base64.b64encode(duty.signed_bytes()).decode(),
        "signature": base64.b64encode(signed.signature).decode(),
    }


def test_officers_propose_test_approve_and_activate_with_their_own_keys(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    wang = console_world.actors["officer-wang"]
    li = console_world.actors["officer-li"]
    assert wang.key_file is not None and li.key_file is not None
    base = f"{console_world.url}/console/officer"

    # 王: the versions page lists the demo's baseline, active, approved by 李
    page = console_page(wang)
    baseline = page.locator("tr[data-version]:has([data-state=active])")
    assert baseline.count() == 1
    assert "officer-li" in baseline.inner_text()
    active = baseline.get_attribute("data-version")
    assert active is not None

    # propose: the active version's text, one Casbin line more
    page.goto(f"{base}/propose")
    casbin = page.locator("#pack-casbin")
    assert "p, security_officer, platform, policy, policy_approve, allow" in casbin.input_value()
    casbin.fill(casbin.input_value() + NEW_LINE + "\n")
    with page.expect_navigation():
        page.click("button[data-review]")
    new_hash = page.locator("[data-pack-hash]").inner_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", new_hash) and new_hash != active
    assert new_hash in (page.locator(".officer-statement pre").text_content() or "")
    assert "ibx policy propose DIR --key KEYFILE" in page.locator("[data-cli=propose]").inner_text()

    # signed with the wrong key file (李's): the exchange refuses, the page says so
    form = page.locator("form[data-sign]")
    form.locator("input[data-sign-key]").set_input_files(str(li.key_file))
    with page.expect_navigation() as refused:
        form.locator("button[data-step=propose]").click()
    assert refused.value is not None and refused.value.status == 403
    refusal = page.locator("[role=alert]")
    assert "signed duty refused" in refusal.inner_text()
    assert page.url == f"{base}/propose"

    # signed with his own key file: proposed
    form = page.locator("form[data-sign]")
    form.locator("input[data-sign-key]").set_input_files(str(wang.key_file))
    with page.expect_navigation():
        form.locator("button[data-step=propose]").click()
    assert page.url == f"{base}/versions/{new_hash}?done=propose"
    assert page.locator("h1 [data-state]").get_attribute("data-state") == "proposed"
    assert NEW_LINE in page.locator("[data-casbin]").inner_text()
    assert "package ibx.authz" in page.locator("[data-rego='authz.rego']").inner_text()

    # he tests it (any officer may); the report passed
    _sign_step(page, "test", str(wang.key_file))
    assert page.locator("[data-done=test]").is_visible()
    assert page.locator("[data-report-passed]").get_attribute("data-report-passed") == "yes"
    assert page.locator("[data-who=tested]").inner_text() == "officer-wang"

    # approve and activate: disabled for the proposer, with the reason (four eyes)
    for step in ("approve", "activate"):
        assert page.locator(f"[data-step-card={step}] button[data-step={step}]").is_disabled()
        assert page.locator(f"[data-step-card={step}] input[data-sign-key]").count() == 0
    why = page.locator("[data-why=approve]").inner_text()
    assert "四眼" in why and "officer-wang" in why
    assert (
        f"ibx policy approve {new_hash} --key KEYFILE"
        in page.locator("[data-cli=approve]").inner_text()
    )

    # he posts a signed approval anyway (no page offers it): the API refuses, the page says so
    refused_page = page.request.post(
        f"{base}/versions/{new_hash}/approve",
        form={
            "csrf": page.locator("input[name=csrf]").first.input_value(),
            **_signed_form(console_world, wang, "approve", new_hash),
        },
    )
    assert refused_page.status == 403
    assert "four-eyes rule violated" in refused_page.text()
    assert "officer-wang proposed version" in refused_page.text()

    # 李 (in English): the diff against the active version, side by side, with decisions
    page_li = console_page(li, lang="en")
    page_li.goto(f"{base}/diff?a={active}&b={new_hash}")
    casbin_diff = page_li.locator("[data-file='policy.csv']")
    assert "changed" in casbin_diff.locator("h2").inner_text()
    assert NEW_LINE in casbin_diff.locator("tr.sxs-add .sxs-right").inner_text()
    assert "unchanged" in page_li.locator("[data-file='authz.rego'] h2").inner_text()
    decisions = page_li.locator("[data-decisions]")
    assert decisions.locator("tr[data-changed]").count() > 10
    assert page_li.locator("[data-changed-count]").get_attribute("data-changed-count") == "0"

    # she approves, then activates, each signed with her own key file
    page_li.goto(f"{base}/versions/{new_hash}")
    _sign_step(page_li, "approve", str(li.key_file))
    assert page_li.url == f"{base}/versions/{new_hash}?done=approve"
    assert page_li.locator("[data-who=approved]").inner_text() == "officer-li"
    _sign_step(page_li, "activate", str(li.key_file))
    assert page_li.locator("[data-done=activate]").inner_text() == (
        "Activated: this version now decides."
    )
    assert page_li.locator("h1 [data-state]").get_attribute("data-state") == "active"
    assert page_li.locator("[data-who=activated]").inner_text() == "officer-li"

    # the versions page: the new version active, the baseline approved again
    page_li.goto(base)
    row = page_li.locator(f"tr[data-version='{new_hash}']")
    assert row.locator("[data-state]").get_attribute("data-state") == "active"
    assert "officer-wang" in row.inner_text() and "officer-li" in row.inner_text()
    assert (
        page_li.locator(f"tr[data-version='{active}'] [data-state]").get_attribute("data-state")
        == "approved"
    )

    # the playground answers under the new version
    page_li.goto(f"{base}/decide")
    page_li.fill("#decide-subject", "sb-lithium-battery")
    page_li.fill("#decide-action", "compute")
    page_li.fill("#decide-resource", "dataset:cell-energy")
    with page_li.expect_navigation():
        page_li.click("form.officer-playground button[type=submit]")
    decision = page_li.locator("[data-decision]")
    assert decision.get_attribute("data-decision") == "allow", decision.inner_text()
    assert "casbin: allowed by" in decision.locator("[data-reasons]").inner_text()
    assert new_hash[:12] in decision.inner_text()
    assert (
        "ibx policy decide --subject sb-lithium-battery"
        in page_li.locator("[data-cli=decide]").inner_text()
    )
    page_li.fill("#decide-subject", "officer-wang")
    page_li.fill("#decide-action", "raw_export")
    with page_li.expect_navigation():
        page_li.click("form.officer-playground button[type=submit]")
    assert page_li.locator("[data-decision]").get_attribute("data-decision") == "deny"

    # a version whose sample request expects the wrong answer: its test names the failing case
    page_li.goto(f"{base}/propose")
    requests = page_li.locator("#pack-requests")
    flipped = requests.input_value().replace('"expect": "allow"', '"expect": "deny"', 1)
    assert flipped != requests.input_value()
    requests.evaluate("(area, text) => { area.value = text; }", flipped)  # fill() types 30 KB
    with page_li.expect_navigation():
        page_li.click("button[data-review]")
    form = page_li.locator("form[data-sign]")
    form.locator("input[data-sign-key]").set_input_files(str(li.key_file))
    with page_li.expect_navigation():
        form.locator("button[data-step=propose]").click()
    _sign_step(page_li, "test", str(li.key_file))
    assert page_li.locator("[data-report-passed]").get_attribute("data-report-passed") == "no"
    failing = page_li.locator("[data-failing] li")
    assert failing.count() == 1
    assert "subbrain computes a mean over core data under MPC" in failing.inner_text()
    assert page_li.locator("h1 [data-state]").get_attribute("data-state") == "proposed"
