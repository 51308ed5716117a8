"""Consent time (issue 9, section 5): validity is judged at the exchange's clock.

A requester that states a time is trying to choose the moment its consents are
judged at: backdating to before an expiry or a revocation, or post-dating to
after a ``valid_from``. Each attack is tried here and seen refused; the release
re-check is attacked with a consent that is not yet valid, expired, revoked,
altered in the database or signed with a since-rotated key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from consent import (
    BadConsentSignatureError,
    ConsentConfig,
    ConsentConfigError,
    ConsentError,
    ConsentExpiredError,
    ConsentNotYetValidError,
    ConsentRequest,
    ConsentRevokedError,
    ForeignKeyError,
    InvalidConsentError,
    RequestTimeSkewError,
)
from core.clock import format_rfc3339
from core.keys import Ed25519Signer
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.consent.conftest import ORIGIN, T0, World

SKEW = timedelta(minutes=5)  # ConsentConfig's default request_skew


@dataclass(frozen=True)
class TimeAttack:
    """A consent, the exchange's time, and the time a requester states to reach it."""

    grant: dict[str, datetime]
    revoke_at: datetime | None
    clock: datetime
    stated: datetime
    refused_as: type[ConsentError]


TIME_ATTACKS = {
    # expired at T0+30d; the requester claims T0, inside the window
    "backdated-past-expiry": TimeAttack({}, None, T0 + timedelta(days=31), T0, ConsentExpiredError),
    # valid from T0+2d; the requester claims T0+3d while the exchange is at T0
    "post-dated-before-valid-from": TimeAttack(
        {"valid_from": T0 + timedelta(days=2), "valid_until": T0 + timedelta(days=9)},
        None,
        T0,
        T0 + timedelta(days=3),
        ConsentNotYetValidError,
    ),
    # revoked at T0+1h; the requester claims T0, before the revocation
    "backdated-before-revocation": TimeAttack(
        {}, T0 + timedelta(hours=1), T0 + timedelta(hours=2), T0, ConsentRevokedError
    ),
}


@pytest.mark.parametrize("attack", list(TIME_ATTACKS.values()), ids=list(TIME_ATTACKS))
def test_a_requester_cannot_choose_the_time_consents_are_judged_at(
    world: World, attack: TimeAttack
) -> None:
    record = world.grant("ent-0", **attack.grant)
    if attack.revoke_at is not None:
        world.clock.set(attack.revoke_at)
        world.service.revoke(world.revocation(record), actor="ent-0")
    world.clock.set(attack.clock)
    stated = world.request("ent-0", time=attack.stated)
    with pytest.raises(RequestTimeSkewError) as info:
        world.service.covering_consents(stated)
    assert info.value.stated == attack.stated
    assert info.value.exchange_time == attack.clock
    assert info.value.allowed == SKEW
    size = world.ledger.size()
    with pytest.raises(RequestTimeSkewError):
        world.service.use(stated, decision_id="dec-attack")
    assert world.ledger.size() == size  # nothing recorded, no use counted
    assert world.service.get(record.consent_id).use_count == 0
    # Without a stated time the exchange judges at its own clock: still refused.
    report = world.service.covering_consents(world.request("ent-0"))
    assert report.at == attack.clock
    assert report.chosen() == {}
    with pytest.raises(attack.refused_as):
        report.raise_for("ent-0")


@pytest.mark.parametrize(
    ("grant", "clock", "stated", "refused_as"),
    [
        # 1 min past expiry; claims 1 min before it (2 min off, within the skew)
        (
            {},
            T0 + timedelta(days=30, minutes=1),
            T0 + timedelta(days=30, minutes=-1),
            ConsentExpiredError,
        ),
        # 1 min before valid_from; claims 1 min after it
        (
            {"valid_from": T0 + timedelta(days=2), "valid_until": T0 + timedelta(days=9)},
            T0 + timedelta(days=2, minutes=-1),
            T0 + timedelta(days=2, minutes=1),
            ConsentNotYetValidError,
        ),
    ],
    ids=["expiry-edge", "valid-from-edge"],
)
def test_a_stated_time_within_the_skew_is_accepted_but_never_decides(
    world: World,
    grant: dict[str, datetime],
    clock: datetime,
    stated: datetime,
    refused_as: type[ConsentError],
) -> None:
    world.grant("ent-0", **grant)
    world.clock.set(clock)
    report = world.service.covering_consents(world.request("ent-0", time=stated))
    assert report.chosen() == {}
    with pytest.raises(refused_as):
        report.raise_for("ent-0")


def test_the_skew_bound_is_inclusive_and_two_sided(world: World) -> None:
    world.grant("ent-0")
    for off in (SKEW, -SKEW):
        report = world.service.covering_consents(world.request("ent-0", time=T0 + off))
        assert report.covered_owners() == ("ent-0",)
    for off in (SKEW + timedelta(microseconds=1), -SKEW - timedelta(microseconds=1)):
        with pytest.raises(RequestTimeSkewError):
            world.service.covering_consents(world.request("ent-0", time=T0 + off))


def test_the_use_entry_records_the_exchange_time(world: World) -> None:
    world.grant("ent-0")
    world.clock.set(T0 + timedelta(hours=3))
    stated = T0 + timedelta(hours=3, minutes=2)
    use = world.service.use(world.request("ent-0", time=stated), decision_id="dec-1")
    assert use.ledger_index is not None
    payload = world.ledger.entry(use.ledger_index).payload
    assert payload["checked_at"] == format_rfc3339(T0 + timedelta(hours=3))
    request = payload["request"]
    assert isinstance(request, dict)
    assert request["time"] == format_rfc3339(stated)  # what was claimed, kept as evidence
    plain = world.service.use(world.request("ent-0"), decision_id="dec-2")
    assert plain.ledger_index is not None
    request = world.ledger.entry(plain.ledger_index).payload["request"]
    assert isinstance(request, dict)
    assert request["time"] is None


def test_a_request_decodes_without_a_time_and_refuses_a_malformed_one() -> None:
    base = {
        "requester": "sb-battery",
        "purpose": "benchmarking",
        "operation": "mean",
        "engine": "he",
        "datasets": ["ent-0.energy"],
        "fields": ["energy_kwh"],
    }
    assert ConsentRequest.from_dict(base).time is None
    stated = ConsentRequest.from_dict({**base, "time": "2026-11-25T08:00:00Z"})
    assert stated.time == T0
    assert ConsentRequest.from_dict(stated.to_dict()) == stated
    for bad in (17, "yesterday", "2026-11-25T08:00:00"):
        with pytest.raises(InvalidConsentError):
            ConsentRequest.from_dict({**base, "time": bad})


# -- the release re-check ----------------------------------------------------------------


def test_release_refuses_a_consent_not_yet_valid(world: World) -> None:
    """The decision was made while the consent was valid; by release the exchange's
    clock was stepped back (an NTP correction) before its valid_from: the job stops."""
    record = world.grant(
        "ent-0", valid_from=T0 + timedelta(days=2), valid_until=T0 + timedelta(days=9)
    )
    world.clock.set(T0 + timedelta(days=3))
    use = world.service.use(world.request("ent-0"), decision_id="dec-1")
    assert list(use.used) == ["ent-0"]
    world.clock.set(T0 + timedelta(days=1))
    with pytest.raises(ConsentNotYetValidError) as info:
        world.service.confirm_release("dec-1", job_id="job-1")
    assert info.value.consent_id == record.consent_id
    assert "job job-1 must stop" in str(info.value)
    job = world.service.usage("ent-0")[0].entries[-1]
    assert (job.kind, job.status) == ("job", "stopped")
    payload = world.ledger.entry(job.ledger_index).payload
    assert payload["reason"] == "not_yet_valid"
    assert payload["checked_at"] == format_rfc3339(T0 + timedelta(days=1))


@pytest.mark.parametrize(
    ("release_at", "revoke", "refused_as"),
    [
        (T0 + timedelta(days=30), False, ConsentExpiredError),  # valid_until is exclusive
        (T0 + timedelta(hours=1), True, ConsentRevokedError),
    ],
    ids=["expired", "revoked"],
)
def test_release_refuses_expired_and_revoked(
    world: World, release_at: datetime, revoke: bool, refused_as: type[ConsentError]
) -> None:
    record = world.grant("ent-0")
    world.service.use(world.request("ent-0"), decision_id="dec-1")
    world.clock.set(release_at)
    if revoke:
        world.service.revoke(world.revocation(record), actor="ent-0")
    with pytest.raises(refused_as):
        world.service.confirm_release("dec-1", job_id="job-1")


def test_release_refuses_a_validity_extended_in_the_database(world: World) -> None:
    """An operator edits the stored receipt to push valid_until a year out so a job
    past the enterprise's expiry can still release: the signature no longer verifies."""
    world.grant("ent-0")
    world.service.use(world.request("ent-0"), decision_id="dec-1")
    signed_until = format_rfc3339(T0 + timedelta(days=30)).encode()
    forged_until = format_rfc3339(T0 + timedelta(days=395)).encode()
    with world.db.write() as session:
        changed = session.execute(
            text("UPDATE consent_grants SET receipt = replace(receipt, :a, :b)"),
            {"a": signed_until, "b": forged_until},
        )
        assert changed.rowcount == 1  # type: ignore[attr-defined]
    world.clock.set(T0 + timedelta(days=31))
    with pytest.raises(BadConsentSignatureError):
        world.service.confirm_release("dec-1", job_id="job-1")


def test_release_refuses_a_consent_whose_key_was_rotated(world: World) -> None:
    world.grant("ent-0")
    world.service.use(world.request("ent-0"), decision_id="dec-1")
    world.directory.add_enterprise("ent-0", Ed25519Signer.generate("new").public_key)
    with pytest.raises(ForeignKeyError):
        world.service.confirm_release("dec-1", job_id="job-1")


# -- configuration ------------------------------------------------------------------------


def test_config_refuses_a_negative_skew() -> None:
    with pytest.raises(ConsentConfigError):
        ConsentConfig(origin=ORIGIN, request_skew=timedelta(seconds=-1))
    with pytest.raises(ConsentConfigError):
        ConsentConfig(origin="")


def test_the_skew_is_an_operator_setting(tmp_path: Path) -> None:
    runtime = Runtime.initialise(
        Settings(data_dir=tmp_path / "data", consent_request_skew_seconds=30)
    )
    try:
        assert runtime.consents.config.request_skew == timedelta(seconds=30)
    finally:
        runtime.close()
