"""``ibx identity``: server-side administration of the identity registry.

Administrators (security officers, auditors, witnesses, system administrators)
hold an Ed25519 key (``ibx identity keygen``) and are registered and revoked
only with a security officer's signed duty: ``--key OFFICER_KEYFILE`` signs it
here, on the officer's side, and the registry verifies it against the key the
ledger records for the officer. Certificate revocations are signed the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from core.canonical import JsonValue
from core.clock import format_rfc3339, utcnow
from core.keys import Ed25519PublicKey
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    TOKEN_OPTION,
    Remote,
    cli_context,
)
from exchange.cli._output import JSON_OPTION, Table, emit_json, emit_records, emit_table
from exchange.identities import Identity, IdentityError, Role

if TYPE_CHECKING:
    from exchange.admin_certs import AdminCredentials
    from exchange.runtime import Runtime

__all__ = ["app"]

app = typer.Typer(help="Create, list and revoke identities (on the server's data dir).")

_OFFICER_KEY_HELP = (
    "administrators: the security officer's key file (Ed25519, mode 0600) that signs this act here"
)
_OFFICER_HELP = "the signing security officer [default: the active officer holding --key]"


def _public_key(text: str) -> Ed25519PublicKey:
    """A base64 key, or a file holding one (a bare line, or a key file's ``public_key``).

    Raises:
        IdentityError: neither a key nor a readable file holding one.
    """
    path = Path(text)
    if len(text) < 4096 and path.is_file():
        content = path.read_text(encoding="utf-8").strip()
        if content.startswith("{"):
            import json

            try:
                loaded = json.loads(content)
            except ValueError as exc:
                raise IdentityError(f"--public-key: {path} is not a key file") from exc
            found = loaded.get("public_key") if isinstance(loaded, dict) else None
            if not isinstance(found, str):
                raise IdentityError(f"--public-key: {path} names no public_key")
            content = found
        text = content
    try:
        return Ed25519PublicKey.from_base64(text.strip())
    except ValueError as exc:
        raise IdentityError(f"--public-key: {exc}") from exc


_CERT_OUT_HELP = (
    "administrators: write NAME.crt and NAME.key (mode 0600), the client certificate "
    "they present with their token (second factor), into this directory"
)


def _issue_certificate(runtime: Runtime, name: str, out: Path) -> tuple[AdminCredentials, Path]:
    """Issue ``name``'s client certificate (creating the deployment CA if there is none)
    and write it into ``out``; the credentials and the certificate's path."""
    from exchange.deployment_ca import ensure_deployment_ca

    existing = out / f"{name}.key"
    if existing.is_file() and not existing.read_bytes().lstrip().startswith(b"-----BEGIN"):
        raise typer.BadParameter(
            f"{existing} is not a TLS key from an earlier certificate (an officer's signing "
            "key file?); it is not overwritten: choose another directory",
            param_hint="--out/--cert-out",
        )
    now = utcnow()
    ca = ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=now)
    if ca.created:
        typer.echo("created the deployment CA (ibx pki fingerprint prints its root)", err=True)
    credentials = runtime.admin_certificates.issue(name, actor="sysadmin", now=now)
    cert_path, _key_path = credentials.write(out)
    return credentials, cert_path


def _certificate_dict(credentials: AdminCredentials, cert_path: Path) -> dict[str, JsonValue]:
    return {
        "serial": format(credentials.serial, "x"),
        "sha256": credentials.fingerprint,
        "not_after": format_rfc3339(credentials.not_after),
        "certificate": str(cert_path),
        "key": str(cert_path.with_suffix(".key")),
        "superseded": list(credentials.superseded),
    }


def _certificate_line(credentials: AdminCredentials, cert_path: Path) -> str:
    return (
        f"client certificate {credentials.serial:x} for {credentials.name} in {cert_path} "
        f"(key {cert_path.with_suffix('.key')}, mode 0600), expires "
        f"{credentials.not_after:%Y-%m-%d}"
    )


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


_EXCHANGE_OPTION = typer.Option(
    None,
    "--exchange",
    help="register through a running exchange's API, https://HOST:PORT (system administrator)",
    show_default=False,
)


def _create_remotely(
    ctx: typer.Context,
    body: dict[str, JsonValue],
    officer_key: Path | None,
    officer: str | None,
    remote: Remote,
    *,
    token: str | None,
    as_json: bool,
) -> None:
    """``identity create --exchange``: sign the officer's duty here, register over the API."""
    from exchange.cli._api_client import user_client
    from exchange.cli._duties import sign_as_caller
    from exchange.schemas.identities import NewIdentity

    with user_client(
        ctx,
        token,
        exchange=remote.exchange,
        ca_bundle=remote.ca_bundle,
        client_cert=remote.client_cert,
        client_key=remote.client_key,
    ) as client:
        if officer_key is not None:
            if officer is None:
                raise IdentityError(
                    "--officer NAME: the officer whose --key signs (with --exchange)"
                )
            details = {"role": body["role"], "public_key": body["public_key"]}
            duty = sign_as_caller(
                client, officer_key, "identity.create", str(body["name"]), details, actor=officer
            )
            body = {**body, "duty": duty.to_dict()}
        made = NewIdentity.model_validate(client.post("/v1/identities", body))
    if as_json:
        emit_json(made.to_dict())
        return
    typer.echo(f"created {made.name} ({made.role}) through the exchange")
    typer.echo(made.token)


@app.command("keygen")
def keygen(
    out: Path = typer.Option(..., "--out", help="where to write the private key (mode 0600)"),  # noqa: B008
    as_json: bool = JSON_OPTION,
) -> None:
    """Generate an administrator's Ed25519 key pair locally; print the public key.

    Give the public key to the security officer who registers you
    (``ibx identity create --public-key``); keep the file: you sign your duties with it.
    """
    from consent import EnterpriseKey

    key = EnterpriseKey.generate(out)
    public = key.signer.public_key
    if as_json:
        emit_json(
            {
                "key_file": str(out),
                "public_key": public.to_base64(),
                "key_fingerprint": public.fingerprint(),
            }
        )
        return
    typer.echo(f"wrote {out} (mode 0600; keep it private, the exchange never sees it)")
    typer.echo(public.to_base64())


@app.command("create")
def create(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    role: Role = typer.Option(..., "--role", help="the identity's role"),  # noqa: B008
    name: str = typer.Option(..., "--name", help="unique name"),
    public_key: str | None = typer.Option(
        None,
        "--public-key",
        help="Ed25519 public key, base64 or a file holding it (administrators: required)",
    ),
    industry: str | None = typer.Option(
        None, "--industry", help="industry slug, e.g. lithium-battery (sub-brains, enterprises)"
    ),
    cert_out: Path | None = typer.Option(  # noqa: B008
        None, "--cert-out", help=_CERT_OUT_HELP, file_okay=False
    ),
    officer_key: Path | None = typer.Option(None, "--key", help=_OFFICER_KEY_HELP),  # noqa: B008
    officer: str | None = typer.Option(None, "--officer", help=_OFFICER_HELP),
    as_json: bool = JSON_OPTION,
    exchange: str | None = _EXCHANGE_OPTION,
    token: str | None = TOKEN_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Create an identity; its bearer token is printed once, as the last line.

    An administrator (security_officer, auditor, witness, sysadmin) needs
    ``--public-key`` and ``--key OFFICER_KEYFILE``: the officer's
    ``identity.create`` duty is signed here and recorded with the registration.
    With ``--exchange URL`` the system administrator's ``--token`` registers it
    through the API (``--officer NAME`` names the signing officer).
    """
    from exchange.access import ADMIN_ROLES
    from exchange.identities import ADMINISTRATIVE_ROLES

    key = _public_key(public_key) if public_key is not None else None
    if cert_out is not None and (role not in ADMIN_ROLES or exchange is not None):
        raise IdentityError(
            f"--cert-out: only administrators (sysadmin, security_officer, auditor) hold "
            f"client certificates, not {role}; issued on the server (not with --exchange)"
        )
    if role in ADMINISTRATIVE_ROLES and (key is None or officer_key is None):
        raise IdentityError(
            f"an administrator ({role}) is registered with its --public-key and a security "
            "officer's signature: --key OFFICER_KEYFILE (ibx identity keygen makes keys)"
        )
    if role not in ADMINISTRATIVE_ROLES and officer_key is not None:
        raise IdentityError(f"--key: {role} identities are registered without an officer's duty")
    details: dict[str, JsonValue] = {
        "role": role.value,
        "public_key": key.to_base64() if key else None,
    }
    if exchange is not None:
        _create_remotely(
            ctx,
            {
                "name": name,
                "role": role.value,
                "industry": industry,
                "public_key": details["public_key"],
            },
            officer_key,
            officer,
            Remote(exchange, ca_bundle, client_cert, client_key),
            token=token,
            as_json=as_json,
        )
        return
    runtime = cli_context(ctx).runtime
    duty = None
    if officer_key is not None:
        from exchange.cli._duties import sign_as_officer

        duty = sign_as_officer(
            runtime, officer_key, "identity.create", name, details, officer=officer
        )
    issued = runtime.identities.create(name, role, public_key=key, industry=industry, duty=duty)
    ident = issued.identity
    certificate = _issue_certificate(runtime, name, cert_out) if cert_out is not None else None
    if as_json:
        extra: dict[str, JsonValue] = {"token": issued.token}
        if certificate is not None:
            extra["client_certificate"] = _certificate_dict(*certificate)
        emit_json({**IdentityListing(ident).to_dict(), **extra})
        return
    typer.echo(
        f"created {ident.name} ({ident.role}), token expires {ident.token_expires_at:%Y-%m-%d}"
    )
    if certificate is not None:
        typer.echo(_certificate_line(*certificate))
    elif role in ADMIN_ROLES:
        typer.echo(
            f"{ident.name} needs a client certificate too (second factor): "
            f"ibx identity cert {ident.name} --out DIR",
            err=True,
        )
    typer.echo(issued.token)


@app.command("cert")
def cert(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the administrator to certify"),
    out: Path = typer.Option(  # noqa: B008
        ..., "--out", help="directory for NAME.crt and NAME.key", file_okay=False
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """(Re-)issue an administrator's client certificate; the previous one stops working."""
    credentials, cert_path = _issue_certificate(cli_context(ctx).runtime, name, out)
    if as_json:
        emit_json({"name": name, **_certificate_dict(credentials, cert_path)})
        return
    typer.echo(_certificate_line(credentials, cert_path))
    if credentials.superseded:
        typer.echo(f"superseded: {', '.join(credentials.superseded)}")


@app.command("cert-revoke")
def cert_revoke(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the administrator whose certificate to revoke"),
    officer_key: Path = typer.Option(  # noqa: B008
        ..., "--key", help="the security officer's key file that signs the revocation"
    ),
    officer: str | None = typer.Option(None, "--officer", help=_OFFICER_HELP),
    reason: str = typer.Option("unspecified", "--reason", help="why (RFC 5280 reason name)"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke an administrator's client certificate (signed by a security officer's --key):
    it is refused on its next request."""
    from exchange.cli._duties import sign_as_officer
    from exchange.identities import IdentityConflictError

    runtime = cli_context(ctx).runtime
    valid = [
        record
        for record in runtime.admin_certificates.certificates(name)
        if record.revoked_at is None
    ]
    if not valid:
        raise IdentityConflictError(f"{name} holds no unrevoked client certificate")
    serials: tuple[str, ...] = ()
    for record in valid:
        serial = format(record.serial, "x")
        duty = sign_as_officer(
            runtime,
            officer_key,
            "certificate.revoke",
            serial,
            {"reason": reason},
            officer=officer,
        )
        serials += runtime.admin_certificates.revoke(name, duty=duty, now=utcnow())
    if as_json:
        emit_json({"name": name, "revoked": list(serials)})
        return
    typer.echo(f"revoked the client certificate {', '.join(serials)} of {name}")


@app.command("rotate-token")
def rotate_token(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="the identity whose token to replace"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Replace an identity's token (e.g. a lost one); printed once, as the last line.

    The old token stops working at once.
    """
    issued = cli_context(ctx).runtime.identities.rotate_token(name, actor="sysadmin")
    ident = issued.identity
    if as_json:
        emit_json({**IdentityListing(ident).to_dict(), "token": issued.token})
        return
    typer.echo(
        f"rotated the token of {ident.name}: the old one no longer works; the new one "
        f"expires {ident.token_expires_at:%Y-%m-%d}"
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
    officer_key: Path | None = typer.Option(None, "--key", help=_OFFICER_KEY_HELP),  # noqa: B008
    officer: str | None = typer.Option(None, "--officer", help=_OFFICER_HELP),
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke an identity: its token stops working at once.

    An administrator is revoked only with a security officer's ``identity.revoke``
    duty, signed here with ``--key OFFICER_KEYFILE``.
    """
    from exchange.cli._duties import sign_as_officer
    from exchange.identities import ADMINISTRATIVE_ROLES

    runtime = cli_context(ctx).runtime
    current = runtime.identities.get(name)
    duty = None
    if current.role in ADMINISTRATIVE_ROLES:
        if officer_key is None:
            raise IdentityError(
                f"{name} is a {current.role}: revoking an administrator needs a security "
                "officer's signature (--key OFFICER_KEYFILE)"
            )
        duty = sign_as_officer(
            runtime,
            officer_key,
            "identity.revoke",
            name,
            {"role": current.role.value},
            officer=officer,
        )
    ident = runtime.identities.revoke(name, duty=duty)
    if as_json:
        emit_json(IdentityListing(ident).to_dict())
        return
    typer.echo(f"revoked {ident.name}")
