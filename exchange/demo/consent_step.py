"""Demo step: enterprises make keys and grant signed consents; one revokes; check before/after."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from consent import (
    Classification,
    ConsentReceipt,
    ConsentRequest,
    ConsentRevokedError,
    CoverageReport,
    DatasetScope,
    Engine,
    EnterpriseKey,
    Operation,
    Purpose,
    Requester,
    Revocation,
    new_consent_id,
)
from core.clock import utcnow
from exchange.identities import IssuedIdentity, Role

if TYPE_CHECKING:
    from exchange.demo import Scene

ENTERPRISES = ("cathode-co", "cell-works", "pack-assembly")
INDUSTRY = "lithium-battery"
SUBBRAIN = "sb-lithium-battery"


def _identity(scene: Scene, name: str, role: Role) -> IssuedIdentity:
    if name not in scene.identities:
        scene.identities[name] = scene.runtime.identities.create(name, role, industry=INDUSTRY)
    return scene.identities[name]


def _show(scene: Scene, report: CoverageReport) -> None:
    included = report.chosen()
    for owner in report.owners:
        for record in report.covering.get(owner, ()):
            scene.say(f"    {owner}: covered by {record.consent_id}")
        for refusal in report.refusals.get(owner, ()):
            scene.say(f"    {owner}: refused ({refusal.reason}) {refusal.error}")
    scene.say(f"    -> {len(included)} of {len(report.owners)} owners may be included")


def run(scene: Scene) -> None:
    """Three enterprises consent to the lithium-battery sub-brain; one revokes."""
    runtime = scene.runtime
    service = runtime.consents
    origin = runtime.settings.ledger_origin
    key_dir = scene.work_dir / "enterprise-keys"
    key_dir.mkdir(parents=True, exist_ok=True)
    _identity(scene, SUBBRAIN, Role.SUBBRAIN)
    now = utcnow()
    keys: dict[str, EnterpriseKey] = {}
    consents = {}
    for name in ENTERPRISES:
        key = EnterpriseKey.generate(key_dir / f"{name}.key")
        keys[name] = key
        _identity(scene, name, Role.ENTERPRISE)
        runtime.identities.set_public_key(name, key.signer.public_key, actor=name)
        dataset = f"{name}.energy"
        service.catalog.register(
            dataset,
            owner=name,
            fields=["energy_kwh", "output_units"],
            classification=Classification.IMPORTANT,
            now=now,
        )
        receipt = ConsentReceipt(
            consent_id=new_consent_id(),
            origin=origin,
            enterprise=name,
            public_key=key.signer.public_key,
            scope=(DatasetScope(dataset, ("energy_kwh", "output_units")),),
            requester=Requester.group("subbrain", INDUSTRY),
            purposes=(Purpose.BENCHMARKING, Purpose.INDUSTRY_MONITORING),
            operations=(Operation.MEAN, Operation.PERCENTILE_RANK),
            engines=(Engine.HE, Engine.MPC),
            min_cohort=2,
            valid_from=now,
            valid_until=now + timedelta(days=365),
            signed_at=now,
        )
        signed = receipt.sign(key.signer)  # on the enterprise's side
        record = service.grant(signed, actor=name)
        consents[name] = record
        scene.say(
            f"{name}: key {key.signer.public_key.fingerprint()[:16]} (private half in "
            f"{key_dir.name}/{name}.key, mode 0600); granted {record.consent_id} "
            f"(ledger index {record.ledger_index})"
        )

    request = ConsentRequest(
        requester=SUBBRAIN,
        purpose=Purpose.BENCHMARKING,
        operation=Operation.MEAN,
        engine=Engine.HE,
        datasets=tuple(f"{name}.energy" for name in ENTERPRISES),
        fields=("energy_kwh", "output_units"),
    )  # no time: the exchange judges validity at its own clock
    scene.say(f"check before the revocation ({SUBBRAIN}: mean energy per unit, HE):")
    _show(scene, service.covering_consents(request))
    use = service.use(request, decision_id="demo-decision-1")
    scene.say(
        f"decision demo-decision-1 used {len(use.used)} consents (ledger index {use.ledger_index})"
    )

    quitter = ENTERPRISES[1]
    revocation = Revocation(
        consent_id=consents[quitter].consent_id,
        origin=origin,
        enterprise=quitter,
        public_key=keys[quitter].signer.public_key,
        reason="no longer shares energy data",
        signed_at=utcnow(),
    )
    revoked = service.revoke(revocation.sign(keys[quitter].signer), actor=quitter)
    scene.say(
        f"{quitter} revoked {revoked.consent_id} (ledger index {revoked.revocation_ledger_index})"
    )
    try:
        service.confirm_release("demo-decision-1", job_id="demo-job-1")
    except ConsentRevokedError as exc:  # the job must stop: shown, not fatal
        scene.say(f"job demo-job-1 stops before release: {exc}")

    scene.say("check after the revocation:")
    _show(scene, service.covering_consents(request))
    for item in service.usage(quitter):
        scene.say(f"who used {quitter}'s data under {item.record.consent_id}:")
        for entry in item.entries:
            what = (
                f"job {entry.job_id} of {entry.decision_id}: {entry.status}"
                if entry.job_id
                else f"decision {entry.decision_id}"
            )
            scene.say(
                f"    {what} (by {entry.requester} for {entry.purpose}, "
                f"ledger index {entry.ledger_index})"
            )
