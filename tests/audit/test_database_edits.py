"""``ibx audit verify`` finds every edit an operator with the database can make.

One deployment (a real data dir, SQLite) is built through the real services:
the bootstrap officers, an auditor registered with an officer's duty, three
enterprises with their consent keys and datasets, a sub-brain, a policy
version proposed with the officer's signed duty, a signed consent from each
enterprise, two counted uses, one signed revocation. Each test copies the data
dir and acts as its operator: edits the rows with SQL (un-revoke, reset a use
count, delete a consent, swap a key, flip the active version...), or appends
entries by hand through ``ledger.record`` with the ledger's own key (a consent
whose signature no longer matches, a decision citing a revoked consent, a
decryption without a released job, a policy activated by its proposer alone,
officers with no identity, a certificate issued without a token). Where the
exchange's services are the way in, they are tried first and must refuse.
Then ``ibx ledger export`` (which carries the rows as the ``state`` line) and
``ibx audit verify`` must name the edit, by code and index, in text and
``--json``, exiting 5; the untouched deployment passes.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from consent import (
    ConsentError,
    ConsentReceipt,
    ConsentRequest,
    DatasetScope,
    Engine,
    Operation,
    Purpose,
    Requester,
    Revocation,
    SignedReceipt,
    new_consent_id,
)
from core.canonical import canonical_bytes
from core.clock import format_rfc3339, utcnow
from core.duty import Duty, DutyError
from core.events import Event
from core.keys import Ed25519Signer
from exchange.identities import Role
from exchange.pipeline.request import ComputeRequest
from exchange.runtime import Runtime
from exchange.settings import Settings
from policies import BASELINE_PACK, PolicySource
from tests.audit.test_verify_log import Done, assert_named, database, export_of, ibx
from tests.conftest import initialised
from tests.identities import admin_signer, register_all
from tests.policies.duties import DutyOfficer, Steps

LB = "lithium-battery"
ENTERPRISES = ("ent-a", "ent-b", "ent-c")
OFFICER_1, OFFICER_2 = DutyOfficer("officer-1"), DutyOfficer("officer-2")


def enterprise_key(name: str) -> Ed25519Signer:
    return Ed25519Signer(name, hashlib.sha256(f"database-edits:{name}".encode()).digest())


@dataclass(frozen=True)
class World:
    root: Path
    data: Path
    export: Path
    vkey: Path
    origin: str
    consents: dict[str, str]
    """enterprise → its consent id (ent-c's is revoked)."""
    grants: dict[str, int]
    """enterprise → the index of its consent.grant."""
    revoked: int
    """The index of ent-c's consent.revoke."""
    uses: tuple[int, ...]
    version: str
    """The proposed (never activated) policy version."""
    keys: dict[str, int]
    """enterprise → the index of its identity.public_key."""
    auditor: int
    """The index of the auditor's identity.create."""

    def copy(self, name: str) -> Path:
        import shutil

        target = self.root / "copies" / name
        shutil.copytree(self.data, target)
        return target

    @contextmanager
    def operator(self, name: str) -> Iterator[Runtime]:
        """A copy of the deployment's runtime, for an operator to act through."""
        runtime = Runtime(Settings(data_dir=self.copy(name)))
        try:
            yield runtime
        finally:
            runtime.close()


def receipt(origin: str, enterprise: str, signer: Ed25519Signer, **extra: Any) -> SignedReceipt:
    now = utcnow()
    return ConsentReceipt(
        consent_id=extra.pop("consent_id", new_consent_id()),
        origin=origin,
        enterprise=enterprise,
        public_key=signer.public_key,
        scope=(DatasetScope(f"{enterprise}.energy", ("energy_kwh",)),),
        requester=Requester.group("subbrain", LB),
        purposes=(Purpose.BENCHMARKING,),
        operations=(Operation.MEAN,),
        engines=(Engine.HE,),
        min_cohort=2,
        valid_from=now - timedelta(seconds=1),
        valid_until=now + timedelta(days=30),
        signed_at=now,
        use_limit=5,
        **extra,
    ).sign(signer)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from consent import Classification

    root = tmp_path_factory.mktemp("database-edits")
    data = initialised(root / "data")
    runtime = Runtime(Settings(data_dir=data))
    try:
        origin = runtime.settings.ledger_origin
        register_all(
            runtime,
            {
                "aud": (Role.AUDITOR, None),
                "sb-lb": (Role.SUBBRAIN, LB),
                **dict.fromkeys(ENTERPRISES, (Role.ENTERPRISE, LB)),
            },
        )
        consents: dict[str, str] = {}
        grants: dict[str, int] = {}
        keys: dict[str, int] = {}
        for name in ENTERPRISES:
            keys[name] = runtime.ledger.size()
            runtime.identities.set_public_key(name, enterprise_key(name).public_key, actor=name)
            runtime.consents.catalog.register(
                f"{name}.energy",
                owner=name,
                fields=("energy_kwh", "output_units"),
                classification=Classification.GENERAL,
                now=utcnow(),
            )
            record = runtime.consents.grant(receipt(origin, name, enterprise_key(name)), actor=name)
            consents[name], grants[name] = record.consent_id, record.ledger_index
        request = ConsentRequest(
            requester="sb-lb",
            purpose=Purpose.BENCHMARKING,
            operation=Operation.MEAN,
            engine=Engine.HE,
            datasets=tuple(f"{name}.energy" for name in ENTERPRISES),
            fields=("energy_kwh",),
        )
        counted = [runtime.consents.use(request, decision_id=f"decision-{n}") for n in (1, 2)]
        uses = tuple(use.ledger_index for use in counted if use.ledger_index is not None)
        assert len(uses) == 2
        signer = enterprise_key("ent-c")
        revocation = Revocation(consents["ent-c"], origin, "ent-c", signer.public_key, utcnow())
        revoked = runtime.consents.revoke(revocation.sign(signer), actor="ent-c")
        assert revoked.revocation_ledger_index is not None
        version = Steps(runtime.policy, origin).propose(
            OFFICER_1, PolicySource.from_dir(BASELINE_PACK)
        )
        (root / "ledger.vkey").write_text(runtime.ledger.vkey() + "\n")
        [auditor] = runtime.ledger.find(["aud"], ["identity.create"])
    finally:
        runtime.close()
    return World(
        root,
        data,
        export_of(data, root / "clean.jsonl"),
        root / "ledger.vkey",
        origin,
        consents,
        grants,
        revoked.revocation_ledger_index,
        uses,
        version.hash,
        keys,
        auditor.index,
    )


def verify(world: World, data: Path) -> tuple[Done, Done]:
    """``ibx ledger export`` of ``data``, then ``ibx audit verify`` pinned: text and --json."""
    export = export_of(data, data.parent / f"{data.name}.jsonl")
    args = ["audit", "verify", "--export", str(export), "--ledger-vkey", str(world.vkey)]
    return ibx(*args), ibx(*args, "--json")


def codes(found: Done) -> set[str]:
    return {f["code"] for f in found.findings()}


def test_the_untouched_deployment_passes(world: World) -> None:
    args = ["audit", "verify", "--export", str(world.export), "--ledger-vkey", str(world.vkey)]
    text, as_json = ibx(*args), ibx(*args, "--json")
    assert text.returncode == 0, text.stdout + text.stderr
    assert text.stdout.startswith("ok"), text.stdout
    assert as_json.findings() == []


# --- rows edited with SQL -------------------------------------------------------------------


def _unrevoke(world: World, db: Any) -> tuple[str, int | None]:
    db.execute(
        "UPDATE consent_grants SET revoked_at = NULL, revocation = NULL, "
        "revocation_signature = NULL, revocation_ledger_index = NULL WHERE consent_id = ?",
        (world.consents["ent-c"],),
    )
    return "row.consent_unrevoked", world.revoked


def _reset_use_count(world: World, db: Any) -> tuple[str, int | None]:
    db.execute(
        "UPDATE consent_grants SET use_count = 0 WHERE consent_id = ?", (world.consents["ent-a"],)
    )
    return "row.use_count", world.uses[-1]


def _delete_consent(world: World, db: Any) -> tuple[str, int | None]:
    cid = world.consents["ent-b"]
    db.execute("DELETE FROM consent_scope WHERE consent_id = ?", (cid,))
    db.execute("DELETE FROM consent_grants WHERE consent_id = ?", (cid,))
    return "row.consent_missing", world.grants["ent-b"]


def _swap_key(world: World, db: Any) -> tuple[str, int | None]:
    thief = enterprise_key("thief").public_key.raw
    db.execute("UPDATE exchange_identities SET public_key = ? WHERE name = 'ent-a'", (thief,))
    return "row.identity_key", world.keys["ent-a"]


def _flip_active_version(world: World, db: Any) -> tuple[str, int | None]:
    db.execute("DELETE FROM policies_active")
    db.execute(
        "INSERT INTO policies_active (id, version, activated_at) VALUES (1, ?, ?)",
        (world.version, format_rfc3339(utcnow())),
    )
    return "row.active_policy", None


def _promote_auditor(world: World, db: Any) -> tuple[str, int | None]:
    db.execute("UPDATE exchange_identities SET role = 'security_officer' WHERE name = 'aud'")
    return "row.identity_role", world.auditor


ROW_EDITS: list[tuple[str, Callable[[World, Any], tuple[str, int | None]]]] = [
    ("un-revoke a consent", _unrevoke),
    ("reset a use count", _reset_use_count),
    ("delete a consent", _delete_consent),
    ("swap an enterprise's key", _swap_key),
    ("flip the active policy version", _flip_active_version),
    ("promote an auditor", _promote_auditor),
]


@pytest.mark.parametrize("edit", [e for _, e in ROW_EDITS], ids=[n for n, _ in ROW_EDITS])
def test_each_row_edit_is_found_and_named(
    world: World, edit: Callable[[World, Any], tuple[str, int | None]]
) -> None:
    data = world.copy(edit.__name__)
    with database(data) as db:
        code, index = edit(world, db)
    text, as_json = verify(world, data)
    assert_named(text, as_json, code, index)
    assert codes(as_json) == {code}, as_json.stdout


# --- edits through the services, then by hand -------------------------------------------------


def _grant_payload(signed: SignedReceipt) -> dict[str, Any]:
    document = signed.to_dict()
    return {
        "consent_id": signed.receipt.consent_id,
        "enterprise": signed.receipt.enterprise,
        "receipt": document["receipt"],
        "receipt_hash": signed.receipt_hash(),
        "signature": document["signature"],
    }


def test_a_deleted_consent_replayed_is_found(world: World) -> None:
    """The revoked consent's row is deleted and its receipt granted again: the service
    refuses (the ledger holds the grant); the operator appends the grant by hand and
    points a fresh, unrevoked row at it."""
    cid = world.consents["ent-c"]
    with world.operator("replay") as runtime:
        stored = runtime.consents.get(cid).signed
        with runtime.db.write() as session:
            from sqlalchemy import text

            session.execute(text("DELETE FROM consent_scope WHERE consent_id = :c"), {"c": cid})
            session.execute(text("DELETE FROM consent_nonces WHERE consent_id = :c"), {"c": cid})
            session.execute(
                text("UPDATE consent_grants SET consent_id = 'cst_gone' WHERE consent_id = :c"),
                {"c": cid},
            )
        with pytest.raises(ConsentError):
            runtime.consents.grant(stored, actor="ent-c")
        replayed = runtime.ledger.record(Event("consent.grant", "ent-c", _grant_payload(stored)))
        with runtime.db.write() as session:
            session.execute(
                text(
                    "UPDATE consent_grants SET consent_id = :c, revoked_at = NULL, revocation = "
                    "NULL, revocation_signature = NULL, revocation_ledger_index = NULL, "
                    "use_count = 0, ledger_index = :i WHERE consent_id = 'cst_gone'"
                ),
                {"c": cid, "i": replayed.index},
            )
        data = runtime.settings.data_dir
    text_out, as_json = verify(world, data)
    assert_named(text_out, as_json, "consent.replay", replayed.index)
    assert_named(text_out, as_json, "row.consent_unrevoked", world.revoked)
    assert_named(text_out, as_json, "row.consent_index", replayed.index)
    assert "row.use_count" in codes(as_json)


def test_a_swapped_key_and_a_consent_signed_with_it_are_found(world: World) -> None:
    """The operator swaps ent-a's key in its row for their own and signs a consent in
    ent-a's name: the service refuses it (the row disagrees with the ledger); appended by
    hand, the grant does not verify under ent-a's ledgered key."""
    thief = enterprise_key("thief")
    with world.operator("swap-and-sign") as runtime:
        with database(runtime.settings.data_dir) as db:
            _swap_key(world, db)
        forged = receipt(world.origin, "ent-a", thief)
        with pytest.raises(ConsentError):
            runtime.consents.grant(forged, actor="ent-a")
        index = runtime.ledger.record(Event("consent.grant", "ent-a", _grant_payload(forged))).index
        data = runtime.settings.data_dir
    text_out, as_json = verify(world, data)
    assert_named(text_out, as_json, "consent.signature", index)
    assert_named(text_out, as_json, "consent.key", index)
    assert "row.identity_key" in codes(as_json)


def _ghost_duty(world: World, officer: str, step: str) -> dict[str, Any]:
    duty = Duty(world.origin, officer, f"policy.{step}", world.version, utcnow())
    return duty.sign(admin_signer(officer)).to_dict()


def test_a_four_eyes_approval_by_officers_who_do_not_exist_is_found(world: World) -> None:
    """Two officers who do not exist: the decision point refuses their signed duties; the
    approval and activation appended by hand in their names, and the row flipped to the
    version, are each named."""
    with world.operator("ghosts") as runtime:
        point = runtime.policy
        ghost = DutyOfficer("ghost-2")
        with pytest.raises(DutyError):
            point.approve(
                world.version, duty=ghost.sign("policy.approve", world.version, origin=world.origin)
            )
        approve = runtime.ledger.record(
            Event(
                "policy.approve",
                "ghost-2",
                {
                    "version": world.version,
                    "officer": "ghost-2",
                    "proposer": "officer-1",
                    "approver": "ghost-2",
                    "duty": _ghost_duty(world, "ghost-2", "approve"),
                },
            )
        ).index
        activate = runtime.ledger.record(
            Event(
                "policy.activate",
                "ghost-3",
                {
                    "version": world.version,
                    "officer": "ghost-3",
                    "previous": None,
                    "rollback": False,
                    "proposer": "officer-1",
                    "approver": "ghost-2",
                    "activator": "ghost-3",
                    "duty": _ghost_duty(world, "ghost-3", "activate"),
                },
            )
        ).index
        unsigned = runtime.ledger.record(
            Event(
                "policy.approve",
                "officer-2",
                {
                    "version": world.version,
                    "officer": "officer-2",
                    "proposer": "officer-1",
                    "approver": "officer-2",
                },
            )
        ).index
        with database(runtime.settings.data_dir) as db:
            _flip_active_version(world, db)
        data = runtime.settings.data_dir
    text_out, as_json = verify(world, data)
    assert_named(text_out, as_json, "duty.unknown_actor", approve)
    assert_named(text_out, as_json, "duty.unknown_actor", activate)
    assert_named(text_out, as_json, "policy.unapproved", activate)
    assert_named(text_out, as_json, "duty.missing", unsigned)
    assert_named(text_out, as_json, "entry.parse", unsigned)
    assert "row.active_policy" not in codes(as_json)  # the row matches what the ledger says


# --- entries appended by hand with the ledger key ---------------------------------------------


def _edited_signature(world: World, runtime: Runtime) -> tuple[str, int]:
    signed = receipt(world.origin, "ent-b", enterprise_key("ent-b"))
    payload = _grant_payload(signed)
    payload["receipt"] = dict(payload["receipt"], min_cohort=1)  # widened after signing
    payload["receipt_hash"] = hashlib.sha256(canonical_bytes(payload["receipt"])).hexdigest()
    index = runtime.ledger.record(Event("consent.grant", "ent-b", payload)).index
    return "consent.signature", index


def _decision_on_revoked(world: World, runtime: Runtime) -> tuple[str, int]:
    participants = []
    for name in ("ent-a", "ent-c"):
        grant = runtime.ledger.entry(world.grants[name]).payload
        participants.append(
            {
                "enterprise": name,
                "dataset": f"{name}.energy",
                "consent_id": world.consents[name],
                "receipt_sha256": grant["receipt_hash"],
                "min_cohort": 2,
                "public_key": enterprise_key(name).public_key.to_base64(),
            }
        )
    request = ComputeRequest(
        purpose=Purpose.BENCHMARKING,
        operation=Operation.MEAN,
        fields=("energy_kwh",),
        datasets=("ent-a.energy", "ent-c.energy"),
        engine="he",  # type: ignore[arg-type]
    )
    now = utcnow()
    index = runtime.ledger.record(
        Event(
            "pipeline.decision",
            "sb-lb",
            {
                "job_id": "job_" + uuid.uuid4().hex,
                "requester": "sb-lb",
                "request": request.to_dict(),
                "request_sha256": request.digest(),
                "engine": "he",
                "policy_version": world.version,
                "participants": participants,
                "left_out": [],
                "min_cohort": 2,
                "decided_at": format_rfc3339(now),
                "deadline": format_rfc3339(now + timedelta(minutes=5)),
            },
        )
    ).index
    return "decision.revoked_consent", index


def _decrypt_without_job(world: World, runtime: Runtime) -> tuple[str, int]:
    index = runtime.ledger.record(
        Event(
            "mpc.key.decrypt",
            "key-custodian",
            {
                "job_id": "job_" + uuid.uuid4().hex,
                "key_fingerprint": "c" * 64,
                "cohort_sha256": "d" * 64,
                "contributors": 3,
            },
        )
    ).index
    return "decrypt.no_job", index


def _activated_by_proposer(world: World, runtime: Runtime) -> tuple[str, int]:
    duty = OFFICER_1.sign("policy.activate", world.version, origin=world.origin)
    index = runtime.ledger.record(
        Event(
            "policy.activate",
            "officer-1",
            {
                "version": world.version,
                "officer": "officer-1",
                "previous": None,
                "rollback": False,
                "proposer": "officer-1",
                "approver": "officer-1",
                "activator": "officer-1",
                "duty": duty.to_dict(),
            },
        )
    ).index
    with database(runtime.settings.data_dir) as db:
        _flip_active_version(world, db)
    return "policy.unapproved", index


def _certificate_without_token(world: World, runtime: Runtime) -> tuple[str, int]:
    index = runtime.ledger.record(
        Event(
            "edge.certificate.issue",
            "ent-a",
            {
                "kind": "device",
                "serial": "7f01",
                "fingerprint": hashlib.sha256(b"forged").hexdigest(),
                "not_after": format_rfc3339(utcnow() + timedelta(days=30)),
                "enterprise": "ent-a",
                "device": "meter-9",
                "spiffe_id": "spiffe://ibx.localhost/ent-a/meter-9",
            },
        )
    ).index
    return "certificate.no_token", index


APPENDED: list[tuple[str, Callable[[World, Runtime], tuple[str, int]]]] = [
    ("a consent whose signature no longer matches", _edited_signature),
    ("a decision citing a revoked consent", _decision_on_revoked),
    ("a decryption without a released job", _decrypt_without_job),
    ("a policy activated by its proposer alone", _activated_by_proposer),
    ("a certificate issued without a token", _certificate_without_token),
]


@pytest.mark.parametrize("append", [a for _, a in APPENDED], ids=[n for n, _ in APPENDED])
def test_each_entry_appended_by_hand_is_found_and_named(
    world: World, append: Callable[[World, Runtime], tuple[str, int]]
) -> None:
    with world.operator(append.__name__) as runtime:
        code, index = append(world, runtime)
        data = runtime.settings.data_dir
    text_out, as_json = verify(world, data)
    assert_named(text_out, as_json, code, index)
    assert {f["index"] for f in as_json.findings() if f["index"] is not None} == {index}, (
        as_json.stdout
    )


def test_the_served_state_is_what_the_rows_say(world: World) -> None:
    """``GET /v1/audit/state``'s body (exchange.audit_state) on the untouched deployment."""
    from exchange.audit_state import served_state

    with world.operator("served") as runtime:
        state = served_state(runtime)
    consents = {c.consent_id: c for c in state.consents}
    assert consents[world.consents["ent-c"]].revoked is True
    assert consents[world.consents["ent-a"]].use_count == 2
    assert consents[world.consents["ent-a"]].ledger_index == world.grants["ent-a"]
    identities = {i.name: i for i in state.identities}
    assert (
        identities["ent-a"].public_key
        == base64.b64encode(enterprise_key("ent-a").public_key.raw).decode()
    )
    assert identities["aud"].role == "auditor"
    assert state.active_policy is None


@pytest.mark.slow
def test_a_whole_pipeline_deployment_verifies_clean(tmp_path: Path) -> None:
    """Two officers take the policy pack through the four eyes, three enterprises consent, an
    HE mean is decided, collected, decrypted once and released; one enterprise revokes: the
    export carries no finding (no invariant fires on the real flow, every row agrees with
    the ledger)."""
    from tests.exchange.pipeline.conftest import World as PipelineWorld

    runtime = Runtime(Settings(data_dir=initialised(tmp_path / "data")))
    try:
        made = PipelineWorld(runtime, tmp_path)
        register_all(runtime, {"aud": (Role.AUDITOR, None), "sb-lb": (Role.SUBBRAIN, LB)})
        steps = Steps(runtime.policy, runtime.settings.ledger_origin)
        version = steps.propose(OFFICER_1, PolicySource.from_dir(BASELINE_PACK))
        steps.through(version.hash, OFFICER_1, OFFICER_2)
        made.tokens["sb-lb"] = runtime.identities.rotate_token("sb-lb", actor="sysadmin").token
        for name in ENTERPRISES:
            made.enterprise(name)
            made.consent(name)
        datasets = [f"{n}.energy" for n in ENTERPRISES]
        job_id = made.submit(datasets=datasets, parameters={"length": 2})["job_id"]
        assert made.wait_state(job_id, ["collecting"])["state"] == "collecting"
        for name in ENTERPRISES:
            [task] = made.tasks(name)
            made.post_answer(name, job_id, made.he_body(name, task, [1.0, 2.0]))
        assert made.wait_state(job_id, ["released", "failed", "refused"])["state"] == "released"
        made.revoke("ent-c")
        (tmp_path / "ledger.vkey").write_text(runtime.ledger.vkey() + "\n")
        for client in made.clients.values():
            client.close()
    finally:
        runtime.close()
    export = export_of(tmp_path / "data", tmp_path / "export.jsonl")
    args = [
        "audit",
        "verify",
        "--export",
        str(export),
        "--ledger-vkey",
        str(tmp_path / "ledger.vkey"),
    ]
    done = ibx(*args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
