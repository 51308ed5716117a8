"""``ibx pki``: the edge certificate authority (on the server's data dir)."""

from __future__ import annotations

import typer

from core.clock import utcnow
from edge_tls import RevocationReason, fingerprint
from exchange.cli._context import TOKEN_OPTION, cli_context
from exchange.error_table import ForbiddenError
from exchange.identities import Role

__all__ = ["app"]

app = typer.Typer(help="The edge certificate authority (on the server's data dir).")


@app.command("init")
def init(ctx: typer.Context) -> None:
    """Create the root and issuing CA (ECDSA P-256), keys encrypted under the master key."""
    ca = cli_context(ctx).runtime.edge_pki.init(actor="sysadmin", now=utcnow())
    typer.echo(f"root CA     {ca.root.subject.rfc4514_string()}  sha256 {fingerprint(ca.root)}")
    typer.echo(
        f"issuing CA  {ca.issuing.subject.rfc4514_string()}  sha256 {fingerprint(ca.issuing)}"
    )


@app.command("fingerprint")
def fingerprint_(ctx: typer.Context) -> None:
    """Print the root certificate's SHA-256: hand it to users for ``ibx login --ca-fingerprint``."""
    typer.echo(fingerprint(cli_context(ctx).runtime.edge_pki.authority().root))


@app.command("ca-bundle")
def ca_bundle(ctx: typer.Context) -> None:
    """Print the CA chain in PEM (issuing CA, then root): the devices' trust bundle."""
    typer.echo(cli_context(ctx).runtime.edge_pki.authority().chain_pem(), nl=False)


@app.command("list")
def list_(
    ctx: typer.Context,
    enterprise: str | None = typer.Option(None, "--enterprise", help="only this enterprise's"),
) -> None:
    """List issued certificates: serial, kind, status, expiry, identity."""
    now = utcnow()
    for record in cli_context(ctx).runtime.edge_pki.certificates(enterprise=enterprise):
        if record.revoked_at is not None:
            status = "revoked"
        elif record.not_after <= now:
            status = "expired"
        else:
            status = "valid"
        typer.echo(
            f"{record.serial:x}\t{record.kind}\t{status}\t"
            f"{record.not_after:%Y-%m-%dT%H:%M:%SZ}\t{record.subject or '-'}"
        )


def _serial(text: str) -> int:
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        value = int(cleaned, 16)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a hexadecimal serial number") from exc
    if value <= 0:
        raise typer.BadParameter("a serial number is positive")
    return value


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    serial: str = typer.Argument(..., help="certificate serial number (hex, as printed)"),
    reason: RevocationReason = typer.Option(  # noqa: B008
        RevocationReason.UNSPECIFIED, "--reason", help="RFC 5280 reason"
    ),
    token: str | None = TOKEN_OPTION,
) -> None:
    """Revoke a certificate and its device's whole line (security officer).

    Every certificate of the same device still valid (those it was renewed
    from and those renewed from it) is revoked too; all are refused on their
    next request and listed by the CRL and OCSP.
    """
    context = cli_context(ctx)
    officer = context.acting_as(token)
    if officer.role is not Role.SECURITY_OFFICER:
        raise ForbiddenError(
            f"revoking needs the role security_officer; {officer.name} is {officer.role}"
        )
    revoked = context.runtime.edge_pki.revoke(
        _serial(serial), reason, actor=officer.name, now=utcnow()
    )
    typer.echo(
        f"revoked {revoked.serial:x} ({revoked.reason}) at {revoked.revoked_at:%Y-%m-%dT%H:%M:%SZ}"
    )
    others = [entry for entry in revoked.revoked if entry.serial != revoked.serial]
    for entry in others:
        typer.echo(f"  and {entry.serial:x} of the same device ({entry.reason})")
