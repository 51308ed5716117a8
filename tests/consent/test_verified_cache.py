"""A receipt verified once is not verified again — unless anything it was verified with changed.

:meth:`consent.ConsentService.use` keeps receipts whose signature verified, by
(stored bytes, signature, registered key). Each test first uses a consent (so
its receipt is kept), then attacks or changes one of those inputs, or the
state that is never kept (revocation, use count), and sees the next decision
judge the change at once.
"""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import text

from consent import ConsentRevokedError, Engine
from consent.errors import (
    BadConsentSignatureError,
    ForeignKeyError,
    NoRegisteredKeyError,
    UseLimitReachedError,
)
from core.keys import Ed25519Signer
from tests.consent.conftest import World


def _use(world: World, n: int, *enterprises: str) -> set[str]:
    return set(world.service.use(world.request(*enterprises), decision_id=f"d-{n}").used)


def _refusal(world: World, enterprise: str) -> Exception:
    report = world.service.covering_consents(world.request(enterprise))
    refusals = report.refusals[enterprise]
    assert refusals, "expected the consent to be refused"
    return refusals[0].error


def test_a_receipt_altered_after_it_was_verified_is_refused(world: World) -> None:
    record = world.grant("ent-0")
    assert _use(world, 1, "ent-0") == {"ent-0"}
    with world.db.write() as session:  # the operator widens the stored receipt
        stored = json.loads(
            session.execute(
                text("SELECT receipt FROM consent_grants WHERE consent_id = :c"),
                {"c": record.consent_id},
            ).scalar_one()
        )
        stored["min_cohort"] = 0
        session.execute(
            text("UPDATE consent_grants SET receipt = :r WHERE consent_id = :c"),
            {"r": json.dumps(stored).encode(), "c": record.consent_id},
        )
    assert _use(world, 2, "ent-0") == set()
    assert isinstance(_refusal(world, "ent-0"), BadConsentSignatureError)


def test_a_signature_replaced_after_it_was_verified_is_refused(world: World) -> None:
    record = world.grant("ent-0")
    assert _use(world, 1, "ent-0") == {"ent-0"}
    with world.db.write() as session:
        session.execute(
            text("UPDATE consent_grants SET signature = :s WHERE consent_id = :c"),
            {"s": bytes(64), "c": record.consent_id},
        )
    assert _use(world, 2, "ent-0") == set()
    assert isinstance(_refusal(world, "ent-0"), BadConsentSignatureError)


def test_a_key_rotated_after_verification_is_seen_at_once(world: World) -> None:
    record = world.grant("ent-0")
    assert _use(world, 1, "ent-0") == {"ent-0"}
    assert record.consent_id in world.service._receipts._kept  # verified once, kept
    world.directory.add_enterprise("ent-0", Ed25519Signer.generate("new").public_key)
    assert _use(world, 2, "ent-0") == set()
    assert isinstance(_refusal(world, "ent-0"), ForeignKeyError)
    # and back: the receipt verifies again under the key it was signed with
    world.directory.add_enterprise("ent-0", world.keys["ent-0"].public_key)
    assert _use(world, 3, "ent-0") == {"ent-0"}


def test_an_enterprise_without_a_key_any_more_is_refused(world: World) -> None:
    world.grant("ent-0")
    assert _use(world, 1, "ent-0") == {"ent-0"}
    world.directory._keys.pop("ent-0")  # the enterprise was deactivated
    assert _use(world, 2, "ent-0") == set()
    assert isinstance(_refusal(world, "ent-0"), NoRegisteredKeyError)


def test_a_revocation_after_verification_binds_the_next_decision(world: World) -> None:
    record = world.grant("ent-0")
    other = world.grant("ent-1")
    assert _use(world, 1, "ent-0", "ent-1") == {"ent-0", "ent-1"}
    world.service.revoke(world.revocation(record), actor="ent-0")
    assert _use(world, 2, "ent-0", "ent-1") == {"ent-1"}
    assert isinstance(_refusal(world, "ent-0"), ConsentRevokedError)
    assert world.service.get(other.consent_id).use_count == 2


def test_the_kept_receipt_still_judges_each_request_scope(world: World) -> None:
    world.grant("ent-0")
    assert _use(world, 1, "ent-0") == {"ent-0"}
    refused = world.service.use(
        world.request("ent-0", engine=Engine.PSI), decision_id="d-psi"
    ).report.refusals["ent-0"][0]
    assert refused.reason == "scope_mismatch"


def test_use_limits_hold_with_kept_receipts_under_concurrency(world: World) -> None:
    record = world.grant("ent-0", use_limit=5)
    assert _use(world, 0, "ent-0") == {"ent-0"}  # kept from here on
    used: list[int] = []
    lock = threading.Lock()

    def decide(n: int) -> None:
        if world.service.use(world.request("ent-0"), decision_id=f"t-{n}").used:
            with lock:
                used.append(n)

    threads = [threading.Thread(target=decide, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(used) == 4
    assert world.service.get(record.consent_id).use_count == 5
    assert isinstance(_refusal(world, "ent-0"), UseLimitReachedError)


@pytest.mark.parametrize("limit", [1, 3])
def test_the_cache_is_bounded(world: World, limit: int) -> None:
    from consent._verified import VerifiedReceipts

    world.service._receipts = VerifiedReceipts(limit=limit)
    for name in ("ent-0", "ent-1", "ent-2"):
        world.grant(name)
    for n in range(3):
        assert _use(world, n, "ent-0", "ent-1", "ent-2") == {"ent-0", "ent-1", "ent-2"}
    assert len(world.service._receipts._kept) <= limit


# -- a check made ahead, counted under the lock (ConsentService.use_checked) ------------


def _ahead_then_count(world: World, decision_id: str, between: object = None) -> set[str] | None:
    """Check ahead; run ``between`` (something that lands before the lock); count."""
    report = world.service.check_ahead(world.request("ent-0", "ent-1"))
    assert set(report.chosen()) == {"ent-0", "ent-1"}
    if callable(between):
        between()
    with world.db.write() as session:
        use = world.service.use_checked(report, decision_id=decision_id, session=session)
    return None if use is None else set(use.used)


def test_a_check_ahead_is_counted_when_every_chosen_consent_still_stands(world: World) -> None:
    first = world.grant("ent-0", use_limit=2)
    world.grant("ent-1")
    assert _ahead_then_count(world, "d-1") == {"ent-0", "ent-1"}
    assert world.service.get(first.consent_id).use_count == 1
    entry = world.ledger.entry(world.ledger.size() - 1)
    assert entry.type == "consent.use" and entry.payload["decision_id"] == "d-1"


def test_a_revocation_between_the_check_ahead_and_the_lock_is_seen(world: World) -> None:
    record = world.grant("ent-0")
    world.grant("ent-1")
    size = world.ledger.size()

    def revoke() -> None:
        world.service.revoke(world.revocation(record), actor="ent-0")

    assert _ahead_then_count(world, "d-1", revoke) is None  # nothing counted: check afresh
    assert world.service.get(record.consent_id).use_count == 0
    assert world.ledger.size() == size + 1  # the revocation only, no consent.use
    assert _use(world, 2, "ent-0", "ent-1") == {"ent-1"}


def test_a_use_counted_between_the_check_ahead_and_the_lock_is_seen(world: World) -> None:
    record = world.grant("ent-0", use_limit=1)
    world.grant("ent-1")
    assert _ahead_then_count(world, "d-1", lambda: _use(world, 9, "ent-0")) is None
    assert world.service.get(record.consent_id).use_count == 1  # never overrun
    assert isinstance(_refusal(world, "ent-0"), UseLimitReachedError)


def test_an_expiry_between_the_check_ahead_and_the_lock_is_seen(world: World) -> None:
    record = world.grant("ent-0")
    world.grant("ent-1")
    later = record.signed.receipt.valid_until
    assert _ahead_then_count(world, "d-1", lambda: world.clock.set(later)) is None
    assert world.service.get(record.consent_id).use_count == 0
