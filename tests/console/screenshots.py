"""Screenshots of the console's main pages for ``docs/console/`` (not part of the suite).

Not collected by ``pytest tests/`` (the name does not start with ``test_``); run it
on its own, in the console's test world (the demo's story, served by a real
``ibx serve``, Debian's chromium)::

    IBX_TEST_DEMO_DIR=/tmp/ibx-demo-run .venv/bin/pytest -q tests/console/screenshots.py

Each page is shot 1280 px wide in Chinese (one in English), cut at
:data:`MAX_HEIGHT`, reduced to a 256-colour palette and written as an optimized
PNG (each under 200 KB). Chinese needs a CJK font for chromium (Debian's
``fonts-noto-cjk``; without one every character is a box, and the script
stops). Look at every picture before committing it.
"""

from __future__ import annotations

import io
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.console.conftest import ConsolePages
from tests.demo_world import LiveWorld, WorldActor

if TYPE_CHECKING:
    from playwright.sync_api import Page

OUT = Path(__file__).resolve().parents[2] / "docs" / "console"
WIDTH = 1280
MAX_HEIGHT = 1500
MAX_BYTES = 200_000
JOB_WAIT_MS = 120_000
NEW_LINE = "p, sysadmin, intelligent-equipment, dataset, mpc_participate, deny"
"""The line the proposed version adds (as tests/console/test_officer.py adds it)."""


@dataclass(frozen=True)
class Shot:
    """One screenshot: the file, who is signed in, the language and how to reach the page
    (a path, or a function that leaves the page where it should be shot)."""

    file: str
    actor: str | None
    reach: str | Callable[[Page, LiveWorld], None]
    lang: str = "zh"


def _api_get(world: LiveWorld, actor: WorldActor, path: str) -> Any:
    with world.url.client(actor.token, client_cert=actor.client_cert) as client:
        answer = client.get(path)
        answer.raise_for_status()
        return answer.json()


def _he_decision(world: LiveWorld) -> tuple[int, str]:
    """The HE mean's decision entry and job, as the demo printed them."""
    found = re.search(r"decision on ledger #(\d+) \(job (job_[0-9a-f]+)\)", world.demo.out)
    assert found, world.demo.step(6)
    return int(found.group(1)), found.group(2)


def _proposed(page: Page, world: LiveWorld) -> None:
    """Officer 王 proposes a version (one deny line more) and tests it: its page, where
    approve and activate are disabled for him."""
    wang = world.actors["officer-wang"]
    page.goto(f"{world.url}/console/officer/propose")
    casbin = page.locator("#pack-casbin")
    casbin.fill(casbin.input_value() + NEW_LINE + "\n")
    with page.expect_navigation():
        page.click("button[data-review]")
    form = page.locator("form[data-sign]")
    form.locator("input[data-sign-key]").set_input_files(str(wang.key_file))
    with page.expect_navigation():
        form.locator("button[data-step=propose]").click()
    card = page.locator("[data-step-card=test]")
    card.locator("input[data-sign-key]").set_input_files(str(wang.key_file))
    with page.expect_navigation():
        card.locator("button[data-step=test]").click()


def _versions(world: LiveWorld) -> tuple[str, str]:
    """The active version and the one waiting for approval."""
    items = _api_get(world, world.actors["officer-li"], "/v1/policies")["items"]
    active = next(v["hash"] for v in items if v["state"] == "active")
    waiting = next(v["hash"] for v in items if v["state"] in ("proposed", "tested"))
    return active, waiting


def _diff(page: Page, world: LiveWorld) -> None:
    active, proposed = _versions(world)
    page.goto(f"{world.url}/console/officer/diff?a={active}&b={proposed}")


def _decide(page: Page, world: LiveWorld) -> None:
    page.goto(f"{world.url}/console/officer/decide")
    page.fill("#decide-subject", "sb-lithium-battery")
    page.fill("#decide-action", "raw_export")
    page.fill("#decide-resource", "dataset:cell-energy")
    page.fill(
        "#decide-context",
        '{"domain": "lithium-battery", "classification": "core", "purpose": "risk_warning"}',
    )
    with page.expect_navigation():
        page.click("form.officer-playground button[type=submit]")


def _entry(page: Page, world: LiveWorld) -> None:
    decision, _job = _he_decision(world)
    page.goto(f"{world.url}/console/auditor/ledger/{decision}")
    page.wait_for_selector("#proof-verdict[data-state=verified], #proof-verdict[data-state=failed]")
    verdict = page.get_attribute("#proof-verdict", "data-state")
    assert verdict == "verified", page.inner_text("#proof")


def _lineage(page: Page, world: LiveWorld) -> None:
    _decision, job = _he_decision(world)
    page.goto(f"{world.url}/console/auditor/lineage?job={job}")
    page.wait_for_selector("#lineage")


def _revoke(page: Page, world: LiveWorld) -> None:
    plant = world.actors["qingchuan-lineng"]
    consent = _api_get(world, plant, "/v1/consents")["items"][0]["consent_id"]
    page.goto(f"{world.url}/console/enterprise/consents/{consent}")
    page.fill("#reason", "no longer benchmarking")
    with page.expect_navigation():
        page.click("#revoke-draft button[type=submit]")


def _request(page: Page, world: LiveWorld) -> None:
    """The sub-brain's request (an MPC benchmark over every consenting plant, as
    tests/console/test_subbrain.py asks it), previewed."""
    page.goto(f"{world.url}/console/subbrain/request")
    page.check("#by-industry")
    page.fill("#industry", "lithium-battery")
    page.fill("#fields", "cells_million")
    page.select_option("#operation", "percentile_rank")
    page.click("details.sb-more summary")
    page.fill("#bound", "1000")
    page.fill("#deadline_seconds", "90")
    with page.expect_navigation():
        page.click("#preview-button")
    assert page.get_attribute("#preview", "data-allowed") == "true", page.inner_text("#preview")


def _result(page: Page, world: LiveWorld) -> None:
    """The same request submitted, its job's page followed until released."""
    _request(page, world)
    with page.expect_navigation():
        page.click("#submit-button")
    page.wait_for_selector(
        "#job[data-state=released], #job[data-state=refused], #job[data-state=failed]",
        timeout=JOB_WAIT_MS,
    )
    assert page.get_attribute("#job", "data-state") == "released", page.inner_text("#job")
    page.goto(page.url.split("?")[0])  # without the "submitted" notice


SHOTS: tuple[Shot, ...] = (
    Shot("login.png", None, "/console/login"),
    Shot("officer-versions.png", "officer-wang", "/console/officer"),
    Shot("officer-version.png", "officer-wang", _proposed),
    Shot("officer-diff.png", "officer-li", _diff),
    Shot("officer-decide.png", "officer-li", _decide),
    Shot("auditor-ledger.png", "auditor-zhao", "/console/auditor/ledger"),
    Shot("auditor-entry.png", "auditor-zhao", _entry),
    Shot("auditor-lineage.png", "auditor-zhao", _lineage),
    Shot("auditor-alerts.png", "auditor-zhao", "/console/auditor/alerts"),
    Shot("enterprise-consents.png", "qingchuan-lineng", "/console/enterprise/consents"),
    Shot("enterprise-usage.png", "xinghe-storage", "/console/enterprise/usage"),
    Shot("enterprise-usage-en.png", "xinghe-storage", "/console/enterprise/usage", lang="en"),
    Shot("enterprise-revoke.png", "qingchuan-lineng", _revoke),
    Shot("enterprise-devices.png", "xinghe-storage", "/console/enterprise/devices"),
    Shot(
        "subbrain-catalog.png",
        "sb-lithium-battery",
        "/console/subbrain/catalog?field=cells_million&industry=lithium-battery",
    ),
    Shot("subbrain-request.png", "sb-lithium-battery", _request),
    Shot("subbrain-result.png", "sb-lithium-battery", _result),
)


def _save(png: bytes, target: Path) -> int:
    """Cut, quantize and optimize ``png`` into ``target``; its size in bytes."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    if image.height > MAX_HEIGHT:
        image = image.crop((0, 0, image.width, MAX_HEIGHT))
    colours = 256
    while True:
        buffer = io.BytesIO()
        image.quantize(colors=colours, dither=Image.Dither.NONE).save(
            buffer, format="PNG", optimize=True
        )
        if buffer.tell() <= MAX_BYTES or colours <= 32:
            break
        colours //= 2
    target.write_bytes(buffer.getvalue())
    return buffer.tell()


def test_screenshots(console_world: LiveWorld, console_page: ConsolePages) -> None:
    """Shoot every page of :data:`SHOTS` into ``docs/console/``."""
    fonts = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False)
    assert fonts.stdout.strip(), "no CJK font: apt-get install fonts-noto-cjk"
    OUT.mkdir(parents=True, exist_ok=True)
    for shot in SHOTS:
        actor = console_world.actors[shot.actor] if shot.actor else None
        page = console_page(actor, lang=shot.lang)
        page.set_viewport_size({"width": WIDTH, "height": 900})
        if isinstance(shot.reach, str):
            page.goto(f"{console_world.url}{shot.reach}")
        else:
            shot.reach(page, console_world)
        page.wait_for_load_state("load")
        size = _save(page.screenshot(full_page=True), OUT / shot.file)
        assert size <= MAX_BYTES, f"{shot.file}: {size} bytes"
