"""Demo step: every duty over HTTPS, every request authorized by the policy decision point.

Runs the real API listener (uvicorn, TLS from the deployment CA, client
certificates handed to the app) on a free local port in a background thread,
and talks to it with the client every ``ibx`` user command uses.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from consent import EnterpriseKey
from core.clock import utcnow
from core.duty import Duty
from exchange.app import create_app
from exchange.client import ExchangeClient
from exchange.demo.policy_step import officer_key, officer_key_file
from exchange.deployment_ca import ensure_deployment_ca
from exchange.error_table import RemoteRefusalError
from exchange.identities import IssuedIdentity, Role
from exchange.server_tls import api_listener, api_server_config

if TYPE_CHECKING:
    from exchange.demo import Scene

INDUSTRY = "lithium-battery"


def _start(config: uvicorn.Config) -> tuple[uvicorn.Server, threading.Thread, int]:
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the API listener did not start")
        time.sleep(0.05)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


def _identity(scene: Scene, name: str, role: Role, industry: str | None = None) -> IssuedIdentity:
    if name not in scene.identities:
        scene.identities[name] = scene.runtime.identities.create(name, role, industry=industry)
    return scene.identities[name]


def _administrator(scene: Scene, name: str, role: Role) -> IssuedIdentity:
    """An administrator with a key of their own (``ibx identity keygen``), registered with
    officer-wang's signed ``identity.create`` duty (``ibx identity create --key``)."""
    if name not in scene.identities:
        path = officer_key_file(scene, name)
        key = EnterpriseKey.generate(path).signer.public_key
        duty = Duty(
            scene.runtime.settings.ledger_origin,
            "officer-wang",
            "identity.create",
            name,
            utcnow(),
            {"role": role.value, "public_key": key.to_base64()},
        ).sign(officer_key(scene, "officer-wang"))
        scene.identities[name] = scene.runtime.identities.create(
            name, role, public_key=key, duty=duty
        )
    return scene.identities[name]


def _refused(scene: Scene, what: str, call: object) -> None:
    try:
        assert callable(call)
        call()
    except RemoteRefusalError as exc:
        scene.say(f"    {what}: HTTP {exc.status} {exc.title}: {exc}")
        return
    raise RuntimeError(f"{what} was not refused")


@dataclass(frozen=True)
class _Api:
    """Where the demo's exchange listens and how each user reaches it."""

    url: str
    bundle: Path | None
    certs: Path

    def client(self, issued: IssuedIdentity, *, second_factor: bool = False) -> ExchangeClient:
        name = issued.identity.name
        return ExchangeClient.remote(
            self.url,
            token=issued.token,
            ca_bundle=self.bundle,
            client_cert=self.certs / f"{name}.crt" if second_factor else None,
            client_key=self.certs / f"{name}.key" if second_factor else None,
        )


def run(scene: Scene) -> None:
    """Users on their own: a sub-brain, an enterprise, officers and an auditor over HTTPS."""
    runtime = scene.runtime
    certs = scene.work_dir / "admin-certs"
    ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
    for issued in (
        _administrator(scene, "auditor-zhao", Role.AUDITOR),
        _administrator(scene, "admin-qian", Role.SYSADMIN),
        scene.identities["officer-wang"],
    ):
        name = issued.identity.name
        runtime.admin_certificates.issue(name, actor="sysadmin", now=utcnow()).write(certs)
    listener = api_listener(runtime, host="127.0.0.1", port=0)
    server, thread, port = _start(
        api_server_config(
            create_app(runtime=runtime), listener, host="127.0.0.1", port=0, log_level="warning"
        )
    )
    api = _Api(f"https://127.0.0.1:{port}", listener.ca_bundle, certs)
    scene.say(f"the exchange serves HTTPS on {api.url} (TLS 1.2/1.3, the deployment CA)")
    try:
        _users(scene, api)
        _administrators(scene, api)
        _auditor(scene, api)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _users(scene: Scene, api: _Api) -> None:
    with api.client(scene.identities["sb-lithium-battery"]) as client:
        me = client.get("/v1/me")
        version = me["policy_version"][:16]
        scene.say(f"{me['name']} ({me['role']}) is authorized by policy {version}")
        found = list(client.pages("/v1/datasets", industry=INDUSTRY))
        scene.say(f"    catalog search in {INDUSTRY}: {len(found)} datasets (metadata only)")
        _refused(scene, "its request for every consent receipt", lambda: client.get("/v1/consents"))
    with ExchangeClient.remote(api.url, token=None, ca_bundle=api.bundle) as anonymous:
        checkpoint = anonymous.call("GET", "/v1/ledger/checkpoint").text.splitlines()
        scene.say(f"anyone reads the signed checkpoint (tree size {checkpoint[1]})")
        _refused(scene, "but not the entries", lambda: anonymous.get("/v1/ledger/entries"))
    with api.client(scene.identities["cathode-co"]) as client:
        own = client.get("/v1/ledger/entries", start=0, limit=1000)
        scene.say(
            f"cathode-co reads only the entries that concern it: {len(own['entries'])} "
            f"(scope {own['scope']})"
        )


def _administrators(scene: Scene, api: _Api) -> None:
    officer = scene.identities["officer-wang"]
    with api.client(officer) as client:
        _refused(scene, "officer-wang without its client certificate", lambda: client.get("/v1/me"))
    with api.client(officer, second_factor=True) as client:
        versions = client.get("/v1/policies")["items"]
        scene.say(f"officer-wang with token and certificate: {len(versions)} policy version(s)")
    with api.client(scene.identities["admin-qian"], second_factor=True) as client:
        _refused(
            scene,
            "admin-qian (sysadmin) reading consent receipts",
            lambda: client.get("/v1/consents"),
        )
        _refused(
            scene,
            "admin-qian proposing a policy",
            lambda: client.post("/v1/policies", {"pack": {}}),
        )


def _auditor(scene: Scene, api: _Api) -> None:
    with api.client(scene.identities["auditor-zhao"], second_factor=True) as client:
        entries: list[dict[str, Any]] = []
        start: int | None = 0
        while start is not None:
            page = client.get("/v1/ledger/entries", start=start, limit=1000)
            entries.extend(e["entry"] for e in page["entries"])
            start = page["next"]
        decisions = [e for e in entries if e["type"] == "authz.decision"]
        denied = [e for e in decisions if e["payload"]["effect"] == "deny"]
        scene.say(
            f"auditor-zhao reads all {len(entries)} entries: {len(decisions)} decisions on "
            f"writes, {len(denied)} refused; the last refusal:"
        )
        scene.say("    " + json.dumps(denied[-1]["payload"], ensure_ascii=False)[:160] + "…")
        consents = list(client.pages("/v1/consents"))
        scene.say(f"    and every consent receipt in full ({len(consents)})")
