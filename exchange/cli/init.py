"""``ibx init``: create a deployment in the data dir (the only command that does).

Every other server-side command refuses a data dir that was never
initialised, so a mistyped ``--data-dir`` fails loudly instead of quietly
starting an empty deployment. What ``init`` fixes for good — the ledger
origin, the kind of database, the master key — is recorded in
``<data dir>/deployment.json`` and checked at every start.
"""

from __future__ import annotations

import typer

from exchange.cli._context import cli_context

__all__ = ["init"]


def init(ctx: typer.Context) -> None:
    """Create a deployment in the data dir: database, master key, ledger key, record."""
    from exchange.runtime import Runtime

    context = cli_context(ctx)
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
