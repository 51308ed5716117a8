"""Officers with keys, for tests: sign policy duties, and an in-memory ``DutyKeys``.

``DutyOfficer("officer-a").sign("policy.approve", version, origin=...)`` is a
signed duty as ``ibx policy approve --key`` makes one; :class:`MemoryDutyKeys`
is a real (in-memory) implementation of :class:`core.duty.DutyKeys` — the
keys a ledger would record for each registered officer — for tests of
:mod:`policies` that run without the exchange's identity registry.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from core.canonical import JsonValue
from core.clock import utcnow
from core.duty import Duty, DutyError, SignedDuty
from core.keys import Ed25519PublicKey, Ed25519Signer
from exchange.policy_activations import LedgerActivations
from exchange.runtime import Runtime
from policies import (
    BASELINE_PACK,
    Officer,
    PolicyConfig,
    PolicyDecisionPoint,
    PolicySource,
    PolicyVersion,
    TestReport,
)

__all__ = [
    "OFFICERS",
    "OFFICER_A",
    "OFFICER_B",
    "OFFICER_C",
    "TEST_ORIGIN",
    "DutyOfficer",
    "MemoryDutyKeys",
    "Steps",
    "signed_point",
]

TEST_ORIGIN = "ibx.test/policies"
"""The origin of tests that build their own decision point (a runtime has its own)."""


def _seed(name: str) -> bytes:
    """A fixed seed per name, so a name's key is the same in every test run."""
    return hashlib.sha256(f"ibx-test-officer:{name}".encode()).digest()


@dataclass(frozen=True)
class DutyOfficer:
    """An administrator and their Ed25519 key (deterministic from the name unless given)."""

    name: str
    role: str = "security_officer"
    seed: bytes = b""
    """The key's seed; empty: fixed by the name."""

    @property
    def signer(self) -> Ed25519Signer:
        """The officer's private key."""
        return Ed25519Signer(self.name, self.seed or _seed(self.name))

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The key a ledger would record for this officer."""
        return self.signer.public_key

    @property
    def officer(self) -> Officer:
        """As :mod:`policies` names an authenticated caller."""
        return Officer(self.name, self.role)

    def duty(
        self,
        action: str,
        subject: str,
        *,
        origin: str = TEST_ORIGIN,
        at: datetime | None = None,
        details: dict[str, JsonValue] | None = None,
    ) -> Duty:
        """The unsigned statement."""
        return Duty(
            origin=origin,
            actor=self.name,
            action=action,
            subject=subject,
            signed_at=at or utcnow(),
            details=details or {},
        )

    def sign(
        self,
        action: str,
        subject: str,
        *,
        origin: str = TEST_ORIGIN,
        at: datetime | None = None,
        details: dict[str, JsonValue] | None = None,
    ) -> SignedDuty:
        """``action`` on ``subject``, signed with this officer's key."""
        return self.duty(action, subject, origin=origin, at=at, details=details).sign(self.signer)

    def other_key(self) -> DutyOfficer:
        """The same name with another key (a forger who knows the officer's name)."""
        return DutyOfficer(self.name, self.role, os.urandom(32))


class MemoryDutyKeys:
    """:class:`core.duty.DutyKeys` over a dict: name → (role, key) of the active officers."""

    def __init__(self, officers: Iterable[DutyOfficer] = ()) -> None:
        self._keys: dict[str, tuple[str, Ed25519PublicKey]] = {}
        for officer in officers:
            self.add(officer)

    def add(self, officer: DutyOfficer) -> None:
        """Register ``officer`` (as the ledger would record their key)."""
        self._keys[officer.name] = (officer.role, officer.public_key)

    def remove(self, name: str) -> None:
        """Revoke ``name``."""
        self._keys.pop(name, None)

    def duty_key(self, actor: str, role: str) -> Ed25519PublicKey:
        """The registered key of ``actor`` if it holds ``role``.

        Raises:
            DutyError: no such active identity of that role.
        """
        known = self._keys.get(actor)
        if known is None or known[0] != role:
            raise DutyError(f"{actor} is not an active {role} with a registered key")
        return known[1]


OFFICER_A = DutyOfficer("officer-a")
OFFICER_B = DutyOfficer("officer-b")
OFFICER_C = DutyOfficer("officer-c")
OFFICERS = (OFFICER_A, OFFICER_B, OFFICER_C)
"""The security officers tests register (their keys are fixed by their names)."""


@dataclass(frozen=True)
class Steps:
    """Four-eyes steps on a decision point, each signed by the officer named."""

    point: PolicyDecisionPoint
    origin: str = TEST_ORIGIN

    def propose(
        self, by: DutyOfficer, source: PolicySource | Path, *, caller: Officer | None = None
    ) -> PolicyVersion:
        """``by`` proposes ``source`` (a pack or a pack directory)."""
        pack = source if isinstance(source, PolicySource) else PolicySource.from_dir(source)
        duty = by.sign("policy.propose", pack.hash, origin=self.origin)
        return self.point.propose(pack, duty=duty, caller=caller)

    def test(self, by: DutyOfficer, ref: str) -> TestReport:
        """``by`` tests the version ``ref`` (a hash or prefix)."""
        return self.point.test(ref, duty=self._sign(by, "test", ref))

    def approve(self, by: DutyOfficer, ref: str) -> PolicyVersion:
        """``by`` approves the version ``ref``."""
        return self.point.approve(ref, duty=self._sign(by, "approve", ref))

    def activate(self, by: DutyOfficer, ref: str) -> PolicyVersion:
        """``by`` activates the version ``ref``."""
        return self.point.activate(ref, duty=self._sign(by, "activate", ref))

    def through(self, ref: str, proposer: DutyOfficer, second: DutyOfficer) -> PolicyVersion:
        """Test, approve and activate ``ref`` (``second`` approves and activates)."""
        self.test(proposer, ref)
        self.approve(second, ref)
        return self.activate(second, ref)

    def _sign(self, by: DutyOfficer, step: str, ref: str) -> SignedDuty:
        return by.sign(f"policy.{step}", self.point.get(ref).hash, origin=self.origin)


def signed_point(
    runtime: Runtime,
    config: PolicyConfig | None = None,
    *,
    officers: Iterable[DutyOfficer] = OFFICERS,
) -> tuple[PolicyDecisionPoint, Steps]:
    """A decision point on ``runtime``'s database and ledger that knows ``officers``' keys
    (in memory) and checks its active row against the ledger, and its :class:`Steps`."""
    origin = runtime.settings.ledger_origin
    point = PolicyDecisionPoint(
        runtime.db,
        runtime.ledger,
        config or PolicyConfig(bootstrap_pack=BASELINE_PACK),
        duty_keys=MemoryDutyKeys(officers),
        origin=origin,
        activations=LedgerActivations(runtime.ledger),
    )
    return point, Steps(point, origin)
