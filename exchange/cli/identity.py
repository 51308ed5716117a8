"""``ibx identity``: server-side administration of the identity registry."""

from __future__ import annotations

import typer

from core.keys import Ed25519PublicKey
from exchange.cli._context import cli_context
from exchange.identities import IdentityError, Role

__all__ = ["app"]

app = typer.Typer(help="Create, list and revoke identities (on the server's data dir).")


@app.command("create")
def create(
    ctx: typer.Context,
    role: Role = typer.Option(..., "--role", help="the identity's role"),  # noqa: B008
    name: str = typer.Option(..., "--name", help="unique name"),
    public_key: str | None = typer.Option(
        None, "--public-key", help="base64 Ed25519 public key (enterprises)"
    ),
    industry: str | None = typer.Option(
        None, "--industry", help="industry slug, e.g. lithium-battery (sub-brains, enterprises)"
    ),
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
    typer.echo(
        f"created {ident.name} ({ident.role}), token expires {ident.token_expires_at:%Y-%m-%d}"
    )
    typer.echo(issued.token)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List identities: name, role, status, key fingerprint, token expiry."""
    for ident in cli_context(ctx).runtime.identities.list():
        fp = ident.public_key.fingerprint()[:16] if ident.public_key else "-"
        typer.echo(
            f"{ident.name}\t{ident.role}\t{ident.industry or '-'}\t{ident.status}\t{fp}\t"
            f"{ident.token_expires_at:%Y-%m-%d}"
        )


@app.command("revoke")
def revoke(ctx: typer.Context, name: str = typer.Argument(..., help="identity to revoke")) -> None:
    """Revoke an identity: its token stops working at once."""
    ident = cli_context(ctx).runtime.identities.revoke(name)
    typer.echo(f"revoked {ident.name}")
