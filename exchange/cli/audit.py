"""``ibx audit``: verify the exchange without trusting its operator (docs/audit.md).

Each subcommand lives in a module of its own, registered below with one line
(``verify``/``export`` in :mod:`exchange.cli.audit_verify`, ``witness`` in
:mod:`exchange.cli.audit_witness`, ``trace``/``report`` in
:mod:`exchange.cli.audit_trace`, ``alerts`` in :mod:`exchange.cli.audit_alerts`);
those modules import their heavy dependencies inside the command, so
``ibx audit --help`` stays light. The logic is in the ``audit`` package, which
imports only ``ledger`` and ``core``.
"""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(
    help="Audit the ledger: export, verify, witness, trace, report and alerts.",
    no_args_is_help=True,
)

from exchange.cli.audit_verify import export, verify  # noqa: E402 -- each subcommand registers below

app.command("verify")(verify)
app.command("export")(export)

from exchange.cli.audit_trace import report, trace  # noqa: E402 -- each subcommand registers below

app.command("trace")(trace)
app.command("report")(report)

from exchange.cli.audit_witness import witness  # noqa: E402 -- each subcommand registers below

app.command("witness")(witness)

from exchange.cli.audit_alerts import alerts  # noqa: E402 -- each subcommand registers below

app.command("alerts")(alerts)
