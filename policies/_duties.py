"""Signed policy duties: what an officer signs for each four-eyes step, and the ledger check.

An officer's step on a version (``policy.propose``, ``policy.test``,
``policy.approve``, ``policy.activate``) is a :class:`core.duty.Duty` whose
subject is the version hash, signed with the officer's own key
(:func:`sign_policy_step`, used by the command line and tests). The decision
point verifies it against the key the ledger records for the officer before
it acts (:func:`core.duty.check_duty`).

The active version's row is an index of the latest ``policy.activate`` entry;
:class:`ActivationRecord` is how the decision point reads that entry without
importing the ledger (the exchange implements it with ``Ledger.find``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final, Protocol

from core.clock import utcnow
from core.duty import Duty, SignedDuty
from core.keys import Ed25519Signer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["POLICY_STEPS", "ActivationRecord", "sign_policy_step"]

POLICY_STEPS: Final = ("propose", "test", "approve", "activate")
"""The four-eyes steps; each is signed as the duty action ``policy.<step>``."""


def sign_policy_step(
    signer: Ed25519Signer,
    *,
    origin: str,
    officer: str,
    step: str,
    version: str,
    at: datetime | None = None,
) -> SignedDuty:
    """``officer``'s signed duty for ``step`` on ``version`` in the deployment ``origin``.

    ``version`` is the full version hash (for a proposal: ``PolicySource.hash`` of
    the pack proposed); ``at`` defaults to now.

    Raises:
        ValueError: an unknown step, or an empty origin, officer or version.
    """
    if step not in POLICY_STEPS:
        raise ValueError(f"unknown policy step {step!r} (one of {', '.join(POLICY_STEPS)})")
    duty = Duty(
        origin=origin,
        actor=officer,
        action=f"policy.{step}",
        subject=version,
        signed_at=at or utcnow(),
    )
    return duty.sign(signer)


class ActivationRecord(Protocol):
    """Where the latest activation is recorded: the ledger, read by the exchange."""

    def latest_activation(self, *, session: Session | None = None) -> str | None:
        """The version hash of the latest ``policy.activate`` entry, or None before any.

        With ``session``, read in the caller's transaction.

        Raises:
            ValueError: the latest activation entry does not parse.
        """
        ...
