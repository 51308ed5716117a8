"""Consent drafts and an enterprise's own devices over the API (the console's needs).

``POST /v1/consents/drafts`` and ``POST /v1/consents/{id}/revocation/draft`` hand
a client without :mod:`consent`'s code the statement to sign and its exact
bytes; the exchange never signs and records nothing. The signed statement then
goes through the ordinary routes, so a draft altered after drafting, or signed
with another enterprise's key, is refused there. ``GET /v1/edge/devices`` and
``GET /v1/agent/contact`` show an enterprise its own devices' certificates and
its agent's last poll, and nobody else's.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from consent import ConsentReceipt, EnterpriseKey, Revocation
from core.canonical import canonical_bytes
from core.clock import utcnow
from edge_tls import DeviceId
from exchange.client import ExchangeClient
from exchange.deployment_ca import ensure_deployment_ca
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.edge_tls.conftest import csr_for, new_key
from tests.identities import bootstrap, register

LB = "lithium-battery"
FORBIDDEN = "exchange.error_table.ForbiddenError"

TERMS: dict[str, Any] = {
    "scope": [{"dataset": "cathode-co.energy", "fields": ["output_units", "energy_kwh"]}],
    "requester": {"role": "subbrain", "industry": LB},
    "purposes": ["benchmarking"],
    "operations": ["mean"],
    "min_cohort": 2,
    "days": 30,
    "use_limit": 5,
}


@dataclass
class World:
    runtime: Runtime
    tokens: dict[str, str]
    keys: dict[str, EnterpriseKey]

    def client(self, who: str) -> ExchangeClient:
        return ExchangeClient.local(self.runtime, token=self.tokens[who])

    def sign(self, who: str, draft: dict[str, Any]) -> dict[str, Any]:
        """What the browser does: sign the draft's bytes with ``who``'s key file."""
        signature = self.keys[who].signer.sign(base64.b64decode(draft["canonical"]))
        return {"receipt": draft["statement"], "signature": base64.b64encode(signature).decode()}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("drafts")
    runtime = Runtime(Settings(data_dir=initialised(root / "data")))
    bootstrap(runtime)
    keys = {n: EnterpriseKey.generate(root / f"{n}.key") for n in ("cathode-co", "anode-co")}
    tokens = {}
    for name, role, industry in (
        ("cathode-co", Role.ENTERPRISE, LB),
        ("anode-co", Role.ENTERPRISE, LB),
        ("keyless-co", Role.ENTERPRISE, LB),
        ("sb-lb", Role.SUBBRAIN, LB),
        ("aud", Role.AUDITOR, None),
    ):
        tokens[name] = register(runtime, name, role, industry).token
        if name in keys:
            runtime.identities.set_public_key(name, keys[name].signer.public_key, actor=name)
    for name in ("cathode-co", "anode-co", "keyless-co"):
        with ExchangeClient.local(runtime, token=tokens[name]) as client:
            client.post(
                "/v1/datasets",
                {"dataset_id": f"{name}.energy", "fields": ["energy_kwh", "output_units"]},
            )
    yield World(runtime, tokens, keys)
    runtime.close()


def refused(call: object, *args: object) -> RemoteRefusalError:
    with pytest.raises(RemoteRefusalError) as info:
        call(*args)  # type: ignore[operator]
    return info.value


def test_a_grant_draft_is_the_receipt_consent_builds_and_records_nothing(world: World) -> None:
    size = world.runtime.ledger.size()
    with world.client("cathode-co") as client:
        draft = client.post("/v1/consents/drafts", TERMS)
    assert world.runtime.ledger.size() == size  # a draft is not a write
    assert draft["kind"] == "grant" and draft["submit_to"] == "/v1/consents"
    receipt = ConsentReceipt.from_dict(draft["statement"])  # strict: as the grant decodes it
    raw = base64.b64decode(draft["canonical"])
    assert raw == receipt.canonical() == canonical_bytes(draft["statement"])
    assert draft["sha256"] == hashlib.sha256(raw).hexdigest()
    assert receipt.enterprise == "cathode-co"
    assert receipt.public_key == world.keys["cathode-co"].signer.public_key
    assert receipt.origin == world.runtime.settings.ledger_origin
    assert receipt.scope[0].fields == ("energy_kwh", "output_units")
    assert (receipt.min_cohort, receipt.use_limit) == (2, 5)
    assert (receipt.valid_until - receipt.valid_from).days == 30


def test_a_signed_draft_is_granted_and_its_revocation_draft_revokes_it(world: World) -> None:
    with world.client("cathode-co") as client:
        draft = client.post("/v1/consents/drafts", TERMS)
        granted = client.post("/v1/consents", world.sign("cathode-co", draft))
        consent_id = granted["consent_id"]
        assert granted["status"] == "active"
        assert granted["receipt_sha256"] == draft["sha256"]
        path = f"/v1/consents/{consent_id}/revocation/draft"
        revocation = client.post(path, {"reason": "stopped sharing"})
        assert revocation["kind"] == "revocation"
        assert revocation["submit_to"] == f"/v1/consents/{consent_id}/revocation"
        parsed = Revocation.from_dict(revocation["statement"])
        assert (parsed.consent_id, parsed.reason) == (consent_id, "stopped sharing")
        assert base64.b64decode(revocation["canonical"]) == parsed.canonical()
        revoked = client.post(revocation["submit_to"], world.sign("cathode-co", revocation))
        assert revoked["status"] == "revoked"
        again = refused(client.post, path, {})
        assert (again.status, again.code) == (422, "consent.errors.ConsentRevokedError")


def test_a_draft_signed_with_another_key_or_altered_is_refused(world: World) -> None:
    with world.client("cathode-co") as client:
        draft = client.post("/v1/consents/drafts", TERMS)
        forged = refused(client.post, "/v1/consents", world.sign("anode-co", draft))
        assert (forged.status, forged.code) == (422, "consent.errors.BadConsentSignatureError")
        signed = world.sign("cathode-co", draft)
        altered = {**signed, "receipt": {**signed["receipt"], "min_cohort": 1}}
        error = refused(client.post, "/v1/consents", altered)
        assert error.code == "consent.errors.BadConsentSignatureError"
        consent_id = client.post("/v1/consents", signed)["consent_id"]
        revocation = client.post(f"/v1/consents/{consent_id}/revocation/draft", {})
        error = refused(client.post, revocation["submit_to"], world.sign("anode-co", revocation))
        assert (error.status, error.code) == (422, "consent.errors.BadConsentSignatureError")
        assert client.get(f"/v1/consents/{consent_id}")["status"] == "active"


@pytest.mark.parametrize(
    ("who", "terms", "status", "code"),
    [
        ("sb-lb", TERMS, 403, FORBIDDEN),
        ("aud", TERMS, 403, FORBIDDEN),
        ("keyless-co", {**TERMS, "scope": [{"dataset": "keyless-co.energy", "fields": ["x"]}]},
         422, "consent.errors.NoRegisteredKeyError"),
        ("anode-co", TERMS, 400, "consent.errors.DatasetNotOwnedError"),
        ("cathode-co", {**TERMS, "scope": [{"dataset": "nobody.energy", "fields": ["a"]}]},
         404, "consent.errors.UnknownDatasetError"),
        ("cathode-co", {**TERMS, "scope": [{"dataset": "cathode-co.energy", "fields": ["a"]}]},
         400, "consent.errors.InvalidConsentError"),
        ("cathode-co", {**TERMS, "valid_until": "yesterday"},
         400, "consent.errors.InvalidConsentError"),
        ("cathode-co", {**TERMS, "requester": {"role": "subbrain", "identity": "sb-lb"}},
         400, "consent.errors.InvalidConsentError"),
    ],
    ids=["subbrain", "auditor", "no-key", "not-owned", "unknown-dataset", "unknown-field",
         "bad-time", "bad-requester"],
)  # fmt: skip
def test_grant_drafts_are_refused_as_the_grant_would_be(
    world: World, who: str, terms: dict[str, Any], status: int, code: str
) -> None:
    with world.client(who) as client:
        error = refused(client.post, "/v1/consents/drafts", terms)
    assert (error.status, error.code) == (status, code)


def test_another_enterprises_consent_has_no_revocation_draft(world: World) -> None:
    with world.client("cathode-co") as client:
        draft = client.post("/v1/consents/drafts", TERMS)
        consent_id = client.post("/v1/consents", world.sign("cathode-co", draft))["consent_id"]
    path = f"/v1/consents/{consent_id}/revocation/draft"
    with world.client("anode-co") as client:
        error = refused(client.post, path, {})
        assert (error.status, error.code) == (404, "consent.errors.ConsentNotFoundError")
        missing = refused(client.post, "/v1/consents/cst_" + "0" * 32 + "/revocation/draft", {})
        assert (missing.status, missing.code) == (error.status, error.code)
    with world.client("sb-lb") as client:
        assert refused(client.post, path, {}).status == 403


# --- an enterprise's own devices and its agent's last contact --------------------------------


def _enrol(runtime: Runtime, enterprise: str, device: str) -> None:
    token = runtime.edge_pki.create_token(
        DeviceId(enterprise, device), actor=enterprise, now=utcnow()
    ).token
    csr = csr_for(new_key(), device).public_bytes(Encoding.DER)
    runtime.edge_pki.enroll(device, token, csr, now=utcnow())


def test_an_enterprise_lists_its_own_devices_certificates_only(world: World) -> None:
    runtime = world.runtime
    ensure_deployment_ca(runtime.edge_pki, actor="ops", now=utcnow())
    with world.client("cathode-co") as client:
        assert client.get("/v1/edge/devices")["items"] == []
    _enrol(runtime, "cathode-co", "kiln-1")
    _enrol(runtime, "cathode-co", "kiln-1")  # enrolled again: the first one is superseded
    _enrol(runtime, "cathode-co", "meter-2")
    _enrol(runtime, "anode-co", "press-1")
    with world.client("cathode-co") as client:
        items = client.get("/v1/edge/devices")["items"]
        first = client.get("/v1/edge/devices", limit=1)
    assert [i["device"] for i in items] == ["kiln-1", "kiln-1", "meter-2"]
    assert first["items"] == items[:1] and first["next_cursor"]
    domain = runtime.settings.trust_domain
    for item in items:
        assert (
            item["spiffe_id"] == f"spiffe://{domain}/enterprise/cathode-co/device/{item['device']}"
        )
        assert int(item["serial"], 16) > 0 and len(item["fingerprint"]) == 64
    states = sorted(i["state"] for i in items if i["device"] == "kiln-1")
    assert states in (["revoked", "valid"], ["valid", "valid"])
    assert items[-1]["state"] == "valid" and items[-1]["revoked_at"] is None
    with world.client("anode-co") as client:
        assert [i["device"] for i in client.get("/v1/edge/devices")["items"]] == ["press-1"]
    for who in ("sb-lb", "aud"):
        with world.client(who) as client:
            error = refused(client.get, "/v1/edge/devices")
        assert (error.status, error.code) == (403, FORBIDDEN)
        assert "may not devices_read_own edge:*" in str(error)


def test_the_agents_last_poll_is_noted_for_its_enterprise_only(world: World) -> None:
    with world.client("anode-co") as client:
        never = client.get("/v1/agent/contact")
        assert never == {
            "enterprise": "anode-co",
            "first_contact_at": None,
            "last_contact_at": None,
        }
        assert client.get("/v1/agent/tasks") == {"tasks": []}
        seen = client.get("/v1/agent/contact")
    assert seen["enterprise"] == "anode-co"
    assert seen["last_contact_at"] is not None
    assert seen["first_contact_at"] == seen["last_contact_at"]
    with world.client("cathode-co") as client:
        assert client.get("/v1/agent/contact")["last_contact_at"] is None
    with world.client("sb-lb") as client:
        assert refused(client.get, "/v1/agent/contact").status == 403
