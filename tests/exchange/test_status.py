"""/healthz, /readyz and ``ibx status``: cheap liveness, honest readiness, exit 1 on trouble."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from core.clock import utcnow
from core.events import Event
from exchange.runtime import Runtime
from exchange.status import deployment_status
from policies import BASELINE_PACK
from tests.conftest import initialised
from tests.identities import bootstrap
from tests.in_process import ibx
from tests.policies.duties import OFFICER_A, OFFICER_B, Steps
from tests.server import running_exchange


def _activate_baseline(runtime: Runtime) -> None:
    """The two officers (bootstrapped, ledgered keys) activate the baseline pack."""
    bootstrap(runtime, OFFICER_A.name, OFFICER_B.name)
    steps = Steps(runtime.policy, runtime.settings.ledger_origin)
    version = steps.propose(OFFICER_A, BASELINE_PACK)
    steps.through(version.hash, OFFICER_A, OFFICER_B)


def _forge_head(data_dir: Path) -> None:
    """An operator edits the stored checkpoint (e.g. to hide a rollback)."""
    con = sqlite3.connect(data_dir / "ibx.db")
    with con:
        (note,) = con.execute("SELECT checkpoint FROM ledger_head").fetchone()
        lines = note.split("\n")
        lines[1] = str(int(lines[1]) + 1)
        con.execute("UPDATE ledger_head SET checkpoint = ?", ("\n".join(lines),))
    con.close()


def test_readyz_is_ready_on_a_sound_deployment_and_503_on_a_forged_head(runtime: Runtime) -> None:
    runtime.ledger.append([Event("demo.note", "sysadmin", {"n": 1})])
    origin = {"IBX_LEDGER_ORIGIN": runtime.settings.ledger_origin}
    with running_exchange(runtime.data_dir, env=origin) as base:
        assert httpx.get(f"{base}/healthz", verify=base.verify()).json() == {"status": "ok"}
        ready = httpx.get(f"{base}/readyz", verify=base.verify())
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}
        _forge_head(runtime.data_dir)
        broken = httpx.get(f"{base}/readyz", verify=base.verify())
    assert broken.status_code == 503
    assert broken.headers["content-type"] == "application/problem+json"
    assert broken.json()["detail"] == "failing: ledger"  # no internals for anonymous callers


def test_status_reports_every_check(runtime: Runtime) -> None:
    report = deployment_status(runtime, now=utcnow())
    by_name = {check.name: check for check in report.checks}
    assert set(by_name) == {"database", "ledger", "policy", "edge-ca", "mpc-parties", "fabric"}
    assert by_name["fabric"].ok and by_name["fabric"].detail.startswith("off")
    assert not by_name["policy"].ok and "no active policy" in by_name["policy"].detail
    assert not report.ok

    _activate_baseline(runtime)
    runtime.edge_pki.init(actor="sysadmin", now=utcnow())
    report = deployment_status(runtime, now=utcnow())
    assert report.ok, report.to_dict()
    assert report.tree_size == runtime.ledger.size() > 0

    ca = runtime.edge_pki.authority()
    late = min(ca.root.not_valid_after_utc, ca.issuing.not_valid_after_utc) - timedelta(days=5)
    expiring = {c.name: c for c in deployment_status(runtime, now=late).checks}["edge-ca"]
    assert not expiring.ok and "expires within 30 days" in expiring.detail

    with runtime.db.write() as session:  # an operator flips the active row by hand
        session.execute(text("UPDATE policies_active SET version = :v"), {"v": "f" * 64})
    other = Runtime(runtime.settings)  # another process: reads the row afresh
    try:
        flipped = {c.name: c for c in deployment_status(other, now=utcnow()).checks}["policy"]
    finally:
        other.close()
    assert not flipped.ok and "disagrees with the ledger" in flipped.detail


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_ibx_status_exits_non_zero_when_a_check_fails(tmp_path: Path, as_json: bool) -> None:
    data = initialised(tmp_path / "data")
    done = ibx("--data-dir", str(data), "status", *(["--json"] if as_json else []))
    assert done.returncode == 1, done.stderr
    if as_json:
        report = json.loads(done.stdout)
        assert report["ok"] is False and report["origin"] and report["tree_size"] == 0
        assert [c["name"] for c in report["checks"]][:2] == ["database", "ledger"]
    else:
        assert "FAIL  policy" in done.stdout
