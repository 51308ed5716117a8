"""The auditor's pages in Debian's chromium against a real ``ibx serve`` of the demo's world.

The auditor opens the HE mean's decision entry and sees its inclusion proof
and the checkpoint's signature verified in the browser (``static/proof.js``);
the same check over a tampered leaf, and over a checkpoint note with a forged
signature, names exactly what failed. The job's lineage shows its decision
and the consents with their signers; the alerts page lists every alert the
API serves; the ledger filters by type and actor; the report downloads as the
self-contained HTML file. A sub-brain opening the auditor's ledger is refused.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from tests.console.conftest import ConsolePages
from tests.demo_world import LiveWorld

if TYPE_CHECKING:
    from playwright.sync_api import Page

_TAMPER_LEAF = """() => {
  const block = document.getElementById("proof-data");
  const data = JSON.parse(block.textContent);
  const entry = JSON.parse(new TextDecoder().decode(
    Uint8Array.from(atob(data.leaf), (c) => c.charCodeAt(0))));
  entry.payload.min_cohort = 1;
  data.leaf = window.ibxProofBase64(new TextEncoder().encode(JSON.stringify(entry)));
  block.textContent = JSON.stringify(data);
}"""
_FORGE_SIGNATURE = """() => {
  const block = document.getElementById("proof-data");
  const data = JSON.parse(block.textContent);
  const lines = data.note.split("\\n");
  const at = lines.findIndex((l) => l.startsWith("\\u2014 "));
  const [dash, name, blob] = lines[at].split(" ");
  const raw = Uint8Array.from(atob(blob), (c) => c.charCodeAt(0));
  raw[raw.length - 1] ^= 1;
  lines[at] = [dash, name, window.ibxProofBase64(raw)].join(" ");
  data.note = lines.join("\\n");
  block.textContent = JSON.stringify(data);
}"""


def _verdict(page: Page, state: str) -> str:
    page.wait_for_selector(f"#proof-verdict[data-state='{state}']")
    return page.inner_text("#proof-verdict")


def _steps(page: Page) -> list[tuple[bool, str]]:
    items = page.locator("#proof-steps li")
    return [
        (items.nth(i).get_attribute("data-ok") == "1", items.nth(i).inner_text())
        for i in range(items.count())
    ]


def test_the_auditor_checks_a_proof_traces_a_job_and_reads_the_alerts(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    auditor = console_world.actors["auditor-zhao"]
    found = re.search(r"decision on ledger #(\d+) \(job (job_[0-9a-f]+)\)", console_world.demo.out)
    assert found, console_world.demo.step(6)
    decision, job = int(found.group(1)), found.group(2)
    base = f"{console_world.url}/console/auditor"
    page = console_page(auditor)  # Chinese

    # the entry's proof, checked in the browser
    page.goto(f"{base}/ledger/{decision}")
    assert page.inner_text("#entry-type") == "pipeline.decision"
    assert job in page.inner_text("#entry-payload")
    verdict = _verdict(page, "verified")
    assert f"已验证：条目 #{decision}" in verdict
    steps = _steps(page)
    assert len(steps) == 4
    assert all(ok for ok, _ in steps), steps
    assert "Ed25519" in steps[-1][1]

    # a leaf that is not the one the checkpoint signs: the root differs, the signature holds
    page.evaluate(_TAMPER_LEAF)
    page.click("#proof-recheck")
    verdict = _verdict(page, "failed")
    assert verdict.startswith("未通过验证")
    failed = [text for ok, text in _steps(page) if not ok]
    assert len(failed) == 1
    assert "但检查点的根哈希为" in failed[0]
    assert "证明推出的根哈希" in verdict

    # a checkpoint whose ledger signature is forged: only the signature fails
    page.reload()
    _verdict(page, "verified")
    page.evaluate(_FORGE_SIGNATURE)
    page.click("#proof-recheck")
    _verdict(page, "failed")
    failed = [text for ok, text in _steps(page) if not ok]
    assert len(failed) == 1
    assert "验证失败" in failed[0]

    # against a checkpoint the witness cosigned (the demo's second round covers it)
    page.click(f"a[href^='/console/auditor/ledger/{decision}?size=']")
    assert "witness-qiu" in page.inner_text("#proof")
    _verdict(page, "verified")

    # the job's lineage: its decision and the consents with their signers
    page.goto(f"{base}/lineage")
    page.click(f"#job-list a[href='/console/auditor/lineage?job={job}']")
    page.wait_for_selector("#lineage")
    node = page.locator(f"#lineage li[data-kind='decision'][data-index='{decision}']")
    assert "decision: allowed" in node.locator(":scope > .text").inner_text()
    consents = page.locator("#lineage li[data-kind='consent']")
    assert consents.count() == 5
    texts = [consents.nth(i).inner_text() for i in range(consents.count())]
    assert all(re.search(r"signed by [a-z-]+ with ", text) for text in texts), texts
    assert any("shimen-battery" in text for text in texts)
    assert page.locator("#lineage li[data-kind='policy_step']").count() == 4
    node.locator(f":scope > a[href='/console/auditor/ledger/{decision}']").click()
    _verdict(page, "verified")

    # the alerts: every one the API serves
    listed = console_world.ibx(auditor, "audit", "alerts", "--json")
    assert listed.returncode == 0, listed.stderr
    alerts = json.loads(listed.stdout)["alerts"]
    assert alerts, "the demo raises alerts"
    page.goto(f"{base}/alerts")
    rows = page.locator("#alert-list tbody tr")
    assert rows.count() == len(alerts)
    for i, alert in enumerate(alerts):
        assert rows.nth(i).get_attribute("data-rule") == alert["rule"]
        assert alert["message"] in rows.nth(i).inner_text()

    # the ledger by type and actor
    page.goto(f"{base}/ledger?type=policy.&actor=officer-li")
    types = page.locator("#entry-list tbody tr td:nth-child(3)").all_inner_texts()
    assert sorted(types) == ["policy.activate", "policy.approve"]
    assert "witness-qiu" in page.inner_text("#witnesses")


def test_the_report_downloads_and_other_duties_are_refused(
    console_world: LiveWorld, console_page: ConsolePages
) -> None:
    page = console_page(console_world.actors["auditor-zhao"], lang="en")
    page.goto(f"{console_world.url}/console/auditor/report")
    page.click("form[action='/console/auditor/report'] button[type=submit]")
    page.wait_for_selector("#report-summary")
    assert page.locator("#report-summary tr[data-section]").count() == 6
    with page.expect_download() as download:
        page.click("#report-download")
    saved = download.value.path()
    html = saved.read_text(encoding="utf-8")
    assert "Audit report / 审计报告" in html
    assert "<script" not in html

    other = console_page(console_world.actors["sb-lithium-battery"], lang="en")
    answer = other.goto(f"{console_world.url}/console/auditor/ledger")
    assert answer is not None
    assert answer.status == 403
    assert other.locator("#proof-data").count() == 0
