"""Demo step: an officer proposes the baseline pack, a second officer approves it, decisions.

The two officers are the deployment's bootstrap officers; each holds an Ed25519
key file (``<work dir>/keys/<name>.key``, as ``ibx identity keygen`` writes
one) and signs every step as a duty that the decision point verifies against
the key the ledger recorded for them. Later steps sign with the same files
(:func:`officer_key`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from consent import EnterpriseKey
from core.duty import DutyError, SignedDuty
from core.keys import Ed25519Signer
from exchange.identities import IssuedIdentity, Role
from policies import BASELINE_PACK, FourEyesError, PolicySource, Subject, sign_policy_step

if TYPE_CHECKING:
    from exchange.demo import Scene

INDUSTRY = "lithium-battery"
SUBBRAIN = "sb-lithium-battery"


def _identity(scene: Scene, name: str, role: Role, industry: str | None = None) -> IssuedIdentity:
    if name not in scene.identities:
        scene.identities[name] = scene.runtime.identities.create(name, role, industry=industry)
    return scene.identities[name]


OFFICERS = ("officer-wang", "officer-li")
"""The bootstrap security officers of the demo deployment."""


def officer_key_file(scene: Scene, name: str) -> Path:
    """Where the demo keeps officer ``name``'s key file."""
    return scene.work_dir / "keys" / f"{name}.key"


def officer_key(scene: Scene, name: str) -> Ed25519Signer:
    """Officer ``name``'s signing key (written by this step)."""
    return EnterpriseKey.load(officer_key_file(scene, name)).signer


def _bootstrap_officers(scene: Scene) -> None:
    """Register the two officers with keys of their own (``ibx init`` does this)."""
    if all(name in scene.identities for name in OFFICERS):
        return
    keys = []
    for name in OFFICERS:
        path = officer_key_file(scene, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        keys.append((name, EnterpriseKey.generate(path).signer.public_key))
    for issued in scene.runtime.identities.bootstrap_officers(keys):
        scene.identities[issued.identity.name] = issued


def _sign(scene: Scene, officer: str, step: str, version: str) -> SignedDuty:
    return sign_policy_step(
        officer_key(scene, officer),
        origin=scene.runtime.settings.ledger_origin,
        officer=officer,
        step=step,
        version=version,
    )


def run(scene: Scene) -> None:
    """Propose, test, approve (four eyes), activate, each signed by its officer; then one
    allowed and one denied decision."""
    runtime = scene.runtime
    point = runtime.policy
    origin = runtime.settings.ledger_origin
    _bootstrap_officers(scene)
    wang, li = OFFICERS
    _identity(scene, SUBBRAIN, Role.SUBBRAIN, INDUSTRY)

    pack = PolicySource.from_dir(BASELINE_PACK)
    forged = sign_policy_step(
        Ed25519Signer.generate("forger"), origin=origin, officer=wang, step="propose",
        version=pack.hash,
    )  # fmt: skip
    try:
        point.propose(pack, duty=forged)
    except DutyError as exc:
        scene.say(f"a proposal in {wang}'s name, signed with another key: refused ({exc.title})")
    version = point.propose(pack, duty=_sign(scene, wang, "propose", pack.hash))
    summary = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in version.summary.items())
    scene.say(
        f"{wang} proposed the baseline pack, signed with their key: version "
        f"{version.hash[:16]} ({summary})"
    )
    report = point.test(version.hash, duty=_sign(scene, wang, "test", version.hash))
    passed = sum(1 for r in report.results if r.passed)
    scene.say(
        f"tests in the sandbox: {passed}/{len(report.results)} passed "
        "(Rego test_ rules and the sample-request table)"
    )
    try:
        point.approve(version.hash, duty=_sign(scene, wang, "approve", version.hash))
    except FourEyesError as exc:
        scene.say(f"{wang} tries to approve it: refused ({exc.title})")
    point.approve(version.hash, duty=_sign(scene, li, "approve", version.hash))
    point.activate(version.hash, duty=_sign(scene, li, "activate", version.hash))
    scene.say(
        f"{li} approved and activated it (each step a signed duty on the ledger); "
        f"active version {point.active_version()}"
    )

    subject = Subject(SUBBRAIN, Role.SUBBRAIN.value, INDUSTRY)
    core = {"domain": INDUSTRY, "classification": "core", "purpose": "risk_warning"}
    allowed = point.decide(
        subject,
        "compute",
        "dataset:cell-energy",
        {**core, "engine": "mpc", "operation": "mean", "cohort": 6},
    )
    denied = point.decide(subject, "raw_export", "dataset:cell-energy", core)
    for label, decision in (("mean of core data under MPC", allowed), ("raw export", denied)):
        scene.say(f"{SUBBRAIN} asks for {label}: {decision.effect.value.upper()}")
        for reason in decision.reasons:
            scene.say(f"    {reason}")
    recorded = [
        e.type for e in scene.runtime.ledger.entries(0, scene.runtime.ledger.size())
        if e.type.startswith("policy.")
    ]  # fmt: skip
    scene.say(f"ledger: {len(recorded)} policy events ({', '.join(recorded)})")
