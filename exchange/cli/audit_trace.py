"""``ibx audit trace`` and ``ibx audit report``: a result's lineage, a period's report.

Both read an ``ibx-ledger-export/v1`` file (``--export``) or build one in
memory from an exchange (``--exchange``, as your identity: an auditor reads
every entry), with the same code as ``ibx audit export``
(:func:`exchange.cli.audit_verify.load_export`). The logic is in
:mod:`audit._trace` and :mod:`audit._report`; neither verifies the ledger
(``ibx audit verify`` does).

``trace JOB_ID`` (a job id, or the SHA-256 of its released result) prints the
lineage as a tree, each node with its ledger index, or ``--json``; a job the
ledger has no decision for is one line on stderr and exit 1.
``report --from DATE --to DATE --out FILE`` writes one self-contained HTML
file (inline CSS, charts as inline SVG, nothing fetched when it is opened).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
    Remote,
    cli_context,
)
from exchange.cli._output import JSON_OPTION, emit_json
from exchange.error_table import ExitCode

if TYPE_CHECKING:
    from audit import LedgerExport

__all__ = ["report", "trace"]

_EXPORT_OPTION = typer.Option(
    None,
    "--export",
    help="an ibx-ledger-export/v1 file (from ibx ledger export or ibx audit export)",
    exists=True,
    dir_okay=False,
    readable=True,
)
_JOB_ARGUMENT = typer.Argument(
    ..., help="the job id (job_...), or the SHA-256 of its released result", show_default=False
)
_FROM_OPTION = typer.Option(
    ..., "--from", help="first day of the period, YYYY-MM-DD (UTC)", show_default=False
)
_TO_OPTION = typer.Option(
    ..., "--to", help="last day of the period, YYYY-MM-DD (UTC), included", show_default=False
)
_OUT_OPTION = typer.Option(..., "--out", help="the HTML file to write", show_default=False)
_FORCE_OPTION = typer.Option(False, "--force", help="replace the file if it exists")


def trace(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    job: str = _JOB_ARGUMENT,
    export: Path | None = _EXPORT_OPTION,
    as_json: bool = JSON_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Trace a result back to its request, decision, policy officers, consents and keys.

    Each line of the tree names the ledger index it was read from. Give --export PATH or
    --exchange URL. The trace reads; ibx audit verify is what checks the ledger.
    """
    from audit import TraceNotFoundError, trace_job
    from exchange.cli.audit_verify import entry_types

    loaded = _load(ctx, export, token, Remote(exchange, ca_bundle, client_cert, client_key))
    try:
        traced = trace_job(loaded, job.strip(), entry_types=entry_types())
    except TraceNotFoundError as exc:
        typer.echo(f"ibx: {exc.title}: {exc}", err=True)
        raise typer.Exit(ExitCode.ERROR) from exc
    if as_json:
        emit_json(traced.to_dict())
        return
    for line in traced.lines():
        typer.echo(line)
    problems = traced.problems
    if problems:
        typer.echo(f"{len(problems)} problem(s) noticed while tracing (marked [!]); "
                   "run ibx audit verify on the same export")  # fmt: skip


def report(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    start: str = _FROM_OPTION,
    end: str = _TO_OPTION,
    out: Path = _OUT_OPTION,
    force: bool = _FORCE_OPTION,
    export: Path | None = _EXPORT_OPTION,
    as_json: bool = JSON_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Write one self-contained HTML report of a period: tables and charts, nothing fetched.

    Sections: decisions over time, denials by reason, data use per enterprise, key
    operations, certificates issued and revoked, alerts. Give --export PATH or --exchange URL.
    """
    from audit import build_report
    from exchange.cli._ledger_export import write_atomically

    first, last = _day(start, "--from"), _day(end, "--to")
    if first > last:
        raise typer.BadParameter(f"the period ends ({last}) before it starts ({first})")
    if out.exists() and not force:
        typer.echo(f"ibx: {out} exists; pass --force to replace it", err=True)
        raise typer.Exit(ExitCode.USAGE)
    loaded = _load(ctx, export, token, Remote(exchange, ca_bundle, client_cert, client_key))
    built = build_report(loaded, first, last)
    written = write_atomically(out, [built.to_html().encode()], force=force)
    empty = [s.key for s in built.sections if s.empty]
    if as_json:
        emit_json(
            {
                "path": str(out),
                "from": first.isoformat(),
                "to": last.isoformat(),
                "entries": built.entries_in_period,
                "bytes": written,
                "sections": [
                    {"key": s.key, "title": s.title, "empty": s.empty} for s in built.sections
                ],
            }
        )
        return
    typer.echo(
        f"wrote {out}: {built.entries_in_period} entries from {first} to {last}, "
        f"{len(built.sections)} sections ({len(empty)} with none in this period), {written} bytes"
    )


def _load(
    ctx: typer.Context, export: Path | None, token: str | None, remote: Remote
) -> LedgerExport:
    from exchange.cli.audit_verify import load_export

    context = cli_context(ctx)
    if export is None and remote.exchange is None and context.profile is None:
        typer.echo("ibx: give --export PATH or --exchange URL", err=True)
        raise typer.Exit(ExitCode.USAGE)
    return load_export(context, export, token, remote)


def _day(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise typer.BadParameter(f"{option} {text!r} is not a date (YYYY-MM-DD)") from exc
