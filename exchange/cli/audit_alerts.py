"""``ibx audit alerts``: the alerts on the ledger (row mismatches, risk rules, witness forks).

Reads ``GET /v1/alerts`` as the caller (an auditor or a security officer):
over HTTPS with ``--exchange URL``, else in-process on the local data dir,
every page from ``--since INDEX`` on. One line per alert (ledger index, time,
severity, rule, subject and what is wrong; nothing on stdout when there is
none), or ``--json``: ``{"alerts": [...], "count": N}``.
"""

from __future__ import annotations

from pathlib import Path

import typer

from exchange.cli._api_client import user_client
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
)
from exchange.cli._output import JSON_OPTION, Table, emit_json, emit_table

__all__ = ["alerts"]

_SINCE_OPTION = typer.Option(0, "--since", min=0, help="list from this ledger index on")
_PAGE = 1000


def alerts(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    since: int = _SINCE_OPTION,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """List the alerts on the ledger, oldest first: row mismatches, risk rules, witness forks.

    Auditors and security officers. Give --exchange URL, or run on the data dir.
    """
    from exchange.schemas.alerts import AlertPage, AlertPublic

    found: list[AlertPublic] = []
    start: int | None = since
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        while start is not None:
            page = AlertPage.model_validate(client.get("/v1/alerts", since=start, limit=_PAGE))
            found.extend(page.items)
            start = page.next_since
    if as_json:
        emit_json({"alerts": [a.model_dump(mode="json") for a in found], "count": len(found)})
        return
    if not found:
        typer.echo(f"ibx: no alerts from index {since} on", err=True)  # stdout: none
        return
    emit_table(
        Table(
            headers=("index", "time", "severity", "rule", "subject", "message"),
            rows=tuple(
                (str(a.index), a.time, a.severity, a.rule, a.subject, a.message) for a in found
            ),
            plain=tuple(
                f"#{a.index} {a.time} {a.severity.upper()} {a.rule} [{a.subject}] {a.message}"
                for a in found
            ),
        )
    )
