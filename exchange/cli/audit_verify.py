"""``ibx audit verify`` and ``ibx audit export``: an auditor's check of the whole ledger.

``verify`` reads an ``ibx-ledger-export/v1`` file (``--export``) or builds one
in memory from an exchange (``--exchange``: the same code as ``export``) and
runs :func:`audit.verify` with the entry-type registry of this composition
root. It prints ``ok: ...`` or one ``FINDING #<index> <code>: ...`` line per
finding and a summary; ``--json`` prints the report. Exit 0 when nothing is
found, 5 on any finding, 2 for input that cannot be verified at all (no such
file, a malformed export, a malformed pinned key or kept checkpoint).

``--fabric`` also compares the export with the ledger's copy on the consortium's
Fabric channel, read through the auditor's own organisation's peer with the
auditor's own Fabric identity (``IBX_LEDGER_FABRIC_*`` in the auditor's
environment; :func:`audit.check_fabric`): its disagreements are ``fabric.*``
findings; a channel behind the export is lag, printed but not a finding.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

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
    from audit import EntryTypes, FabricCheck, LedgerExport, VerifyReport
    from exchange.cli._context import CliContext
    from ledger.fabric import FabricConfig, FabricMode, LedgerChannel
    from ledger.fabric.compare import ChannelState

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
_FABRIC_OPTION = typer.Option(
    False,
    "--fabric",
    help="also compare the export with the ledger's copy on the consortium's Fabric channel, "
    "read through your own organisation's peer (IBX_LEDGER_FABRIC_*: gateway, TLS root, "
    "MSP id, certificate, key, channel; docs/fabric.md)",
)
_T = TypeVar("_T")
_AUDITOR_FABRIC_SETTINGS = ("gateway", "tls_root", "msp_id", "cert", "key", "channel")
"""What ``--fabric`` needs in the auditor's environment (``IBX_LEDGER_FABRIC_<NAME>``)."""
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
    fabric: bool = _FABRIC_OPTION,
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

    With --fabric: also compare it with the Fabric channel, as your own Fabric identity.
    """
    from audit import verify as run_verify

    context = cli_context(ctx)
    remote = Remote(exchange, ca_bundle, client_cert, client_key)
    if export is None and exchange is None and context.profile is None:
        typer.echo("ibx: give --export PATH or --exchange URL", err=True)
        raise typer.Exit(ExitCode.USAGE)
    auditor = _AuditorFabric.from_settings(context) if fabric else None
    pinned = None if ledger_vkey is None else ledger_vkey.read_text().strip()
    kept = None if trusted_checkpoint is None else trusted_checkpoint.read_text()
    if auditor is None:
        loaded = load_export(context, export, token, remote)
    else:
        loaded = auditor.load(context, export, token, remote)
    try:
        report = run_verify(
            loaded, entry_types=entry_types(), ledger_vkey=pinned, trusted_checkpoint=kept
        )
        check = None if auditor is None else auditor.check(loaded, report)
    finally:
        if auditor is not None:
            auditor.close()
    if check is not None:
        from audit import with_fabric

        report = with_fabric(report, check)
    if as_json:
        document = report.to_dict()
        if check is not None and auditor is not None:
            document["fabric"] = {
                **check.to_dict(),
                "channel": auditor.config.channel,
                "chaincode": auditor.config.chaincode,
            }
        emit_json(document)
    else:
        _print_report(report)
        if check is not None:
            typer.echo(check.line())
    if not report.ok:
        raise typer.Exit(ExitCode.VERIFICATION_FAILED)


class _AuditorFabric:
    """The auditor's own way to the channel: their Fabric identity and peer, the mode
    to compare (None: as the channel shows), and the channel once opened."""

    def __init__(self, config: FabricConfig, mode: FabricMode | None) -> None:
        self.config = config
        self.mode = mode
        self._channel: LedgerChannel | None = None
        self._state: ChannelState | None = None

    @classmethod
    def from_settings(cls, context: CliContext) -> _AuditorFabric:
        """The auditor's ``IBX_LEDGER_FABRIC_*`` settings.

        Raises:
            typer.Exit: one is missing or malformed (usage, one line naming it).
        """
        from core.errors import ConfigurationError
        from ledger.fabric import FabricMode

        settings = context.settings
        missing = [
            f"IBX_LEDGER_FABRIC_{name.upper()}"
            for name in _AUDITOR_FABRIC_SETTINGS
            if getattr(settings, f"ledger_fabric_{name}") in (None, "")
        ]
        if missing:
            raise _fail(
                f"audit verify --fabric needs {', '.join(missing)}: your organisation's peer "
                "and Fabric client identity (docs/fabric.md)",
                ExitCode.USAGE,
            )
        mode = settings.ledger_fabric_mode
        try:
            config = settings.model_copy(update={"ledger_fabric_mode": "full"}).fabric_config()
        except ConfigurationError as exc:
            raise _fail(str(exc), ExitCode.USAGE) from exc
        assert config is not None
        return cls(config, None if mode == "off" else FabricMode(mode))

    def open(self, log: str) -> LedgerChannel:
        """The log ``log`` on the channel (the one already open when it is that log).

        Raises:
            typer.Exit: the identity's files are unusable or the log id malformed (usage).
        """
        from ledger.fabric import FabricError
        from ledger.fabric.gateway import open_channel

        if self._channel is not None:
            if self._channel.log == log:
                return self._channel
            self.close()
        try:
            self._channel = open_channel(self.config, log)
        except FabricError as exc:
            raise _fail(f"audit verify --fabric: {exc}", ExitCode.USAGE) from exc
        return self._channel

    def load(
        self, context: CliContext, export: Path | None, token: str | None, remote: Remote
    ) -> LedgerExport:
        """The export; fetched from a live exchange, the channel is read first (so a
        shipper running meanwhile makes the channel at most behind the export).

        Raises:
            typer.Exit: the channel could not be read (1).
            ExportFormatError, RemoteRefusalError, ForbiddenError, LedgerIntegrityError:
                as :func:`load_export`.
        """
        if export is not None:
            return load_export(context, export, token, remote)
        from exchange.cli._ledger_export import fetch_export
        from exchange.cli._ledger_reader import ApiReader
        from ledger import Checkpoint, CheckpointError, LedgerIntegrityError, SignedNote
        from ledger.fabric.compare import ChannelState

        with context.client(token, remote) as client:
            head = ApiReader(client).checkpoint_text()
            try:
                origin = Checkpoint.from_text(SignedNote.from_text(head).text).origin
            except CheckpointError as exc:
                raise LedgerIntegrityError(
                    f"the exchange's checkpoint is no signed note: {exc}"
                ) from exc
            channel = self.open(origin)
            self._state = self._read(lambda: ChannelState.read(channel, self.mode))
            loaded = fetch_export(client)
        if loaded.header.origin != origin:
            self._state = None  # the exchange's origin changed meanwhile: read it again
        return loaded

    def check(self, export: LedgerExport, report: VerifyReport) -> FabricCheck:
        """Compare ``export`` (verified as ``report``) with the channel.

        Raises:
            typer.Exit: the channel could not be read (1) or opened (2).
        """
        from audit import check_fabric
        from ledger import CheckpointError, NoteVerifier

        try:
            verifier: NoteVerifier | None = NoteVerifier.from_vkey(report.ledger_vkey)
        except CheckpointError:
            verifier = None  # the export's own key is no key: a finding already
        channel = self.open(export.header.origin)
        return self._read(
            lambda: check_fabric(
                export,
                channel,
                verifier=verifier,
                mode=self.mode,
                state=self._state,
                live=self._state is not None,
            )
        )

    @staticmethod
    def _read(read: Callable[[], _T]) -> _T:
        from ledger.fabric import FabricError

        try:
            return read()
        except FabricError as exc:
            raise _fail(
                f"audit verify --fabric could not read the channel: {exc}", ExitCode.ERROR
            ) from exc

    def close(self) -> None:
        """Close the channel, if open."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def _fail(message: str, code: ExitCode) -> typer.Exit:
    typer.echo(f"ibx: {' '.join(message.split())}", err=True)
    return typer.Exit(code)


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
