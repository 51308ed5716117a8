"""The lockout guard: no version may take policy management away from the security officers.

Who may list, propose, test, approve and activate policy is itself decided by
the active version (the exchange asks it on every call). A version whose own
decisions deny a security officer any of :data:`OFFICER_DUTIES` in the
``platform`` domain would leave nobody able to change policy again, short of
editing the database. Such a version is refused at approval and at activation
(a domain rule, beside the four-eyes rule), with the denied actions named.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from policies._model import OFFICER_ROLE, Decision, DecisionRequest, Officer, Subject, VersionHash
from policies.errors import PolicyLockoutError

__all__ = ["OFFICER_DUTIES", "PLATFORM_DOMAIN", "lockout_probes", "require_no_lockout"]

OFFICER_DUTIES = (
    "policy_read",
    "policy_propose",
    "policy_test",
    "policy_approve",
    "policy_activate",
)
"""The actions the security officers must keep under every version."""

PLATFORM_DOMAIN = "platform"
"""The domain the officers act in (they belong to no industry)."""


def lockout_probes(officer: Officer, *, at: datetime) -> tuple[DecisionRequest, ...]:
    """One request per duty, as the exchange asks them for ``officer`` (a security officer)."""
    subject = Subject(officer.name, OFFICER_ROLE, None)
    return tuple(
        DecisionRequest(subject, action, "policy:*", {"domain": PLATFORM_DOMAIN}, at)
        for action in OFFICER_DUTIES
    )


def require_no_lockout(
    version: VersionHash,
    probes: Sequence[DecisionRequest],
    decisions: Sequence[Decision],
    *,
    step: str,
) -> None:
    """Refuse ``version`` if it denied any probe (``decisions`` answer ``probes`` in order).

    ``step`` is ``approved`` or ``activated`` (for the message).

    Raises:
        PolicyLockoutError: some officer duty is denied; names each with its reasons.
        ValueError: ``decisions`` and ``probes`` differ in length.
    """
    denied = [
        (probe.action, decision)
        for probe, decision in zip(probes, decisions, strict=True)
        if not decision.allow
    ]
    if not denied:
        return
    actions = tuple(action for action, _ in denied)
    why = "; ".join(f"{action}: {'; '.join(d.reasons) or 'denied'}" for action, d in denied)
    raise PolicyLockoutError(
        f"version {version[:12]} cannot be {step}: it would lock the security officers out "
        f"of managing policy (it denies {OFFICER_ROLE} {', '.join(actions)} in domain "
        f"{PLATFORM_DOMAIN}: {why})",
        actions=actions,
    )
