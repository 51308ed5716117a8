"""``ibx edge``: bootstrap tokens (enterprise), the device client, and pulling sealed readings.

``token create`` and ``readings pull`` act as the identity of ``--token``/
``IBX_TOKEN`` (an enterprise). ``enroll``, ``renew`` and ``upload`` run on the
device: its key is generated there and never leaves it.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import os
import re
import ssl
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import typer

from consent import EnterpriseKey
from core.clock import utcnow
from edge_tls import (
    DeviceCredentials,
    DeviceId,
    EnrollmentError,
    ReadingBatch,
    SealedBatchError,
    build_csr,
    open_batch,
    parse_est_response,
    seal_batch,
    sealing_public_key,
)
from exchange.cli._context import EXCHANGE_OPTION, TOKEN_OPTION, cli_context
from exchange.errors import AuthError, ForbiddenError
from exchange.identities import Identity, Role

__all__ = ["app"]

app = typer.Typer(help="Edge terminals: bootstrap tokens, enrolment, renewal, sealed readings.")
token_app = typer.Typer(help="One-time bootstrap tokens (an enterprise, for its devices).")
readings_app = typer.Typer(help="Sealed readings uploaded by devices.")
app.add_typer(token_app, name="token")
app.add_typer(readings_app, name="readings")

_DIR_OPTION = typer.Option(
    Path(".ibx-edge"),
    "--dir",
    envvar="IBX_EDGE_DIR",
    help="the device's credential directory (from `ibx edge enroll --out`)",
)
_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TIMEOUT = 30.0


def _ttl(text: str | None) -> timedelta | None:
    if text is None:
        return None
    match = _TTL.fullmatch(text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r}: use e.g. 30m, 24h or 7d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _enterprise(identity: Identity, enterprise: str | None = None) -> Identity:
    if identity.role is not Role.ENTERPRISE:
        raise ForbiddenError(f"this needs the role enterprise; {identity.name} is {identity.role}")
    if enterprise is not None and identity.name != enterprise:
        raise ForbiddenError(f"{identity.name} may create tokens only for its own devices")
    return identity


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    *,
    enterprise: str = typer.Option(..., "--enterprise", help="the enterprise (you)"),
    device: str = typer.Option(..., "--device", help="the device's name"),
    ttl: str | None = typer.Option(None, "--ttl", help="lifetime, e.g. 30m, 24h [default 24h]"),
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
) -> None:
    """Create a one-time bootstrap token for a device; printed once, as the last line."""
    lifetime = _ttl(ttl)
    if exchange:
        secret, expires = _create_remote(exchange, token, enterprise, device, lifetime)
    else:
        context = cli_context(ctx)
        caller = _enterprise(context.acting_as(token), enterprise)
        try:
            device_id = DeviceId(caller.name, device)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        issued = context.runtime.edge_pki.create_token(
            device_id, actor=caller.name, now=utcnow(), ttl=lifetime
        )
        secret, expires = issued.token, issued.expires_at
    typer.echo(
        f"bootstrap token for {enterprise}/{device}, one use, expires {expires:%Y-%m-%dT%H:%M:%SZ}"
    )
    typer.echo(secret)


def _create_remote(
    exchange: str, token: str | None, enterprise: str, device: str, ttl: timedelta | None
) -> tuple[str, datetime]:
    if not token:
        raise AuthError("a bearer token is required (--token or IBX_TOKEN)")
    body: dict[str, object] = {"device": device}
    if ttl is not None:
        body["ttl_seconds"] = int(ttl.total_seconds())
    response = httpx.post(
        exchange.rstrip("/") + "/v1/edge/tokens",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=_TIMEOUT,
    )
    if response.status_code != 201:
        raise EnrollmentError(
            f"the exchange refused ({response.status_code}): {response.text.strip()}"
        )
    answer = response.json()
    if answer["enterprise"] != enterprise:
        raise ForbiddenError(f"that token is {answer['enterprise']}'s, not {enterprise}'s")
    return str(answer["token"]), datetime.fromisoformat(answer["expires_at"])


def _tls(ca: Path, credentials: DeviceCredentials | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if credentials is not None:
        context.load_cert_chain(credentials.cert_path, credentials.key_path)
    return context


def _refused(response: httpx.Response, what: str) -> EnrollmentError:
    return EnrollmentError(f"{what} refused ({response.status_code}): {response.text.strip()}")


def _est_headers() -> dict[str, str]:
    return {"Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "base64"}


@app.command("enroll")
def enroll(
    *,
    server: str = typer.Option(..., "--server", help="the exchange's edge URL, https://host:port"),
    ca_bundle: Path = typer.Option(..., "--ca-bundle", help="CA bundle (ibx pki ca-bundle)"),  # noqa: B008
    device: str = typer.Option(..., "--device", help="this device's name"),
    bootstrap: str = typer.Option(..., "--token", help="the one-time bootstrap token"),
    out: Path = typer.Option(..., "--out", help="directory for the key and certificate"),  # noqa: B008
    enterprise_key: str | None = typer.Option(
        None,
        "--enterprise-key",
        help="pin the enterprise's Ed25519 public key (base64): uploads refuse any other",
    ),
) -> None:
    """Generate a key here, enrol it over EST with the bootstrap token, save the certificate."""
    if enterprise_key is not None:
        try:
            sealing_public_key(base64.b64decode(enterprise_key, validate=True))
        except (ValueError, binascii.Error) as exc:
            raise typer.BadParameter(f"--enterprise-key: {exc}") from exc
    credentials = DeviceCredentials(out)
    key = credentials.new_key()
    with httpx.Client(verify=_tls(ca_bundle), timeout=_TIMEOUT) as client:
        response = client.post(
            server.rstrip("/") + "/.well-known/est/simpleenroll",
            content=build_csr(key, device),
            headers=_est_headers(),
            auth=(device, bootstrap.strip()),
        )
    if response.status_code != 200:
        raise _refused(response, "enrolment")
    cert = parse_est_response(response.content)
    credentials.save(
        key,
        cert,
        server=server.rstrip("/"),
        device=device,
        ca_pem=ca_bundle.read_bytes(),
        enterprise_key=enterprise_key,
    )
    typer.echo(f"enrolled {device}: serial {cert.serial_number:x}")
    typer.echo(f"valid until {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}; files in {out}")


@app.command("renew")
def renew(directory: Path = _DIR_OPTION) -> None:
    """Re-enrol over mutual TLS with the current certificate and a new key."""
    credentials = DeviceCredentials(directory)
    server, device = credentials.server(), credentials.device()
    key = credentials.new_key()
    with httpx.Client(verify=_tls(credentials.ca_path, credentials), timeout=_TIMEOUT) as client:
        response = client.post(
            server + "/.well-known/est/simplereenroll",
            content=build_csr(key, device),
            headers=_est_headers(),
        )
    if response.status_code != 200:
        raise _refused(response, "renewal")
    cert = parse_est_response(response.content)
    credentials.save(key, cert, server=server, device=device)
    typer.echo(f"renewed {device}: serial {cert.serial_number:x}")
    typer.echo(f"valid until {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")


@app.command("upload")
def upload(
    file: Path = typer.Argument(..., help="a CSV file of readings"),  # noqa: B008
    directory: Path = _DIR_OPTION,
) -> None:
    """Seal a CSV batch to this device's enterprise and upload it over mutual TLS."""
    credentials = DeviceCredentials(directory)
    server = credentials.server()
    plaintext = file.read_bytes()
    with httpx.Client(verify=_tls(credentials.ca_path, credentials), timeout=_TIMEOUT) as client:
        key_response = client.get(server + "/v1/edge/sealing-key")
        if key_response.status_code != 200:
            raise _refused(key_response, "sealing key")
        sealing_key = base64.b64decode(key_response.json()["x25519_public_key"])
        pinned = credentials.pinned_enterprise_key()
        if pinned is not None and sealing_public_key(base64.b64decode(pinned)) != sealing_key:
            raise SealedBatchError(
                "the exchange offered a sealing key that is not the pinned enterprise key; "
                "nothing was uploaded"
            )
        response = client.post(
            server + "/v1/edge/readings",
            content=seal_batch(plaintext, sealing_key),
            headers={"Content-Type": "application/octet-stream"},
        )
    if response.status_code != 201:
        raise _refused(response, "upload")
    body = response.json()
    typer.echo(f"uploaded sealed batch {body['batch']} sha256 {body['sha256']}")


def _fetch_remote(exchange: str, token: str | None, after: int) -> list[ReadingBatch]:
    if not token:
        raise AuthError("a bearer token is required (--token or IBX_TOKEN)")
    response = httpx.get(
        exchange.rstrip("/") + "/v1/edge/readings",
        params={"after": after, "limit": 1000},
        headers={"Authorization": f"Bearer {token}"},
        timeout=_TIMEOUT,
    )
    if response.status_code != 200:
        raise AuthError(f"the exchange refused ({response.status_code}): {response.text.strip()}")
    return [
        ReadingBatch(
            id=int(b["id"]),
            enterprise="",
            device=str(b["device"]),
            sha256=str(b["sha256"]),
            ciphertext=base64.b64decode(b["ciphertext"]),
            received_at=utcnow(),
        )
        for b in response.json()["batches"]
    ]


def _append(out: Path, batch: ReadingBatch, plaintext: bytes) -> int:
    try:
        rows = list(csv.reader(io.StringIO(plaintext.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SealedBatchError(f"batch {batch.id} from {batch.device} is not UTF-8 CSV") from exc
    if not rows:
        return 0
    header = ["batch", "device", *rows[0]]
    exists = out.exists() and out.stat().st_size > 0
    if exists:
        with out.open(newline="") as handle:
            current = next(csv.reader(handle), [])
        if current != header:
            raise SealedBatchError(
                f"batch {batch.id} has columns {rows[0]}, but {out} has {current[2:]}"
            )
    if not exists:  # opened plaintext: readable by the enterprise's user only
        os.close(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    with out.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if not exists:
            writer.writerow(header)
        for row in rows[1:]:
            writer.writerow([batch.id, batch.device, *row])
    return len(rows) - 1


@readings_app.command("pull")
def pull(
    ctx: typer.Context,
    *,
    key: Path = typer.Option(  # noqa: B008
        ..., "--key", help="the enterprise key file written by `ibx consent keygen`"
    ),
    out: Path = typer.Option(..., "--out", help="CSV dataset to append the readings to"),  # noqa: B008
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
) -> None:
    """Fetch this enterprise's new sealed batches, open them locally, append to a CSV."""
    seed = EnterpriseKey.load(key).signer.seed()  # the file `ibx consent keygen` wrote
    cursor_path = out.with_name(out.name + ".cursor")
    after = int(cursor_path.read_text()) if cursor_path.exists() else 0
    if exchange:
        batches = _fetch_remote(exchange, token, after)
    else:
        context = cli_context(ctx)
        caller = _enterprise(context.acting_as(token))
        batches = context.runtime.edge_readings.batches(caller.name, after=after)
    rows = 0
    for batch in batches:
        rows += _append(out, batch, open_batch(batch.ciphertext, seed))
        cursor_path.write_text(f"{batch.id}\n")
    typer.echo(f"opened {len(batches)} batches, appended {rows} rows to {out}")
