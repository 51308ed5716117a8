"""What ``ibx consent list``, ``check`` and ``usage`` print, from the API's answers.

The commands print the same in both modes (the local data dir or ``--exchange
URL``) because they print only what the API returned: the JSON forms are the
API models themselves (:mod:`exchange.schemas.consents`), and the line and
table forms are built here from them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from consent import ConsentReceipt
from core.clock import format_rfc3339
from exchange.schemas.consents import ConsentPublic, ConsentUsagePublic, CoverageReportPublic

__all__ = [
    "CONSENT_HEADERS",
    "consent_cells",
    "consent_line",
    "coverage_lines",
    "usage_lines",
]

logger = logging.getLogger(__name__)

CONSENT_HEADERS = (
    "consent",
    "enterprise",
    "requester",
    "scope",
    "purposes",
    "operations",
    "engines",
    "min cohort",
    "valid until",
    "uses",
    "status",
)
"""The table headers of ``consent list`` on a terminal, one per :func:`consent_cells` cell."""


def _receipt(item: ConsentPublic) -> ConsentReceipt:
    """The receipt the listing carries, decoded strictly.

    Raises:
        InvalidConsentError: the exchange sent a receipt that is not well formed.
    """
    return ConsentReceipt.from_dict(item.receipt)


def _uses(item: ConsentPublic, receipt: ConsentReceipt) -> str:
    return f"{item.use_count}/{'-' if receipt.use_limit is None else receipt.use_limit}"


def consent_cells(item: ConsentPublic) -> tuple[str, ...]:
    """The cells of one consent's row under :data:`CONSENT_HEADERS`.

    Raises:
        InvalidConsentError: as :func:`_receipt`.
    """
    r = _receipt(item)
    return (
        r.consent_id,
        r.enterprise,
        r.requester.describe(),
        ",".join(s.dataset + ":" + "+".join(s.fields) for s in r.scope),
        ",".join(p.value for p in r.purposes),
        ",".join(o.value for o in r.operations),
        ",".join(e.value for e in r.engines),
        str(r.min_cohort),
        format_rfc3339(r.valid_until),
        _uses(item, r),
        item.status,
    )


def consent_line(item: ConsentPublic) -> str:
    """The line ``consent list`` prints for one consent when stdout is not a terminal.

    Raises:
        InvalidConsentError: as :func:`_receipt`.
    """
    r = _receipt(item)
    return (
        f"{r.consent_id}\t{r.enterprise}\t{r.requester.describe()}\t"
        f"{','.join(s.dataset + ':' + '+'.join(s.fields) for s in r.scope)}\t"
        f"{','.join(p.value for p in r.purposes)}\t{','.join(o.value for o in r.operations)}\t"
        f"{','.join(e.value for e in r.engines)}\tcohort>={r.min_cohort}\t"
        f"until {format_rfc3339(r.valid_until)}\tuses {_uses(item, r)}\t{item.status}"
    )


def coverage_lines(report: CoverageReportPublic) -> Iterator[str]:
    """What ``consent check`` prints: per owner, the covering consents or the refusals."""
    included = set(report.included)
    for owner, coverage in report.owners.items():
        if coverage.covered_by:
            mark = "included" if owner in included else "left out (min cohort)"
            yield f"{owner}: covered by {', '.join(coverage.covered_by)} [{mark}]"
        for refusal in coverage.refusals:
            yield f"{owner}: refused ({refusal.reason}): {refusal.detail}"
    yield f"included owners: {len(report.included)} of {len(report.owners)}"


def usage_lines(item: ConsentUsagePublic) -> Iterator[str]:
    """What ``consent usage`` prints for one consent: a summary, then each decision and job."""
    yield f"{item.consent_id} ({item.requester}; {item.status}): {item.decisions} decision(s)"
    for e in item.entries:
        job = f" job {e.job_id} {e.status}" if e.kind == "job" else ""
        yield (
            f"    {e.time} {e.kind} {e.decision_id}{job}: {e.requester} "
            f"{e.purpose}/{e.operation}/{e.engine} (ledger index {e.ledger_index})"
        )
