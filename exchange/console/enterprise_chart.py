"""The usage chart: uses of an enterprise's data per week, stacked by requester.

Server-side inline SVG (no chart library, no script): this module computes
the geometry; ``templates/enterprise/_usage_chart.html`` draws it with classes
from ``console.css`` (the strict CSP allows no inline style). A "use" is a
decision that relied on one of the enterprise's consents (what counts toward
a consent's use limit); the jobs those decisions ran are listed under the chart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

__all__ = ["Bar", "UsageChart", "usage_chart"]

MAX_WEEKS: Final = 26
"""The chart shows at most the latest half year, week by week."""
SERIES: Final = 8
"""Distinct requester colours (``ent-s0`` .. ``ent-s7``); more requesters reuse them."""

_WIDTH, _HEIGHT = 720, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 12, 12, 40


@dataclass(frozen=True)
class Bar:
    """One requester's uses in one week: a rectangle and its tooltip."""

    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True)
class Tick:
    """A labelled position on an axis."""

    position: float
    label: str


@dataclass(frozen=True)
class UsageChart:
    """Everything the template needs to draw the chart."""

    width: int
    height: int
    left: int
    bottom: float
    right: float
    top: int
    bars: tuple[Bar, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    legend: tuple[tuple[int, str, int], ...]
    """(series, requester, total uses)."""
    total: int


def _week(when: str) -> date:
    day = datetime.fromisoformat(when.replace("Z", "+00:00")).date()
    return day - timedelta(days=day.weekday())


def _step(top: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000):
        if top / step <= 5:
            return step
    return max(1, top // 5)


def usage_chart(uses: Iterable[tuple[str, str]]) -> UsageChart | None:
    """The chart of ``(time RFC 3339, requester)`` uses; None when there are none."""
    counts: Counter[tuple[date, str]] = Counter((_week(t), who) for t, who in uses)
    if not counts:
        return None
    last = max(week for week, _ in counts)
    first = max(min(week for week, _ in counts), last - timedelta(weeks=MAX_WEEKS - 1))
    weeks: Sequence[date] = [
        first + timedelta(weeks=i) for i in range((last - first).days // 7 + 1)
    ]
    totals: Counter[str] = Counter()
    for (week, who), n in counts.items():
        if week >= first:
            totals[who] += n
    requesters = sorted(totals, key=lambda who: (-totals[who], who))
    series = {who: i % SERIES for i, who in enumerate(requesters)}
    per_week = [sum(counts[(w, who)] for who in requesters) for w in weeks]
    step = _step(max(per_week))
    top = step * -(-max(per_week) // step)
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM
    slot = plot_w / len(weeks)
    bar_w = max(4.0, min(48.0, slot * 0.7))
    bars = []
    for i, week in enumerate(weeks):
        x = _LEFT + slot * i + (slot - bar_w) / 2
        base = float(_TOP + plot_h)
        for who in requesters:
            n = counts[(week, who)]
            if not n:
                continue
            h = plot_h * n / top
            base -= h
            bars.append(
                Bar(
                    round(x, 1),
                    round(base, 1),
                    round(bar_w, 1),
                    round(h, 1),
                    series[who],
                    f"{week.isoformat()}: {who} × {n}",
                )
            )
    every = max(1, -(-len(weeks) // 8))
    x_ticks = tuple(
        Tick(round(_LEFT + slot * i + slot / 2, 1), w.strftime("%m-%d"))
        for i, w in enumerate(weeks)
        if i % every == 0
    )
    y_ticks = tuple(
        Tick(round(_TOP + plot_h - plot_h * v / top, 1), str(v)) for v in range(0, top + 1, step)
    )
    return UsageChart(
        width=_WIDTH,
        height=_HEIGHT,
        left=_LEFT,
        bottom=float(_TOP + plot_h),
        right=float(_WIDTH - _RIGHT),
        top=_TOP,
        bars=tuple(bars),
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        legend=tuple((series[who], who, totals[who]) for who in requesters),
        total=sum(totals.values()),
    )
