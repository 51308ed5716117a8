"""Administrators are registered, revoked and act only by security officers' signed duties.

Real SQLite, a real ledger, the real CLI in-process. Each refusal is an attack
that must fail: a registration without a duty, one signed by a non-officer,
by a revoked officer or by another key; an operator who swaps a key, un-revokes
an officer or flips a role in the database, or appends a registration to the
ledger by hand; certificate revocations without a duty or with a forged one.
"""

from __future__ import annotations

import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.clock import utcnow
from core.duty import DutyError, SignedDuty
from core.events import Event
from core.keys import Ed25519Signer
from edge_tls import DeviceId, RevocationReason, build_csr
from exchange.cli import app
from exchange.client import ExchangeClient
from exchange.deployment_ca import ensure_deployment_ca
from exchange.error_table import RemoteRefusalError
from exchange.identities import IdentityError, Role, Status
from exchange.identity_entries import IdentityCreateEntry
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.identities import (
    admin_signer,
    bootstrap,
    identity_duty,
    register,
    sign_duty,
    write_key_file,
)
from tests.zygote import ibx_argv

runner = CliRunner()


@dataclass
class World:
    runtime: Runtime
    work: Path
    tokens: dict[str, str]

    @property
    def db_path(self) -> Path:
        return self.runtime.data_dir / "ibx.db"

    def alerts(self, subject: str) -> list[dict[str, object]]:
        found = self.runtime.ledger.find([subject], ["audit.alert"])
        return [dict(self.runtime.ledger.entry(hit.index).payload) for hit in found]

    def sql(self, statement: str, *params: object) -> None:
        con = sqlite3.connect(self.db_path)
        with con:
            con.execute(statement, params)
        con.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("duties")
    runtime = Runtime(Settings(data_dir=initialised(work / "data")))
    made = {i.identity.name: i.token for i in bootstrap(runtime)}
    for name, role in (
        ("aud-1", Role.AUDITOR),
        ("officer-3", Role.SECURITY_OFFICER),
        ("officer-swapped", Role.SECURITY_OFFICER),
        ("officer-unrevoked", Role.SECURITY_OFFICER),
        ("aud-promoted", Role.AUDITOR),
    ):
        made[name] = register(runtime, name, role, by="officer-1").token
    made["factory-a"] = register(runtime, "factory-a", Role.ENTERPRISE, "lithium-battery").token
    yield World(runtime, work, made)
    runtime.close()


def _new_key() -> Ed25519Signer:
    return Ed25519Signer.generate("new-admin")


# --- registration --------------------------------------------------------------------------


def test_an_administrator_needs_a_key_and_a_duty(world: World) -> None:
    registry = world.runtime.identities
    key = _new_key().public_key
    with pytest.raises(IdentityError, match="public key"):
        registry.create("no-key", Role.AUDITOR)
    with pytest.raises(IdentityError, match=r"needs an identity\.create duty"):
        registry.create("no-duty", Role.WITNESS, public_key=key)
    with pytest.raises(IdentityError, match="only administrators"):
        registry.create(
            "ent-x",
            Role.ENTERPRISE,
            duty=identity_duty(registry, "ent-x", Role.AUDITOR, key),
        )
    assert not [i for i in registry.list() if i.name in {"no-key", "no-duty", "ent-x"}]


@pytest.mark.parametrize(
    ("by", "signer", "match"),
    [
        ("aud-1", None, "not an active security_officer"),
        ("nobody", None, "no identity of this exchange"),
        ("officer-2", Ed25519Signer.generate("forger"), "does not verify"),
        ("factory-a", None, "not an active security_officer"),
    ],
    ids=["auditor", "unknown-name", "forged-key", "enterprise"],
)
def test_a_registration_not_signed_by_an_officer_is_refused(
    world: World, by: str, signer: Ed25519Signer | None, match: str
) -> None:
    key = _new_key().public_key
    duty = identity_duty(world.runtime, "aud-x", Role.AUDITOR, key, by=by, signer=signer)
    with pytest.raises(DutyError, match=match):
        world.runtime.identities.create("aud-x", Role.AUDITOR, public_key=key, duty=duty)


def test_a_duty_for_another_name_role_or_key_is_refused(world: World) -> None:
    registry = world.runtime.identities
    key, other = _new_key().public_key, _new_key().public_key
    for_other_name = identity_duty(registry, "aud-y", Role.AUDITOR, key)
    with pytest.raises(DutyError, match=r"not identity\.create on 'aud-z'"):
        registry.create("aud-z", Role.AUDITOR, public_key=key, duty=for_other_name)
    as_auditor = identity_duty(registry, "wit-z", Role.AUDITOR, key)
    with pytest.raises(IdentityError, match="not role security_officer"):
        registry.create("wit-z", Role.SECURITY_OFFICER, public_key=key, duty=as_auditor)
    with pytest.raises(IdentityError, match="not role auditor and key"):
        registry.create(
            "aud-z",
            Role.AUDITOR,
            public_key=other,
            duty=identity_duty(registry, "aud-z", Role.AUDITOR, key),
        )
    stale = sign_duty(
        registry,
        "officer-1",
        "identity.create",
        "aud-z",
        {"role": "auditor", "public_key": key.to_base64()},
        at=utcnow().replace(year=2020),
    )
    with pytest.raises(DutyError, match="more than 300 s from now"):
        registry.create("aud-z", Role.AUDITOR, public_key=key, duty=stale)


def test_an_officers_duty_registers_and_is_recorded_in_the_entry(world: World) -> None:
    registry = world.runtime.identities
    key = admin_signer("wit-1").public_key
    duty = identity_duty(registry, "wit-1", Role.WITNESS, key, by="officer-2")
    issued = registry.create("wit-1", Role.WITNESS, public_key=key, duty=duty)
    assert issued.identity.public_key == key
    [hit] = world.runtime.ledger.find(["wit-1"], ["identity.create"])
    entry = world.runtime.ledger.entry(hit.index)
    assert entry.actor == "officer-2"
    parsed = IdentityCreateEntry.model_validate(entry.payload)
    assert parsed.duty is not None and not parsed.bootstrap
    assert SignedDuty.from_dict(parsed.duty) == duty
    assert world.runtime.duty_keys.duty_key("wit-1", "witness") == key


def test_bootstrap_only_on_an_empty_registry(world: World) -> None:
    with pytest.raises(IdentityError, match="already holds identities"):
        bootstrap(world.runtime, "officer-8", "officer-9")


def test_an_administrators_key_is_not_replaced_without_a_registration(world: World) -> None:
    with pytest.raises(IdentityError, match="register a new identity"):
        world.runtime.identities.set_public_key("aud-1", _new_key().public_key, actor="aud-1")


# --- revocation ----------------------------------------------------------------------------


def test_a_revoked_officer_signs_nothing(world: World) -> None:
    registry = world.runtime.identities
    with pytest.raises(IdentityError, match=r"needs an identity\.revoke duty"):
        registry.revoke("officer-3")
    forged = sign_duty(
        registry,
        "officer-1",
        "identity.revoke",
        "officer-3",
        {"role": "security_officer"},
        signer=Ed25519Signer.generate("forger"),
    )
    with pytest.raises(DutyError):
        registry.revoke("officer-3", duty=forged)
    assert registry.get("officer-3").status is Status.ACTIVE
    duty = sign_duty(
        registry, "officer-2", "identity.revoke", "officer-3", {"role": "security_officer"}
    )
    revoked = registry.revoke("officer-3", duty=duty)
    assert revoked.status is Status.REVOKED
    [hit] = world.runtime.ledger.find(["officer-3"], ["identity.revoke"])
    entry = world.runtime.ledger.entry(hit.index)
    assert entry.actor == "officer-2" and entry.payload["duty"] == duty.to_dict()
    key = _new_key().public_key
    late = identity_duty(registry, "aud-late", Role.AUDITOR, key, by="officer-3")
    with pytest.raises(DutyError, match="not an active security_officer"):
        registry.create("aud-late", Role.AUDITOR, public_key=key, duty=late)


def test_the_last_officer_is_not_revoked(tmp_path: Path) -> None:
    runtime = Runtime.initialise(Settings(data_dir=tmp_path / "data"))
    try:
        bootstrap(runtime, "first", "second")
        registry = runtime.identities
        registry.revoke(
            "second",
            duty=sign_duty(
                registry, "first", "identity.revoke", "second", {"role": "security_officer"}
            ),
        )
        with pytest.raises(IdentityError, match="last active security officer"):
            registry.revoke(
                "first",
                duty=sign_duty(
                    registry, "first", "identity.revoke", "first", {"role": "security_officer"}
                ),
            )
    finally:
        runtime.close()


# --- rows are an index: an operator's edits are refused and raised --------------------------


def test_a_swapped_key_in_the_row_is_refused_and_raised(world: World) -> None:
    """The operator puts their own key in an officer's row and signs in the officer's name."""
    operator = Ed25519Signer.generate("operator")
    world.sql(
        "UPDATE exchange_identities SET public_key = ? WHERE name = ?",
        operator.public_key.raw,
        "officer-swapped",
    )
    key = _new_key().public_key
    duty = identity_duty(
        world.runtime, "aud-evil", Role.AUDITOR, key, by="officer-swapped", signer=operator
    )
    with pytest.raises(DutyError, match="disagrees with the ledger"):
        world.runtime.identities.create("aud-evil", Role.AUDITOR, public_key=key, duty=duty)
    honest = identity_duty(world.runtime, "aud-evil", Role.AUDITOR, key, by="officer-swapped")
    with pytest.raises(DutyError, match="disagrees with the ledger"):
        world.runtime.identities.create("aud-evil", Role.AUDITOR, public_key=key, duty=honest)
    alerts = world.alerts("officer-swapped")
    assert alerts, "the mismatch is on the ledger though the act was refused"
    alert = alerts[-1]
    assert (alert["rule"], alert["severity"], alert["subject"]) == (
        "row.mismatch",
        "critical",
        "officer-swapped",
    )
    [created] = world.runtime.ledger.find(["officer-swapped"], ["identity.create"])
    assert alert["evidence"] == [created.index]
    assert "aud-evil" not in {i.name for i in world.runtime.identities.list()}


def test_an_officer_unrevoked_in_the_database_is_refused_and_raised(world: World) -> None:
    registry = world.runtime.identities
    registry.revoke(
        "officer-unrevoked",
        duty=sign_duty(
            registry,
            "officer-1",
            "identity.revoke",
            "officer-unrevoked",
            {"role": "security_officer"},
        ),
    )
    world.sql("UPDATE exchange_identities SET status = 'active' WHERE name = 'officer-unrevoked'")
    with pytest.raises(DutyError, match="was revoked"):
        world.runtime.duty_keys.duty_key("officer-unrevoked", "security_officer")
    assert any(
        "revoked on the ledger" in str(a["message"]) for a in world.alerts("officer-unrevoked")
    )


def test_a_role_flipped_in_the_database_is_refused_and_raised(world: World) -> None:
    world.sql(
        "UPDATE exchange_identities SET role = 'security_officer' WHERE name = 'aud-promoted'"
    )
    key = _new_key().public_key
    duty = identity_duty(world.runtime, "aud-q", Role.AUDITOR, key, by="aud-promoted")
    with pytest.raises(DutyError, match="registered 'aud-promoted' as auditor"):
        world.runtime.identities.create("aud-q", Role.AUDITOR, public_key=key, duty=duty)
    assert world.alerts("aud-promoted")


def test_an_officer_appended_to_the_ledger_by_hand_signs_nothing(world: World) -> None:
    """Whoever holds the ledger key appends a registration with no officer's duty, and a row."""
    ghost = admin_signer("ghost")
    entry = IdentityCreateEntry(
        name="ghost",
        role="security_officer",
        industry=None,
        public_key=ghost.public_key.to_base64(),
        token_expires_at="2099-01-01T00:00:00.000000Z",
    )
    world.runtime.ledger.record(
        Event(entry.TYPE, "sysadmin", entry.to_payload(), subjects=("ghost",))
    )
    world.sql(
        "INSERT INTO exchange_identities (name, role, status, public_key, industry, token_hash, "
        "token_expires_at, created_at) VALUES (?, ?, 'active', ?, NULL, ?, ?, ?)",
        "ghost",
        "security_officer",
        ghost.public_key.raw,
        b"\0" * 32,
        "2099-01-01T00:00:00.000000Z",
        "2026-01-01T00:00:00.000000Z",
    )
    key = _new_key().public_key
    duty = identity_duty(world.runtime, "aud-ghost", Role.AUDITOR, key, by="ghost")
    with pytest.raises(DutyError, match="carries no officer's duty"):
        world.runtime.identities.create("aud-ghost", Role.AUDITOR, public_key=key, duty=duty)
    # nor may it pose as a bootstrap officer this late
    late = IdentityCreateEntry.model_validate(
        {**entry.to_payload(), "name": "ghost-2", "bootstrap": True}
    )
    world.runtime.ledger.record(
        Event(late.TYPE, "ibx-init", late.to_payload(), subjects=("ghost-2",))
    )
    world.sql(
        "INSERT INTO exchange_identities (name, role, status, public_key, industry, token_hash, "
        "token_expires_at, created_at) VALUES (?, ?, 'active', ?, NULL, ?, ?, ?)",
        "ghost-2",
        "security_officer",
        ghost.public_key.raw,
        b"\1" * 32,
        "2099-01-01T00:00:00.000000Z",
        "2026-01-01T00:00:00.000000Z",
    )
    with pytest.raises(DutyError, match="follows another registration"):
        world.runtime.duty_keys.duty_key("ghost-2", "security_officer")


# --- certificate revocations ---------------------------------------------------------------


def test_an_administrators_certificate_revocation_needs_an_officers_duty(world: World) -> None:
    runtime = world.runtime
    ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
    issued = runtime.admin_certificates.issue("aud-1", actor="sysadmin", now=utcnow())
    serial = format(issued.serial, "x")
    forged = sign_duty(
        runtime,
        "officer-1",
        "certificate.revoke",
        serial,
        {"reason": "key-compromise"},
        signer=Ed25519Signer.generate("forger"),
    )
    with pytest.raises(DutyError):
        runtime.admin_certificates.revoke("aud-1", duty=forged, now=utcnow())
    by_auditor = sign_duty(runtime, "aud-1", "certificate.revoke", serial, {"reason": "x"})
    with pytest.raises(DutyError):
        runtime.admin_certificates.revoke("aud-1", duty=by_auditor, now=utcnow())
    assert [c.revoked_at for c in runtime.admin_certificates.certificates("aud-1")] == [None]
    duty = sign_duty(
        runtime, "officer-1", "certificate.revoke", serial, {"reason": "key-compromise"}
    )
    assert runtime.admin_certificates.revoke("aud-1", duty=duty, now=utcnow()) == (serial,)
    [hit] = runtime.ledger.find([serial], ["identity.certificate.revoke"])
    entry = runtime.ledger.entry(hit.index)
    assert entry.actor == "officer-1" and entry.payload["duty"] == duty.to_dict()
    assert entry.payload["reason"] == "key-compromise"


def _device_certificate(runtime: Runtime, device: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec

    now = utcnow()
    token = runtime.edge_pki.create_token(
        DeviceId("factory-a", device), actor="factory-a", now=now
    ).token
    csr = build_csr(ec.generate_private_key(ec.SECP256R1()), device)
    return format(runtime.edge_pki.enroll(device, token, csr, now=now).serial, "x")


def test_an_edge_revocation_over_the_api_is_the_officers_signed_duty(world: World) -> None:
    runtime = world.runtime
    ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
    serial = _device_certificate(runtime, "press-9")
    path = f"/v1/pki/certificates/{serial}/revocation"
    reason = RevocationReason.KEY_COMPROMISE.value
    with ExchangeClient.local(runtime, token=world.tokens["officer-1"]) as client:
        with pytest.raises(RemoteRefusalError) as missing:
            client.post(path, {"reason": reason})
        assert missing.value.status == 400 and "duty" in str(missing.value)
        forged = sign_duty(
            runtime,
            "officer-1",
            "certificate.revoke",
            serial,
            {"reason": reason},
            signer=Ed25519Signer.generate("forger"),
        )
        for duty, status in (
            (forged, 403),
            (
                sign_duty(runtime, "officer-2", "certificate.revoke", serial, {"reason": reason}),
                403,
            ),
            (sign_duty(runtime, "officer-1", "certificate.revoke", serial, {"reason": "x"}), 403),
            (sign_duty(runtime, "officer-1", "certificate.revoke", "abc", {"reason": reason}), 403),
        ):
            with pytest.raises(RemoteRefusalError) as refused:
                client.post(path, {"reason": reason, "duty": duty.to_dict()})
            assert refused.value.status == status, refused.value
        duty = sign_duty(runtime, "officer-1", "certificate.revoke", serial, {"reason": reason})
        answer = client.post(path, {"reason": reason, "duty": duty.to_dict()})
    assert answer["serial"] == serial
    [hit] = runtime.ledger.find([serial], ["edge.certificate.revoke"])
    entry = runtime.ledger.entry(hit.index)
    assert entry.actor == "officer-1" and entry.payload["duty"] == duty.to_dict()


# --- the command line ----------------------------------------------------------------------


def test_init_registers_two_bootstrap_officers_and_the_cli_signs_registrations(
    tmp_path: Path,
) -> None:
    data, keys = tmp_path / "data", tmp_path / "officer-keys"
    done = runner.invoke(
        app,
        ["--data-dir", str(data), "init", "--officer", "wang", "--officer", "li",
         "--officer-keys", str(keys)],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    lines = [line for line in done.stdout.splitlines() if line.startswith("officer ")]
    assert len(lines) == 2
    tokens = {line.split()[1]: line.split("token ")[1].strip() for line in lines}
    for name in ("wang", "li"):
        assert stat.S_IMODE((keys / f"{name}.key").stat().st_mode) == 0o600
        assert tokens[name].startswith("ibx_")
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    runtime = Runtime(Settings(data_dir=data))
    try:
        first = runtime.ledger.entries(0, 2)
        assert [(e.type, e.payload["name"], e.payload["bootstrap"]) for e in first] == [
            ("identity.create", "wang", True),
            ("identity.create", "li", True),
        ]
        who = runtime.identities.authenticate(tokens["li"])
        assert who is not None and who.role is Role.SECURITY_OFFICER
    finally:
        runtime.close()
    keygen = runner.invoke(app, ["identity", "keygen", "--out", str(tmp_path / "a1.key")])
    assert keygen.exit_code == 0, keygen.output
    public = keygen.stdout.strip().splitlines()[-1]
    base = ["--data-dir", str(data), "identity", "create", "--role", "auditor", "--name", "a1"]
    unsigned = runner.invoke(app, [*base, "--public-key", public])
    assert unsigned.exit_code != 0 and "--key OFFICER_KEYFILE" in str(unsigned.exception)
    not_an_officer = runner.invoke(
        app, [*base, "--public-key", public, "--key", str(tmp_path / "a1.key")]
    )
    assert not_an_officer.exit_code != 0
    signed = runner.invoke(
        app, [*base, "--public-key", str(tmp_path / "a1.key"), "--key", str(keys / "li.key")]
    )
    assert signed.exit_code == 0, signed.output
    assert signed.stdout.strip().splitlines()[-1].startswith("ibx_")
    revoke = ["--data-dir", str(data), "identity", "revoke", "a1"]
    assert runner.invoke(app, revoke).exit_code != 0
    revoked = runner.invoke(app, [*revoke, "--key", str(keys / "wang.key")])
    assert revoked.exit_code == 0, revoked.output
    again = runner.invoke(app, ["--data-dir", str(data), "init"])
    assert again.exit_code != 0


def test_write_key_file_matches_the_test_signer(tmp_path: Path) -> None:
    from consent import EnterpriseKey

    path = write_key_file(tmp_path, "officer-1")
    assert EnterpriseKey.load(path).signer.public_key == admin_signer("officer-1").public_key


# --- over HTTP: the system administrator submits, the officer's duty decides -----------------


def test_the_registry_routes_take_the_officers_duty(world: World) -> None:
    runtime = world.runtime
    if "ops-1" not in world.tokens:
        world.tokens["ops-1"] = register(runtime, "ops-1", Role.SYSADMIN, by="officer-1").token
    key = admin_signer("aud-http").public_key
    body = {"name": "aud-http", "role": "auditor", "public_key": key.to_base64()}
    forged = identity_duty(
        runtime, "aud-http", Role.AUDITOR, key, signer=Ed25519Signer.generate("forger")
    )
    with ExchangeClient.local(runtime, token=world.tokens["ops-1"]) as client:
        with pytest.raises(RemoteRefusalError) as unsigned:
            client.post("/v1/identities", body)
        assert unsigned.value.status == 400 and "duty" in str(unsigned.value)
        with pytest.raises(RemoteRefusalError) as refused:
            client.post("/v1/identities", {**body, "duty": forged.to_dict()})
        assert refused.value.status == 403
        duty = identity_duty(runtime, "aud-http", Role.AUDITOR, key, by="officer-2")
        made = client.post("/v1/identities", {**body, "duty": duty.to_dict()})
        assert made["name"] == "aud-http" and made["token"].startswith("ibx_")
        enterprise = client.post(
            "/v1/identities", {"name": "ent-http", "role": "enterprise", "industry": "x"}
        )
        assert enterprise["role"] == "enterprise"
        path = "/v1/identities/aud-http/revocation"
        with pytest.raises(RemoteRefusalError) as no_duty:
            client.post(path, {})
        assert no_duty.value.status == 400
        revocation = sign_duty(
            runtime, "officer-2", "identity.revoke", "aud-http", {"role": "auditor"}
        )
        assert client.post(path, {"duty": revocation.to_dict()})["status"] == "revoked"
    with ExchangeClient.local(runtime, token=world.tokens["officer-1"]) as client:
        with pytest.raises(RemoteRefusalError) as officer_alone:
            client.post("/v1/identities", {"name": "ent-2", "role": "enterprise"})
        assert officer_alone.value.status == 403  # separation of duties: the sysadmin's route
    [hit] = runtime.ledger.find(["aud-http"], ["identity.create"])
    assert runtime.ledger.entry(hit.index).actor == "officer-2"


def test_a_certificate_never_overwrites_an_officers_signing_key(tmp_path: Path) -> None:
    """``ibx init`` names an officer's signing key ``NAME.key``, as a client certificate's TLS
    key is named: ``identity cert --out`` into that directory is refused, the key kept."""
    data = tmp_path / "data"
    ibx = [*ibx_argv(), "--data-dir", str(data)]
    subprocess.run([*ibx, "init"], capture_output=True, check=True, timeout=120)
    keys = data / "bootstrap"
    before = (keys / "officer-1.key").read_bytes()
    done = subprocess.run(
        [*ibx, "identity", "cert", "officer-1", "--out", str(keys)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "not overwritten" in done.stderr
    assert (keys / "officer-1.key").read_bytes() == before
    assert not (keys / "officer-1.crt").exists()
