"""What the enterprise's pages read, through the API as the signed-in enterprise.

Each function follows the API's cursor pages to the end (bounded), so a page
shows everything the enterprise's token reaches and nothing else: its own
datasets, consents, usage, devices and its agent's last contact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from exchange.console.api import ConsoleApi

__all__ = [
    "MAX_PAGES",
    "PREFIX",
    "UsageRow",
    "all_items",
    "consent_terms",
    "usage_rows",
]

PREFIX: Final = "/console/enterprise"
"""Where the enterprise's pages live (each module's router carries it)."""

MAX_PAGES: Final = 50
"""At most this many API pages (of up to 1000 items) for one console page."""


async def all_items(api: ConsoleApi, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a cursor-paged listing (up to :data:`MAX_PAGES` pages).

    Raises:
        ApiRefusal: the API refused.
    """
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        page = await api.get(path, cursor=cursor, limit=1000, **params)
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return items


def consent_terms(receipt: dict[str, Any]) -> dict[str, Any]:
    """A receipt's terms, shaped for a page (requester described, lists joined)."""
    requester = receipt.get("requester") or {}
    if requester.get("identity"):
        who = str(requester["identity"])
    elif requester.get("industry"):
        who = f"{requester.get('role')}:{requester['industry']}"
    else:
        who = str(requester.get("role", ""))
    return {
        "scope": [f"{s['dataset']}: {', '.join(s['fields'])}" for s in receipt.get("scope", [])],
        "requester": who,
        "purposes": list(receipt.get("purposes", [])),
        "operations": list(receipt.get("operations", [])),
        "engines": list(receipt.get("engines", [])),
        "min_cohort": receipt.get("min_cohort"),
        "valid_from": receipt.get("valid_from", ""),
        "valid_until": receipt.get("valid_until", ""),
        "use_limit": receipt.get("use_limit"),
        "notice": receipt.get("notice"),
    }


@dataclass(frozen=True)
class UsageRow:
    """One decision or job that relied on one of the enterprise's consents."""

    consent_id: str
    kind: str
    time: str
    decision_id: str
    job_id: str | None
    status: str
    requester: str
    purpose: str
    operation: str
    engine: str
    ledger_index: int

    @property
    def job(self) -> str:
        """The job: its own id, else the decision's (the pipeline names a job by its decision)."""
        return self.job_id or self.decision_id


async def usage_rows(api: ConsoleApi) -> list[UsageRow]:
    """Every use of the caller's data, newest first (``GET /v1/usage``).

    Raises:
        ApiRefusal: the API refused.
    """
    rows = [
        UsageRow(
            consent_id=str(usage["consent_id"]),
            kind=str(entry["kind"]),
            time=str(entry["time"]),
            decision_id=str(entry["decision_id"]),
            job_id=entry.get("job_id"),
            status=str(entry["status"]),
            requester=str(entry["requester"]),
            purpose=str(entry["purpose"]),
            operation=str(entry["operation"]),
            engine=str(entry["engine"]),
            ledger_index=int(entry["ledger_index"]),
        )
        for usage in await all_items(api, "/v1/usage")
        for entry in usage["entries"]
    ]
    return sorted(rows, key=lambda r: r.ledger_index, reverse=True)
