"""The risk rules over hand-made ledger entries: every rule below, at and above its
threshold, its window, one alert per rule, subject and window; the rules file refused
when it is not what the security officer meant."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from audit import RiskEngine, RiskRule, RiskRules, RiskRulesError
from core.alerts import Severity
from core.canonical import JsonValue, canonical_bytes
from exchange.ledger_types import ENTRY_PARSERS
from ledger import LedgerEntry

# 2026-12-02 is a Wednesday; 02:00 UTC is 10:00 in Asia/Shanghai (working hours)
WORKDAY_10_LOCAL = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


@dataclass
class Log:
    """Entries with ascending indices and times, as the ledger hands them out."""

    at: datetime = WORKDAY_10_LOCAL
    indices: count[int] = field(default_factory=count)

    def entry(
        self, type_: str, actor: str, payload: Mapping[str, JsonValue], *, after: timedelta
    ) -> LedgerEntry:
        self.at += after
        index = next(self.indices)
        body = {"index": index, "type": type_, "actor": actor, "payload": dict(payload)}
        return LedgerEntry(index, type_, actor, self.at, payload, canonical_bytes(body))


Maker = Callable[[Log, str, timedelta], LedgerEntry]


def _refused_for_differencing(log: Log, who: str, after: timedelta) -> LedgerEntry:
    return log.entry(
        "pipeline.job",
        "exchange",
        {
            "job_id": "job_" + "0" * 32,
            "requester": who,
            "from": "computing",
            "state": "refused",
            "reason": "release would disclose a contributor's value: with the 2 earlier ...",
        },
        after=after,
    )


def _denied(log: Log, who: str, after: timedelta) -> LedgerEntry:
    return log.entry(
        "authz.decision",
        who,
        {
            "role": "subbrain",
            "action": "request_submit",
            "resource": "job:*",
            "effect": "deny",
            "policy_version": None,
            "reasons": ["no line lets subbrain request_submit"],
        },
        after=after,
    )


def _at_the_minimum(log: Log, who: str, after: timedelta) -> LedgerEntry:
    participants = [{"enterprise": f"e{i}"} for i in range(3)]
    return log.entry(
        "pipeline.decision",
        who,
        {"requester": who, "participants": participants, "min_cohort": 3},
        after=after,
    )


def _enrolment_failed(log: Log, who: str, after: timedelta) -> LedgerEntry:
    payload: dict[str, JsonValue] = {"enterprise": who, "device": "meter-1", "reason": "token_used"}
    return log.entry("edge.enrol.failure", "meter-1", payload, after=after)


def _policy_at_night(log: Log, who: str, after: timedelta) -> LedgerEntry:
    log.at = log.at.replace(hour=15) if log.at.hour < 15 else log.at  # 23:00 Asia/Shanghai
    return log.entry("policy.activate", who, {"version": "a" * 64}, after=after)


def _locked_out(log: Log, who: str, after: timedelta) -> LedgerEntry:
    payload: dict[str, JsonValue] = {
        "source": who,
        "failures": 10,
        "window_seconds": 60,
        "locked_until": "2026-12-02T02:05:00.000000Z",
    }
    return log.entry("identity.auth_lockout", "exchange", payload, after=after)


RULES: list[tuple[RiskRule, Maker, str]] = [
    (RiskRule.DIFFERENCING, _refused_for_differencing, "li-brain"),
    (RiskRule.DENIAL_BURST, _denied, "li-brain"),
    (RiskRule.COHORT_MINIMUM, _at_the_minimum, "li-brain"),
    (RiskRule.ENROLMENT_FAILURES, _enrolment_failed, "cathode-co"),
    (RiskRule.OFF_HOURS_POLICY, _policy_at_night, "officer-wang"),
    (RiskRule.AUTH_FAILURES, _locked_out, "203.0.113.7"),
]
IDS = [rule.value for rule, _m, _w in RULES]

TIGHT = """
[differencing]
threshold = 3
window_minutes = 60
[denial_burst]
threshold = 3
window_minutes = 60
[cohort_minimum]
threshold = 3
window_minutes = 60
[enrolment_failures]
threshold = 3
window_minutes = 60
[off_hours_policy]
threshold = 3
window_minutes = 60
[auth_failures]
threshold = 3
window_minutes = 60
"""


@pytest.fixture(scope="module")
def tight() -> RiskRules:
    return RiskRules.from_toml(TIGHT, source="test rules")


@pytest.mark.parametrize(("rule", "make", "who"), RULES, ids=IDS)
def test_below_the_threshold_nothing(
    tight: RiskRules, rule: RiskRule, make: Maker, who: str
) -> None:
    log, engine = Log(), RiskEngine(tight)
    assert engine.evaluate([make(log, who, timedelta(minutes=1)) for _ in range(2)]) == []


@pytest.mark.parametrize(("rule", "make", "who"), RULES, ids=IDS)
def test_at_the_threshold_one_alert_with_its_evidence(
    tight: RiskRules, rule: RiskRule, make: Maker, who: str
) -> None:
    log, engine = Log(), RiskEngine(tight)
    entries = [make(log, who, timedelta(minutes=1)) for _ in range(3)]
    alerts = engine.evaluate(entries)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.rule == f"risk.{rule.value}"
    assert who in alert.subject and who in alert.message
    assert list(alert.evidence) == [e.index for e in entries]
    assert alert.details["count"] == 3 and alert.details["threshold"] == 3
    assert alert.severity is tight.threshold(rule).severity
    event = alert.event("ibx-risk")
    assert event.type == "audit.alert" and event.subjects == ("audit:alerts", alert.subject)
    ENTRY_PARSERS["audit.alert"](alert.to_payload())  # the typed entry takes it


@pytest.mark.parametrize(("rule", "make", "who"), RULES, ids=IDS)
def test_above_the_threshold_one_alert_per_window(
    tight: RiskRules, rule: RiskRule, make: Maker, who: str
) -> None:
    """Past the threshold the subject is quiet for a window after the alert; then entries
    the first alert did not rest on (those of the quiet time still in the window among
    them) raise the next."""
    log, engine = Log(), RiskEngine(tight)
    first = engine.evaluate([make(log, who, timedelta(minutes=1)) for _ in range(10)])
    assert len(first) == 1
    assert engine.evaluate([make(log, who, timedelta(minutes=5)) for _ in range(8)]) == []
    later = [make(log, who, timedelta(minutes=30)) for _ in range(3)]  # past the window
    second = engine.evaluate(later)
    assert len(second) == 1
    assert set(second[0].evidence).isdisjoint(first[0].evidence)
    assert later[0].index == second[0].evidence[-1]


@pytest.mark.parametrize(("rule", "make", "who"), RULES, ids=IDS)
def test_entries_further_apart_than_the_window_do_not_add_up(
    tight: RiskRules, rule: RiskRule, make: Maker, who: str
) -> None:
    log, engine = Log(), RiskEngine(tight)
    spread = [make(log, who, timedelta(minutes=31)) for _ in range(10)]
    assert engine.evaluate(spread) == []


@pytest.mark.parametrize(("rule", "make", "who"), RULES, ids=IDS)
def test_subjects_are_counted_apart_and_a_page_fed_twice_raises_once(
    tight: RiskRules, rule: RiskRule, make: Maker, who: str
) -> None:
    log, engine = Log(), RiskEngine(tight)
    mixed = [make(log, name, timedelta(seconds=10)) for _ in range(2) for name in (who, "other")]
    assert engine.evaluate(mixed) == []
    page = [make(log, who, timedelta(seconds=10))]
    assert len(engine.evaluate(page)) == 1
    assert engine.evaluate(page) == []  # already seen: the watcher may hand a page again
    assert engine.next_index == page[0].index + 1


TYPED = [r for r in RULES if r[0] not in (RiskRule.COHORT_MINIMUM, RiskRule.OFF_HOURS_POLICY)]


@pytest.mark.parametrize(("rule", "make", "who"), TYPED, ids=[r[0].value for r in TYPED])
def test_the_entries_as_their_writers_type_them_count(
    tight: RiskRules, rule: RiskRule, make: Maker, who: str
) -> None:
    """The same entries parse through the exchange's registry and still count."""
    log, engine = Log(), RiskEngine(tight, entry_types=ENTRY_PARSERS)
    entries = [make(log, who, timedelta(minutes=1)) for _ in range(3)]
    for entry in entries:
        ENTRY_PARSERS[entry.type](entry.payload)
    assert [a.rule for a in engine.evaluate(entries)] == [rule.alert_rule]


@pytest.mark.parametrize(("rule", "make", "who"), RULES, ids=IDS)
def test_a_rule_turned_off_raises_nothing(rule: RiskRule, make: Maker, who: str) -> None:
    rules = RiskRules.from_toml(f"{TIGHT}\n", source="t")
    off = RiskRules.from_toml(
        TIGHT.replace(f"[{rule.value}]\n", f"[{rule.value}]\nenabled = false\n"), source="t"
    )
    assert not off.threshold(rule).enabled and rules.threshold(rule).enabled
    log = Log()
    assert RiskEngine(off).evaluate([make(log, who, timedelta(minutes=1)) for _ in range(5)]) == []


def test_a_restart_replays_to_its_cursor_and_raises_only_what_is_new(tight: RiskRules) -> None:
    """The watcher rebuilds its state by replaying what it already evaluated: the alert
    raised before the restart is not raised again, the window goes on."""
    log = Log()
    before = [_denied(log, "li-brain", timedelta(minutes=1)) for _ in range(4)]
    assert len(RiskEngine(tight).evaluate(before)) == 1
    restarted = RiskEngine(tight)
    restarted.replay(before)
    assert restarted.evaluate([_denied(log, "li-brain", timedelta(minutes=1))]) == []
    assert restarted.next_index == 5


def test_only_differencing_refusals_count(tight: RiskRules) -> None:
    log, engine = Log(), RiskEngine(tight)
    other = []
    for reason in ("cohort below the minimum: 2 < 3", "dominated total suppressed: ..."):
        entry = _refused_for_differencing(log, "li-brain", timedelta(minutes=1))
        other.append(
            LedgerEntry(
                entry.index, entry.type, entry.actor, entry.time,
                {**entry.payload, "reason": reason}, entry.leaf_input,
            )
        )  # fmt: skip
    failed = _refused_for_differencing(log, "li-brain", timedelta(minutes=1))
    failed = LedgerEntry(
        failed.index, failed.type, failed.actor, failed.time,
        {**failed.payload, "state": "failed"}, failed.leaf_input,
    )  # fmt: skip
    assert engine.evaluate([*other, failed, *other]) == []
    diffs = [_refused_for_differencing(log, "li-brain", timedelta(minutes=1)) for _ in range(3)]
    assert len(engine.evaluate(diffs)) == 1


def test_allowed_decisions_and_larger_cohorts_do_not_count(tight: RiskRules) -> None:
    log, engine = Log(), RiskEngine(tight)
    quiet = []
    for _ in range(5):
        allowed = _denied(log, "li-brain", timedelta(seconds=5))
        quiet.append(
            LedgerEntry(
                allowed.index, allowed.type, allowed.actor, allowed.time,
                {**allowed.payload, "effect": "allow", "reasons": []}, allowed.leaf_input,
            )
        )  # fmt: skip
        wide = _at_the_minimum(log, "li-brain", timedelta(seconds=5))
        quiet.append(
            LedgerEntry(
                wide.index, wide.type, wide.actor, wide.time,
                {**wide.payload, "min_cohort": 2}, wide.leaf_input,
            )
        )  # fmt: skip
    assert engine.evaluate(quiet) == []


def test_refused_compute_requests_count_with_denied_calls(tight: RiskRules) -> None:
    log, engine = Log(), RiskEngine(tight, entry_types=ENTRY_PARSERS)
    refused: dict[str, JsonValue] = {
        "requester": "li-brain",
        "reason": "cohort",
        "detail": "cohort 2 is below the minimum of 5",
        "request_sha256": "ab" * 32,
    }
    entries = [
        log.entry("pipeline.denial", "li-brain", refused, after=timedelta(seconds=1)),
        _denied(log, "li-brain", timedelta(seconds=1)),
        log.entry("pipeline.denial", "li-brain", refused, after=timedelta(seconds=1)),
    ]
    alerts = engine.evaluate(entries)
    assert [a.rule for a in alerts] == ["risk.denial_burst"]
    assert "refused (cohort)" in alerts[0].message


def test_a_payload_its_typed_class_refuses_counts_for_nothing(tight: RiskRules) -> None:
    """With the registry, an entry of the wrong shape is ibx audit verify's finding, not
    a risk input."""
    log, engine = Log(), RiskEngine(tight, entry_types=ENTRY_PARSERS)
    forged = [
        log.entry(
            "pipeline.denial",
            "li-brain",
            {"requester": "li-brain", "reason": "cohort", "detail": "x", "extra": 1},
            after=timedelta(seconds=1),
        )
        for _ in range(5)
    ]
    assert engine.evaluate(forged) == []


def test_enrolment_failures_without_an_enterprise_do_not_count(tight: RiskRules) -> None:
    log, engine = Log(), RiskEngine(tight)
    payload: dict[str, JsonValue] = {"enterprise": None, "device": "x", "reason": "token_unknown"}
    nobody = [
        log.entry("edge.enrol.failure", "x", payload, after=timedelta(seconds=1)) for _ in range(5)
    ]
    assert engine.evaluate(nobody) == []


OFF_HOURS = [
    # (UTC time, off hours in Asia/Shanghai 08:30-18:00 Mon-Fri?)
    (datetime(2026, 12, 2, 0, 29, tzinfo=UTC), True),  # Wed 08:29
    (datetime(2026, 12, 2, 0, 30, tzinfo=UTC), False),  # Wed 08:30
    (datetime(2026, 12, 2, 9, 59, tzinfo=UTC), False),  # Wed 17:59
    (datetime(2026, 12, 2, 10, 0, tzinfo=UTC), True),  # Wed 18:00
    (datetime(2026, 12, 2, 15, 0, tzinfo=UTC), True),  # Wed 23:00
    (datetime(2026, 12, 5, 2, 0, tzinfo=UTC), True),  # Sat 10:00
    (datetime(2026, 12, 4, 17, 0, tzinfo=UTC), True),  # Sat 01:00 (Fri in UTC)
]


@pytest.mark.parametrize(("at", "off"), OFF_HOURS, ids=[f"{a:%a-%H%M}Z" for a, _ in OFF_HOURS])
def test_policy_steps_outside_working_hours_in_the_configured_zone(at: datetime, off: bool) -> None:
    rules = RiskRules.defaults()
    engine = RiskEngine(rules)
    entry = LedgerEntry(0, "policy.approve", "officer-li", at, {"version": "b" * 64}, b"{}")
    alerts = engine.evaluate([entry])
    assert bool(alerts) is off
    if off:
        assert alerts[0].rule == "risk.off_hours_policy"
        assert "Asia/Shanghai" in alerts[0].message and "policy.approve" in alerts[0].message
        assert alerts[0].subject == "officer-li"


def test_working_hours_follow_the_file() -> None:
    rules = RiskRules.from_toml(
        '[off_hours_policy]\ntimezone = "UTC"\nstart = "00:00"\nend = "23:59"\n'
        'days = ["sat", "sun"]\ntypes = ["policy.activate"]\n',
        source="t",
    )
    saturday = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    wednesday = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert rules.working_hours.contains(saturday)
    assert not rules.working_hours.contains(wednesday)
    engine = RiskEngine(rules)
    approve = LedgerEntry(0, "policy.approve", "o", wednesday, {}, b"{}")  # not watched
    activate = LedgerEntry(1, "policy.activate", "o", wednesday, {}, b"{}")
    assert [a.rule for a in engine.evaluate([approve, activate])] == ["risk.off_hours_policy"]


# -- the rules file -----------------------------------------------------------------------


def test_the_shipped_defaults() -> None:
    rules = RiskRules.defaults()
    assert rules == RiskRules.from_toml("", source="empty")
    assert rules.denial_burst.count == 10 and rules.denial_burst.window == timedelta(minutes=10)
    assert rules.differencing.severity is Severity.CRITICAL
    assert rules.working_hours.describe() == "mon-fri 08:30-18:00 Asia/Shanghai"
    assert rules.to_dict()["auth_failures"] == {
        "enabled": True,
        "threshold": 1,
        "window_minutes": 60,
        "severity": "critical",
    }
    assert rules.longest_window == timedelta(days=1)


def test_a_key_left_out_takes_the_default() -> None:
    rules = RiskRules.from_toml("[denial_burst]\nthreshold = 3\n", source="t")
    assert rules.denial_burst.count == 3
    assert rules.denial_burst.window == RiskRules.defaults().denial_burst.window
    assert rules.cohort_minimum == RiskRules.defaults().cohort_minimum


BAD_FILES = [
    ("not toml", "[denial_burst\nthreshold = 3", "is not TOML"),
    ("unknown section", "[denial_bursts]\nthreshold = 3", "[denial_bursts]: unknown section"),
    ("unknown key", "[denial_burst]\nthreshhold = 3", "[denial_burst] threshhold: unknown key"),
    ("key of another rule", "[denial_burst]\ntimezone = 'UTC'", "unknown key"),
    ("section not a table", "denial_burst = 3", "must be a table"),
    ("threshold zero", "[denial_burst]\nthreshold = 0", "threshold: must be an integer from 1"),
    ("threshold a string", '[denial_burst]\nthreshold = "10"', "must be an integer"),
    ("threshold a boolean", "[denial_burst]\nthreshold = true", "must be an integer"),
    ("window too long", "[denial_burst]\nwindow_minutes = 50000", "window_minutes"),
    ("severity", '[auth_failures]\nseverity = "info"', '"warning" or "critical"'),
    ("enabled a string", '[auth_failures]\nenabled = "no"', "must be true or false"),
    ("zone", '[off_hours_policy]\ntimezone = "Mars/Olympus"', "unknown time zone"),
    ("clock", '[off_hours_policy]\nstart = "8:30"', "is not a time of day"),
    ("hours reversed", '[off_hours_policy]\nstart = "18:00"\nend = "08:30"', "start before"),
    ("day", '[off_hours_policy]\ndays = ["monday"]', "'monday' is not one of"),
    ("type", '[off_hours_policy]\ntypes = ["identity.create"]', "is not a policy.* entry"),
    ("no reasons", "[differencing]\nreasons = []", "at least one non-empty reason"),
]


@pytest.mark.parametrize(("text", "expected"), [(t, e) for _n, t, e in BAD_FILES],
                         ids=[n for n, _t, _e in BAD_FILES])  # fmt: skip
def test_a_rules_file_that_is_not_what_was_meant_is_refused(text: str, expected: str) -> None:
    with pytest.raises(RiskRulesError) as raised:
        RiskRules.from_toml(text, source="/etc/ibx/risk.toml")
    message = str(raised.value)
    assert message.startswith("/etc/ibx/risk.toml")
    assert expected in message


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(RiskRulesError, match="is not TOML"):
        RiskRules.from_toml(b"[denial_burst]\nthreshold = \xff", source="r")
