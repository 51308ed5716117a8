"""Risk warning against a real ``ibx serve``: real events raise alerts on the ledger,
listed by ``GET /v1/alerts`` and ``ibx audit alerts``.

One deployment per module, served over TLS with the security officer's rules file in
its data dir (tight thresholds; working hours that exclude today). Before the server
starts, an officer proposes a policy version (off hours by that file): the risk watch
catches up on history at start, before the first request is answered. Then a sub-brain
is refused three times (two compute requests the pipeline refuses, one call the policy
denies): a ``risk.denial_burst`` alert resting on those entries; a client presenting a
bad token until it is locked out: ``risk.auth_failures``. The auditor and a security
officer list them; a sub-brain gets 403. In-process, on real SQLite: refused EST
enrolments are recorded per enterprise and raise ``risk.enrolment_failures``; two
evaluators on one data dir record each alert once. A rules file others may write, or
one that does not parse, stops the server at start.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.clock import utcnow
from core.errors import ConfigurationError
from edge_tls import DeviceId
from edge_tls.errors import CsrError, TokenUnknownError
from exchange.app import create_app
from exchange.deployment_ca import ensure_deployment_ca
from exchange.identities import Role
from exchange.risk_watch import RISK_ACTOR, RiskWatch, load_rules
from exchange.runtime import Runtime
from exchange.settings import Settings
from policies import BASELINE_PACK, PolicySource
from tests.audit.test_verify_log import LB, ibx
from tests.conftest import initialised
from tests.identities import register_all, sign_duty
from tests.server import ExchangeUrl, free_port, running_exchange

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _rules_text() -> str:
    """Tight thresholds; working hours on no day of today or tomorrow (UTC), so any policy
    step during the test is off hours."""
    today = datetime.now(UTC).weekday()
    days = [d for i, d in enumerate(_DAYS) if i not in (today, (today + 1) % 7)]
    return (
        "[denial_burst]\nthreshold = 3\nwindow_minutes = 10\n"
        "[auth_failures]\nthreshold = 1\n"
        '[off_hours_policy]\ntimezone = "UTC"\nstart = "00:00"\nend = "23:59"\n'
        f"days = {json.dumps(days)}\n"
    )


@dataclass(frozen=True)
class World:
    data: Path
    files: Path
    url: ExchangeUrl
    tokens: dict[str, str]
    rules_sha256: str

    def http(self, name: str) -> httpx.Client:
        cert = self.files / f"{name}.crt"
        return self.url.client(self.tokens[name], client_cert=cert if cert.exists() else None)

    def alerts(self, name: str = "aud", since: int = 0) -> list[dict[str, Any]]:
        with self.http(name) as client:
            answer = client.get("/v1/alerts", params={"since": since})
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = answer.json()["items"]
        return items

    def wait_for(self, rule: str, subject: str) -> dict[str, Any]:
        """The alert once the risk watch recorded it (it passes every second)."""
        deadline = time.monotonic() + 30
        while True:
            try:
                found = [a for a in self.alerts() if (a["rule"], a["subject"]) == (rule, subject)]
            except AssertionError:  # 429 while our own address is locked out
                found = []
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no {rule} alert about {subject}"
            time.sleep(0.2)

    def cli(self, name: str, *args: str) -> Any:
        extra = []
        if (self.files / f"{name}.crt").exists():
            extra = ["--client-cert", str(self.files / f"{name}.crt")]
            extra += ["--client-key", str(self.files / f"{name}.key")]
        return ibx(
            "--token-file",
            str(self.files / f"{name}.token"),
            "audit",
            "alerts",
            *self.url.cli_args(),
            *extra,
            *args,
        )

    def entries(self) -> list[dict[str, Any]]:
        with self.http("aud") as client:
            answer = client.get("/v1/ledger/entries", params={"start": 0, "limit": 1000})
        assert answer.status_code == 200, answer.text
        items: list[dict[str, Any]] = [row["entry"] for row in answer.json()["entries"]]
        return items


def _secret(path: Path, text: str) -> None:
    path.write_text(text + "\n")
    path.chmod(0o600)


def _refused_request() -> dict[str, Any]:
    """A compute request the pipeline refuses: no enterprise of the industry has a dataset."""
    return {
        "purpose": "industry_monitoring",
        "operation": "mean",
        "fields": ["energy_kwh"],
        "industry": LB,
        "engine": "he",
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("alerts")
    data = initialised(root / "data")
    files = root / "files"
    files.mkdir()
    rules = data / "risk.toml"
    rules.write_text(_rules_text())
    rules.chmod(0o600)
    runtime = Runtime(Settings(data_dir=data))
    try:
        made = register_all(
            runtime,
            {
                "officer-1": (Role.SECURITY_OFFICER, None),
                "officer-2": (Role.SECURITY_OFFICER, None),
                "aud": (Role.AUDITOR, None),
                "sb": (Role.SUBBRAIN, LB),
            },
        )
        tokens = {name: issued.token for name, issued in made.items()}
        for name, token in tokens.items():
            _secret(files / f"{name}.token", token)
        ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
        for name in ("aud", "officer-1"):
            runtime.admin_certificates.issue(name, actor="sysadmin", now=utcnow()).write(files)
        pack = root / "pack"  # a version of our own: the baseline with one more comment
        shutil.copytree(BASELINE_PACK, pack)
        with (pack / "policy.csv").open("a") as csv:
            csv.write("# proposed by the alerts test\n")
        source = PolicySource.from_dir(pack)
        runtime.policy.propose(
            source, duty=sign_duty(runtime, "officer-1", "policy.propose", source.hash)
        )
    finally:
        runtime.close()
    env = {
        "IBX_AUTH_MAX_FAILURES": "2",
        "IBX_AUTH_FAILURE_WINDOW_SECONDS": "60",
        "IBX_AUTH_LOCKOUT_SECONDS": "1",
        "IBX_RISK_RULES": str(rules),  # the officer's file (the suite's default is set in conftest)
    }
    with running_exchange(data, env=env) as url:
        yield World(data, files, url, tokens, hashlib.sha256(rules.read_bytes()).hexdigest())


@pytest.fixture(scope="module")
def history(world: World) -> list[dict[str, Any]]:
    """The alerts before the test made any request (the catch-up at start)."""
    return world.alerts()


@pytest.fixture(scope="module")
def denials(world: World, history: list[dict[str, Any]]) -> dict[str, Any]:
    with world.http("sb") as sb:
        for _ in range(2):
            refused = sb.post("/v1/requests", json=_refused_request())
            assert refused.status_code == 403, refused.text
        denied = sb.post("/v1/policies", json={})
        assert denied.status_code == 403, denied.text
    return world.wait_for("risk.denial_burst", "sb")


@pytest.fixture(scope="module")
def lockout(world: World, denials: dict[str, Any]) -> dict[str, Any]:
    with world.url.client("ibx_not-a-token") as stranger:
        codes = [stranger.get("/v1/me").status_code for _ in range(3)]
    assert 429 in codes, codes
    return world.wait_for("risk.auth_failures", "address:127.0.0.1")


def test_the_rules_in_force_are_on_the_ledger(world: World) -> None:
    recorded = [e for e in world.entries() if e["type"] == "audit.risk_rules"]
    assert len(recorded) == 1
    payload = recorded[0]["payload"]
    assert recorded[0]["actor"] == RISK_ACTOR
    assert payload["sha256"] == world.rules_sha256 and payload["source"] == "file"
    assert payload["denial_burst"]["threshold"] == 3
    assert payload["off_hours_policy"]["timezone"] == "UTC"
    assert payload["differencing"]["threshold"] == 2  # left out of the file: the default


def test_history_is_caught_up_before_the_first_request(
    world: World, history: list[dict[str, Any]]
) -> None:
    """The proposal made before the server started is off hours by the officer's file."""
    [alert] = [a for a in history if a["rule"] == "risk.off_hours_policy"]
    assert alert["subject"] == "officer-1" and alert["actor"] == RISK_ACTOR
    assert "policy.propose" in alert["message"] and "UTC" in alert["message"]
    proposed = [e for e in world.entries() if e["type"] == "policy.propose"]
    assert alert["evidence"] == [proposed[0]["index"]]


def test_a_burst_of_denials_raises_one_alert_on_its_entries(
    world: World, denials: dict[str, Any]
) -> None:
    assert denials["severity"] == "warning"
    assert "3 denied requests within 10 minutes" in denials["message"]
    by_index = {e["index"]: e for e in world.entries()}
    cited = [by_index[i] for i in denials["evidence"]]
    assert [e["type"] for e in cited] == ["pipeline.denial", "pipeline.denial", "authz.decision"]
    assert all(e["actor"] == "sb" for e in cited)
    refusal = cited[0]["payload"]
    assert refusal["reason"] == "cohort" and refusal["requester"] == "sb"
    assert cited[2]["payload"]["effect"] == "deny"
    alert_entry = by_index[denials["index"]]
    assert alert_entry["type"] == "audit.alert" and alert_entry["actor"] == RISK_ACTOR
    again = [a for a in world.alerts() if a["rule"] == "risk.denial_burst"]
    assert len(again) == 1  # one per rule, subject and window


def test_a_client_locked_out_for_bad_tokens_raises_an_alert(
    world: World, lockout: dict[str, Any]
) -> None:
    assert lockout["severity"] == "critical"
    assert lockout["message"].startswith("127.0.0.1: locked out 1 time(s)")
    [cited] = [e for e in world.entries() if e["index"] in lockout["evidence"]]
    assert cited["type"] == "identity.auth_lockout"


def test_auditors_and_officers_list_them_with_the_cli(
    world: World, denials: dict[str, Any]
) -> None:
    for name in ("aud", "officer-1"):
        done = world.cli(name, "--json")
        assert done.returncode == 0, done.stderr
        listed = json.loads(done.stdout)
        rules = [a["rule"] for a in listed["alerts"]]
        assert "risk.denial_burst" in rules and "risk.off_hours_policy" in rules
        assert listed["count"] == len(listed["alerts"])
    text = world.cli("aud", "--since", str(denials["index"]))
    assert text.returncode == 0, text.stderr
    first = text.stdout.splitlines()[0]
    assert first.startswith(f"#{denials['index']} ") and "WARNING risk.denial_burst [sb]" in first
    beyond = world.cli("aud", "--since", str(10**9))
    assert beyond.returncode == 0 and beyond.stdout == ""
    assert beyond.stderr.startswith("ibx: no alerts from index")


def test_the_same_listing_on_the_data_dir(world: World, denials: dict[str, Any]) -> None:
    done = ibx(
        "--data-dir",
        str(world.data),
        "--token-file",
        str(world.files / "aud.token"),
        "audit",
        "alerts",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    assert denials["index"] in [a["index"] for a in json.loads(done.stdout)["alerts"]]


def test_pages_follow_since(world: World, denials: dict[str, Any]) -> None:
    with world.http("aud") as client:
        first = client.get("/v1/alerts", params={"limit": 1}).json()
        assert len(first["items"]) == 1 and first["next_since"] > first["items"][0]["index"]
        rest = client.get("/v1/alerts", params={"since": first["next_since"]}).json()
    every = world.alerts()
    assert first["items"] + rest["items"] == every[: 1 + len(rest["items"])]


def test_a_sub_brain_may_not_list_alerts(world: World, history: list[dict[str, Any]]) -> None:
    with world.http("sb") as sb:
        refused = sb.get("/v1/alerts")
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert "alert_read" in refused.json()["detail"]
    done = world.cli("sb")
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "alert_read" in done.stderr


# -- in-process, on a real data dir ----------------------------------------------------------


def _watch(runtime: Runtime, text: str) -> RiskWatch:
    path = runtime.data_dir / "risk.toml"
    path.write_text(text)
    path.chmod(0o600)
    return RiskWatch(runtime, load_rules(runtime.settings.model_copy(update={"risk_rules": path})))


def test_refused_enrolments_are_recorded_per_enterprise_and_raise_an_alert(
    runtime: Runtime,
) -> None:
    register_all(runtime, {"cathode-co": (Role.ENTERPRISE, LB)})
    pki = runtime.edge_pki
    pki.init(actor="sysadmin", now=utcnow())
    token = pki.create_token(DeviceId("cathode-co", "meter-7"), actor="cathode-co", now=utcnow())
    size = runtime.ledger.size()
    for _ in range(3):  # a CSR refused: the token stays unspent, the failure is recorded
        with pytest.raises(CsrError):
            pki.enroll("meter-7", token.token, b"not a csr", now=utcnow())
    with pytest.raises(TokenUnknownError):
        pki.enroll("meter-7", "ibxb_guessed", b"x", now=utcnow())
    with pytest.raises(TokenUnknownError):  # a device no token names: logged only
        pki.enroll("nobody", "ibxb_guessed", b"x", now=utcnow())
    recorded = runtime.ledger.entries(size, 100)
    assert [e.type for e in recorded] == ["edge.enrol.failure"] * 4
    assert [e.payload["reason"] for e in recorded] == ["csr_refused"] * 3 + ["token_unknown"]
    assert all(e.payload["enterprise"] == "cathode-co" for e in recorded)
    assert token.token not in json.dumps([dict(e.payload) for e in recorded])
    assert [h.index for h in runtime.ledger.find(["cathode-co"], ["edge.enrol.failure"])] == [
        e.index for e in recorded
    ]
    watch = _watch(runtime, "[enrolment_failures]\nthreshold = 4\n")
    assert watch.record_rules() and not watch.record_rules()  # once while they are the same
    [alert] = [a for a in watch.catch_up() if a.rule == "risk.enrolment_failures"]
    assert alert.subject == "cathode-co"
    assert list(alert.evidence) == [e.index for e in recorded]


def test_two_evaluators_record_each_alert_once(runtime: Runtime) -> None:
    """Replicas (or a restart) share the cursor: the second evaluator rebuilds its
    windows from the ledger and raises nothing the first recorded; the lock lets one run."""
    register_all(runtime, {"sb": (Role.SUBBRAIN, LB)})
    text = "[denial_burst]\nthreshold = 2\n"
    first, second = _watch(runtime, text), _watch(runtime, text)
    first.catch_up()
    from exchange.pipeline.request import ComputeRequest

    requester = runtime.identities.get("sb")
    for _ in range(3):
        with pytest.raises(Exception, match="no dataset"):
            runtime.pipeline.authorizer.authorize(
                requester, ComputeRequest.from_dict(_refused_request())
            )
    assert [a.rule for a in first.catch_up()] == ["risk.denial_burst"]
    assert second.catch_up() == []
    for _ in range(2):  # still within the window: quiet, in both
        with pytest.raises(Exception, match="no dataset"):
            runtime.pipeline.authorizer.authorize(
                requester, ComputeRequest.from_dict(_refused_request())
            )
    assert second.catch_up() == [] and first.catch_up() == []
    alerts = runtime.ledger.find(["audit:alerts"], ["audit.alert"])
    assert len(alerts) == 1
    try:
        assert first._take_lock() and not second._take_lock()
    finally:
        first.release()
        second.release()


BAD_RULES: list[tuple[str, str | None, int, str]] = [
    # (case, the file's text or None for no file, its mode, what the refusal says)
    ("world-writable", "[denial_burst]\nthreshold = 3\n", 0o666, "others may write it (mode 0666)"),
    ("group-writable", "", 0o620, "group or others may write it (mode 0620)"),
    (
        "malformed",
        "[denial_burst]\nthreshhold = 3\n",
        0o600,
        "[denial_burst] threshhold: unknown key",
    ),
    ("not toml", "[denial_burst\n", 0o600, "is not TOML"),
    ("missing", None, 0o600, "cannot be read"),
]


@pytest.mark.parametrize(("text", "mode", "expected"), [c[1:] for c in BAD_RULES],
                         ids=[c[0] for c in BAD_RULES])  # fmt: skip
def test_an_unusable_rules_file_stops_the_app(
    runtime: Runtime, tmp_path: Path, text: str | None, mode: int, expected: str
) -> None:
    path = tmp_path / "officer" / "risk.toml"
    path.parent.mkdir()
    if text is not None:
        path.write_text(text)
        path.chmod(mode)
    settings = Settings(data_dir=runtime.data_dir, risk_rules=path)
    with pytest.raises(ConfigurationError) as raised:
        load_rules(settings)
    assert expected in str(raised.value) and "\n" not in str(raised.value)
    opened = Runtime(settings)
    try:
        with pytest.raises(ConfigurationError):
            create_app(runtime=opened)
    finally:
        opened.close()


@pytest.mark.slow  # a CLI process of its own; the fast version: ..._stops_the_app
def test_ibx_serve_refuses_a_rules_file_others_may_write(world: World, tmp_path: Path) -> None:
    path = tmp_path / "risk.toml"
    path.write_text("")
    path.chmod(0o646)
    done = subprocess.run(
        [sys.executable, "-m", "exchange.cli", "--data-dir", str(world.data), "serve",
         "--port", str(free_port())],
        env={**_environ(), "IBX_RISK_RULES": str(path)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"risk rules {path}: group or others may write it (mode 0646)" in lines[0]


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}


def test_the_shipped_defaults_apply_without_a_file(runtime: Runtime) -> None:
    loaded = load_rules(runtime.settings.model_copy(update={"risk_rules": None}))
    assert loaded.source == "defaults" and loaded.path is None
    assert loaded.rules.denial_burst.window == timedelta(minutes=10)
    entry = loaded.entry()
    assert entry.source == "defaults" and entry.auth_failures.severity.value == "critical"
