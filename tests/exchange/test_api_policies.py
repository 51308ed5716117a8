"""The security officer's duties over the API: ``/v1/policies``, ``/v1/decisions`` and
certificate revocation, authorized by the active policy, with the domain rules (four
eyes, the lockout guard) kept by :mod:`policies` and refused over HTTP.

The routes are called through :class:`exchange.client.ExchangeClient` on a real
data dir (the same app in-process, as the CLI's local mode runs it); the CLI runs
in both modes, locally and against a real ``ibx serve``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from core.canonical import JsonValue
from core.clock import utcnow
from edge_tls import DeviceId, build_csr
from exchange.access import ADMIN_ROLES
from exchange.access import ROUTES as ROUTES_TABLE
from exchange.cli import main
from exchange.client import ExchangeClient
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from policies import BASELINE_PACK, POLICY_STEPS, PolicySource, Subject, sign_policy_step
from tests.conftest import initialised
from tests.identities import admin_signer, register, register_all, sign_duty, write_key_file
from tests.server import ExchangeUrl, running_exchange
from tests.zygote import ibx_argv

FOUR_EYES = "policies.errors.FourEyesError"
LOCKOUT = "policies.errors.PolicyLockoutError"
FORBIDDEN = "exchange.error_table.ForbiddenError"
SO_APPROVES = "p, security_officer, platform, policy, policy_approve, allow"


@dataclass
class World:
    """A deployment with one identity per duty, a proposed version and a device certificate."""

    data_dir: Path
    runtime: Runtime
    tokens: dict[str, str]
    version: str
    serial: str

    def client(self, who: str) -> ExchangeClient:
        return ExchangeClient.local(self.runtime, token=self.tokens[who])

    def duty(self, who: str, step: str, version: str) -> dict[str, JsonValue]:
        """``who``'s signed ``policy.<step>`` on the full hash ``version``, as a body."""
        signed = sign_policy_step(
            admin_signer(who),
            origin=self.runtime.settings.ledger_origin,
            officer=who,
            step=step,
            version=version,
        )
        return {"duty": signed.to_dict()}

    def proposal(self, who: str, source: PolicySource | None = None) -> dict[str, JsonValue]:
        """The body of ``POST /v1/policies``: the pack and ``who``'s signed proposal."""
        pack = source or PolicySource.from_dir(BASELINE_PACK)
        return {**pack.to_dict(), **self.duty(who, "propose", pack.hash)}

    def step(self, client: ExchangeClient, who: str, step: str, ref: str) -> dict[str, Any]:
        """``who`` (calling through ``client``) signs and sends ``step`` on version ``ref``."""
        version = self.runtime.policy.get(ref).hash
        answer: dict[str, Any] = client.post(
            f"/v1/policies/{ref}/{step}", self.duty(who, step, version)
        )
        return answer


IDENTITIES = {
    "officer-a": (Role.SECURITY_OFFICER, None),
    "officer-b": (Role.SECURITY_OFFICER, None),
    "ops": (Role.SYSADMIN, None),
    "aud": (Role.AUDITOR, None),
    "cathode-co": (Role.ENTERPRISE, "lithium-battery"),
    "sb-lb": (Role.SUBBRAIN, "lithium-battery"),
}


def _deployment(data_dir: Path) -> tuple[Runtime, dict[str, str]]:
    runtime = Runtime(Settings(data_dir=initialised(data_dir)))
    tokens = {name: issued.token for name, issued in register_all(runtime, IDENTITIES).items()}
    return runtime, tokens


def _pack() -> dict[str, JsonValue]:
    return PolicySource.from_dir(BASELINE_PACK).to_dict()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    mp = pytest.MonkeyPatch()
    mp.delenv("IBX_TOKEN", raising=False)
    mp.delenv("IBX_OPA_URL", raising=False)
    runtime, tokens = _deployment(tmp_path_factory.mktemp("policies") / "data")
    runtime.edge_pki.init(actor="ops", now=utcnow())
    bootstrap = runtime.edge_pki.create_token(
        DeviceId("cathode-co", "meter-1"), actor="cathode-co", now=utcnow()
    ).token
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "meter-1")
    issued = runtime.edge_pki.enroll("meter-1", bootstrap, csr, now=utcnow())
    certs = runtime.settings.data_dir.parent / "certs"
    for name, (role, _) in IDENTITIES.items():
        if role in ADMIN_ROLES:
            runtime.admin_certificates.issue(name, actor="ops", now=utcnow()).write(certs)
    for name in IDENTITIES:  # every caller's key file, for --key (only officers' verify)
        write_key_file(certs.parent, name)
    world = World(runtime.settings.data_dir, runtime, tokens, "", f"{issued.serial:x}")
    with world.client("officer-a") as client:
        world.version = client.post("/v1/policies", world.proposal("officer-a"))["hash"]
    try:
        yield world
    finally:
        runtime.close()
        mp.undo()


def _refused(call: object, *args: object, **kwargs: object) -> RemoteRefusalError:
    assert callable(call)
    with pytest.raises(RemoteRefusalError) as caught:
        call(*args, **kwargs)
    return caught.value


# --- who may call: the pack decides, and the three duties stay apart -------------------------

CONTEXT: dict[str, JsonValue] = {
    "domain": "lithium-battery",
    "classification": "core",
    "purpose": "risk_warning",
}
DECIDE: dict[str, JsonValue] = {
    "subject": "sb-lb",
    "action": "raw_export",
    "resource": "dataset:cell-energy",
    "context": CONTEXT,
}

# (method, path, body, action); {v} is the proposed version, {s} a device certificate's serial;
# "pack" and "duty": a proposal or a step's body signed by the caller
ROUTES = [
    ("GET", "/v1/policies", None, "policy_read"),
    ("POST", "/v1/policies", "pack", "policy_propose"),
    ("GET", "/v1/policies/{v}", None, "policy_read"),
    ("POST", "/v1/policies/{v}/test", "duty", "policy_test"),
    ("POST", "/v1/policies/{v}/diff", {}, "policy_test"),
    ("POST", "/v1/policies/{v}/approve", "duty", "policy_approve"),
    ("POST", "/v1/policies/{v}/activate", "duty", "policy_activate"),
    ("POST", "/v1/decisions", DECIDE, "policy_decide"),
    ("POST", "/v1/pki/certificates/{s}/revocation", {"reason": "key-compromise"}, "cert_revoke"),
]
READS = {"policy_read"}
"""What the baseline pack lets auditors do here (they read versions, never change them)."""


def _send(world: World, who: str, method: str, path: str, body: object) -> object:
    url = path.format(v=world.version, s=world.serial)
    payload = body
    if body == "pack":
        payload = world.proposal(who)
    elif body == "duty":
        payload = world.duty(who, url.rsplit("/", 1)[-1], world.version)
    with world.client(who) as client:
        if method == "GET":
            return client.get(url)
        return client.post(url, payload)


CASES = [
    (who, route)
    for who in ("ops", "aud", "cathode-co", "sb-lb")
    for route in ROUTES
    if not (who == "aud" and route[3] in READS)
]


@pytest.mark.parametrize(("who", "route"), CASES, ids=[f"{who}-{r[0]}-{r[1]}" for who, r in CASES])
def test_other_duties_are_refused_with_the_rule_named(
    world: World, who: str, route: tuple[str, str, object, str]
) -> None:
    method, path, body, action = route
    before = world.runtime.ledger.size()
    refused = _refused(_send, world, who, method, path, body)
    assert refused.status == 403
    assert refused.code == FORBIDDEN
    role = IDENTITIES[who][0].value
    assert f"{who} ({role}) may not {action} " in str(refused)
    assert "casbin: " in str(refused)  # the rule that decided is named
    if ROUTES_TABLE[(method, path.replace("{v}", "{ref}").replace("{s}", "{serial}"))].write:
        # a refused write is on the ledger
        events = world.runtime.ledger.entries(before, world.runtime.ledger.size() - before)
        denied = [e for e in events if e.type == "authz.decision"]
        assert [(e.actor, e.payload["action"], e.payload["effect"]) for e in denied] == [
            (who, action, "deny")
        ]
    assert world.runtime.policy.get(world.version).state == "proposed"  # nothing changed


def test_auditors_read_versions(world: World) -> None:
    with world.client("aud") as client:
        [item] = list(client.pages("/v1/policies"))
        shown = client.get(f"/v1/policies/{world.version[:12]}")
    assert item == shown
    assert (item["hash"], item["state"], item["proposed_by"]) == (
        world.version,
        "proposed",
        "officer-a",
    )


def test_list_is_paginated(world: World) -> None:
    with world.client("officer-b") as client:
        page = client.get("/v1/policies", limit=1)
        assert [i["hash"] for i in page["items"]] == [world.version]
        assert page["next_cursor"] is None
        refused = _refused(client.get, "/v1/policies", cursor="a")
    assert refused.status == 400


def test_bad_references_and_bodies_are_refused(world: World) -> None:
    with world.client("officer-b") as client:
        missing = _refused(client.get, "/v1/policies/" + "0" * 64)
        short = _refused(client.get, "/v1/policies/abc")
        no_subject = _refused(client.post, "/v1/decisions", {**DECIDE, "subject": "nobody"})
        bad_time = _refused(client.post, "/v1/decisions", {**DECIDE, "at": "yesterday"})
        bad_sample = _refused(
            client.post, f"/v1/policies/{world.version}/diff", {"requests": [{"name": "x"}]}
        )
        proposal = world.proposal("officer-b")
        bad_pack = _refused(client.post, "/v1/policies", {**proposal, "lines": [["p", "root"]]})
        extra = _refused(client.post, "/v1/policies", {**proposal, "extra": 1})
        unsigned = _refused(client.post, "/v1/policies", _pack())
        no_duty = _refused(client.post, f"/v1/policies/{world.version}/test", {})
    assert (missing.status, short.status) == (404, 404)
    assert (no_subject.status, bad_time.status, bad_sample.status) == (422, 422, 422)
    assert "subject: " in str(no_subject)
    assert bad_pack.status == 422 and bad_pack.code == "policies.errors.CasbinLineError"
    assert extra.status == 400
    assert (unsigned.status, no_duty.status) == (400, 400)  # no duty: the body is incomplete


def test_the_decision_playground(world: World) -> None:
    with world.client("officer-b") as client:
        denied = client.post("/v1/decisions", DECIDE)
        allowed = client.post(
            "/v1/decisions",
            {**DECIDE, "context": {**CONTEXT, "classification": "general"}},
        )
    assert denied["effect"] == "deny"
    assert "rego: raw export of core data is never allowed" in denied["reasons"]
    assert allowed["effect"] == "allow"
    assert list(denied) == ["effect", "reasons", "version"]


# --- signed duties: the officer's own key, verified against the ledger --------------------------


def _forged(world: World, who: str, step: str, version: str, *, key_of: str) -> JsonValue:
    """``who``'s duty signed with ``key_of``'s test key."""
    signed = sign_policy_step(
        admin_signer(key_of),
        origin=world.runtime.settings.ledger_origin,
        officer=who,
        step=step,
        version=version,
    )
    return {"duty": signed.to_dict()}


FORGERIES = [
    ("another key in officer-b's name", "officer-b", "officer-b-forged", "does not verify under "
     "officer-b's ledgered key"),
    ("an officer with no identity", "officer-ghost", "officer-ghost", "officer-ghost"),
    ("the auditor's own ledgered key", "aud", "aud", "aud"),
    ("officer-a's duty sent by officer-b", "officer-a", "officer-a",
     "officer-b sent a duty signed by officer-a"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "signer", "key_of", "why"), FORGERIES, ids=[f[0] for f in FORGERIES]
)
def test_a_forged_duty_is_refused_and_changes_nothing(
    world: World, name: str, signer: str, key_of: str, why: str
) -> None:
    before = world.runtime.ledger.size()
    with world.client("officer-b") as client:
        refused = _refused(
            client.post,
            f"/v1/policies/{world.version}/test",
            _forged(world, signer, "test", world.version, key_of=key_of),
        )
    assert (refused.status, refused.code) == (403, "core.duty.DutyError")
    assert refused.title == "signed duty refused"
    assert why in str(refused)
    assert world.runtime.policy.get(world.version).state == "proposed"
    added = world.runtime.ledger.entries(before, world.runtime.ledger.size() - before)
    assert [e.type for e in added] == ["authz.decision"]  # the gate's decision, no policy step


def test_a_duty_for_another_step_or_version_is_refused(world: World) -> None:
    with world.client("officer-b") as client:
        other_step = _refused(
            client.post, f"/v1/policies/{world.version}/test",
            world.duty("officer-b", "approve", world.version),
        )  # fmt: skip
        other_version = _refused(
            client.post, f"/v1/policies/{world.version}/test",
            world.duty("officer-b", "test", "0" * 64),
        )  # fmt: skip
        malformed = _refused(
            client.post, f"/v1/policies/{world.version}/test",
            {"duty": {"statement": {"kind": "ibx.duty/v1"}, "signature": "AA=="}},
        )  # fmt: skip
    assert (other_step.status, other_version.status, malformed.status) == (403, 403, 403)
    assert "signs policy.approve" in str(other_step)
    assert "not policy.test on" in str(other_version)
    assert world.runtime.policy.get(world.version).state == "proposed"


def test_a_hand_flipped_active_row_denies_everything_and_raises_an_alert(world: World) -> None:
    """The operator makes the proposed, never approved version active in the database:
    every decision (the API's own access checks included) is denied with the reason, one
    critical row.mismatch alert is recorded, and no activation is on the ledger."""
    runtime = world.runtime
    fresh = Runtime(Settings(data_dir=world.data_dir))  # another worker: no cached read
    try:
        with runtime.db.write() as session:
            session.execute(
                text("INSERT INTO policies_active (id, version, activated_at) VALUES (1, :v, :t)"),
                {"v": world.version, "t": "2026-12-02T08:00:00Z"},
            )
        try:
            with ExchangeClient.local(fresh, token=world.tokens["officer-b"]) as client:
                refused = _refused(client.post, "/v1/decisions", DECIDE)
            assert refused.status == 403
            assert "the active policy row disagrees with the ledger" in str(refused)
            decision = fresh.policy.decide(
                Subject("sb-lb", "subbrain", "lithium-battery"), "compute", "dataset:x",
                {**CONTEXT, "engine": "mpc", "operation": "mean", "cohort": 6},
            )  # fmt: skip
            assert not decision.allow and decision.version is None
        finally:
            with runtime.db.write() as session:
                session.execute(text("DELETE FROM policies_active"))
        alerts = [
            runtime.ledger.entry(hit.index).payload
            for hit in runtime.ledger.find(["policy:active"], ["audit.alert"])
        ]
        assert [(a["rule"], a["severity"]) for a in alerts] == [("row.mismatch", "critical")]
        assert alerts[0]["details"] == {"row": world.version, "ledger": None}
        assert runtime.ledger.find(["policy:active"], ["policy.activate"]) == []
    finally:
        fresh.close()


# --- officers: the four-eyes lifecycle over HTTP ------------------------------------------------


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.delenv("IBX_TOKEN", raising=False)
    monkeypatch.delenv("IBX_OPA_URL", raising=False)
    runtime, tokens = _deployment(tmp_path / "data")
    try:
        yield World(runtime.settings.data_dir, runtime, tokens, "", "")
    finally:
        runtime.close()


def test_officers_run_the_lifecycle_and_four_eyes_holds(deployment: World) -> None:
    a, b = deployment.client("officer-a"), deployment.client("officer-b")
    source = PolicySource.from_dir(BASELINE_PACK)
    proposed = a.post("/v1/policies", deployment.proposal("officer-a", source))
    version = proposed["hash"]
    assert version == source.hash  # the exchange stored exactly what was sent
    assert (proposed["state"], proposed["proposed_by"], proposed["tests"]) == (
        "proposed",
        "officer-a",
        "untested",
    )
    again = _refused(a.post, "/v1/policies", deployment.proposal("officer-a", source))
    assert again.status == 409

    report = deployment.step(a, "officer-a", "test", version[:12])
    assert report["passed"] is True and report["error"] is None
    assert report["coverage"]["requests"] > 0
    samples = json.loads((BASELINE_PACK / "requests.json").read_text())[:2]
    diff = b.post(f"/v1/policies/{version[:12]}/diff", {"requests": samples})
    assert [row["name"] for row in diff["rows"]] == [s["name"] for s in samples]
    assert all(row["active"] is None and row["changed"] for row in diff["rows"])

    own = _refused(deployment.step, a, "officer-a", "approve", version)
    assert (own.status, own.code) == (403, FOUR_EYES)
    assert str(own).startswith("officer-a proposed version ")
    assert deployment.step(b, "officer-b", "approve", version)["approved_by"] == "officer-b"
    own = _refused(deployment.step, a, "officer-a", "activate", version)
    assert (own.status, own.code) == (403, FOUR_EYES)
    active = deployment.step(b, "officer-b", "activate", version)
    assert (active["state"], active["activated_by"]) == ("active", "officer-b")
    decided = b.post("/v1/decisions", DECIDE)
    assert decided["version"] == version

    events = [
        (e.type, e.actor, e.payload.get("action"), e.payload.get("effect"))
        for e in deployment.runtime.ledger.entries(0, deployment.runtime.ledger.size())
        if e.type.startswith(("policy.", "authz."))
    ]
    assert ("policy.propose", "officer-a", None, None) in events
    activation = deployment.runtime.ledger.entry(
        deployment.runtime.ledger.find(["policy:active"])[-1].index
    )
    assert activation.payload["duty"]["statement"]["actor"] == "officer-b"  # type: ignore[index,call-overload]
    assert ("policy.approve", "officer-b", None, None) in events
    assert ("policy.activate", "officer-b", None, None) in events
    # the pack allowed officer-a to ask; the four-eyes rule then refused: both recorded
    assert ("authz.decision", "officer-a", "policy_approve", "allow") in events
    a.close()
    b.close()


def test_a_pack_that_lets_a_non_officer_propose_still_meets_the_domain_rule(
    deployment: World, tmp_path: Path
) -> None:
    """Defence in depth: the pack decides who may call, :mod:`policies` still requires a
    security officer to change policy, whatever a version lets through."""
    a, b = deployment.client("officer-a"), deployment.client("officer-b")
    lax = _variant(tmp_path, add="p, subbrain, lithium-battery, policy, policy_propose, allow")
    lax_pack = PolicySource.from_dir(lax)
    version = a.post("/v1/policies", deployment.proposal("officer-a", lax_pack))["hash"]
    assert deployment.step(a, "officer-a", "test", version)["passed"] is True
    deployment.step(b, "officer-b", "approve", version)
    deployment.step(b, "officer-b", "activate", version)
    with deployment.client("sb-lb") as client:
        refused = _refused(client.post, "/v1/policies", deployment.proposal("sb-lb"))
    assert (refused.status, refused.code) == (403, "policies.errors.OfficerRequiredError")
    assert "sb-lb is subbrain; only a security officer may change policy" in str(refused)
    a.close()
    b.close()


def test_a_proposal_is_bounded_in_size(deployment: World) -> None:
    pack = deployment.proposal("officer-a")
    modules = pack["modules"]
    assert isinstance(modules, dict)
    padded = {**pack, "modules": {**modules, "pad.rego": "package pad\n#" + "x" * 70_000}}
    with deployment.client("officer-a") as client:
        refused = _refused(client.post, "/v1/policies", padded)
    assert refused.status == 413
    assert deployment.runtime.policy.versions() == []


# --- the lockout guard: no version may take policy away from the officers -----------------------


def _variant(tmp_path: Path, *, drop: str | None = None, add: str | None = None) -> Path:
    pack = tmp_path / "variant"
    shutil.copytree(BASELINE_PACK, pack)
    lines = (pack / "policy.csv").read_text().splitlines()
    if drop is not None:
        assert drop in lines
        lines.remove(drop)
    if add is not None:
        lines.append(add)
    (pack / "policy.csv").write_text("\n".join(lines) + "\n")
    if drop == SO_APPROVES:  # its own sample requests agree, so its tests pass
        requests = json.loads((pack / "requests.json").read_text())
        for sample in requests:
            if sample["action"] == "policy_approve" and sample["subject"]["role"] == (
                "security_officer"
            ):
                sample["expect"] = "deny"
                sample.pop("reason", None)
        (pack / "requests.json").write_text(json.dumps(requests))
    return pack


def test_a_version_that_locks_the_officers_out_cannot_be_approved(
    deployment: World, tmp_path: Path
) -> None:
    a, b = deployment.client("officer-a"), deployment.client("officer-b")
    source = PolicySource.from_dir(_variant(tmp_path, drop=SO_APPROVES))
    version = a.post("/v1/policies", deployment.proposal("officer-a", source))["hash"]
    assert deployment.step(a, "officer-a", "test", version)["passed"] is True  # agree
    refused = _refused(deployment.step, b, "officer-b", "approve", version)
    assert (refused.status, refused.code) == (409, LOCKOUT)
    assert "would lock the security officers out of managing policy" in str(refused)
    assert "policy_approve" in str(refused)
    assert refused.title == "policy would lock out the security officers"
    assert deployment.runtime.policy.get(version).state == "tested"
    a.close()
    b.close()


def test_an_officer_cannot_activate_a_version_that_locks_them_out(
    deployment: World, tmp_path: Path
) -> None:
    """Activation asks the version again, for the activating officer: one who would be
    demoted by it (a g line making them a sysadmin, whose policy duties are denied)
    cannot switch it on; another officer may."""
    runtime = deployment.runtime
    c = register(runtime, "officer-c", Role.SECURITY_OFFICER, by="officer-a").token
    a, b = deployment.client("officer-a"), deployment.client("officer-b")
    demoting = PolicySource.from_dir(_variant(tmp_path, add="g, officer-c, sysadmin, platform"))
    version = a.post("/v1/policies", deployment.proposal("officer-a", demoting))["hash"]
    assert deployment.step(a, "officer-a", "test", version)["passed"] is True
    deployment.step(b, "officer-b", "approve", version)
    with ExchangeClient.local(runtime, token=c) as client:
        refused = _refused(deployment.step, client, "officer-c", "activate", version)
    assert (refused.status, refused.code) == (409, LOCKOUT)
    assert "cannot be activated" in str(refused)
    assert (
        "it denies security_officer policy_propose, policy_approve, policy_activate in domain "
        "platform: policy_propose: casbin: denied by 'p, sysadmin, platform, policy, "
        "policy_propose, deny'"
    ) in str(refused)
    assert runtime.policy.active_version() is None
    assert deployment.step(b, "officer-b", "activate", version)["state"] == "active"
    a.close()
    b.close()


# --- certificates ---------------------------------------------------------------------------


def test_an_officer_revokes_a_certificate_over_the_api(deployment: World, tmp_path: Path) -> None:
    runtime = deployment.runtime
    runtime.edge_pki.init(actor="ops", now=utcnow())
    serials = []
    for _ in range(2):  # enrolled twice: a line of two certificates, the first superseded
        bootstrap = runtime.edge_pki.create_token(
            DeviceId("cathode-co", "kiln-1"), actor="cathode-co", now=utcnow()
        ).token
        csr = build_csr(ec.generate_private_key(ec.SECP256R1()), "kiln-1")
        serials.append(
            f"{runtime.edge_pki.enroll('kiln-1', bootstrap, csr, now=utcnow()).serial:x}"
        )

    def body(serial: str, reason: str = "key-compromise") -> dict[str, JsonValue]:
        details: dict[str, JsonValue] = {"reason": reason}
        duty = sign_duty(runtime, "officer-b", "certificate.revoke", serial, details)
        return {"reason": reason, "duty": duty.to_dict()}

    with deployment.client("officer-b") as client:
        path = f"/v1/pki/certificates/{serials[1]}/revocation"
        revoked = client.post(path, body(serials[1]))
        again = _refused(client.post, path, body(serials[1]))
        unknown = _refused(client.post, "/v1/pki/certificates/abc123/revocation", body("abc123"))
        malformed = _refused(client.post, "/v1/pki/certificates/xyz/revocation", body("xyz"))
        bad_reason = _refused(client.post, path, body(serials[1], "bored"))
    assert list(revoked) == ["serial", "reason", "revoked_at", "revoked"]
    assert (revoked["serial"], revoked["reason"]) == (serials[1], "key-compromise")
    assert {e["serial"] for e in revoked["revoked"]} == set(serials)  # the whole line
    assert (again.status, unknown.status, malformed.status, bad_reason.status) == (
        409,
        404,
        400,
        400,
    )
    [event] = [
        e
        for e in runtime.ledger.entries(0, runtime.ledger.size())
        if e.type == "edge.certificate.revoke"
    ]
    assert event.actor == "officer-b"


# --- the command line, locally and against a real server -------------------------------------


@dataclass(frozen=True)
class Done:
    """What one ``ibx`` run left: its exit code and what it printed."""

    returncode: int
    stdout: str
    stderr: str


def _argv(
    world: World, args: tuple[str, ...], who: str, remote: ExchangeUrl | None, *, cert: bool
) -> list[str]:
    """``args`` as ``who`` runs them: locally, or against ``remote`` (administrators with
    their client certificate unless ``cert`` is false); a policy step or a revocation
    signed with ``who``'s key file."""
    argv = ["--data-dir", str(world.data_dir), *args, "--token", world.tokens[who]]
    if args[:2] in (("pki", "revoke"), *(("policy", s) for s in POLICY_STEPS)):
        argv += ["--key", str(world.data_dir.parent / f"{who}.key")]
    if remote is not None:
        argv += remote.cli_args()
        crt = world.data_dir.parent / "certs" / f"{who}.crt"
        if cert and crt.exists():
            argv += ["--client-cert", str(crt), "--client-key", str(crt.with_suffix(".key"))]
    return argv


def _process(
    world: World, *args: str, who: str, remote: ExchangeUrl | None = None, cert: bool = True
) -> Done:
    """The real ``ibx`` in its own process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
    done = subprocess.run(
        [*ibx_argv(), *_argv(world, args, who, remote, cert=cert)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


Ibx = Callable[..., Done]


@pytest.fixture
def ibx(world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Ibx:
    """``ibx``'s entry point in this process (its error handling and exit codes included)."""
    for name in [k for k in os.environ if k.startswith("IBX_")]:
        monkeypatch.delenv(name)

    def run(*args: str, who: str, remote: ExchangeUrl | None = None, cert: bool = True) -> Done:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["ibx", *_argv(world, args, who, remote, cert=cert)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return Done(code, out, err)

    return run


@pytest.fixture(scope="module")
def served(world: World) -> Iterator[ExchangeUrl]:
    with running_exchange(world.data_dir) as url:
        yield url


REFUSED_COMMANDS = [
    ("cathode-co", ("policy", "list")),
    ("ops", ("policy", "list")),
    ("sb-lb", ("policy", "propose", str(BASELINE_PACK))),
    ("aud", ("policy", "propose", str(BASELINE_PACK))),
    ("cathode-co", ("policy", "test", "{v}")),
    ("aud", ("policy", "approve", "{v}")),
    ("ops", ("policy", "activate", "{v}")),
    ("sb-lb", ("policy", "decide", "--subject", "sb-lb", "--action", "compute",
               "--resource", "dataset:x")),
    ("cathode-co", ("pki", "revoke", "{s}", "--reason", "key-compromise")),
    ("ops", ("pki", "revoke", "{s}")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("who", "command"),
    REFUSED_COMMANDS,
    ids=[f"{who}-{' '.join(c[:2])}" for who, c in REFUSED_COMMANDS],
)
def test_a_refusal_reads_the_same_locally_and_remotely(
    world: World, served: ExchangeUrl, ibx: Ibx, who: str, command: tuple[str, ...]
) -> None:
    args = [part.format(v=world.version[:12], s=world.serial) for part in command]
    local = ibx(*args, who=who)
    remote = ibx(*args, who=who, remote=served)
    assert (local.returncode, remote.returncode) == (3, 3), (local.stderr, remote.stderr)
    assert local.stderr == remote.stderr
    assert local.stderr.startswith(f"ibx: forbidden: {who} (")
    assert local.stderr.count("\n") == 1
    assert local.stdout == remote.stdout == ""


def test_an_officer_without_the_client_certificate_is_refused_remotely(
    world: World, served: ExchangeUrl, ibx: Ibx
) -> None:
    done = _process(world, "policy", "list", who="officer-a", remote=served, cert=False)
    assert done.returncode == 4, done.stderr
    assert "client certificate" in done.stderr
    assert done.stdout == ""
    with_it = ibx("policy", "list", who="officer-a", remote=served)
    assert with_it.returncode == 0, with_it.stderr
    assert with_it.stdout == ibx("policy", "list", who="officer-a").stdout


def test_pki_revoke_is_the_same_locally_and_remotely(
    world: World, served: ExchangeUrl, ibx: Ibx
) -> None:
    runtime = world.runtime
    serials = []
    for device in ("kiln-local", "kiln-remote"):
        bootstrap = runtime.edge_pki.create_token(
            DeviceId("cathode-co", device), actor="cathode-co", now=utcnow()
        ).token
        csr = build_csr(ec.generate_private_key(ec.SECP256R1()), device)
        serials.append(f"{runtime.edge_pki.enroll(device, bootstrap, csr, now=utcnow()).serial:x}")
    local = ibx("pki", "revoke", serials[0], "--reason", "key-compromise", who="officer-b")
    remote = ibx(
        "pki", "revoke", serials[1], "--reason", "key-compromise", who="officer-b", remote=served
    )
    for serial, done in zip(serials, (local, remote), strict=True):
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"revoked {serial} (key-compromise) at ")
        assert done.stdout.count("\n") == 1
    again_local = ibx("pki", "revoke", serials[1], who="officer-b")
    again_remote = ibx("pki", "revoke", serials[0], who="officer-b", remote=served)
    assert (again_local.returncode, again_remote.returncode) == (1, 1)
    for serial, done in zip(serials[::-1], (again_local, again_remote), strict=True):
        assert done.stderr.startswith(f"ibx: revocation refused: certificate {serial} was already ")
    as_json = ibx("pki", "revoke", "0x" + serials[0].upper(), "--json", who="officer-b")
    assert as_json.returncode == 1  # found (409, not 404): the serial in any case, with 0x
    assert "was already revoked" in as_json.stderr
    revoked = [
        e.payload for e in runtime.ledger.entries(0, runtime.ledger.size())
        if e.type == "edge.certificate.revoke"
    ]  # fmt: skip
    assert {p["serial"] for p in revoked} >= set(serials)


def test_four_eyes_exits_3_locally_and_remotely(
    world: World, served: ExchangeUrl, ibx: Ibx
) -> None:
    """Through the entry point (tests/policies/test_cli.py runs the same refusal in a real
    process, locally and remotely)."""
    local = ibx("policy", "approve", world.version[:12], who="officer-a")
    remote = ibx("policy", "approve", world.version[:12], who="officer-a", remote=served)
    assert (local.returncode, remote.returncode) == (3, 3)
    assert local.stderr == remote.stderr
    assert local.stderr.startswith(
        f"ibx: four-eyes rule violated: officer-a proposed version {world.version[:12]} "
    )
