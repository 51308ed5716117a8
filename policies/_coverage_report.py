"""What coverage measured, and the thresholds a version must meet (no Rego engine needed).

The measurement itself runs in the sandbox child (:mod:`policies._coverage`);
these values travel back as JSON and are judged, stored and printed by code
that must not load the Rego engine (``ibx policy list`` and friends).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.canonical import JsonValue
from policies._model import TestResult

__all__ = ["CoverageReport", "CoverageThresholds", "RuleCoverage"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CoverageThresholds:
    """Minimum coverage a version needs for its test to pass (fractions 0…1).

    ``min_deny``: share of the entry package's ``deny`` rules that must fire
    for some sample request (default 1.0: every one). ``min_lines``: share of
    measured lines that must be evaluated (default 0.0: reported only; every
    line of a covered deny rule is evaluated anyway).

    Raises:
        ValueError: a threshold outside 0…1.
    """

    min_deny: float = 1.0
    min_lines: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.min_deny <= 1.0 and 0.0 <= self.min_lines <= 1.0):
            raise ValueError("coverage thresholds are fractions between 0 and 1")


@dataclass(frozen=True)
class RuleCoverage:
    """One measured rule: where it is, whether it fired, which lines were evaluated.

    Raises:
        ValueError: evaluated lines that are not measured lines.
    """

    file: str
    rule: str
    line: int
    deny: bool
    fired: bool
    lines: tuple[int, ...]
    """Lines measured: the head line and the first line of every literal."""
    evaluated: tuple[int, ...]
    blocked_at: int | None = None
    """For a rule that never fired: the line of the first literal that never held."""
    blocked_by: str = ""
    """That literal's text (first line, shortened)."""

    def __post_init__(self) -> None:
        if not set(self.evaluated) <= set(self.lines):
            raise ValueError("evaluated lines must be measured lines")

    def describe(self) -> str:
        """``authz.rego:57 deny never fired: line 59 never held (…); lines never evaluated: 60``."""
        text = f"{self.file}:{self.line} {self.rule} never fired"
        if self.blocked_at is not None:
            text += f": line {self.blocked_at} never held ({self.blocked_by})"
        missing = sorted(set(self.lines) - set(self.evaluated) - {self.line})
        if missing:
            text += "; lines never evaluated: " + ", ".join(str(n) for n in missing)
        return text

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form (the child reports it; the test report stores it)."""
        return {
            "file": self.file,
            "rule": self.rule,
            "line": self.line,
            "deny": self.deny,
            "fired": self.fired,
            "lines": list(self.lines),
            "evaluated": list(self.evaluated),
            "blocked_at": self.blocked_at,
            "blocked_by": self.blocked_by,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, JsonValue]) -> RuleCoverage:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: not a rule coverage record.
        """
        try:
            lines = value["lines"]
            evaluated = value["evaluated"]
            blocked = value.get("blocked_at")
            assert isinstance(lines, list) and isinstance(evaluated, list)
            return cls(
                str(value["file"]),
                str(value["rule"]),
                int(str(value["line"])),
                value["deny"] is True,
                value["fired"] is True,
                tuple(int(str(n)) for n in lines),
                tuple(int(str(n)) for n in evaluated),
                int(str(blocked)) if blocked is not None else None,
                str(value.get("blocked_by", "")),
            )
        except (KeyError, AssertionError, TypeError) as exc:
            raise ValueError(f"not a rule coverage record: {exc!r}") from exc


@dataclass(frozen=True)
class CoverageReport:
    """Coverage of every measured rule of a version by its sample requests."""

    rules: tuple[RuleCoverage, ...]
    requests: int = 0
    """Sample requests that reached Rego (the input schema refused the others)."""
    error: str | None = field(default=None)

    @property
    def deny_rules(self) -> tuple[int, int]:
        """(fired, total) deny rules of the entry package."""
        deny = [r for r in self.rules if r.deny]
        return sum(r.fired for r in deny), len(deny)

    @property
    def lines(self) -> tuple[int, int]:
        """(evaluated, total) measured lines."""
        return sum(len(r.evaluated) for r in self.rules), sum(len(r.lines) for r in self.rules)

    def judge(self, thresholds: CoverageThresholds) -> list[TestResult]:
        """Test results for the thresholds: one for deny rules, one for lines."""
        if self.error is not None:
            return [TestResult("coverage", False, f"coverage could not be measured: {self.error}")]
        fired, total = self.deny_rules
        deny_share = fired / total if total else 1.0
        missing = "; ".join(r.describe() for r in self.rules if r.deny and not r.fired)
        results = [
            TestResult(
                "coverage: deny rules",
                deny_share >= thresholds.min_deny,
                f"{fired}/{total} fired (minimum {thresholds.min_deny:.0%})"
                + (f"; {missing}" if missing else ""),
            )
        ]
        seen, measured = self.lines
        line_share = seen / measured if measured else 1.0
        if line_share < thresholds.min_lines:
            others = "; ".join(r.describe() for r in self.rules if not r.fired and not r.deny)
            results.append(
                TestResult(
                    "coverage: lines",
                    False,
                    f"{seen}/{measured} lines evaluated (minimum {thresholds.min_lines:.0%})"
                    + (f"; {others}" if others else ""),
                )
            )
        return results

    def to_dict(self) -> dict[str, JsonValue]:
        """JSON form."""
        return {
            "rules": [r.to_dict() for r in self.rules],
            "requests": self.requests,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, JsonValue]) -> CoverageReport:
        """Inverse of :meth:`to_dict`.

        Raises:
            ValueError: not a coverage report.
        """
        rules = value.get("rules")
        if not isinstance(rules, list):
            raise ValueError("a coverage report lists its rules")
        error = value.get("error")
        return cls(
            tuple(RuleCoverage.from_dict(r) for r in rules if isinstance(r, Mapping)),
            int(str(value.get("requests", 0))),
            str(error) if error is not None else None,
        )
