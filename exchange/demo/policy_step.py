"""Demo step: an officer proposes the baseline pack, a second officer approves it, decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from exchange.identities import IssuedIdentity, Role
from policies import BASELINE_PACK, FourEyesError, Officer, Subject

if TYPE_CHECKING:
    from exchange.demo import Scene

INDUSTRY = "lithium-battery"
SUBBRAIN = "sb-lithium-battery"


def _identity(scene: Scene, name: str, role: Role, industry: str | None = None) -> IssuedIdentity:
    if name not in scene.identities:
        scene.identities[name] = scene.runtime.identities.create(name, role, industry=industry)
    return scene.identities[name]


def _officer(issued: IssuedIdentity) -> Officer:
    return Officer(issued.identity.name, issued.identity.role.value)


def run(scene: Scene) -> None:
    """Propose, test, approve (four eyes), activate; then one allowed and one denied decision."""
    point = scene.runtime.policy
    wang = _officer(_identity(scene, "officer-wang", Role.SECURITY_OFFICER))
    li = _officer(_identity(scene, "officer-li", Role.SECURITY_OFFICER))
    _identity(scene, SUBBRAIN, Role.SUBBRAIN, INDUSTRY)

    version = point.propose(BASELINE_PACK, officer=wang)
    summary = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in version.summary.items())
    scene.say(f"{wang.name} proposed the baseline pack: version {version.hash[:16]} ({summary})")
    report = point.test(version.hash, officer=wang)
    passed = sum(1 for r in report.results if r.passed)
    scene.say(
        f"tests in the sandbox: {passed}/{len(report.results)} passed "
        "(Rego test_ rules and the sample-request table)"
    )
    try:
        point.approve(version.hash, officer=wang)
    except FourEyesError as exc:
        scene.say(f"{wang.name} tries to approve it: refused ({exc.title})")
    point.approve(version.hash, officer=li)
    point.activate(version.hash, officer=li)
    scene.say(f"{li.name} approved and activated it; active version {point.active_version()}")

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
