"""Risk warning (风险预警): rules over the stream of ledger entries that raise alerts.

:class:`RiskRules` are the thresholds the security officer owns, parsed from
TOML (``risk.toml``; the shipped defaults are ``audit/risk_defaults.toml``).
:class:`RiskEngine` is fed the ledger's entries in index order and returns the
:class:`core.alerts.Alert` each rule raises; it keeps a sliding window per rule
and subject (a requester, an enterprise, an officer, a client address) and
raises at most one alert per rule and subject per window. No I/O here: the
exchange's watcher (``exchange/risk_watch.py``) reads the ledger, records the
alerts and keeps the cursor; an auditor can run the same engine over an export.

The rules (each ``risk.<name>``):

* ``differencing``: ``pipeline.job`` entries moving a job to ``refused`` for a
  differencing reason (the release guard's refusal titles), per requester;
* ``denial_burst``: denied calls (``authz.decision`` with effect ``deny``, actor
  the caller) and refused compute requests (``pipeline.denial``), per requester;
* ``cohort_minimum``: ``pipeline.decision`` entries whose cohort (participants)
  equals the minimum cohort, per requester;
* ``enrolment_failures``: ``edge.enrol.failure`` entries, per enterprise;
* ``off_hours_policy``: policy steps (``policy.*``) outside working hours in the
  configured time zone, per officer;
* ``auth_failures``: ``identity.auth_lockout`` entries, per client address.

``witness.fork`` and ``row.mismatch`` alerts are raised where they are found
(a witness's report, a service's check) and listed with these.
"""

from __future__ import annotations

import enum
import re
import tomllib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from importlib import resources
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from audit._facts import Payload, PayloadShapeError
from audit._parse import EntryTypes
from audit.errors import RiskRulesError
from core.alerts import Alert, Severity
from core.canonical import JsonValue
from core.clock import format_rfc3339
from ledger import LedgerEntry

__all__ = [
    "DEFAULT_RULES_FILE",
    "RULE_PREFIX",
    "RiskEngine",
    "RiskRule",
    "RiskRules",
    "Threshold",
    "WorkingHours",
]

RULE_PREFIX: Final = "risk."
DEFAULT_RULES_FILE: Final = "risk_defaults.toml"
"""The shipped defaults, package data of ``audit``."""

MAX_EVIDENCE = 200
"""Ledger indices an alert cites at most (the latest ones)."""
_MAX_WINDOW_MINUTES = 30 * 24 * 60
_MAX_THRESHOLD = 1_000_000
_MAX_SUBJECT = 200
_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_TYPE = re.compile(r"^policy\.[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
_PRUNE_EVERY = 4096


class RiskRule(enum.StrEnum):
    """The risk rules; an alert's rule is ``risk.<value>``."""

    DIFFERENCING = "differencing"
    DENIAL_BURST = "denial_burst"
    COHORT_MINIMUM = "cohort_minimum"
    ENROLMENT_FAILURES = "enrolment_failures"
    OFF_HOURS_POLICY = "off_hours_policy"
    AUTH_FAILURES = "auth_failures"

    @property
    def alert_rule(self) -> str:
        """The alert's ``rule``: ``risk.<name>``."""
        return RULE_PREFIX + self.value


@dataclass(frozen=True)
class Threshold:
    """When one rule fires: ``count`` entries about one subject within ``window``."""

    count: int
    window: timedelta
    severity: Severity
    enabled: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.count <= _MAX_THRESHOLD:
            raise ValueError(f"threshold must be 1 to {_MAX_THRESHOLD}")
        if not timedelta(minutes=1) <= self.window <= timedelta(minutes=_MAX_WINDOW_MINUTES):
            raise ValueError(f"window must be 1 to {_MAX_WINDOW_MINUTES} minutes")

    def to_dict(self) -> dict[str, JsonValue]:
        """The thresholds as the rules file states them."""
        return {
            "enabled": self.enabled,
            "threshold": self.count,
            "window_minutes": int(self.window.total_seconds() // 60),
            "severity": self.severity.value,
        }


@dataclass(frozen=True)
class WorkingHours:
    """``[start, end)`` on ``days`` (0 = Monday) in the IANA zone ``timezone``."""

    timezone: str
    start: time
    end: time
    days: frozenset[int]

    def __post_init__(self) -> None:
        if self.start >= self.end:
            raise ValueError("working hours must start before they end (within one day)")
        if not self.days <= frozenset(range(7)):
            raise ValueError("days are 0 (Monday) to 6 (Sunday)")
        _zone(self.timezone)

    @property
    def zone(self) -> ZoneInfo:
        """The time zone."""
        return _zone(self.timezone)

    def local(self, at: datetime) -> datetime:
        """``at`` in the working hours' time zone."""
        return at.astimezone(self.zone)

    def contains(self, at: datetime) -> bool:
        """Whether ``at`` (timezone-aware) falls within working hours."""
        local = self.local(at)
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def describe(self) -> str:
        """``mon-fri 08:30-18:00 Asia/Shanghai``."""
        days = ",".join(_DAYS[d] for d in sorted(self.days)) or "no days"
        if self.days == frozenset(range(5)):
            days = "mon-fri"
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.timezone}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@dataclass(frozen=True)
class RiskRules:
    """Every rule's thresholds, and what the rules match (see the module docstring)."""

    differencing: Threshold
    denial_burst: Threshold
    cohort_minimum: Threshold
    enrolment_failures: Threshold
    off_hours_policy: Threshold
    auth_failures: Threshold
    working_hours: WorkingHours
    differencing_reasons: tuple[str, ...]
    """A refused job counts when its reason starts with one of these."""
    policy_types: frozenset[str]
    """The entry types that are policy steps."""

    def threshold(self, rule: RiskRule) -> Threshold:
        """The thresholds of ``rule``."""
        found: Threshold = getattr(self, rule.value)
        return found

    @property
    def longest_window(self) -> timedelta:
        """The longest window of an enabled rule (how far back state matters)."""
        windows = [self.threshold(r).window for r in RiskRule if self.threshold(r).enabled]
        return max(windows, default=timedelta(0))

    @classmethod
    def defaults(cls) -> RiskRules:
        """The shipped defaults (``audit/risk_defaults.toml``).

        Raises:
            RiskRulesError: the shipped file is broken (a packaging error).
        """
        source = "the shipped risk defaults"
        return _Reader(source).rules(_load(_default_text(), source), None)

    @classmethod
    def from_toml(cls, text: str | bytes, *, source: str = "risk rules") -> RiskRules:
        """Parse a rules file; a key it leaves out takes the shipped default.

        Raises:
            RiskRulesError: not UTF-8 TOML, an unknown section or key, a value of the
                wrong type or out of range (the message names the file and key).
        """
        document = _load(text, source)
        return _Reader(source).rules(document, tomllib.loads(_default_text()))

    def to_dict(self) -> dict[str, JsonValue]:
        """The rules in force, section by section as the file states them."""
        out: dict[str, JsonValue] = {r.value: self.threshold(r).to_dict() for r in RiskRule}
        differencing = dict(self.threshold(RiskRule.DIFFERENCING).to_dict())
        differencing["reasons"] = list(self.differencing_reasons)
        out[RiskRule.DIFFERENCING.value] = differencing
        hours = self.working_hours
        off_hours = dict(self.threshold(RiskRule.OFF_HOURS_POLICY).to_dict())
        off_hours.update(
            {
                "timezone": hours.timezone,
                "start": f"{hours.start:%H:%M}",
                "end": f"{hours.end:%H:%M}",
                "days": [_DAYS[d] for d in sorted(hours.days)],
                "types": sorted(self.policy_types),
            }
        )
        out[RiskRule.OFF_HOURS_POLICY.value] = off_hours
        return out


def _load(text: str | bytes, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text.decode("utf-8") if isinstance(text, bytes) else text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RiskRulesError(f"{source} is not TOML: {exc}") from exc


def _default_text() -> str:
    return resources.files("audit").joinpath(DEFAULT_RULES_FILE).read_text(encoding="utf-8")


_COMMON = frozenset({"enabled", "threshold", "window_minutes", "severity"})
_EXTRA: Mapping[RiskRule, frozenset[str]] = {
    RiskRule.DIFFERENCING: frozenset({"reasons"}),
    RiskRule.OFF_HOURS_POLICY: frozenset({"timezone", "start", "end", "days", "types"}),
}


class _Reader:
    """Reads one rules document, naming the file and key in every refusal."""

    def __init__(self, source: str) -> None:
        self._source = source

    def _error(self, where: str, problem: str) -> RiskRulesError:
        return RiskRulesError(f"{self._source}: {where}: {problem}")

    def rules(self, document: Mapping[str, Any], base: Mapping[str, Any] | None) -> RiskRules:
        names = {r.value for r in RiskRule}
        for section, body in document.items():
            if section not in names:
                known = ", ".join(sorted(names))
                raise self._error(f"[{section}]", f"unknown section (the rules are {known})")
            if not isinstance(body, dict):
                raise self._error(f"[{section}]", "must be a table of keys")
            allowed = _COMMON | _EXTRA.get(RiskRule(section), frozenset())
            for key in body:
                if key not in allowed:
                    raise self._error(
                        f"[{section}] {key}", f"unknown key (known: {', '.join(sorted(allowed))})"
                    )
        merged: dict[RiskRule, dict[str, Any]] = {}
        for rule in RiskRule:
            values = dict((base or {}).get(rule.value, {}))
            values.update(document.get(rule.value, {}))
            merged[rule] = values
        thresholds = {rule: self._threshold(rule, merged[rule]) for rule in RiskRule}
        off = merged[RiskRule.OFF_HOURS_POLICY]
        where = f"[{RiskRule.OFF_HOURS_POLICY.value}]"
        try:
            hours = WorkingHours(
                timezone=self._text(off, where, "timezone"),
                start=self._clock(off, where, "start"),
                end=self._clock(off, where, "end"),
                days=self._days(off, where),
            )
        except ValueError as exc:
            raise self._error(where, str(exc)) from exc
        types = self._texts(off, where, "types")
        for name in types:
            if not _TYPE.fullmatch(name):
                raise self._error(f"{where} types", f"{name!r} is not a policy.* entry type")
        reasons = self._texts(merged[RiskRule.DIFFERENCING], "[differencing]", "reasons")
        if not reasons or any(not r.strip() for r in reasons):
            raise self._error("[differencing] reasons", "must list at least one non-empty reason")
        return RiskRules(
            differencing=thresholds[RiskRule.DIFFERENCING],
            denial_burst=thresholds[RiskRule.DENIAL_BURST],
            cohort_minimum=thresholds[RiskRule.COHORT_MINIMUM],
            enrolment_failures=thresholds[RiskRule.ENROLMENT_FAILURES],
            off_hours_policy=thresholds[RiskRule.OFF_HOURS_POLICY],
            auth_failures=thresholds[RiskRule.AUTH_FAILURES],
            working_hours=hours,
            differencing_reasons=tuple(reasons),
            policy_types=frozenset(types),
        )

    def _threshold(self, rule: RiskRule, section: Mapping[str, Any]) -> Threshold:
        where = f"[{rule.value}]"
        enabled = self._value(section, where, "enabled")
        if not isinstance(enabled, bool):
            raise self._error(f"{where} enabled", "must be true or false")
        count = self._integer(section, where, "threshold", 1, _MAX_THRESHOLD)
        minutes = self._integer(section, where, "window_minutes", 1, _MAX_WINDOW_MINUTES)
        severity = self._text(section, where, "severity")
        try:
            level = Severity(severity)
        except ValueError as exc:
            raise self._error(f"{where} severity", 'must be "warning" or "critical"') from exc
        return Threshold(count, timedelta(minutes=minutes), level, enabled)

    def _value(self, section: Mapping[str, Any], where: str, key: str) -> Any:
        if key not in section:
            raise self._error(f"{where} {key}", "missing")
        return section[key]

    def _integer(
        self, section: Mapping[str, Any], where: str, key: str, low: int, high: int
    ) -> int:
        value = self._value(section, where, key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self._error(f"{where} {key}", f"must be an integer from {low} to {high}")
        return value

    def _text(self, section: Mapping[str, Any], where: str, key: str) -> str:
        value = self._value(section, where, key)
        if not isinstance(value, str) or not value:
            raise self._error(f"{where} {key}", "must be a non-empty string")
        return value

    def _texts(self, section: Mapping[str, Any], where: str, key: str) -> list[str]:
        value = self._value(section, where, key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._error(f"{where} {key}", "must be a list of strings")
        return list(value)

    def _clock(self, section: Mapping[str, Any], where: str, key: str) -> time:
        text = self._text(section, where, key)
        found = _CLOCK.fullmatch(text)
        if found is None:
            raise self._error(f"{where} {key}", f'{text!r} is not a time of day "HH:MM"')
        return time(int(found.group(1)), int(found.group(2)))

    def _days(self, section: Mapping[str, Any], where: str) -> frozenset[int]:
        days = self._texts(section, where, "days")
        unknown = [d for d in days if d not in _DAYS]
        if unknown:
            raise self._error(f"{where} days", f"{unknown[0]!r} is not one of {', '.join(_DAYS)}")
        return frozenset(_DAYS.index(d) for d in days)


# -- the engine ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hit:
    """One entry that counts toward a rule, about one subject."""

    rule: RiskRule
    subject: str
    index: int
    at: datetime
    kind: str
    """What the entry was (its type, or a reason), for the alert's words."""


@dataclass
class _Counter:
    """The sliding window of one rule and subject."""

    hits: deque[_Hit] = field(default_factory=deque)
    quiet_until: datetime | None = None

    def idle(self, now: datetime, window: timedelta) -> bool:
        quiet = self.quiet_until is not None and self.quiet_until > now
        return not quiet and (not self.hits or self.hits[-1].at <= now - window)


class RiskEngine:
    """Evaluates :class:`RiskRules` over ledger entries fed in index order.

    ``entry_types`` (the registry the composition root hands ``audit``): when
    given, an entry a rule reads must parse through its typed class, else it
    counts for nothing (``ibx audit verify`` reports it). Entries at an index
    already seen are skipped, so feeding a page twice raises nothing twice.
    """

    def __init__(self, rules: RiskRules, *, entry_types: EntryTypes | None = None) -> None:
        self.rules = rules
        self._types = entry_types
        self._counters: dict[tuple[RiskRule, str], _Counter] = {}
        self._next = 0
        self._seen = 0

    @property
    def next_index(self) -> int:
        """The index after the last entry evaluated (0 before any)."""
        return self._next

    def evaluate(self, entries: Iterable[LedgerEntry]) -> list[Alert]:
        """Feed ``entries`` (ascending indices) and return the alerts they raise, in order."""
        alerts: list[Alert] = []
        for entry in entries:
            if entry.index < self._next:
                continue
            self._next = entry.index + 1
            for hit in self._hits(entry):
                alert = self._count(hit)
                if alert is not None:
                    alerts.append(alert)
            self._seen += 1
            if self._seen % _PRUNE_EVERY == 0:
                self._prune(entry.time)
        return alerts

    def replay(self, entries: Iterable[LedgerEntry]) -> None:
        """Feed entries whose alerts were already raised (a restart catching up to its
        cursor): the windows and quiet periods come out as they were; nothing is returned."""
        self.evaluate(entries)

    # -- matching -------------------------------------------------------------------------

    def _hits(self, entry: LedgerEntry) -> list[_Hit]:
        rules = self.rules
        kind = entry.type
        try:
            if kind == "pipeline.job":
                return self._refused_job(entry)
            if kind == "authz.decision":
                payload = self._payload(entry)
                if payload is not None and payload.text("effect") == "deny":
                    action = payload.text("action")
                    return self._one(RiskRule.DENIAL_BURST, entry.actor, entry, f"denied {action}")
                return []
            if kind == "pipeline.denial":
                payload = self._payload(entry)
                if payload is None:
                    return []
                reason = payload.text("reason")
                subject = payload.text("requester")
                return self._one(RiskRule.DENIAL_BURST, subject, entry, f"refused ({reason})")
            if kind == "pipeline.decision":
                payload = self._payload(entry)
                if payload is None:
                    return []
                minimum = payload.integer("min_cohort")
                cohort = len(payload.objs("participants"))
                if minimum > 0 and cohort == minimum:
                    subject = payload.text("requester")
                    return self._one(RiskRule.COHORT_MINIMUM, subject, entry, f"cohort {cohort}")
                return []
            if kind == "edge.enrol.failure":
                payload = self._payload(entry)
                enterprise = payload.opt_text("enterprise") if payload is not None else None
                if payload is None or enterprise is None:
                    return []
                reason = payload.text("reason")
                return self._one(RiskRule.ENROLMENT_FAILURES, enterprise, entry, reason)
            if kind == "identity.auth_lockout":
                payload = self._payload(entry)
                if payload is None:
                    return []
                subject = f"address:{payload.text('source')}"
                return self._one(RiskRule.AUTH_FAILURES, subject, entry, "locked out")
            if kind in rules.policy_types and not rules.working_hours.contains(entry.time):
                if self._payload(entry) is None:
                    return []
                return self._one(RiskRule.OFF_HOURS_POLICY, entry.actor, entry, kind)
        except PayloadShapeError:
            return []
        return []

    def _refused_job(self, entry: LedgerEntry) -> list[_Hit]:
        payload = self._payload(entry)
        if payload is None or payload.text("state") != "refused":
            return []
        reason = payload.opt_text("reason") or ""
        for known in self.rules.differencing_reasons:
            if reason.startswith(known):
                requester = payload.text("requester")
                return self._one(RiskRule.DIFFERENCING, requester, entry, known)
        return []

    def _payload(self, entry: LedgerEntry) -> Payload | None:
        """The payload to read, or None when the registry's class refuses it."""
        if self._types is not None:
            parse = self._types.get(entry.type)
            if parse is None:
                return None
            try:
                parse(entry.payload)
            except (ValueError, TypeError):
                return None
        return Payload(entry.payload, entry.type)

    def _one(self, rule: RiskRule, subject: str, entry: LedgerEntry, kind: str) -> list[_Hit]:
        if not self.rules.threshold(rule).enabled or not subject:
            return []
        return [_Hit(rule, subject[:_MAX_SUBJECT], entry.index, entry.time, kind)]

    # -- counting -------------------------------------------------------------------------

    def _count(self, hit: _Hit) -> Alert | None:
        threshold = self.rules.threshold(hit.rule)
        counter = self._counters.setdefault((hit.rule, hit.subject), _Counter())
        counter.hits.append(hit)
        start = hit.at - threshold.window
        while counter.hits and counter.hits[0].at <= start:
            counter.hits.popleft()
        if counter.quiet_until is not None and hit.at < counter.quiet_until:
            return None
        if len(counter.hits) < threshold.count:
            return None
        hits = list(counter.hits)
        counter.hits.clear()  # consumed: the next alert rests on new entries
        counter.quiet_until = hit.at + threshold.window
        return self._alert(hit.rule, hit.subject, hits, threshold)

    def _prune(self, now: datetime) -> None:
        for key in [
            k for k, c in self._counters.items() if c.idle(now, self.rules.threshold(k[0]).window)
        ]:
            del self._counters[key]

    def _alert(
        self, rule: RiskRule, subject: str, hits: Sequence[_Hit], threshold: Threshold
    ) -> Alert:
        count, window = len(hits), _duration(threshold.window)
        last = hits[-1]
        details: dict[str, JsonValue] = {
            "count": count,
            "threshold": threshold.count,
            "window_minutes": int(threshold.window.total_seconds() // 60),
            "first": format_rfc3339(hits[0].at),
            "last": format_rfc3339(last.at),
        }
        if rule is RiskRule.DIFFERENCING:
            message = (
                f"{subject}: {count} release(s) refused for differencing within {window} "
                f"({last.kind}): probing for one enterprise's value"
            )
        elif rule is RiskRule.DENIAL_BURST:
            message = f"{subject}: {count} denied requests within {window} (last: {last.kind})"
        elif rule is RiskRule.COHORT_MINIMUM:
            message = (
                f"{subject}: {count} authorized requests at exactly the minimum cohort within "
                f"{window}: walking the edge of what is released"
            )
        elif rule is RiskRule.ENROLMENT_FAILURES:
            message = (
                f"{subject}: {count} failed edge enrolments within {window} (last: {last.kind})"
            )
        elif rule is RiskRule.OFF_HOURS_POLICY:
            hours = self.rules.working_hours
            local = hours.local(last.at)
            details["local_time"] = local.strftime("%Y-%m-%d %H:%M %a")
            details["working_hours"] = hours.describe()
            message = (
                f"{subject}: {count} policy step(s) outside working hours ({hours.describe()}), "
                f"last {last.kind} at {local:%Y-%m-%d %H:%M} {hours.timezone}"
            )
        else:
            message = (
                f"{subject.removeprefix('address:')}: locked out {count} time(s) within {window} "
                "after repeated failed token authentications"
            )
        return Alert(
            rule=rule.alert_rule,
            severity=threshold.severity,
            subject=subject,
            message=message,
            evidence=tuple(h.index for h in hits[-MAX_EVIDENCE:]),
            details=details,
        )


def _duration(window: timedelta) -> str:
    minutes = int(window.total_seconds() // 60)
    if minutes % 1440 == 0:
        days = minutes // 1440
        return "24 hours" if days == 1 else f"{days} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "1 hour" if hours == 1 else f"{hours} hours"
    return "1 minute" if minutes == 1 else f"{minutes} minutes"
