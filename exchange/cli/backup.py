"""``ibx backup`` and ``ibx restore``: online snapshots of the data dir, and safe restores."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import typer

from core.clock import utcnow
from core.errors import ConfigurationError
from exchange.cli._context import cli_context
from exchange.cli._output import JSON_OPTION, emit_json

if TYPE_CHECKING:
    from exchange.backup import BackupSource
    from exchange.runtime import Runtime

__all__ = ["app", "restore"]

app = typer.Typer(
    help="Back up the deployment online: database, wrapped keys, configuration.",
    invoke_without_command=True,
)


@app.callback()
def backup(
    ctx: typer.Context,
    out: Path | None = typer.Option(  # noqa: B008
        None, "--out", help="the archive to write (tar.gz, mode 0600, replaced atomically)"
    ),
    include_master_key: bool = typer.Option(
        False,
        "--include-master-key",
        help="also put the master key in the archive (then keep the archive like the key)",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Snapshot the running deployment into --out; the master key only when asked."""
    if ctx.invoked_subcommand is not None:
        if out is not None or include_master_key or as_json:
            raise typer.BadParameter(f"give --out after '{ctx.invoked_subcommand}', not before it")
        return
    if out is None:
        raise typer.BadParameter("--out FILE is required", param_hint="--out")
    from exchange.backup import create_backup

    runtime = cli_context(ctx).runtime
    manifest = create_backup(
        _source(runtime), out, include_master_key=include_master_key, now=utcnow()
    )
    head = manifest.ledger
    if as_json:
        emit_json({"archive": str(out), "manifest": manifest.to_dict()})
        return
    typer.echo(
        f"backup {out}: tree size {head.tree_size} root "
        f"{base64.b64encode(head.root_hash).decode()}, {len(manifest.members)} members, "
        f"master key {'INCLUDED' if include_master_key else 'not included'} "
        f"(fingerprint {manifest.master_key_fingerprint})"
    )


@app.command("master-key")
def master_key(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="the file to create (mode 0600; never replaced)"),  # noqa: B008
    as_json: bool = JSON_OPTION,
) -> None:
    """Write the master key alone to --out (mode 0600), to keep apart from the backups."""
    from exchange.backup import write_private_file

    runtime = cli_context(ctx).runtime
    text = _master_key_text(runtime)
    if out.exists():
        raise typer.BadParameter(f"{out} exists; the master key is never written over a file")

    def fill(handle: BinaryIO) -> None:
        handle.write(text.strip().encode() + b"\n")

    write_private_file(out.absolute(), fill)
    if as_json:
        emit_json({"file": str(out), "fingerprint": runtime.master_key.fingerprint()})
        return
    typer.echo(f"master key written to {out} (fingerprint {runtime.master_key.fingerprint()})")


def restore(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    from_: Path = typer.Option(..., "--from", help="the backup archive"),  # noqa: B008
    data_dir: Path | None = typer.Option(  # noqa: B008
        None, "--data-dir", help="the new, empty data dir to restore into", show_default=False
    ),
    master_key_file: Path | None = typer.Option(  # noqa: B008
        None,
        "--master-key-file",
        help="the master key the backup was taken under (default: IBX_MASTER_KEY)",
        show_default=False,
    ),
    database_url: str | None = typer.Option(
        None,
        "--database-url",
        help="an empty PostgreSQL database, for a backup of a PostgreSQL deployment "
        "(default: IBX_DATABASE_URL, which keeps a password out of ps)",
        show_default=False,
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Restore a backup into an empty data dir; needs the master key it was taken under."""
    from exchange.backup import restore_backup

    target = data_dir if data_dir is not None else cli_context(ctx).data_dir
    if target is None:
        raise typer.BadParameter("give the data dir to restore into", param_hint="--data-dir")
    settings = cli_context(ctx).settings
    secret = settings.master_key
    from_env = None if secret is None else secret.get_secret_value()
    if master_key_file is not None:
        text: str | None = master_key_file.read_text(encoding="ascii")
    else:
        text = from_env
    report = restore_backup(
        from_,
        target,
        master_key_text=text,
        write_master_key=from_env is None or master_key_file is not None,
        database_url=database_url if database_url is not None else settings.database_url,
    )
    head = report.manifest.ledger
    if as_json:
        emit_json(
            {
                "archive": str(from_),
                "data_dir": str(report.data_dir),
                "master_key_written": report.master_key_written,
                "manifest": report.manifest.to_dict(),
            }
        )
    else:
        typer.echo(
            f"restored {from_} into {report.data_dir}: tree size {head.tree_size} root "
            f"{base64.b64encode(head.root_hash).decode()} verified"
        )
    if not report.master_key_written:
        typer.echo("the master key stays in IBX_MASTER_KEY; keep supplying it", err=True)


def _master_key_text(runtime: Runtime) -> str:
    """The master key in use, as text: IBX_MASTER_KEY or the data dir's key file."""
    secret = runtime.settings.master_key
    if secret is not None:
        return secret.get_secret_value()
    path = runtime.data_dir / "master.key"
    try:
        return path.read_text(encoding="ascii")
    except OSError as exc:
        raise ConfigurationError(f"cannot read the master key file {path}: {exc}") from exc


def _source(runtime: Runtime) -> BackupSource:
    from exchange.backup import BackupSource

    return BackupSource(
        data_dir=runtime.data_dir,
        database_url=runtime.settings.resolved_database_url(),
        master=runtime.master_key,
        master_key_text=_master_key_text(runtime),
        keyring=runtime.keyring,
        ledger_origin=runtime.settings.ledger_origin,
    )
