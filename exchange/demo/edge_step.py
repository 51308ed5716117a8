"""Demo step: a device enrols over EST, uploads signed sealed readings, is revoked and refused.

Runs the real edge TLS listener (uvicorn, mutual TLS) on a free local port in
a background thread and talks to it the way ``ibx edge`` does.
"""

from __future__ import annotations

import base64
import csv
import io
import ssl
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import uvicorn
from cryptography import x509

from core.clock import utcnow
from core.duty import Duty, check_duty
from core.keys import Ed25519Signer
from edge_tls import (
    BatchOpener,
    BatchVerificationError,
    DeviceCredentials,
    DeviceId,
    ReadingBatch,
    RevocationReason,
    build_csr,
    fingerprint,
    parse_est_response,
    seal_batch,
    sign_batch,
)
from exchange.demo import policy_step
from exchange.demo.policy_step import officer_key
from exchange.edge_server import edge_server_config
from exchange.identities import Role

if TYPE_CHECKING:
    from exchange.demo import Scene

ENTERPRISE = "anode-plant"
DEVICE = "kiln-3"
READINGS = "line,energy_kwh,output_units\nkiln-3,412.5,120\nkiln-3,398.0,118\n"


def _start(config: uvicorn.Config) -> tuple[uvicorn.Server, threading.Thread, int]:
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the edge listener did not start")
        time.sleep(0.05)
    return server, thread, server.servers[0].sockets[0].getsockname()[1]


def _enrol(scene: Scene, url: str, bundle: Path, token: str) -> DeviceCredentials:
    device_dir = DeviceCredentials(scene.work_dir / "edge-device")
    key = device_dir.new_key()
    body = build_csr(key, DEVICE)
    headers = {"Content-Type": "application/pkcs10"}
    with httpx.Client(verify=ssl.create_default_context(cafile=str(bundle))) as client:
        url_enrol = url + "/.well-known/est/simpleenroll"
        response = client.post(url_enrol, content=body, headers=headers, auth=(DEVICE, token))
        response.raise_for_status()
        again = client.post(url_enrol, content=body, headers=headers, auth=(DEVICE, token))
    cert = parse_est_response(response.content)
    device_dir.save(key, cert, server=url, device=DEVICE, ca_pem=bundle.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    scene.say(f"{DEVICE} enrolled over EST, key made on the device: serial {cert.serial_number:x}")
    scene.say(f"    identity {san.get_values_for_type(x509.UniformResourceIdentifier)[0]}")
    scene.say(f"    the same token again: HTTP {again.status_code} {again.text.strip()}")
    return device_dir


def _upload_and_open(
    scene: Scene,
    device: httpx.Client,
    url: str,
    device_dir: DeviceCredentials,
    enterprise_key: Ed25519Signer,
) -> None:
    """The device signs and seals a batch; the enterprise verifies it and refuses a forgery."""
    runtime = scene.runtime
    pki = runtime.edge_pki
    ca = pki.authority()
    cert = device_dir.certificate()
    key_info = device.get(url + "/v1/edge/sealing-key").json()
    sealing_key = base64.b64decode(key_info["x25519_public_key"])
    signed = sign_batch(READINGS.encode(), device_dir.private_key(), cert, now=utcnow())
    sealed = seal_batch(signed.to_bytes(), sealing_key)
    octets = {"Content-Type": "application/octet-stream"}
    uploaded = device.post(url + "/v1/edge/readings", content=sealed, headers=octets)
    uploaded.raise_for_status()
    scene.say(f"{DEVICE} signed and sealed a batch, uploaded over mTLS: {uploaded.json()}")
    batch = runtime.edge_readings.batches(ENTERPRISE)[-1]
    scene.say(f"    the exchange stores {len(batch.ciphertext)} bytes of ciphertext only")
    opener = BatchOpener(
        ENTERPRISE, enterprise_key.seed(), trust=ca.chain, crl=pki.crl(now=utcnow())
    )
    opened = opener.open(batch)
    rows = list(csv.reader(io.StringIO(opened.readings.decode())))[1:]
    scene.say(f"{ENTERPRISE}'s agent opened it with its own key: {rows}")
    scene.say(f"    signed by {opened.device.device} (serial {opened.serial:x}), verified")
    forged = seal_batch(READINGS.encode(), sealing_key)  # anyone can seal, only kiln-3 signs
    try:
        opener.open(ReadingBatch(0, ENTERPRISE, DEVICE, "", forged, utcnow()))
    except BatchVerificationError as exc:
        scene.say(f"    a batch sealed by someone else (unsigned) is refused: {exc}")


def run(scene: Scene) -> None:
    """CA, bootstrap token, EST enrolment, sealed upload, enterprise opens it, revocation."""
    runtime = scene.runtime
    officer = "officer-li"  # a bootstrap officer (the policy step's), with their key file
    if officer not in scene.identities:  # the step run alone, on a fresh deployment
        policy_step._bootstrap_officers(scene)
    pki = runtime.edge_pki
    if not pki.is_initialized():
        pki.init(actor="sysadmin", now=utcnow())
    ca = pki.authority()
    scene.say(f"edge CA ready: issuing CA sha256 {fingerprint(ca.issuing)[:16]}...")
    enterprise_key = Ed25519Signer.generate(ENTERPRISE)
    scene.identities[ENTERPRISE] = runtime.identities.create(
        ENTERPRISE, Role.ENTERPRISE, public_key=enterprise_key.public_key
    )
    token = pki.create_token(DeviceId(ENTERPRISE, DEVICE), actor=ENTERPRISE, now=utcnow())
    scene.say(f"{ENTERPRISE} created a one-time bootstrap token for {DEVICE}")

    bundle = scene.work_dir / "edge-ca.pem"
    bundle.write_text(ca.chain_pem())
    config = edge_server_config(runtime, host="127.0.0.1", port=0, log_level="warning")
    server, thread, port = _start(config)
    url = f"https://127.0.0.1:{port}"
    try:
        device_dir = _enrol(scene, url, bundle, token.token)
        cert = device_dir.certificate()
        mtls = ssl.create_default_context(cafile=str(bundle))
        mtls.load_cert_chain(device_dir.cert_path, device_dir.key_path)
        with httpx.Client(verify=mtls) as device:
            _upload_and_open(scene, device, url, device_dir, enterprise_key)
            reason = RevocationReason.KEY_COMPROMISE
            serial = format(cert.serial_number, "x")
            duty = Duty(
                runtime.settings.ledger_origin,
                officer,
                "certificate.revoke",
                serial,
                utcnow(),
                {"reason": reason.value},
            ).sign(officer_key(scene, officer))
            check_duty(
                duty,
                keys=runtime.duty_keys,
                origin=runtime.settings.ledger_origin,
                action="certificate.revoke",
                subject=serial,
                role=Role.SECURITY_OFFICER.value,
                now=utcnow(),
            )
            pki.revoke(cert.serial_number, reason, actor=officer, now=utcnow(), duty=duty)
            scene.say(
                f"{officer} revoked {serial} (key-compromise), the revocation signed with "
                "their key and verified against the key the ledger records for them"
            )
            refused = device.get(url + "/v1/edge/whoami")
            detail = refused.json()["detail"]
            scene.say(f"    next request, same connection: HTTP {refused.status_code} {detail}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
