"""``ibx me``: who the caller's token is, and replacing that token (user commands).

Both go through the API client (``GET /v1/me``, ``POST /v1/me/token``): on the
local data dir in-process, or with ``--exchange URL`` over HTTPS, alike.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from core.clock import parse_rfc3339, utcnow
from exchange.cli._api_client import user_client
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
    cli_context,
)
from exchange.cli._output import JSON_OPTION, emit_json

__all__ = ["app"]

app = typer.Typer(
    help="Who your token is (name, role, industry, expiry); rotate-token replaces it.",
    invoke_without_command=True,
    no_args_is_help=False,
)


def _expiry(text: str, now: datetime) -> str:
    """``2026-03-01T12:00:00Z (in 89 days)``, or ``(expired)``."""
    when = parse_rfc3339(text)
    days = round((when - now).total_seconds() / 86400)
    if when <= now:
        return f"{text} (expired)"
    return f"{text} (in {days} day{'s' if days != 1 else ''})" if days else f"{text} (today)"


@app.callback()
def me(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Print who your token is: name, role, industry and when the token expires."""
    if ctx.invoked_subcommand is not None:
        return
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        body: dict[str, Any] = client.get("/v1/me")
    if as_json:
        emit_json(body)
        return
    typer.echo(f"name           {body['name']}")
    typer.echo(f"role           {body['role']}")
    typer.echo(f"industry       {body.get('industry') or '-'}")
    typer.echo(f"token expires  {_expiry(body['token_expires_at'], utcnow())}")


@app.command("rotate-token")
def rotate_token(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Replace your token; the new one is printed once, as the last line.

    The old token stops working at once. A token from --profile is updated in
    the profile too.
    """
    context = cli_context(ctx)
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        body: dict[str, Any] = client.post("/v1/me/token")
    saved = None
    if not token and context.token_file is None and context.profile is not None:
        from exchange.cli._profiles import ProfileStore

        store = ProfileStore.from_environment(os.environ)
        profile = store.load(context.profile)
        saved = store.save(dataclasses.replace(profile, token=body["token"]))
    if as_json:
        emit_json(body)
        return
    expires = parse_rfc3339(body["token_expires_at"])
    typer.echo(
        f"rotated the token of {body['name']}: the old one no longer works; the new one "
        f"expires {expires:%Y-%m-%d}"
    )
    if saved is not None:
        typer.echo(f"profile {context.profile!r} updated ({saved})")
    elif context.token_file is not None:
        typer.echo(f"write the new token into {context.token_file} (it holds the old one)")
    typer.echo(body["token"])
