"""``ibx status``: the deployment at a glance; non-zero exit when something is wrong."""

from __future__ import annotations

import typer

from core.clock import utcnow
from exchange.cli._context import cli_context
from exchange.cli._output import JSON_OPTION, emit_json

__all__ = ["status"]


def status(
    ctx: typer.Context,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show the deployment (origin, ledger, policy, CA, parties); exit 1 if a check fails."""
    from exchange.status import deployment_status

    report = deployment_status(cli_context(ctx).runtime, now=utcnow())
    if as_json:
        emit_json(report.to_dict())
    else:
        typer.echo(f"origin    {report.origin}")
        typer.echo(f"data dir  {report.data_dir}")
        width = max(len(check.name) for check in report.checks)
        for check in report.checks:
            mark = "ok  " if check.ok else "FAIL"
            typer.echo(f"{mark}  {check.name:<{width}}  {check.detail}")
    if not report.ok:
        raise typer.Exit(1)
