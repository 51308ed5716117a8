"""One real ledger for the trace and report tests, built once per test session.

A deployment on a SQLite data dir: two bootstrap officers put the baseline
policy pack through four eyes (propose, test by one; approve, activate by the
other, each a signed duty); three enterprises register datasets and sign
consents; a sub-brain runs an HE mean that the enterprises contribute to
(real TenSEAL ciphertexts, signed statements) and that is released; a
sub-brain is denied a route; the edge CA issues two server certificates and an
officer revokes one; a risk rule's alert is recorded whose message carries
markup (the report must show it as text). Then the operator exports the
ledger with ``ibx ledger export``, and the tests read that file only.

Both test modules ask :func:`traced_ledger`; the first builds, the second
reuses it (a module-scoped fixture each, one build per session).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from core.alerts import Alert, Severity
from core.clock import utcnow
from exchange.cli import main
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from policies import BASELINE_PACK, PolicySource, sign_policy_step
from tests.conftest import initialised
from tests.exchange.pipeline.conftest import LB, World
from tests.identities import admin_signer, bootstrap, sign_duty

__all__ = ["MARKUP", "TracedLedger", "ibx", "traced_ledger"]

ENTERPRISES = ("e1", "e2", "e3")
OFFICERS = ("officer-a", "officer-b")
MARKUP = '<img src="http://127.0.0.1:9/pixel.png"><script>document.title="owned"</script>'
"""Markup an alert's message carries: a report must show it as text and fetch nothing."""


@dataclass(frozen=True)
class TracedLedger:
    """What the tests check the trace and the report against."""

    data_dir: Path
    export: Path
    job_id: str
    result_sha256: str
    result_index: int
    decision_index: int
    policy_version: str
    consents: dict[str, str]
    """Consent id by enterprise."""
    keys: dict[str, str]
    """Each enterprise's consent key (base64), as registered on the ledger."""
    revoked_serial: str
    entry_types: dict[str, int]
    """How many entries of each type the ledger holds."""


_BUILT: dict[str, TracedLedger] = {}


def traced_ledger(factory: pytest.TempPathFactory) -> TracedLedger:
    """The session's traced ledger (built on first use)."""
    if "ledger" not in _BUILT:
        _BUILT["ledger"] = _build(factory.mktemp("traced-ledger"))
    return _BUILT["ledger"]


def ibx(*argv: str) -> tuple[int, str, str]:
    """``ibx ARGV`` in this process, as a user runs it: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["ibx", *argv])
        for name in [n for n in os.environ if n.startswith("IBX_")]:
            mp.delenv(name)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code: int | str | None = 0
            except SystemExit as exited:
                code = exited.code
    return (code if isinstance(code, int) else 0), out.getvalue(), err.getvalue()


def _build(root: Path) -> TracedLedger:
    data_dir = initialised(root / "data")
    runtime = Runtime(Settings(data_dir=data_dir))
    world = World(runtime, root)
    try:
        bootstrap(runtime, *OFFICERS)
        version = _four_eyes(runtime)
        world.tokens["sb-lb"] = runtime.identities.create("sb-lb", Role.SUBBRAIN, industry=LB).token
        consents = {}
        for name in ENTERPRISES:
            world.enterprise(name)
            consents[name] = world.consent(name)
        job_id = _released_job(world)
        _denied(world)
        serial = _certificates(runtime)
        runtime.ledger.record(
            Alert(
                "risk.denial_burst", Severity.WARNING, "sb-lb",
                f"3 denials in 10 minutes {MARKUP}", evidence=(0, 1), details={"denials": 3},
            ).event("risk-rules")
        )  # fmt: skip
        result = world.runtime.ledger.entries(0, runtime.ledger.size())
        released = next(
            e for e in result if e.type == "pipeline.result" and e.payload["job_id"] == job_id
        )
        decision = next(
            e for e in result if e.type == "pipeline.decision" and e.payload["job_id"] == job_id
        )
        counts: dict[str, int] = {}
        for entry in result:
            counts[entry.type] = counts.get(entry.type, 0) + 1
        keys = {name: world.keys[name].signer.public_key.to_base64() for name in ENTERPRISES}
    finally:
        for client in world.clients.values():
            client.close()
        runtime.close()
    export = root / "ledger.jsonl"
    code, _, err = ibx("--data-dir", str(data_dir), "ledger", "export", "--out", str(export))
    assert code == 0, err
    return TracedLedger(
        data_dir, export, job_id, str(released.payload["result_sha256"]), released.index,
        decision.index, version, consents, keys, serial, counts,
    )  # fmt: skip


def _four_eyes(runtime: Runtime) -> str:
    """officer-a proposes and tests the baseline pack; officer-b approves and activates it."""
    point, origin = runtime.policy, runtime.settings.ledger_origin
    proposer, second = OFFICERS

    def duty(officer: str, step: str, version: str) -> object:
        return sign_policy_step(
            admin_signer(officer), origin=origin, officer=officer, step=step, version=version
        )

    pack = PolicySource.from_dir(BASELINE_PACK)
    version = point.propose(pack, duty=duty(proposer, "propose", pack.hash)).hash  # type: ignore[arg-type]
    point.test(version, duty=duty(proposer, "test", version))  # type: ignore[arg-type]
    point.approve(version, duty=duty(second, "approve", version))  # type: ignore[arg-type]
    point.activate(version, duty=duty(second, "activate", version))  # type: ignore[arg-type]
    return version


def _released_job(world: World) -> str:
    """An HE mean over the three enterprises, contributed to and released."""
    created = world.submit(datasets=[f"{n}.energy" for n in ENTERPRISES], parameters={"length": 2})
    job_id = str(created["job_id"])
    assert world.wait_state(job_id, ["collecting"])["state"] == "collecting"
    rng = np.random.default_rng(5)
    for name in ENTERPRISES:
        [task] = [t for t in world.tasks(name) if t["job_id"] == job_id]
        body = world.he_body(name, task, rng.uniform(0, 100, 2).tolist())
        assert world.post_answer(name, job_id, body).status_code == 201
    view = world.wait_state(job_id, ["released", "failed", "refused"])
    assert view["state"] == "released", view
    return job_id


def _denied(world: World) -> None:
    """The sub-brain tries to register a dataset and to mint an edge token: each denied,
    and each denial recorded on the ledger with the policy's reasons."""
    with world.client("sb-lb") as client:
        for path, body in (
            ("/v1/datasets", {"dataset_id": "sb.fake", "fields": ["x"]}),
            ("/v1/edge/tokens", {"enterprise": "e1", "device": "d1"}),
        ):
            try:
                client.post(path, body)
            except RemoteRefusalError as exc:
                assert exc.status == 403, exc
            else:
                raise AssertionError(f"a sub-brain was allowed POST {path}")


def _certificates(runtime: Runtime) -> str:
    """The edge CA issues two server certificates; an officer revokes the first."""
    from edge_tls import RevocationReason

    pki = runtime.edge_pki
    now = utcnow()
    pki.init(actor="sysadmin", now=now)
    first = pki.issue_server_certificate(("edge-1.ibx.localhost",), now=now)
    pki.issue_server_certificate(("edge-2.ibx.localhost",), now=now)
    from cryptography import x509

    serial = x509.load_pem_x509_certificate(first.chain_pem).serial_number
    serial_hex = format(serial, "x")
    reason = RevocationReason.KEY_COMPROMISE
    duty = sign_duty(runtime, OFFICERS[0], "certificate.revoke", serial_hex,
                     {"reason": reason.value})  # fmt: skip
    pki.revoke(serial, reason, actor=OFFICERS[0], now=now, duty=duty)
    return serial_hex
