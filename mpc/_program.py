"""The computation every compute party runs, on whatever MPyC runtime it is given.

Nothing here imports ``mpyc.runtime`` (whose import parses ``sys.argv``): the
party entry point (:mod:`mpc._party_main`) builds the runtime and passes it in;
:func:`run_single_process` builds a one-party runtime for fast tests.

Exact arithmetic: each input is an integer ``v = round(x / q)`` (``q`` the
job's resolution, ``|v| < 2^60``), shared in a 192-bit field. The parties
open only the integer each released statistic needs — ``Σv`` for a sum or
mean, ``n·Σv² − (Σv)²`` for a variance, one sorted value or the integer
``2·median`` / ``4·quartile`` for order statistics — and turn it into a
value with :class:`fractions.Fraction`, rounding once to a float at the end.
The result is therefore the exact statistic of the quantised inputs; the
only error is the rounding of each input to ``q`` (``docs/mpc.md``,
*Accuracy*).

A job with ``order_candidates`` (a differentially private policy's grid)
opens no order statistic: every value is compared with every candidate at
once (one vectorised comparison of an ``n × 2k`` array in the 96-bit field)
and only the counts ``#{v < c}`` and ``#{v > c}`` per candidate are opened,
for the release guard to choose from.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from mpc.hazmat import shamir
from mpc.mpc_spec import MpcJobSpec, MpcStatistic
from mpc.sharing import OpenedInput

__all__ = ["PartyOutcome", "compute", "quartile_weights", "run_single_process"]

logger = logging.getLogger(__name__)

PartyOutcome = dict[str, Any]
"""The JSON document a party writes: public outputs only, no shares."""

_RUNTIME_LOCK = threading.Lock()

_ORDERED = frozenset(
    {MpcStatistic.MIN, MpcStatistic.MAX, MpcStatistic.MEDIAN, MpcStatistic.QUARTILES}
)


async def _agree_on_cohort(
    rt: Any, inputs: Sequence[OpenedInput], refused: dict[str, str]
) -> tuple[list[OpenedInput], dict[str, str]]:
    """Every party learns every party's refusals; all keep the same contributors."""
    views = await rt.transfer(([i.contributor for i in inputs], refused))
    dropped: dict[str, str] = {}
    common: set[str] | None = None
    for accepted, party_refused in views:
        dropped.update(party_refused)
        common = set(accepted) if common is None else common & set(accepted)
    for accepted, _ in views:
        for who in set(accepted) - (common or set()):
            dropped.setdefault(who, f"contributor {who!r}: not every party received its share")
    keep = [
        i for i in inputs if i.contributor in (common or set()) and i.contributor not in dropped
    ]
    return keep, dropped


async def compute(
    rt: Any, spec: MpcJobSpec, inputs: Sequence[OpenedInput], refused: dict[str, str]
) -> PartyOutcome:
    """Run ``spec`` on this party's opened shares; return the public outcome."""
    keep, dropped = await _agree_on_cohort(rt, inputs, refused)
    n = len(keep)
    outcome: PartyOutcome = {
        "job_id": spec.job_id,
        "cohort": n,
        "dropped": dict(sorted(dropped.items())),
    }
    if n < spec.min_cohort:
        outcome["error"] = (
            f"{n} valid contributions, fewer than the minimum cohort {spec.min_cohort}"
        )
        return outcome
    if n > shamir.MAX_CONTRIBUTORS:
        outcome["error"] = f"{n} contributions, more than one job sums ({shamir.MAX_CONTRIBUTORS})"
        return outcome
    wide = rt.SecInt(shamir.SUM_BITS, shamir.SUM_PRIME)
    x = [wide(wide.field(i.value_share)) for i in keep]
    q = spec.encoding.resolution
    wanted = set(spec.statistics)
    total = rt.sum(x) if wanted & {MpcStatistic.SUM, MpcStatistic.MEAN} or spec.dominance else None
    counted = bool(spec.order_candidates) and bool(wanted & _ORDERED)
    ordered = None
    if spec.percentile_ranks or spec.dominance or (wanted & _ORDERED and not counted):
        ordered = _sort(rt, keep, x, with_tags=spec.percentile_ranks)
    stats: dict[str, list[float]] = {}
    opened_total: Fraction | None = None  # Σv, opened once for a sum and a mean
    for stat in spec.statistics:
        if stat is MpcStatistic.COUNT:
            stats[stat.value] = [float(n)]
        elif stat in (MpcStatistic.SUM, MpcStatistic.MEAN):
            if opened_total is None:
                opened_total = Fraction(int(await rt.output(total)))
            divisor = n if stat is MpcStatistic.MEAN else 1
            stats[stat.value] = [float(opened_total * q / divisor)]
        elif stat is MpcStatistic.VARIANCE:
            s1 = rt.sum(x)
            scaled = n * rt.in_prod(x, x) - s1 * s1  # n² times the variance, in units of q²
            opened = Fraction(int(await rt.output(scaled)))
            stats[stat.value] = [float(opened * q * q / (n * n))]
        elif counted:
            continue  # never opened: the guard chooses from the counts below
        else:
            assert ordered is not None
            secure, divisor = _order_statistic(stat, ordered[0], n)
            opened_values = await rt.output(secure)
            stats[stat.value] = [float(Fraction(int(v)) * q / divisor) for v in opened_values]
    outcome["statistics"] = stats
    if counted:
        below, above = await _order_counts(rt, x, spec)
        outcome["order_counts"] = {"below": below, "above": above}
    if spec.dominance:
        assert ordered is not None and total is not None
        outcome["dominated"] = await _dominated(rt, spec, ordered[0], total, n)
    if spec.percentile_ranks:
        assert ordered is not None
        tags = await rt.output(ordered[1])
        outcome["rank_tags"] = [str(int(v)) for v in np.ravel(tags)]
    return outcome


def _sort(rt: Any, keep: Sequence[OpenedInput], x: list[Any], *, with_tags: bool) -> Any:
    """Sort the values (and rank tags) as ``SecInt(ORDER_BITS)``: one vectorised Batcher sort.

    The values are converted securely from the 192-bit field to the 96-bit
    one, where comparisons cost about a third. Row 0 holds the values, row 1
    (with ranks) each contributor's secret random tag, carried along by the
    same swaps; about (log2 n)²/2 rounds serve order statistics, dominance
    and ranks.
    """
    wide = type(x[0])
    narrow = rt.SecInt(shamir.ORDER_BITS, shamir.ORDER_PRIME)
    rows = [x]
    if with_tags:
        rows.append([wide(wide.field(i.tag_share or 0)) for i in keep])
    flat = rt.convert([v for row in rows for v in row], narrow)
    table = rt.np_reshape(rt.np_fromlist(flat), (len(rows), len(keep)))
    return rt.np_sort(table, axis=1, key=lambda row: row[0])


async def _dominated(rt: Any, spec: MpcJobSpec, values: Any, total: Any, n: int) -> list[bool]:
    """Per dominance rule, whether the ``n`` largest sorted values exceed ``k``% of the total."""
    wide = type(total)
    verdicts = []
    for rule, k in zip(spec.dominance, spec.dominance_fractions(), strict=True):
        top = rt.convert([values[i] for i in range(n - min(rule.n, n), n)], wide)
        # top > k% of total  <=>  100·den·top > num·total, exactly, in SecInt(SUM_BITS)
        verdicts.append(rt.sum(top) * (100 * k.denominator) > total * k.numerator)
    opened = await rt.output(verdicts)
    return [bool(int(v)) for v in opened]


_COMPARISONS_PER_BLOCK = 2048
"""Secure comparisons scheduled at once when counting (bounds each party's memory)."""


async def _order_counts(rt: Any, x: list[Any], spec: MpcJobSpec) -> tuple[list[int], list[int]]:
    """Per candidate ``c`` of the job's grid, the opened ``#{v < c}`` and ``#{v > c}``.

    The values are converted to the 96-bit field (as for sorting) and
    compared with the points ``c`` and ``c + 1`` (in units of the
    resolution), a block of values at a time in one vectorised comparison
    (a barrier between blocks keeps memory flat); ``#{v > c} = n − #{v < c + 1}``.
    Only the 2k sums are opened.
    """
    n = len(x)
    narrow = rt.SecInt(shamir.ORDER_BITS, shamir.ORDER_PRIME)
    grid = [spec.encoding.quantise(c) for c in spec.order_candidates]
    points = np.array([[*grid, *(c + 1 for c in grid)]], dtype=object)
    values = rt.convert(x, narrow)
    rows = max(1, _COMPARISONS_PER_BLOCK // points.size)
    total = None
    for start in range(0, n, rows):
        block = values[start : start + rows]
        column = rt.np_reshape(rt.np_fromlist(block), (len(block), 1))
        partial = rt.np_sum(column < points, axis=0)
        total = partial if total is None else total + partial
        await rt.barrier("order-counts")
    opened = await rt.output(total)
    counts = [int(v) for v in np.ravel(opened)]
    k = len(grid)
    return counts[:k], [n - c for c in counts[k:]]


def quartile_weights(n: int) -> list[tuple[int, int]]:
    """Python's 'exclusive' quartiles of ``n`` sorted values as ``(j, delta)`` pairs.

    Quartile ``i`` is ``((4 − delta)·data[j − 1] + delta·data[j]) / 4`` with
    0-based ``data`` (``statistics.quantiles(data, n=4)``, Python 3.11);
    ``delta`` may be negative or above 4 for tiny ``n`` (extrapolation).
    """
    m = n + 1
    out = []
    for i in range(1, 4):
        j = min(max(i * m // 4, 1), n - 1)  # clamp exactly as statistics.quantiles does
        out.append((j, i * m - j * 4))
    return out


def _order_statistic(stat: MpcStatistic, values: Any, n: int) -> tuple[list[Any], int]:
    """Secure integers to open for min, max, median or quartiles, and their common divisor."""
    if stat is MpcStatistic.MIN:
        return [values[0]], 1
    if stat is MpcStatistic.MAX:
        return [values[n - 1]], 1
    if stat is MpcStatistic.MEDIAN:
        if n % 2:
            return [values[n // 2]], 1
        return [values[n // 2 - 1] + values[n // 2]], 2
    return [values[j - 1] * (4 - delta) + values[j] * delta for j, delta in quartile_weights(n)], 4


def run_single_process(
    spec: MpcJobSpec, inputs: Sequence[OpenedInput], refused: dict[str, str] | None = None
) -> PartyOutcome:
    """Run the program with a one-party MPyC runtime in this process (tests, local checks).

    The shares must be dealt for one party with threshold 0 (a share is then
    the value itself): this shows the computation, not the privacy.
    """
    with _RUNTIME_LOCK:
        saved = sys.argv
        sys.argv = [saved[0] if saved else "ibx", "--log-level", "warning"]
        try:
            from mpyc.runtime import mpc as rt  # noqa: PLC0415 - parses sys.argv
        finally:
            sys.argv = saved

    async def _main() -> PartyOutcome:
        await rt.start()
        try:
            return await compute(rt, spec, inputs, refused or {})
        finally:
            await rt.shutdown()

    result: PartyOutcome = rt.run(_main())
    return result
