"""``ibx audit verify`` and ``ibx audit export``: an auditor's check of the whole ledger.

``verify`` reads an ``ibx-ledger-export/v1`` file (``--export``) or builds one
in memory from an exchange (``--exchange``: the same code as ``export``) and
runs :func:`audit.verify` with the entry-type registry of this composition
root. It prints ``ok: ...`` or one ``FINDING #<index> <code>: ...`` line per
finding and a summary; ``--json`` prints the report. Exit 0 when nothing is
found, 5 on any finding, 2 for input that cannot be verified at all (no such
file, a malformed export, a malformed pinned key or kept checkpoint).
"""

from __future__ import annotations

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
    from audit import EntryTypes, LedgerExport, VerifyReport
    from exchange.cli._context import CliContext

__all__ = ["FORCE_OPTION", "entry_types", "export", "load_export", "verify"]

_EXPORT_OPTION = typer.Option(
    None,
    "--export",
    help="an ibx-ledger-export/v1 file (from ibx ledger export or ibx audit export)",
    exists=True,
    dir_okay=False,
    readable=True,
)
_LEDGER_VKEY_OPTION = typer.Option(
    None,
    "--ledger-vkey",
    help="the ledger's verifier key you trust (a file holding the C2SP vkey); without it "
    "the export's own key is used, which proves only that the export is self-consistent",
    exists=True,
    dir_okay=False,
    readable=True,
)
_TRUSTED_OPTION = typer.Option(
    None,
    "--trusted-checkpoint",
    help="a signed checkpoint you kept earlier: the log must extend it",
    exists=True,
    dir_okay=False,
    readable=True,
)
_OUT_OPTION = typer.Option(..., "--out", help="the file to write (ibx-ledger-export/v1)")
FORCE_OPTION = typer.Option(False, "--force", help="replace the file if it exists")


def entry_types() -> EntryTypes:
    """Entry type → payload parser: the registry of every package's typed entries
    (:data:`exchange.ledger_types.ENTRY_PARSERS`)."""
    from exchange.ledger_types import ENTRY_PARSERS

    return ENTRY_PARSERS


def load_export(
    context: CliContext, export: Path | None, token: str | None, remote: Remote
) -> LedgerExport:
    """The export named by ``--export``, or fetched from the exchange (``--exchange`` or
    the profile).

    Raises:
        ExportFormatError: the file is unreadable or malformed.
        RemoteRefusalError: the exchange refused.
        ForbiddenError: the identity may read only its own entries.
        LedgerIntegrityError: the exchange's answers are malformed.
    """
    from audit import LedgerExport
    from exchange.cli._ledger_export import fetch_export

    if export is not None:
        return LedgerExport.read(export)
    with context.client(token, remote) as client:
        return fetch_export(client)


def verify(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    export: Path | None = _EXPORT_OPTION,
    ledger_vkey: Path | None = _LEDGER_VKEY_OPTION,
    trusted_checkpoint: Path | None = _TRUSTED_OPTION,
    as_json: bool = JSON_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Verify the whole ledger: tree, checkpoints, typed entries, invariants (exit 5 on a finding).

    Give --export PATH (written by ibx ledger export or ibx audit export).

    Or --exchange URL: the ledger is fetched now, as your identity (an auditor or witness).
    """
    from audit import verify as run_verify

    context = cli_context(ctx)
    remote = Remote(exchange, ca_bundle, client_cert, client_key)
    if export is None and exchange is None and context.profile is None:
        typer.echo("ibx: give --export PATH or --exchange URL", err=True)
        raise typer.Exit(ExitCode.USAGE)
    pinned = None if ledger_vkey is None else ledger_vkey.read_text().strip()
    kept = None if trusted_checkpoint is None else trusted_checkpoint.read_text()
    loaded = load_export(context, export, token, remote)
    report = run_verify(
        loaded, entry_types=entry_types(), ledger_vkey=pinned, trusted_checkpoint=kept
    )
    if as_json:
        emit_json(report.to_dict())
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(ExitCode.VERIFICATION_FAILED)


def _print_report(report: VerifyReport) -> None:
    if not report.pinned:
        typer.echo(
            f"note: checkpoints checked with the export's own key {report.ledger_vkey}; "
            "pin the key you trust with --ledger-vkey FILE"
        )
    for vkey, count in sorted(report.cosignatures.items()):
        typer.echo(f"witness {vkey}: cosigned {count} checkpoint(s)")
    root = report.root.hex()
    if report.ok:
        typer.echo(f"ok: {report.tree_size} entries, {report.checkpoints} checkpoints, root {root}")
        return
    for finding in report.findings:
        typer.echo(finding.line())
    typer.echo(
        f"failed: {len(report.findings)} finding(s) in {report.tree_size} entries, "
        f"{report.checkpoints} checkpoint(s) verified, root {root}"
    )


def export(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    out: Path = _OUT_OPTION,
    force: bool = FORCE_OPTION,
    as_json: bool = JSON_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Export the ledger an exchange serves (entries, checkpoints, keys, rows) to a file.

    Read as your identity (an auditor or witness reads every entry).

    Verify the file later, offline, with ibx audit verify --export.
    """
    from audit import export_lines
    from exchange.cli._ledger_export import print_written, write_atomically

    if out.exists() and not force:
        typer.echo(f"ibx: {out} exists; pass --force to replace it", err=True)
        raise typer.Exit(ExitCode.USAGE)
    context = cli_context(ctx)
    fetched = load_export(
        context, None, token, Remote(exchange, ca_bundle, client_cert, client_key)
    )
    lines = export_lines(
        fetched.header,
        ((e.index, e.leaf) for e in fetched.entries),
        fetched.checkpoints,
        fetched.state,
    )
    written = write_atomically(out, lines, force=force)
    print_written(out, len(fetched.entries), len(fetched.checkpoints), written, as_json=as_json)
