"""``ibx pki``: the edge certificate authority (on the server's data dir).

``revoke`` is a security officer's user command: it goes through the exchange's
API as the identity of ``--token`` (locally in-process, or ``--exchange URL``),
signed with the officer's own key file (``--key``): a ``certificate.revoke``
duty on the serial, verified by the exchange against the officer's ledgered key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import typer

from core.canonical import JsonValue
from core.clock import format_rfc3339, parse_rfc3339, utcnow
from edge_tls import CertificateRecord, RevocationReason, fingerprint
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
    cli_context,
)
from exchange.cli._output import JSON_OPTION, Table, emit_json, emit_records, emit_table

__all__ = ["app"]

app = typer.Typer(help="The edge certificate authority (on the server's data dir).")

_STAMP = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class CertificateListing:
    """One issued certificate as ``pki list --json`` prints it, with its state at ``now``."""

    record: CertificateRecord
    now: datetime

    @property
    def status(self) -> str:
        """``revoked``, ``expired`` or ``valid``."""
        if self.record.revoked_at is not None:
            return "revoked"
        if self.record.not_after <= self.now:
            return "expired"
        return "valid"

    def to_dict(self) -> dict[str, JsonValue]:
        """Stable JSON fields (the serial in lower-case hex, as printed and as revoke takes it)."""
        record = self.record
        return {
            "serial": f"{record.serial:x}",
            "kind": record.kind.value,
            "status": self.status,
            "not_after": format_rfc3339(record.not_after),
            "revoked_at": format_rfc3339(record.revoked_at) if record.revoked_at else None,
            "subject": record.subject,
            "sha256": record.fingerprint,
        }


@app.command("init")
def init(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Create the root and issuing CA (ECDSA P-256), keys encrypted under the master key."""
    ca = cli_context(ctx).runtime.edge_pki.init(actor="sysadmin", now=utcnow())
    if as_json:
        emit_json(
            {
                "root": {
                    "subject": ca.root.subject.rfc4514_string(),
                    "sha256": fingerprint(ca.root),
                },
                "issuing": {
                    "subject": ca.issuing.subject.rfc4514_string(),
                    "sha256": fingerprint(ca.issuing),
                },
            }
        )
        return
    typer.echo(f"root CA     {ca.root.subject.rfc4514_string()}  sha256 {fingerprint(ca.root)}")
    typer.echo(
        f"issuing CA  {ca.issuing.subject.rfc4514_string()}  sha256 {fingerprint(ca.issuing)}"
    )


@app.command("fingerprint")
def fingerprint_(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Print the root certificate's SHA-256: hand it to users for ``ibx login --ca-fingerprint``."""
    digest = fingerprint(cli_context(ctx).runtime.edge_pki.authority().root)
    if as_json:
        emit_json({"sha256": digest})
        return
    typer.echo(digest)


@app.command("ca-bundle")
def ca_bundle(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Print the CA chain in PEM (issuing CA, then root): the devices' trust bundle."""
    authority = cli_context(ctx).runtime.edge_pki.authority()
    if as_json:
        emit_json(
            {
                "chain_pem": authority.chain_pem(),
                "root_sha256": fingerprint(authority.root),
                "issuing_sha256": fingerprint(authority.issuing),
            }
        )
        return
    typer.echo(authority.chain_pem(), nl=False)


@app.command("list")
def list_(
    ctx: typer.Context,
    enterprise: str | None = typer.Option(None, "--enterprise", help="only this enterprise's"),
    as_json: bool = JSON_OPTION,
) -> None:
    """List issued certificates: serial, kind, status, expiry, identity."""
    now = utcnow()
    listings = [
        CertificateListing(record, now)
        for record in cli_context(ctx).runtime.edge_pki.certificates(enterprise=enterprise)
    ]
    if as_json:
        emit_records(listings)
        return
    emit_table(
        Table.build(
            ("serial", "kind", "status", "not after", "subject"),
            (
                (
                    f"{c.record.serial:x}",
                    str(c.record.kind),
                    c.status,
                    f"{c.record.not_after:{_STAMP}}",
                    c.record.subject or "-",
                )
                for c in listings
            ),
        )
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
def revoke(  # noqa: PLR0917 -- typer maps each option to a parameter
    ctx: typer.Context,
    serial: str = typer.Argument(..., help="certificate serial number (hex, as printed)"),
    reason: RevocationReason = typer.Option(  # noqa: B008
        RevocationReason.UNSPECIFIED, "--reason", help="RFC 5280 reason"
    ),
    key_file: Path = typer.Option(  # noqa: B008
        ...,
        "--key",
        help="your officer key file (Ed25519, mode 0600): the revocation is signed with it here",
    ),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Revoke a certificate and its device's whole line (security officer, signed with --key).

    Every certificate of the same device still valid (those it was renewed
    from and those renewed from it) is revoked too; all are refused on their
    next request and listed by the CRL and OCSP. Acts as the identity of
    ``--token`` through the exchange's API (``--exchange URL`` for a remote one).
    """
    from exchange.cli._api_client import user_client
    from exchange.cli._duties import sign_as_caller
    from exchange.schemas.pki import RevocationPublic

    number = _serial(serial)
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        duty = sign_as_caller(
            client, key_file, "certificate.revoke", f"{number:x}", {"reason": reason.value}
        )
        answer = client.post(
            f"/v1/pki/certificates/{number:x}/revocation",
            {"reason": reason.value, "duty": duty.to_dict()},
        )
    revoked = RevocationPublic.model_validate(answer)
    if as_json:
        emit_json(revoked.to_dict())
        return
    typer.echo(
        f"revoked {revoked.serial} ({revoked.reason}) at "
        f"{parse_rfc3339(revoked.revoked_at):%Y-%m-%dT%H:%M:%SZ}"
    )
    others = [entry for entry in revoked.revoked if entry.serial != revoked.serial]
    for entry in others:
        typer.echo(f"  and {entry.serial} of the same device ({entry.reason})")
