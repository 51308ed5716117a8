"""``ibx init``: create a deployment in the data dir (the only command that does).

Every other server-side command refuses a data dir that was never
initialised, so a mistyped ``--data-dir`` fails loudly instead of quietly
starting an empty deployment. What ``init`` fixes for good — the ledger
origin, the kind of database, the master key — is recorded in
``<data dir>/deployment.json`` and checked at every start.

``init`` also registers the two **bootstrap security officers** (``--officer
NAME``, twice; ``officer-1`` and ``officer-2`` by default): it generates their
Ed25519 key files (mode 0600, in ``<data dir>/bootstrap/`` or
``--officer-keys DIR``; hand each to its officer and delete the copy) and
prints their tokens once. They are the only administrators registered without
an officer's signed duty; every other administrator needs one of theirs.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from exchange.cli._context import CliContext, cli_context

__all__ = ["init"]

_DEFAULT_OFFICERS = ("officer-1", "officer-2")


def _holds_identities(context: CliContext) -> bool:
    """Whether the data dir's database (one being adopted) already holds identities."""
    from sqlalchemy import inspect, text

    from core.db import Database

    db = Database(context.settings.resolved_database_url())
    try:
        with db.engine.connect() as connection:
            if not inspect(connection).has_table("exchange_identities"):
                return False
            found = connection.execute(text("SELECT 1 FROM exchange_identities LIMIT 1"))
            return found.first() is not None
    finally:
        db.dispose()


def init(
    ctx: typer.Context,
    officers: list[str] | None = typer.Option(  # noqa: B008
        None,
        "--officer",
        help="name of a bootstrap security officer (give it twice) [default: officer-1, officer-2]",
        show_default=False,
    ),
    officer_keys: Path | None = typer.Option(  # noqa: B008
        None,
        "--officer-keys",
        help="directory for the bootstrap officers' key files [default: DATA_DIR/bootstrap]",
        file_okay=False,
        show_default=False,
    ),
) -> None:
    """Create a deployment: database, master key, ledger key, record, two bootstrap officers.

    The two bootstrap security officers' key files and tokens are printed once."""
    from consent import EnterpriseKey
    from exchange.datadir import read_record
    from exchange.identities import IdentityError
    from exchange.runtime import Runtime

    names = tuple(officers) if officers else _DEFAULT_OFFICERS
    if len(names) != len(set(names)) or len(names) < len(_DEFAULT_OFFICERS):
        raise typer.BadParameter("give two distinct --officer names", param_hint="--officer")
    context = cli_context(ctx)
    key_dir = officer_keys or context.settings.data_dir / "bootstrap"
    paths = [key_dir / f"{name}.key" for name in names]
    taken = [path for path in paths if path.exists()]
    if taken and read_record(context.settings.data_dir) is None and not _holds_identities(context):
        raise IdentityError(
            f"{taken[0]} already exists; refusing to overwrite an officer's key "
            "(choose another --officer-keys DIR)"
        )
    runtime = Runtime.initialise(context.settings)
    record = runtime.record
    typer.echo(f"initialised {runtime.data_dir}")
    typer.echo(f"origin      {record.origin}")
    typer.echo(f"database    {record.database_kind}")
    typer.echo(f"ledger key  {runtime.ledger.vkey()}")
    if context.settings.master_key is None:
        typer.echo(
            f"master key  {runtime.data_dir / 'master.key'} (mode 0600): keep a copy apart "
            "from backups (ibx backup master-key --out FILE)"
        )
    if runtime.identities.list():
        typer.echo(
            "officers    this database already holds identities: no bootstrap officers "
            "registered (its officers register the others)"
        )
        return
    key_dir.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        key_dir.chmod(0o700)
    keys = [EnterpriseKey.generate(path) for path in paths]
    issued = runtime.identities.bootstrap_officers(
        [(name, key.signer.public_key) for name, key in zip(names, keys, strict=True)]
    )
    for made, path in zip(issued, paths, strict=True):
        typer.echo(f"officer     {made.identity.name}  key {path} (mode 0600)  token {made.token}")
    typer.echo(
        "            hand each officer their key file and token (shown only now), then "
        f"delete {key_dir}; officers register every other administrator "
        "(ibx identity create --role ROLE --key OFFICER_KEYFILE)"
    )
