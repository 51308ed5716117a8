"""Signed duties on the four-eyes steps, attacked: every forged, replayed or misdirected
duty is refused before anything happens, and the active row is checked against the ledger.

One decision point on a real SQLite database and ledger, with officers whose keys an
in-memory ``DutyKeys`` holds (the exchange's ledgered keys are tested in
tests/exchange/test_api_policies.py). The version under attack is the baseline pack.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from core.clock import utcnow
from core.duty import DutyError, SignedDuty
from exchange.policy_activations import LedgerActivations
from exchange.runtime import Runtime
from exchange.settings import Settings
from policies import (
    ACTIVE_SUBJECT,
    BASELINE_PACK,
    ActiveVersionMismatchError,
    FourEyesError,
    PolicyConfig,
    PolicyDecisionPoint,
    PolicySource,
    Subject,
    VersionState,
)
from tests.policies.conftest import CORE_COMPUTE
from tests.policies.duties import (
    OFFICER_A,
    OFFICER_B,
    OFFICER_C,
    DutyOfficer,
    MemoryDutyKeys,
    Steps,
    signed_point,
)

SUBBRAIN = Subject("li-brain", "subbrain", "lithium-battery")
ALSO_A = DutyOfficer("officer-a-2")
"""A second registered officer identity held by officer-a's person (a distinct key)."""


@dataclass
class World:
    """A runtime, its decision point and steps, and a second tested version to attack."""

    runtime: Runtime
    point: PolicyDecisionPoint
    steps: Steps
    first: str
    second: str


def _variant(root: Path, n: int) -> Path:
    pack = root / f"pack-{n}"
    shutil.copytree(BASELINE_PACK, pack)
    with (pack / "policy.csv").open("a", encoding="utf-8") as lines:
        lines.write(f"g, nobody-{n}, subbrain, lithium-battery\n")
    return pack


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("duties")
    runtime = Runtime.initialise(
        Settings(data_dir=root / "data", ledger_origin="test.ibx.localhost/duties")
    )
    point, steps = signed_point(
        runtime,
        PolicyConfig(bootstrap_pack=BASELINE_PACK, active_version_ttl=0),
        officers=(OFFICER_A, OFFICER_B, OFFICER_C, ALSO_A),
    )
    first = steps.propose(OFFICER_A, _variant(root, 1)).hash
    steps.through(first, OFFICER_A, OFFICER_B)
    second = steps.propose(OFFICER_A, _variant(root, 2)).hash
    steps.test(OFFICER_A, second)
    try:
        yield World(runtime, point, steps, first, second)
    finally:
        runtime.close()


def _policy_entries(runtime: Runtime) -> int:
    return sum(
        1 for e in runtime.ledger.entries(0, runtime.ledger.size()) if e.type.startswith("policy.")
    )


def _sign(by: DutyOfficer, action: str, subject: str, world: World, **kwargs: object) -> SignedDuty:
    origin = kwargs.pop("origin", world.steps.origin)
    return by.sign(action, subject, origin=origin, **kwargs)  # type: ignore[arg-type]


ATTACKS = [
    ("a forger's key in officer-b's name", lambda w: _sign(OFFICER_B.other_key(), "policy.approve",
                                                            w.second, w), "does not verify"),
    ("an officer with no identity", lambda w: _sign(DutyOfficer("officer-ghost"), "policy.approve",
                                                    w.second, w), "not an active security_officer"),
    ("an auditor's key", lambda w: _sign(DutyOfficer("aud", "auditor"), "policy.approve",
                                         w.second, w), "not an active security_officer"),
    ("a duty for another version", lambda w: _sign(OFFICER_B, "policy.approve", w.first, w),
     "not policy.approve on"),
    ("a duty for another step", lambda w: _sign(OFFICER_B, "policy.activate", w.second, w),
     "signs policy.activate"),
    ("a duty for another deployment", lambda w: _sign(OFFICER_B, "policy.approve", w.second, w,
                                                      origin="other.example/ledger"),
     "signed for deployment 'other.example/ledger'"),
    ("a stale duty", lambda w: _sign(OFFICER_B, "policy.approve", w.second, w,
                                     at=utcnow() - timedelta(minutes=6)), "sign it again"),
    ("a duty from the future", lambda w: _sign(OFFICER_B, "policy.approve", w.second, w,
                                               at=utcnow() + timedelta(minutes=6)),
     "sign it again"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "forge", "why"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_a_forged_or_misdirected_approval_is_refused(
    world: World, name: str, forge: object, why: str
) -> None:
    before = _policy_entries(world.runtime)
    assert callable(forge)
    with pytest.raises(DutyError, match=why):
        world.point.approve(world.second, duty=forge(world))
    assert world.point.get(world.second).state is VersionState.TESTED  # nothing happened
    assert _policy_entries(world.runtime) == before


def test_an_unsigned_or_tampered_duty_is_refused(world: World) -> None:
    good = _sign(OFFICER_B, "policy.approve", world.second, world).to_dict()
    with pytest.raises(DutyError):
        SignedDuty.from_dict({"statement": good["statement"]})  # no signature at all
    with pytest.raises(DutyError, match="64 bytes"):
        SignedDuty.from_dict({**good, "signature": ""})
    statement = good["statement"]
    assert isinstance(statement, dict)
    retargeted = SignedDuty.from_dict(
        {**good, "statement": {**statement, "actor": "officer-c"}}
    )  # officer-b's signature, officer-c's name
    with pytest.raises(DutyError, match="does not verify under officer-c's ledgered key"):
        world.point.approve(world.second, duty=retargeted)
    zeros = SignedDuty.from_dict({**good, "signature": "A" * 86 + "=="})
    with pytest.raises(DutyError, match="does not verify"):
        world.point.approve(world.second, duty=zeros)
    assert world.point.get(world.second).state is VersionState.TESTED


def test_a_proposal_signs_its_content(world: World, tmp_path: Path) -> None:
    pack = PolicySource.from_dir(_variant(tmp_path, 3))
    other = PolicySource.from_dir(_variant(tmp_path, 4))
    swapped = _sign(OFFICER_A, "policy.propose", other.hash, world)  # signed another pack
    with pytest.raises(DutyError, match=r"not policy\.propose on"):
        world.point.propose(pack, duty=swapped)
    with pytest.raises(DutyError, match=r"signs policy\.test"):
        world.point.propose(pack, duty=_sign(OFFICER_A, "policy.test", pack.hash, world))
    assert pack.hash not in {v.hash for v in world.point.versions()}


def test_a_caller_signs_their_own_steps(world: World) -> None:
    """Over HTTP the caller is the token's identity: it must be the duty's signer."""
    duty = _sign(OFFICER_B, "policy.approve", world.second, world)
    with pytest.raises(DutyError, match="officer-c sent a duty signed by officer-b"):
        world.point.approve(world.second, duty=duty, caller=OFFICER_C.officer)
    assert world.point.get(world.second).state is VersionState.TESTED


def test_without_duty_keys_every_step_is_refused(world: World) -> None:
    bare = PolicyDecisionPoint(world.runtime.db, world.runtime.ledger, PolicyConfig())
    duty = _sign(OFFICER_B, "policy.approve", world.second, world)
    with pytest.raises(DutyError, match="no officer keys are configured"):
        bare.approve(world.second, duty=duty)
    wrong_origin = PolicyDecisionPoint(
        world.runtime.db,
        world.runtime.ledger,
        PolicyConfig(),
        duty_keys=MemoryDutyKeys((OFFICER_B,)),
    )  # no origin configured: no duty names it
    with pytest.raises(DutyError, match="signed for deployment"):
        wrong_origin.approve(world.second, duty=duty)


def test_every_step_records_its_duty_and_subjects(world: World) -> None:
    ledger = world.runtime.ledger
    hits = ledger.find([world.first], ["policy.propose", "policy.test", "policy.approve",
                                       "policy.activate"])  # fmt: skip
    assert [h.type for h in hits] == [
        "policy.propose",
        "policy.test",
        "policy.approve",
        "policy.activate",
    ]
    for hit in hits:
        entry = ledger.entry(hit.index)
        duty = SignedDuty.from_dict(entry.payload["duty"])  # type: ignore[arg-type]
        assert duty.duty.action == entry.type and duty.duty.subject == world.first
        assert duty.duty.actor == entry.actor == entry.payload["officer"]
        assert duty.verify(
            {"officer-a": OFFICER_A, "officer-b": OFFICER_B}[duty.duty.actor].public_key
        )
    by_b = {h.index for h in ledger.find(["officer-b"])}
    assert {h.index for h in hits[2:]} <= by_b
    [activation] = [h for h in ledger.find([ACTIVE_SUBJECT]) if h.index == hits[3].index]
    assert activation.type == "policy.activate"


# --- the active row is an index of the ledger -----------------------------------------------


def test_four_eyes_compares_verified_signers(world: World) -> None:
    """The proposer's name cannot be dodged: the approver is the key's owner. A second
    registered officer (a distinct identity and key) is a second pair of eyes.

    Runs after the attacks above (they expect the second version still tested)."""
    with pytest.raises(FourEyesError, match="officer-a proposed"):
        world.steps.approve(OFFICER_A, world.second)
    alias = DutyOfficer("officer-a-alias", seed=OFFICER_A.signer.seed())  # not registered
    with pytest.raises(DutyError, match="not an active security_officer"):
        world.steps.approve(alias, world.second)
    impostor = DutyOfficer("officer-b", seed=OFFICER_A.signer.seed())  # A's key, B's name
    with pytest.raises(DutyError, match="does not verify"):
        world.steps.approve(impostor, world.second)
    assert world.point.get(world.second).state is VersionState.TESTED
    assert world.steps.approve(ALSO_A, world.second).approved_by == "officer-a-2"


# --- the active row is an index of the ledger -----------------------------------------------


def test_a_row_flipped_by_hand_denies_and_raises_one_alert(world: World) -> None:
    """Runs last: the operator flips the active row to the approved, never activated,
    second version; then deletes it; then puts it back; then an officer activates."""
    runtime, point, first, second = world.runtime, world.point, world.first, world.second
    activations = LedgerActivations(runtime.ledger)
    assert activations.latest_activation() == first
    assert point.active_mismatch() is None
    assert point.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE).version == first
    size = runtime.ledger.size()

    _set_row(runtime, second)
    for _ in range(3):
        decision = point.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE)
        assert not decision.allow and decision.version is None
        assert decision.reasons[0].startswith("the active policy row disagrees with the ledger")
    with pytest.raises(ActiveVersionMismatchError):
        point.release_terms("core")
    # another process's decision point sees it too (and raises it once itself)
    other, _ = signed_point(runtime, PolicyConfig(active_version_ttl=0))
    assert not other.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE).allow

    added = runtime.ledger.entries(size, runtime.ledger.size() - size)
    assert [e.type for e in added] == ["audit.alert", "audit.alert"]  # one per process
    alert = added[0].payload
    assert (alert["rule"], alert["severity"], alert["subject"]) == (
        "row.mismatch",
        "critical",
        ACTIVE_SUBJECT,
    )
    assert alert["details"] == {"row": second, "ledger": first}
    assert activations.latest_activation() == first  # no activation was recorded

    with runtime.db.write() as session:  # a deleted row disagrees too
        session.execute(text("DELETE FROM policies_active"))
    reasons = point.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE).reasons
    assert "disagrees with the ledger (row: none, latest policy.activate: " in reasons[0]

    with runtime.db.write() as session:  # the row put back as the ledger says
        session.execute(
            text("INSERT INTO policies_active (id, version, activated_at) VALUES (1, :v, 'x')"),
            {"v": first},
        )
    decided = point.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE)
    assert decided.allow and decided.version == first
    assert point.active_mismatch() is None

    # flipped again (raised once already: no second alert here); an officer's activation
    # writes row and entry together, naming what it replaces as the ledger says
    _set_row(runtime, second)
    assert point.active_mismatch() is not None
    before = runtime.ledger.size()
    activated = world.steps.activate(OFFICER_B, second)
    assert activated.state is VersionState.ACTIVE
    [entry] = runtime.ledger.entries(before, runtime.ledger.size() - before)
    assert (entry.type, entry.payload["previous"]) == ("policy.activate", first)
    decided = point.decide(SUBBRAIN, "compute", "dataset:x", CORE_COMPUTE)
    assert decided.allow and decided.version == second


def _set_row(runtime: Runtime, version: str) -> None:
    with runtime.db.write() as session:
        session.execute(
            text("UPDATE policies_active SET version = :v WHERE id = 1"), {"v": version}
        )
