"""The computation every compute party runs, on whatever MPyC runtime it is given.

Nothing here imports ``mpyc.runtime`` (whose import parses ``sys.argv``): the
party entry point (:mod:`mpc._party_main`) builds the runtime and passes it in;
:func:`run_single_process` builds a one-party runtime for fast tests.

Precision: SecFxp(48, 16) values carry 16 fractional bits, so a sum over n
inputs is within ``n·2^-17`` of the exact sum of the inputs, a mean, median
or quartile within ``2^-14``, and a population variance within ``1e-3``
relative (or 1e-3 absolute below 1); counts and ranks are exact.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from mpc.hazmat import shamir
from mpc.mpc_spec import MpcJobSpec, MpcStatistic
from mpc.sharing import OpenedInput

__all__ = ["PartyOutcome", "compute", "run_single_process"]

logger = logging.getLogger(__name__)

PartyOutcome = dict[str, Any]
"""The JSON document a party writes: public outputs only, no shares."""

_RUNTIME_LOCK = threading.Lock()


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
    secfxp = rt.SecFxp(shamir.BIT_LENGTH, shamir.FRAC_BITS, shamir.PRIME)
    field = secfxp.field
    keep, dropped = await _agree_on_cohort(rt, inputs, refused)
    outcome: PartyOutcome = {
        "job_id": spec.job_id,
        "cohort": len(keep),
        "dropped": dict(sorted(dropped.items())),
    }
    if len(keep) < spec.min_cohort:
        outcome["error"] = (
            f"{len(keep)} valid contributions, fewer than the minimum cohort {spec.min_cohort}"
        )
        return outcome
    from mpyc import statistics  # noqa: PLC0415 - mpyc configures logging on import

    n = len(keep)
    x = [secfxp(field(i.value_share), integral=False) for i in keep]
    ordered = None
    if spec.percentile_ranks or spec.dominance or _needs_order(spec):
        # One vectorized Batcher sort (about (log2 n)^2 / 2 rounds) serves order
        # statistics, dominance and ranks: row 0 holds the values, row 1 each
        # contributor's secret random tag, carried along by the same swaps.
        rows = [[i.value_share for i in keep], [i.tag_share or 0 for i in keep]]
        table = secfxp.array(field.array(rows), integral=False)
        ordered = rt.np_sort(table, axis=1, key=lambda row: row[0])
    stats: dict[str, list[float]] = {}
    for stat in spec.statistics:
        if stat is MpcStatistic.COUNT:
            stats[stat.value] = [float(n)]
            continue
        if stat is MpcStatistic.SUM:
            secure = [rt.sum(x)]
        elif stat is MpcStatistic.MEAN:
            secure = [statistics.mean(x)]
        elif stat is MpcStatistic.VARIANCE:
            secure = [statistics.pvariance(x)]
        else:
            assert ordered is not None
            secure = _order_statistic(stat, ordered[0], n)
        stats[stat.value] = [float(v) for v in await rt.output(secure)]
    outcome["statistics"] = stats
    if spec.dominance:
        assert ordered is not None
        total = rt.sum(x)
        verdicts = [
            rt.sum(list(ordered[0][n - min(rule.n, n) :])) > total * (rule.k / 100)
            for rule in spec.dominance
        ]
        opened = await rt.output(verdicts)
        outcome["dominated"] = [bool(round(float(v))) for v in opened]
    if spec.percentile_ranks:
        assert ordered is not None
        tags = await rt.output(ordered[1], raw=True)
        outcome["rank_tags"] = [str(int(v)) for v in np.ravel(tags)]
    return outcome


def _needs_order(spec: MpcJobSpec) -> bool:
    ordered = {MpcStatistic.MIN, MpcStatistic.MAX, MpcStatistic.MEDIAN, MpcStatistic.QUARTILES}
    return any(stat in ordered for stat in spec.statistics)


def _order_statistic(stat: MpcStatistic, values: Any, n: int) -> list[Any]:
    """Min, max, median or quartiles (Python's 'exclusive' method) from sorted shares."""
    if stat is MpcStatistic.MIN:
        return [values[0]]
    if stat is MpcStatistic.MAX:
        return [values[n - 1]]
    if stat is MpcStatistic.MEDIAN:
        if n % 2:
            return [values[n // 2]]
        return [(values[n // 2 - 1] + values[n // 2]) * 0.5]
    out = []
    m = n + 1
    for i in range(1, 4):
        j = min(max(i * m // 4, 1), n - 1)  # clamp exactly as statistics.quantiles does
        delta = i * m - j * 4
        if delta == 0:
            out.append(values[j - 1])
        elif delta == 4:
            out.append(values[j])
        else:
            out.append(values[j - 1] * ((4 - delta) / 4) + values[j] * (delta / 4))
    return out


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
