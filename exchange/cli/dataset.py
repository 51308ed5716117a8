"""``ibx dataset``: the catalog of datasets an enterprise can consent to (metadata only).

Every command goes through the exchange's API (``/v1/datasets``): on the local
data dir, or at ``--exchange URL``; the policy pack decides who may register
and who may browse.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import typer

from consent import Classification
from exchange.cli._api_client import user_client
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
)
from exchange.cli._output import JSON_OPTION, Table, emit_json, emit_table
from exchange.schemas.datasets import DatasetPublic

__all__ = ["app"]

app = typer.Typer(help="Register and list datasets (metadata only; the data stays home).")

_OWNER_OPTION = typer.Option(None, "--owner", help="only this enterprise's")
_INDUSTRY_OPTION = typer.Option(None, "--industry", help="only datasets of this industry's owners")
_FIELD_OPTION = typer.Option(None, "--field", help="only datasets with this field")
_CLASSIFICATION_OPTION = typer.Option(
    None, "--classification", help="only general, important or core data"
)


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
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Register a dataset owned by the calling enterprise."""
    body = {
        "dataset_id": dataset_id,
        "fields": field,
        "classification": classification.value,
        "description": description,
    }
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        dataset = DatasetPublic.model_validate(client.post("/v1/datasets", body))
    if as_json:
        emit_json(dataset.model_dump(mode="json"))
        return
    typer.echo(f"registered {dataset.dataset_id} ({', '.join(dataset.fields)})")


@app.command("list")
def list_(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    owner: str | None = _OWNER_OPTION,
    industry: str | None = _INDUSTRY_OPTION,
    field: str | None = _FIELD_OPTION,
    classification: Classification | None = _CLASSIFICATION_OPTION,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """List datasets: id, owner, classification, fields."""
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        datasets = [
            DatasetPublic.model_validate(item)
            for item in client.pages(
                "/v1/datasets",
                owner=owner,
                industry=industry,
                field=field,
                classification=classification.value if classification else None,
            )
        ]
    _emit(datasets, as_json=as_json)


@app.command("search")
def search(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    text: str = typer.Argument(..., help="found in a dataset's id or description (any case)"),
    owner: str | None = _OWNER_OPTION,
    industry: str | None = _INDUSTRY_OPTION,
    field: str | None = _FIELD_OPTION,
    classification: Classification | None = _CLASSIFICATION_OPTION,
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Search the catalog by text in a dataset's id or description, with list's filters."""
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        datasets = [
            DatasetPublic.model_validate(item)
            for item in client.pages(
                "/v1/datasets",
                q=text,
                owner=owner,
                industry=industry,
                field=field,
                classification=classification.value if classification else None,
            )
        ]
    _emit(datasets, as_json=as_json)


@app.command("show")
def show(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    dataset_id: str = typer.Argument(..., help="the dataset id"),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Show one dataset's catalog entry: owner, classification, fields, description."""
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        dataset = DatasetPublic.model_validate(
            client.get(f"/v1/datasets/{quote(dataset_id, safe='')}")
        )
    if as_json:
        emit_json(dataset.model_dump(mode="json"))
        return
    for name, value in (
        ("dataset", dataset.dataset_id),
        ("owner", dataset.owner),
        ("classification", dataset.classification.value),
        ("fields", ",".join(dataset.fields)),
        ("description", dataset.description or "-"),
        ("registered", dataset.created_at),
    ):
        typer.echo(f"{name}\t{value}")


def _emit(datasets: Sequence[DatasetPublic], *, as_json: bool) -> None:
    if as_json:
        emit_json([d.model_dump(mode="json") for d in datasets])
        return
    emit_table(
        Table.build(
            ("dataset", "owner", "classification", "fields"),
            ((d.dataset_id, d.owner, d.classification.value, ",".join(d.fields)) for d in datasets),
        )
    )
