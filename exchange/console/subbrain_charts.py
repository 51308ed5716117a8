"""A released result drawn where a chart reads better than numbers: server-side SVG shapes.

:func:`chart_for` turns a result's ``values`` (docs/pipeline.md, *Operations and
engines*) into a :class:`Chart`, a list of plain shapes that
``templates/subbrain/_chart.html`` writes as inline SVG (every text escaped by
Jinja; presentation by CSS classes, no ``style`` attribute, so the console's
CSP holds). Nothing here draws in the browser.

* quartiles (``quantiles``, ``percentile_rank``): a box from Q1 to Q3 with the median;
* ``min_max``: the range on an axis;
* ``variance``: each slot's mean with ±1 standard deviation;
* a differentially private single mean or sum: the value with the 95 % range of
  the noise added to it;
* ``mean``/``sum``/``count`` over several slots, ``histogram`` counts and
  ``regression`` coefficients: bars from zero (a suppressed bin marked, not drawn);
* ``set_intersection_size``: the cohort's sets as overlapping circles, the match
  count where all of them meet.

A single mean, sum or count reads best as the number itself: no chart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["Chart", "Shape", "chart_for", "laplace_95", "nice_ticks"]

WIDTH: Final = 560
_LEFT: Final = 56
_RIGHT: Final = 24
_MAX_CIRCLES: Final = 12

Tag = Literal["rect", "line", "circle", "text"]


@dataclass(frozen=True)
class Shape:
    """One SVG element: its tag, geometry (``x``/``y``/``w``/``h`` for a rect, ``x``/``y``
    and ``x2``/``y2`` for a line, ``x``/``y``/``r`` for a circle, ``x``/``y`` for a text),
    a CSS class and, for a text, what it says and how it is anchored."""

    tag: Tag
    cls: str
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0
    x2: float = 0.0
    y2: float = 0.0
    r: float = 0.0
    text: str = ""
    anchor: Literal["start", "middle", "end"] = "middle"


@dataclass(frozen=True)
class Chart:
    """A drawing: its kind (``box``, ``range``, ``interval``, ``bars``, ``sets``), size,
    the label key of its caption, and its shapes in drawing order."""

    kind: str
    height: int
    caption: str
    shapes: tuple[Shape, ...] = field(default_factory=tuple)
    width: int = WIDTH


def chart_for(
    operation: str,
    values: Mapping[str, Sequence[float | None]],
    *,
    cohort: int = 0,
    bins: Sequence[float] = (),
    noise: float | None = None,
) -> Chart | None:
    """The chart for a result of ``operation``, or None where the numbers read better.

    ``bins`` (the request's histogram edges) label a histogram's bars. ``noise``: for a
    differentially private mean or sum, the half-width of the 95 % range of the noise
    added (:func:`laplace_95`); the single value is drawn with that interval.
    """
    if operation in ("quantiles", "percentile_rank") and _numbers(values.get("quartiles")):
        quartiles = _numbers(values.get("quartiles"))
        if len(quartiles) == 3:
            return _box(quartiles)
    if operation == "min_max":
        low, high = _numbers(values.get("min")), _numbers(values.get("max"))
        if low and high:
            return _range(low[0], high[0])
    if operation == "variance":
        means, variances = values.get("means") or [], values.get("variances") or []
        if means and len(means) == len(variances):
            pairs = [
                (i, float(m), math.sqrt(max(float(v), 0.0)))
                for i, (m, v) in enumerate(zip(means, variances, strict=True))
                if m is not None and v is not None
            ]
            return _intervals(pairs, "subbrain.chart_interval") if pairs else None
    if operation == "histogram" and values.get("counts"):
        counts = list(values["counts"])
        return _bars(counts, _bin_labels(bins, len(counts)), "subbrain.chart_histogram")
    if operation == "regression" and values.get("coefficients"):
        coefficients = list(values["coefficients"])
        labels = [f"β{i}" for i in range(len(coefficients))]
        return _bars(coefficients, labels, "subbrain.chart_coefficients")
    if operation in ("mean", "sum", "count"):
        slots = list(values.get(operation) or [])
        if len(slots) > 1:
            return _bars(slots, [str(i + 1) for i in range(len(slots))], "subbrain.chart_slots")
        if len(slots) == 1 and slots[0] is not None and noise is not None and noise > 0:
            return _intervals([(0, float(slots[0]), noise)], "subbrain.chart_noise")
    if operation == "set_intersection_size":
        size = _numbers(values.get("size"))
        if size and cohort > 0:
            return _sets(cohort, size[0])
    return None


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering ``[low, high]`` (about ``count`` of them)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0]
    if high < low:
        low, high = high, low
    least = max(max(abs(low), abs(high)) * 1e-6, 1e-9)  # a span the floats can still tick
    if high - low < least:
        middle = (low + high) / 2
        pad = max(abs(middle) * 0.1 or 1.0, least)
        low, high = middle - pad, middle + pad
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step)
    ticks = []
    n = 0
    while n < 4 * count:
        value = (first + n) * step
        ticks.append(round(value, 12))
        if value >= high - step * 1e-9:
            break
        n += 1
    return ticks


def _numbers(raw: Sequence[float | None] | None) -> list[float]:
    return [float(v) for v in raw or () if v is not None]


def fmt(value: float) -> str:
    """A number as a chart writes it: up to 4 significant digits, no exponent for usual sizes."""
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.3g}"
    return f"{value:.4g}"


class _Axis:
    """A horizontal value axis across the chart's plotting width."""

    def __init__(self, low: float, high: float) -> None:
        self.ticks = nice_ticks(low, high)
        self.low, self.high = self.ticks[0], self.ticks[-1]

    def x(self, value: float) -> float:
        span = self.high - self.low or 1.0
        return round(_LEFT + (value - self.low) / span * (WIDTH - _LEFT - _RIGHT), 2)

    def shapes(self, y: float) -> list[Shape]:
        out = [Shape("line", "sb-axis", x=_LEFT, y=y, x2=WIDTH - _RIGHT, y2=y)]
        for tick in self.ticks:
            at = self.x(tick)
            out.append(Shape("line", "sb-tick", x=at, y=y, x2=at, y2=y + 5))
            out.append(Shape("text", "sb-tick-label", x=at, y=y + 18, text=fmt(tick)))
        return out


def _box(quartiles: Sequence[float]) -> Chart:
    q1, median, q3 = sorted(quartiles)
    axis = _Axis(q1 - (q3 - q1) * 0.5, q3 + (q3 - q1) * 0.5)
    top, height = 34.0, 44.0
    shapes = [
        Shape("rect", "sb-box", x=axis.x(q1), y=top, w=axis.x(q3) - axis.x(q1), h=height),
        Shape(
            "line", "sb-median", x=axis.x(median), y=top - 6, x2=axis.x(median), y2=top + height + 6
        ),
        Shape("text", "sb-value", x=axis.x(q1), y=top - 10, text=f"Q1 {fmt(q1)}", anchor="end"),
        Shape("text", "sb-value sb-strong", x=axis.x(median), y=top - 12, text=fmt(median)),
        Shape("text", "sb-value", x=axis.x(q3), y=top - 10, text=f"Q3 {fmt(q3)}", anchor="start"),
    ]
    return Chart("box", 120, "subbrain.chart_box", (*shapes, *axis.shapes(top + height + 14)))


def _range(low: float, high: float) -> Chart:
    axis = _Axis(low - (high - low) * 0.2, high + (high - low) * 0.2)
    y = 44.0
    shapes = [
        Shape("rect", "sb-range", x=axis.x(low), y=y - 8, w=axis.x(high) - axis.x(low), h=16),
        Shape("circle", "sb-point", x=axis.x(low), y=y, r=5),
        Shape("circle", "sb-point", x=axis.x(high), y=y, r=5),
        Shape("text", "sb-value", x=axis.x(low), y=y - 14, text=fmt(low)),
        Shape("text", "sb-value", x=axis.x(high), y=y - 14, text=fmt(high)),
    ]
    return Chart("range", 100, "subbrain.chart_range", (*shapes, *axis.shapes(y + 24)))


def laplace_95(sensitivity: float, epsilon: float) -> float:
    """The half-width of the range holding 95 % of Laplace noise of scale
    ``sensitivity / epsilon`` (P(|X| > t) = exp(-t / scale), so t = scale · ln 20)."""
    return sensitivity / epsilon * math.log(20)


def _intervals(pairs: Sequence[tuple[int, float, float]], caption: str) -> Chart:
    """Each (slot, centre, half-width) as a point with whiskers."""
    low = min(m - s for _, m, s in pairs)
    high = max(m + s for _, m, s in pairs)
    axis = _Axis(low, high)
    row = 34.0
    shapes: list[Shape] = []
    for n, (i, mean, sd) in enumerate(pairs):
        y = 24 + n * row
        left, right = axis.x(mean - sd), axis.x(mean + sd)
        shapes += [
            Shape("text", "sb-slot", x=_LEFT - 10, y=y + 4, text=str(i + 1), anchor="end"),
            Shape("line", "sb-whisker", x=left, y=y, x2=right, y2=y),
            Shape("line", "sb-whisker", x=left, y=y - 6, x2=left, y2=y + 6),
            Shape("line", "sb-whisker", x=right, y=y - 6, x2=right, y2=y + 6),
            Shape("circle", "sb-point", x=axis.x(mean), y=y, r=5),
            Shape("text", "sb-value", x=axis.x(mean), y=y - 9, text=f"{fmt(mean)} ± {fmt(sd)}"),
        ]
    axis_y = 24 + len(pairs) * row
    return Chart("interval", int(axis_y + 30), caption, (*shapes, *axis.shapes(axis_y)))


def _bars(values: Sequence[float | None], labels: Sequence[str], caption: str) -> Chart:
    shown = [float(v) for v in values if v is not None]
    low, high = min([0.0, *shown]), max([0.0, *shown])
    ticks = nice_ticks(low, high)
    low, high = ticks[0], ticks[-1]
    top, plot = 22.0, 150.0
    span = high - low or 1.0

    def y(value: float) -> float:
        return round(top + (high - value) / span * plot, 2)

    slot = (WIDTH - _LEFT - _RIGHT) / max(len(values), 1)
    bar = max(min(slot * 0.7, 60.0), 2.0)
    shapes: list[Shape] = []
    for tick in ticks:
        shapes.append(Shape("line", "sb-grid", x=_LEFT, y=y(tick), x2=WIDTH - _RIGHT, y2=y(tick)))
        shapes.append(
            Shape("text", "sb-tick-label", x=_LEFT - 6, y=y(tick) + 4, text=fmt(tick), anchor="end")
        )
    zero = y(0.0)
    for n, (value, label) in enumerate(zip(values, labels, strict=True)):
        middle = _LEFT + slot * (n + 0.5)
        if value is None:  # suppressed: fewer than the minimum cohort counted in it
            shapes.append(
                Shape("rect", "sb-suppressed", x=middle - bar / 2, y=zero - 12, w=bar, h=12)
            )
            shapes.append(Shape("text", "sb-value", x=middle, y=zero - 16, text="—"))
        else:
            end = y(float(value))
            cls = "sb-bar" if value >= 0 else "sb-bar sb-negative"
            shapes.append(
                Shape("rect", cls, x=middle - bar / 2, y=min(end, zero), w=bar, h=abs(zero - end))
            )
            above = min(end, zero) - 4
            shapes.append(Shape("text", "sb-value", x=middle, y=above, text=fmt(float(value))))
        if len(values) <= 24:
            shapes.append(Shape("text", "sb-tick-label", x=middle, y=top + plot + 18, text=label))
    shapes.append(Shape("line", "sb-axis", x=_LEFT, y=zero, x2=WIDTH - _RIGHT, y2=zero))
    return Chart("bars", int(top + plot + 30), caption, tuple(shapes))


def _bin_labels(bins: Sequence[float], count: int) -> list[str]:
    if len(bins) == count + 1:
        return [f"{fmt(bins[i])}–{fmt(bins[i + 1])}" for i in range(count)]
    return [str(i + 1) for i in range(count)]


def _sets(cohort: int, size: float) -> Chart:
    drawn = min(cohort, _MAX_CIRCLES)
    cx, cy, radius = WIDTH / 2, 110.0, 62.0
    ring = radius * 0.55 if drawn > 1 else 0.0
    shapes = []
    for n in range(drawn):
        angle = 2 * math.pi * n / drawn - math.pi / 2
        shapes.append(
            Shape(
                "circle",
                f"sb-set sb-set{n % 6}",
                x=round(cx + ring * math.cos(angle), 2),
                y=round(cy + ring * math.sin(angle), 2),
                r=radius,
            )
        )
    shapes.append(Shape("circle", "sb-core", x=cx, y=cy, r=19))
    shapes.append(Shape("text", "sb-core-label", x=cx, y=cy + 6, text=fmt(size)))
    return Chart("sets", 220, "subbrain.chart_sets", tuple(shapes))
