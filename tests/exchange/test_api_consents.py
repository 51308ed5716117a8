"""Consents over the API: signed statements in (signed by the enterprise, never by the
exchange), own-scope reads, checks and usage, each route authorized by the active pack.

The routes are called through :class:`exchange.client.ExchangeClient` on a real
data dir (the same app in-process, as the CLI's local mode runs it). Each route
is called with a role the pack allows and one it refuses (403 naming the rule);
the own-scope filtering is attacked by a second enterprise, and a revocation
signed with a key other than the enterprise's is refused.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consent import (
    Classification,
    ConsentReceipt,
    ConsentRequest,
    DatasetScope,
    Engine,
    EnterpriseKey,
    KeyRegistration,
    Operation,
    Purpose,
    Requester,
    Revocation,
    SignedReceipt,
    new_consent_id,
)
from core.clock import format_rfc3339, utcnow
from core.keys import Ed25519PublicKey, verify_ed25519
from exchange.cli import main
from exchange.client import ExchangeClient
from exchange.deployment_ca import ensure_deployment_ca
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.identities import bootstrap, register
from tests.server import ExchangeUrl, running_exchange

LB = "lithium-battery"
FORBIDDEN = "exchange.error_table.ForbiddenError"
ACCESS = "consent.errors.ConsentAccessError"
NOT_FOUND = "consent.errors.ConsentNotFoundError"

IDENTITIES = {
    "cathode-co": (Role.ENTERPRISE, LB),
    "anode-co": (Role.ENTERPRISE, LB),
    "sb-lb": (Role.SUBBRAIN, LB),
    "aud": (Role.AUDITOR, None),
    "officer": (Role.SECURITY_OFFICER, None),
    "ops": (Role.SYSADMIN, None),
}


@dataclass
class World:
    runtime: Runtime
    tokens: dict[str, str]
    keys: dict[str, EnterpriseKey]

    def client(self, who: str | None) -> ExchangeClient:
        return ExchangeClient.local(self.runtime, token=self.tokens[who] if who else None)

    @property
    def origin(self) -> str:
        return self.runtime.settings.ledger_origin

    def receipt(
        self,
        enterprise: str,
        *,
        key: EnterpriseKey | None = None,
        min_cohort: int = 1,
        requester: Requester | None = None,
        purpose: Purpose = Purpose.BENCHMARKING,
    ) -> SignedReceipt:
        """A consent ``enterprise`` signed (with ``key``, default its own)."""
        signer = (key or self.keys[enterprise]).signer
        now = utcnow()
        return ConsentReceipt(
            consent_id=new_consent_id(),
            origin=self.origin,
            enterprise=enterprise,
            public_key=signer.public_key,
            scope=(DatasetScope(f"{enterprise}.energy", ("energy_kwh",)),),
            requester=requester or Requester.group("subbrain", LB),
            purposes=(purpose,),
            operations=(Operation.MEAN,),
            engines=(Engine.HE, Engine.MPC),
            min_cohort=min_cohort,
            valid_from=now,
            valid_until=now + timedelta(days=30),
            signed_at=now,
        ).sign(signer)

    def revocation(
        self, consent_id: str, enterprise: str, *, key: EnterpriseKey | None = None
    ) -> dict[str, Any]:
        signer = (key or self.keys[enterprise]).signer
        return (
            Revocation(
                consent_id=consent_id,
                origin=self.origin,
                enterprise=enterprise,
                public_key=signer.public_key,
                reason="test",
                signed_at=utcnow(),
            )
            .sign(signer)
            .to_dict()
        )

    def grant(self, enterprise: str, **kwargs: object) -> dict[str, object]:
        signed = self.receipt(enterprise, **kwargs)  # type: ignore[arg-type]
        with self.client(enterprise) as client:
            answer: dict[str, object] = client.post("/v1/consents", signed.to_dict())
        return answer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("consents")
    runtime = Runtime(Settings(data_dir=initialised(root / "data")))
    keys = {
        name: EnterpriseKey.generate(root / f"{name}.key")
        for name in ("cathode-co", "anode-co", "stray")
    }
    tokens = {}
    bootstrap(runtime)
    for name, (role, industry) in IDENTITIES.items():
        tokens[name] = register(runtime, name, role, industry).token
        if name in keys:
            runtime.identities.set_public_key(name, keys[name].signer.public_key, actor=name)
    for name in ("cathode-co", "anode-co"):
        with ExchangeClient.local(runtime, token=tokens[name]) as client:
            client.post(
                "/v1/datasets",
                {"dataset_id": f"{name}.energy", "fields": ["energy_kwh", "output_units"]},
            )
    yield World(runtime, tokens, keys)
    runtime.close()


def refused(call: object, *args: object, **kwargs: object) -> RemoteRefusalError:
    with pytest.raises(RemoteRefusalError) as info:
        call(*args, **kwargs)  # type: ignore[operator]
    return info.value


# --- submitting a signed consent -----------------------------------------------------------


def test_an_enterprise_submits_what_it_signed_and_the_exchange_ledgers_it(world: World) -> None:
    signed = world.receipt("cathode-co")
    size = world.runtime.ledger.size()
    with world.client("cathode-co") as client:
        answer = client.post("/v1/consents", signed.to_dict())
    assert answer["consent_id"] == signed.receipt.consent_id
    assert answer["enterprise"] == "cathode-co"
    assert answer["status"] == "active"
    assert answer["receipt_sha256"] == signed.receipt_hash()
    assert answer["receipt"] == signed.receipt.to_dict()
    assert base64.b64decode(answer["signature"]) == signed.signature
    entries = [world.runtime.ledger.entry(i) for i in range(size, world.runtime.ledger.size())]
    kinds = [(e.type, e.payload.get("action")) for e in entries]
    assert ("authz.decision", "grant_consent") in kinds  # a write's decision is recorded
    assert ("consent.grant", None) in kinds


@pytest.mark.parametrize("who", ["sb-lb", "aud", "officer", "ops"], ids=lambda w: w)
def test_only_a_role_the_pack_allows_submits_consents(world: World, who: str) -> None:
    signed = world.receipt("cathode-co")
    before = world.runtime.ledger.size()
    with world.client(who) as client:
        error = refused(client.post, "/v1/consents", signed.to_dict())
    assert (error.status, error.code) == (403, FORBIDDEN)
    events = world.runtime.ledger.entries(before, world.runtime.ledger.size() - before)
    assert [(e.type, e.actor, e.payload["effect"]) for e in events] == [
        ("authz.decision", who, "deny")  # the refused write is on the ledger, nothing else
    ]
    assert "may not grant_consent consent:*" in str(error)
    assert "casbin:" in str(error) or "rego:" in str(error)  # the detail names the rule


def test_an_enterprise_cannot_submit_another_enterprises_consent(world: World) -> None:
    """anode-co replays a receipt cathode-co signed: refused before anything is stored."""
    signed = world.receipt("cathode-co")
    with world.client("anode-co") as client:
        error = refused(client.post, "/v1/consents", signed.to_dict())
    assert (error.status, error.code) == (403, ACCESS)
    with world.client("aud") as client:
        ids = [c["consent_id"] for c in client.pages("/v1/consents")]
    assert signed.receipt.consent_id not in ids


def test_a_consent_signed_with_another_key_is_refused(world: World) -> None:
    forged = world.receipt("cathode-co", key=world.keys["anode-co"])
    with world.client("cathode-co") as client:
        error = refused(client.post, "/v1/consents", forged.to_dict())
    assert (error.status, error.code) == (422, "consent.errors.ForeignKeyError")
    assert "the key of anode-co" in str(error)


def test_a_malformed_or_tampered_statement_is_refused(world: World) -> None:
    signed: dict[str, Any] = dict(world.receipt("cathode-co").to_dict())
    with world.client("cathode-co") as client:
        error = refused(client.post, "/v1/consents", {**signed, "signature": "A" * 88})
        assert error.status == 400  # not 64 bytes of base64
        receipt = dict(signed["receipt"])
        receipt["min_cohort"] = 1000
        error = refused(client.post, "/v1/consents", {**signed, "receipt": receipt})
        assert error.code == "consent.errors.BadConsentSignatureError"
        error = refused(client.post, "/v1/consents", {**signed, "receipt": {"kind": "grant"}})
        assert (error.status, error.code) == (400, "consent.errors.InvalidConsentError")


# --- reading: own scope and all scope ------------------------------------------------------


def test_each_enterprise_lists_only_its_own_and_the_auditor_all(world: World) -> None:
    mine = world.grant("cathode-co")["consent_id"]
    theirs = world.grant("anode-co")["consent_id"]
    with world.client("cathode-co") as client:
        listed = list(client.pages("/v1/consents"))
        assert {c["enterprise"] for c in listed} == {"cathode-co"}
        assert mine in {c["consent_id"] for c in listed}
        error = refused(client.get, "/v1/consents", enterprise="anode-co")
        assert (error.status, error.code) == (403, ACCESS)
    with world.client("aud") as client:
        everything = {c["consent_id"] for c in client.pages("/v1/consents")}
        assert {mine, theirs} <= everything
        only = list(client.pages("/v1/consents", enterprise="anode-co"))
        assert {c["enterprise"] for c in only} == {"anode-co"}


@pytest.mark.parametrize(
    ("who", "rule"),
    [
        ("sb-lb", "no line lets subbrain"),
        ("officer", "no line lets security_officer"),
        ("ops", "separation of duties"),
    ],
    ids=["subbrain", "security-officer", "sysadmin"],
)
def test_roles_without_a_consent_read_line_are_refused(world: World, who: str, rule: str) -> None:
    with world.client(who) as client:
        error = refused(client.get, "/v1/consents")
    assert (error.status, error.code) == (403, FORBIDDEN)
    assert rule in str(error)


def test_another_enterprises_consent_is_not_found_like_a_missing_one(world: World) -> None:
    consent_id = world.grant("cathode-co")["consent_id"]
    assert isinstance(consent_id, str)
    with world.client("cathode-co") as client:
        shown = client.get(f"/v1/consents/{consent_id}")
    receipt = SignedReceipt.from_dict(
        {"receipt": shown["receipt"], "signature": shown["signature"]}
    )
    assert verify_ed25519(
        world.keys["cathode-co"].signer.public_key, receipt.canonical(), receipt.signature
    )
    missing = "cst_" + "0" * 32
    with world.client("anode-co") as client:
        other = refused(client.get, f"/v1/consents/{consent_id}")
        absent = refused(client.get, f"/v1/consents/{missing}")
    assert (other.status, other.code, other.title) == (absent.status, absent.code, absent.title)
    assert (other.status, other.code) == (404, NOT_FOUND)
    assert str(other) == str(absent).replace(missing, consent_id)
    with world.client("aud") as client:  # the auditor reads the receipt in full
        assert client.get(f"/v1/consents/{consent_id}")["signature"] == shown["signature"]


# --- revocation ----------------------------------------------------------------------------


def test_revocation_by_another_enterprise_or_key_is_refused_and_the_owners_binds(
    world: World,
) -> None:
    consent_id = world.grant("cathode-co")["consent_id"]
    assert isinstance(consent_id, str)
    path = f"/v1/consents/{consent_id}/revocation"
    with world.client("anode-co") as client:
        # anode-co revokes, signing as itself: it has no such consent
        error = refused(client.post, path, world.revocation(consent_id, "anode-co"))
        assert (error.status, error.code) == (404, NOT_FOUND)
        # ... or signing in cathode-co's name with its own key: not its statement to submit
        forged = world.revocation(consent_id, "cathode-co", key=world.keys["anode-co"])
        error = refused(client.post, path, forged)
        assert (error.status, error.code) == (403, ACCESS)
    with world.client("cathode-co") as client:
        stray = world.revocation(consent_id, "cathode-co", key=world.keys["stray"])
        error = refused(client.post, path, stray)
        assert (error.status, error.code) == (422, "consent.errors.ForeignKeyError")
        other = world.grant("cathode-co")["consent_id"]
        error = refused(
            client.post,
            f"/v1/consents/{other}/revocation",
            world.revocation(consent_id, "cathode-co"),
        )
        assert error.status == 400  # the body names another consent than the path
        assert client.get(f"/v1/consents/{consent_id}")["status"] == "active"
        revoked = client.post(path, world.revocation(consent_id, "cathode-co"))
        assert revoked["status"] == "revoked"
        assert isinstance(revoked["revocation_ledger_index"], int)
        again = refused(client.post, path, world.revocation(consent_id, "cathode-co"))
        assert (again.status, again.code) == (422, "consent.errors.ConsentRevokedError")
    with world.client("sb-lb") as client:
        error = refused(client.post, path, world.revocation(consent_id, "cathode-co"))
        assert (error.status, error.code) == (403, FORBIDDEN)
        assert "may not revoke_consent consent:" in str(error)


# --- check and usage -----------------------------------------------------------------------


def _ask(**extra: object) -> dict[str, object]:
    return {
        "purpose": "benchmarking",
        "operation": "mean",
        "engine": "he",
        "datasets": ["cathode-co.energy", "anode-co.energy"],
        "fields": ["energy_kwh"],
        **extra,
    }


def test_a_subbrain_checks_what_its_consents_allow(world: World) -> None:
    world.grant("cathode-co")
    world.grant("anode-co")
    with world.client("sb-lb") as client:
        report = client.post("/v1/consents/check", _ask())
        assert report["request"]["requester"] == "sb-lb"
        assert set(report["owners"]) == {"anode-co", "cathode-co"}
        assert report["included"] == ["anode-co", "cathode-co"]
        explicit = client.post("/v1/consents/check", _ask(requester="sb-lb"))
        assert (explicit["request"], explicit["included"]) == (
            report["request"],
            ["anode-co", "cathode-co"],
        )
        error = refused(client.post, "/v1/consents/check", _ask(requester="other-brain"))
        assert (error.status, error.code) == (403, ACCESS)
        skewed = format_rfc3339(utcnow() + timedelta(days=2))
        error = refused(client.post, "/v1/consents/check", _ask(time=skewed))
        assert (error.status, error.code) == (400, "consent.errors.RequestTimeSkewError")
        error = refused(client.post, "/v1/consents/check", _ask(datasets=["nobody.data"]))
        assert (error.status, error.code) == (404, "consent.errors.UnknownDatasetError")
        error = refused(client.post, "/v1/consents/check", _ask(purpose="espionage"))
        assert error.status == 400
    for who in ("cathode-co", "aud"):
        with world.client(who) as client:
            error = refused(client.post, "/v1/consents/check", _ask())
        assert (error.status, error.code) == (403, FORBIDDEN)
        assert "may not consent_check" in str(error)


def test_usage_shows_an_enterprise_who_used_its_data_and_nobody_elses(world: World) -> None:
    consent_id = world.grant(
        "cathode-co", requester=Requester.one("sb-lb"), purpose=Purpose.RISK_WARNING
    )["consent_id"]
    ask = _ask(datasets=["cathode-co.energy"], purpose="risk_warning", requester="sb-lb")
    request = ConsentRequest.from_dict(ask)  # type: ignore[arg-type]
    world.runtime.consents.use(request, decision_id="dec-usage-1")
    with world.client("cathode-co") as client:
        usage = list(client.pages("/v1/usage"))
        [used] = [u for u in usage if u["consent_id"] == consent_id]
        assert used["requester"] == "sb-lb"
        assert used["decisions"] == 1
        assert [
            (e["kind"], e["decision_id"], e["requester"], e["purpose"]) for e in used["entries"]
        ] == [("decision", "dec-usage-1", "sb-lb", "risk_warning")]
        error = refused(client.get, "/v1/usage", enterprise="anode-co")
        assert (error.status, error.code) == (403, ACCESS)
    with world.client("anode-co") as client:
        assert consent_id not in {u["consent_id"] for u in client.pages("/v1/usage")}
    with world.client("aud") as client:
        assert consent_id in {u["consent_id"] for u in client.pages("/v1/usage")}
        only = {u["consent_id"] for u in client.pages("/v1/usage", enterprise="anode-co")}
        assert consent_id not in only
    for who, rule in [
        ("officer", "separation of duties"),
        ("ops", "separation of duties"),
        ("sb-lb", "no line lets subbrain"),
    ]:
        with world.client(who) as client:
            error = refused(client.get, "/v1/usage")
        assert (error.status, error.code) == (403, FORBIDDEN), who
        assert rule in str(error), who


def test_no_token_is_401(world: World) -> None:
    with world.client(None) as client:
        for call, args in [
            (client.get, ("/v1/consents",)),
            (client.get, ("/v1/usage",)),
            (client.post, ("/v1/consents/check", _ask())),
        ]:
            error = refused(call, *args)
            assert error.status == 401


# --- pagination ----------------------------------------------------------------------------


def test_a_multi_page_listing_is_followed_to_the_end_in_ledger_order(world: World) -> None:
    made = [world.grant("anode-co")["consent_id"] for _ in range(5)]
    with world.client("anode-co") as client:
        everything = [c["consent_id"] for c in client.pages("/v1/consents")]
        pages, cursor = [], None
        while True:
            page = client.get("/v1/consents", limit=2, cursor=cursor)
            pages.append([c["consent_id"] for c in page["items"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        error = refused(client.get, "/v1/consents", cursor="a")
        assert error.status == 400
    assert [c for p in pages for c in p] == everything
    assert all(len(p) == 2 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 2
    assert len(pages) >= 3
    assert everything[-5:] == made
    indices = [world.runtime.consents.get(c).ledger_index for c in everything]
    assert indices == sorted(indices)


# --- registering the consent key -----------------------------------------------------------


def _registration(
    world: World,
    enterprise: str,
    key: EnterpriseKey,
    previous: Ed25519PublicKey | None,
    *,
    origin: str | None = None,
    signed_at: datetime | None = None,
) -> KeyRegistration:
    return KeyRegistration(
        origin or world.origin, enterprise, key.signer.public_key, previous, signed_at or utcnow()
    )


def test_a_key_is_registered_and_rotated_only_with_both_keys_signatures(
    world: World, tmp_path: Path
) -> None:
    """Whoever holds only the enterprise's token cannot put a key of their own in place
    of the registered one: the replaced key must sign the rotation, and the exchange
    checks it (not only the command line)."""
    world.tokens["kilo-co"] = world.runtime.identities.create(
        "kilo-co", Role.ENTERPRISE, industry=LB
    ).token
    first, second, thief = (EnterpriseKey.generate(tmp_path / f"{n}.key") for n in "abc")
    path = "/v1/me/consent-key"
    with world.client("kilo-co") as client:

        def put(body: dict[str, Any]) -> Any:
            return client.call("PUT", path, json=body).json()

        done = put(_registration(world, "kilo-co", first, None).sign(first.signer).to_dict())
        assert done == {
            "enterprise": "kilo-co",
            "public_key": first.signer.public_key.to_base64(),
            "key_fingerprint": first.signer.public_key.fingerprint(),
        }
        assert client.get("/v1/me")["public_key"] == first.signer.public_key.to_base64()
        attacks = {
            # claims there is no key yet
            "no-previous": (
                _registration(world, "kilo-co", thief, None).sign(thief.signer).to_dict(),
                400, "consent.errors.ConsentKeyError",
            ),
            # names the registered key but cannot sign with it
            "unsigned": (
                {**_registration(world, "kilo-co", thief, first.signer.public_key)
                 .sign(thief.signer, first.signer).to_dict(), "previous_signature": None},
                422, "consent.errors.BadConsentSignatureError",
            ),
            "signed-by-another": (
                {**_registration(world, "kilo-co", thief, first.signer.public_key)
                 .sign(thief.signer, first.signer).to_dict(),
                 "previous_signature": base64.b64encode(
                     thief.signer.sign(b"anything")).decode()},
                422, "consent.errors.BadConsentSignatureError",
            ),
            "another-enterprise": (
                _registration(world, "cathode-co", thief, world.keys["cathode-co"].signer
                              .public_key).sign(thief.signer, world.keys["cathode-co"].signer)
                .to_dict(),
                400, "consent.errors.ConsentKeyError",
            ),
            "stale": (
                _registration(world, "kilo-co", second, first.signer.public_key,
                              signed_at=utcnow() - timedelta(hours=1))
                .sign(second.signer, first.signer).to_dict(),
                400, "consent.errors.InvalidConsentError",
            ),
            "other-deployment": (
                _registration(world, "kilo-co", second, first.signer.public_key,
                              origin="elsewhere.example/ledger")
                .sign(second.signer, first.signer).to_dict(),
                422, "consent.errors.WrongOriginError",
            ),
        }  # fmt: skip
        for name, (body, status, code) in attacks.items():
            error = refused(put, body)
            assert (error.status, error.code) == (status, code), name
        assert client.get("/v1/me")["public_key"] == first.signer.public_key.to_base64()
        rotated = put(
            _registration(world, "kilo-co", second, first.signer.public_key)
            .sign(second.signer, first.signer)
            .to_dict()
        )
        assert rotated["public_key"] == second.signer.public_key.to_base64()
    with world.client("sb-lb") as client:
        error = refused(
            client.call,
            "PUT",
            path,
            json=_registration(world, "sb-lb", thief, None).sign(thief.signer).to_dict(),
        )
    assert (error.status, error.code) == (403, FORBIDDEN)
    assert "may not consent_key_register" in str(error)


# --- the CLI in both modes -----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str


@dataclass
class Served:
    """A data dir served by a real ``ibx serve``; the CLI runs on the dir and against it."""

    data_dir: Path
    url: ExchangeUrl
    files: Path

    def args(self, who: str | None, *, remote: bool) -> list[str]:
        where = [] if remote else ["--data-dir", str(self.data_dir)]
        token = ["--token-file", str(self.files / f"{who}.token")] if who else []
        return [*where, *token]

    def connection(self, who: str | None, *, remote: bool) -> list[str]:
        cert = (
            ["--client-cert", str(self.files / f"{who}.crt"), "--client-key",
             str(self.files / f"{who}.key")]
            if who == "aud"
            else []
        )  # fmt: skip
        return [*(self.url.cli_args() if remote else []), *cert]

    def key(self, name: str) -> str:
        return str(self.files / f"{name}.consent-key")


def _main(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Outcome:
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["ibx", *argv])
        for name in [n for n in os.environ if n.startswith("IBX_")]:
            mp.delenv(name)
        with pytest.raises(SystemExit) as exited:
            main()
    captured = capsys.readouterr()
    code = exited.value.code
    return Outcome(code if isinstance(code, int) else 0, captured.out, captured.err)


def ibx(
    served: Served,
    capsys: pytest.CaptureFixture[str],
    who: str | None,
    *command: str,
    remote: bool,
) -> Outcome:
    """``ibx [--data-dir D] --token-file F COMMAND... [--exchange URL --ca-bundle CA]``."""
    argv = [*served.args(who, remote=remote), *command, *served.connection(who, remote=remote)]
    return _main(capsys, argv)


def both(
    served: Served, capsys: pytest.CaptureFixture[str], who: str | None, *command: str
) -> Outcome:
    """Run ``command`` locally and remotely; they must print and exit the same."""
    local = ibx(served, capsys, who, *command, remote=False)
    remote = ibx(served, capsys, who, *command, remote=True)
    assert local == remote, command
    return local


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("consent-cli")
    data = initialised(root / "data")
    files = root / "files"
    files.mkdir()
    runtime = Runtime(Settings(data_dir=data))
    bootstrap(runtime)
    for name, (role, industry) in IDENTITIES.items():
        token = files / f"{name}.token"
        token.write_text(register(runtime, name, role, industry).token + "\n")
        token.chmod(0o600)
        if role is Role.ENTERPRISE:
            key = EnterpriseKey.generate(files / f"{name}.consent-key")
            runtime.identities.set_public_key(name, key.signer.public_key, actor=name)
            runtime.consents.catalog.register(
                f"{name}.energy",
                owner=name,
                fields=["energy_kwh", "output_units"],
                classification=Classification.IMPORTANT,
                now=utcnow(),
            )
    EnterpriseKey.generate(files / "stray.consent-key")
    ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
    runtime.admin_certificates.issue("aud", actor="sysadmin", now=utcnow()).write(files)
    runtime.close()
    with running_exchange(data) as url:
        yield Served(data, url, files)


GRANTED = re.compile(
    r"^granted (cst_[0-9a-f]{32}) \(receipt sha256 [0-9a-f]{64}, ledger index \d+\)\n$"
)


def _grant(
    served: Served, who: str, *, remote: bool, capsys: pytest.CaptureFixture[str]
) -> Outcome:
    return ibx(
        served, capsys, who,
        "consent", "grant", "--key", served.key(who), "--dataset", f"{who}.energy:energy_kwh",
        "--requester-group", f"subbrain:{LB}", "--purpose", "benchmarking",
        "--operation", "mean", "--min-cohort", "1",
        remote=remote,
    )  # fmt: skip


def test_the_consent_commands_print_and_exit_the_same_locally_and_remotely(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    local = _grant(served, "cathode-co", remote=False, capsys=capsys)
    remote = _grant(served, "anode-co", remote=True, capsys=capsys)
    ids = []
    for done in (local, remote):
        assert (done.code, done.err) == (0, ""), done
        match = GRANTED.match(done.out)
        assert match, done.out
        ids.append(match.group(1))
    mine, theirs = ids

    listing = both(served, capsys, "cathode-co", "consent", "list")
    assert listing.code == 0 and mine in listing.out and theirs not in listing.out
    assert listing.out.startswith(f"{mine}\tcathode-co\tevery subbrain of {LB}\t")
    listed = both(served, capsys, "cathode-co", "consent", "list", "--json")
    assert [c["consent_id"] for c in json.loads(listed.out)] == [mine]
    everything = both(served, capsys, "aud", "consent", "list")
    assert mine in everything.out and theirs in everything.out
    shown = both(served, capsys, "cathode-co", "consent", "show", mine)
    assert json.loads(shown.out)["receipt"]["consent_id"] == mine

    request = json.dumps(
        {"purpose": "benchmarking", "operation": "mean", "engine": "he",
         "datasets": ["cathode-co.energy", "anode-co.energy"], "fields": ["energy_kwh"]}
    )  # fmt: skip
    checked = both(served, capsys, "sb-lb", "consent", "check", "--request", request)
    assert checked.out.splitlines() == [
        f"anode-co: covered by {theirs} [included]",
        f"cathode-co: covered by {mine} [included]",
        "included owners: 2 of 2",
    ]
    reports = [
        json.loads(ibx(served, capsys, "sb-lb", "consent", "check", "--request", request,
                       "--json", remote=remote).out)
        for remote in (False, True)
    ]  # fmt: skip
    for report in reports:
        assert report.pop("checked_at")  # the exchange's clock, a moment apart
    assert reports[0] == reports[1]
    assert reports[0]["included"] == ["anode-co", "cathode-co"]

    usage = both(served, capsys, "cathode-co", "consent", "usage")
    assert usage.out == f"{mine} (every subbrain of {LB}; active): 0 decision(s)\n"
    audited = both(served, capsys, "aud", "consent", "usage", "--json")
    assert {u["consent_id"] for u in json.loads(audited.out)} == {mine, theirs}


@pytest.mark.parametrize(
    ("who", "command", "code", "err"),
    [
        ("anode-co", ("consent", "list", "--enterprise", "cathode-co"), 3,
         "ibx: not allowed for this identity: anode-co may see only its own consents"),
        ("cathode-co", ("consent", "check", "--request", '{"purpose": "benchmarking", '
         '"operation": "mean", "engine": "he", "datasets": ["cathode-co.energy"], '
         '"fields": ["energy_kwh"]}'), 3,
         "ibx: forbidden: cathode-co (enterprise) may not consent_check consent:*: casbin:"),
        ("sb-lb", ("consent", "usage"), 3,
         "ibx: forbidden: sb-lb (subbrain) may not usage_read_all consent:*: casbin:"),
        ("sb-lb", ("consent", "check", "--request", '{"purpose": "espionage"}'), 2,
         "ibx: invalid request: "),
        ("sb-lb", ("consent", "check", "--request", '{"purpose": '), 2, "ibx: invalid consent: "),
        (None, ("consent", "list"), 4,
         "ibx: authentication required: a bearer token is required: IBX_TOKEN, --token-file"),
    ],
    ids=["other-enterprise", "enterprise-checks", "subbrain-usage", "bad-request", "not-json",
         "no-token"],
)  # fmt: skip
def test_refusals_are_the_same_locally_and_remotely(
    served: Served,
    capsys: pytest.CaptureFixture[str],
    who: str | None,
    command: tuple[str, ...],
    code: int,
    err: str,
) -> None:
    done = both(served, capsys, who, *command)
    assert (done.code, done.out) == (code, "")
    assert done.err.startswith(err), done.err
    assert done.err.count("\n") == 1


def test_signed_writes_refused_and_accepted_the_same_in_both_modes(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    granted = GRANTED.match(_grant(served, "cathode-co", remote=True, capsys=capsys).out)
    assert granted
    consent_id = granted.group(1)
    # a sub-brain signing with an enterprise's key file: the pack refuses the submission
    refused = [_grant_as(served, capsys, remote) for remote in (False, True)]
    assert refused[0] == refused[1]
    assert refused[0].code == 3
    assert refused[0].err.startswith(
        "ibx: forbidden: sb-lb (subbrain) may not grant_consent consent:*: casbin:"
    )
    # another enterprise's consent is not found, as if it did not exist
    missing = both(served, capsys, "anode-co", "consent", "show", consent_id)
    assert (missing.code, missing.err) == (
        1,
        f"ibx: consent not found: no consent '{consent_id}'\n",
    )
    # a revocation signed with a key that is not the enterprise's
    stray = both(
        served, capsys, "cathode-co", "consent", "revoke", consent_id, "--key", served.key("stray")
    )
    assert stray.code == 3
    assert stray.err.startswith("ibx: signed with another enterprise's key: ")
    revoke = ("consent", "revoke", consent_id, "--key", served.key("cathode-co"))
    done = ibx(served, capsys, "cathode-co", *revoke, remote=True)
    assert done.code == 0 and done.out.startswith(f"revoked {consent_id} at "), done
    again = both(served, capsys, "cathode-co", *revoke)
    assert again.code == 3
    assert again.err.startswith(f"ibx: consent revoked: {consent_id} was already revoked at ")


def _grant_as(served: Served, capsys: pytest.CaptureFixture[str], remote: bool) -> Outcome:
    return ibx(
        served, capsys, "sb-lb",
        "consent", "grant", "--key", served.key("cathode-co"),
        "--dataset", "cathode-co.energy:energy_kwh", "--requester", "sb-lb",
        "--purpose", "benchmarking", "--operation", "mean",
        remote=remote,
    )  # fmt: skip


def test_register_key_is_the_same_in_both_modes(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    own, stray = served.key("anode-co"), served.key("stray")
    fingerprint = EnterpriseKey.load(Path(own)).signer.public_key.fingerprint()[:16]
    again = both(served, capsys, "anode-co", "consent", "register-key", "--key", own)
    assert again == Outcome(0, f"registered key {fingerprint} to anode-co\n", "")
    unasked = both(served, capsys, "anode-co", "consent", "register-key", "--key", stray)
    assert (unasked.code, unasked.err) == (
        2, f"ibx: consent key error: anode-co already has key {fingerprint}; pass --rotate to "
        "replace it (consents signed with the old key stop verifying)\n",
    )  # fmt: skip
    wrong = both(served, capsys, "anode-co", "consent", "register-key", "--key", stray,
                 "--rotate", "--old-key", stray)  # fmt: skip
    assert (wrong.code, wrong.err) == (
        2, f"ibx: consent key error: --old-key is not anode-co's registered key {fingerprint}\n"
    )  # fmt: skip
    refused = both(served, capsys, "sb-lb", "consent", "register-key", "--key", stray)
    assert refused.code == 3
    assert refused.err.startswith(
        "ibx: forbidden: sb-lb (subbrain) may not consent_key_register consent:*: casbin:"
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_KEYS = st.sampled_from(
    ["version", "kind", "consent_id", "origin", "enterprise", "public_key", "scope", "requester",
     "purposes", "operations", "engines", "min_cohort", "valid_from", "valid_until", "use_limit",
     "notice", "nonce", "signed_at", "reason", "previous_key", "fields", "dataset", "identity"]
)  # fmt: skip


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    statement=st.dictionaries(_KEYS, _JSON, max_size=18),
    valid=st.booleans(),
    route=st.sampled_from(["grant", "revocation", "key"]),
)
def test_no_signed_statement_makes_the_exchange_fail(
    world: World, statement: dict[str, Any], valid: bool, route: str
) -> None:
    """Whatever a client sends as a statement, the answer is a 4xx problem, never a 5xx."""
    if valid:  # start from a well-formed statement and overwrite some of its members
        base = world.receipt("cathode-co").to_dict()["receipt"]
        assert isinstance(base, dict)
        statement = {**base, **statement}
    signature = base64.b64encode(bytes(64)).decode()
    consent_id = "cst_" + "1" * 32
    with world.client("cathode-co") as client:
        if route == "grant":
            call = ("POST", "/v1/consents", {"receipt": statement, "signature": signature})
        elif route == "revocation":
            call = ("POST", f"/v1/consents/{consent_id}/revocation",
                    {"receipt": statement, "signature": signature})  # fmt: skip
        else:
            call = ("PUT", "/v1/me/consent-key",
                    {"registration": statement, "signature": signature})  # fmt: skip
        method, path, body = call
        error = refused(client.call, method, path, json=body)
    assert 400 <= error.status < 500, (error.status, str(error))
