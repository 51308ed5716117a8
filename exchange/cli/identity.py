"""``ibx identity``: server-side administration of the identity registry."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from core.canonical import JsonValue
from core.clock import format_rfc3339
from core.keys import Ed25519PublicKey
from exchange.cli._context import cli_context
from exchange.cli._output import JSON_OPTION, Table, emit_json, emit_records, emit_table
from exchange.identities import Identity, IdentityError, Role

__all__ = ["app"]

app = typer.Typer(help="Create, list and revoke identities (on the server's data dir).")


@dataclass(frozen=True)
class IdentityListing:
    """One identity as ``identity list --json`` prints it (never its token)."""

    identity: Identity

    def to_dict(self) -> dict[str, JsonValue]:
        """Stable JSON fields."""
        ident = self.identity
        return {
            "name": ident.name,
            "role": ident.role.value,
            "industry": ident.industry,
            "status": ident.status.value,
            "public_key": ident.public_key.to_base64() if ident.public_key else None,
            "key_fingerprint": ident.public_key.fingerprint() if ident.public_key else None,
            "created_at": format_rfc3339(ident.created_at),
            "token_expires_at": format_rfc3339(ident.token_expires_at),
        }


@app.command("create")
def create(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    role: Role = typer.Option(..., "--role", help="the identity's role"),  # noqa: B008
    name: str = typer.Option(..., "--name", help="unique name"),
    public_key: str | None = typer.Option(
        None, "--public-key", help="base64 Ed25519 public key (enterprises)"
    ),
    industry: str | None = typer.Option(
        None, "--industry", help="industry slug, e.g. lithium-battery (sub-brains, enterprises)"
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Create an identity; its bearer token is printed once, as the last line."""
    key = None
    if public_key is not None:
        try:
            key = Ed25519PublicKey.from_base64(public_key)
        except ValueError as exc:
            raise IdentityError(f"--public-key: {exc}") from exc
    issued = cli_context(ctx).runtime.identities.create(
        name, role, public_key=key, industry=industry
    )
    ident = issued.identity
    if as_json:
        emit_json({**IdentityListing(ident).to_dict(), "token": issued.token})
        return
    typer.echo(
        f"created {ident.name} ({ident.role}), token expires {ident.token_expires_at:%Y-%m-%d}"
    )
    typer.echo(issued.token)


@app.command("list")
def list_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """List identities: name, role, industry, status, key fingerprint, token expiry."""
    identities = cli_context(ctx).runtime.identities.list()
    if as_json:
        emit_records(IdentityListing(ident) for ident in identities)
        return
    emit_table(
        Table.build(
            ("name", "role", "industry", "status", "key", "token expires"),
            (
                (
                    ident.name,
                    str(ident.role),
                    ident.industry or "-",
                    str(ident.status),
                    ident.public_key.fingerprint()[:16] if ident.public_key else "-",
                    f"{ident.token_expires_at:%Y-%m-%d}",
                )
                for ident in identities
            ),
        )
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="identity to revoke"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke an identity: its token stops working at once."""
    ident = cli_context(ctx).runtime.identities.revoke(name)
    if as_json:
        emit_json(IdentityListing(ident).to_dict())
        return
    typer.echo(f"revoked {ident.name}")
