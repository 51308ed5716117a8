"""``ibx dataset``: the catalog of datasets an enterprise can consent to (metadata only)."""

from __future__ import annotations

import typer

from consent import Classification, ConsentAccessError
from core.clock import utcnow
from exchange.cli._context import TOKEN_OPTION, cli_context
from exchange.cli._output import JSON_OPTION, Table, emit_json, emit_records, emit_table
from exchange.identities import Role

__all__ = ["app"]

app = typer.Typer(help="Register and list datasets (metadata only; the data stays home).")


@app.command("register")
def register(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    dataset_id: str = typer.Option(..., "--id", help="dataset id, e.g. factory-a.energy"),
    field: list[str] = typer.Option(..., "--field", help="a field name (repeatable)"),  # noqa: B008
    classification: Classification = typer.Option(  # noqa: B008
        Classification.GENERAL, "--classification", help="general, important or core"
    ),
    description: str | None = typer.Option(None, "--description", help="free text"),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Register a dataset owned by the calling enterprise."""
    context = cli_context(ctx)
    me = context.acting_as(token)
    if me.role is not Role.ENTERPRISE:
        raise ConsentAccessError(f"only an enterprise registers datasets; {me.name} is {me.role}")
    dataset = context.runtime.consents.catalog.register(
        dataset_id,
        owner=me.name,
        fields=field,
        classification=classification,
        description=description,
        now=utcnow(),
    )
    if as_json:
        emit_json(dataset.to_dict())
        return
    typer.echo(f"registered {dataset.dataset_id} ({', '.join(dataset.fields)})")


@app.command("list")
def list_(
    ctx: typer.Context,
    owner: str | None = typer.Option(None, "--owner", help="only this enterprise's"),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """List datasets: id, owner, classification, fields."""
    context = cli_context(ctx)
    context.acting_as(token)
    datasets = context.runtime.consents.catalog.list(owner=owner)
    if as_json:
        emit_records(datasets)
        return
    emit_table(
        Table.build(
            ("dataset", "owner", "classification", "fields"),
            ((d.dataset_id, d.owner, str(d.classification), ",".join(d.fields)) for d in datasets),
        )
    )
