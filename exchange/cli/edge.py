"""``ibx edge``: bootstrap tokens (enterprise), the device client, and pulling sealed readings.

``token create`` and ``readings pull`` act as the identity of ``--token``/
``IBX_TOKEN`` (an enterprise). ``enroll``, ``renew`` and ``upload`` run on the
device: its key is generated there and never leaves it; ``upload`` signs each
batch with it inside the sealed box, and ``readings pull`` verifies that
signature against the CA bundle the enterprise pinned. ``renew --daemon``
keeps running and renews at two thirds of each certificate's lifetime (the
timing rules are ``edge_tls.RenewalSchedule``, the loop ``edge_tls.RenewalDaemon``;
this module only wires signals, ``--exec`` and stderr to them).

``readings pull`` never stops at a batch it cannot use: it names each one it
skips (one line on stderr, and in ``<out>.skipped``), carries on, and exits
with :data:`EXIT_SKIPPED` (6, "partial") when it skipped any, 0 when it skipped none.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import os
import re
import shlex
import signal
import ssl
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType

import httpx
import typer
from cryptography import x509

from consent import EnterpriseKey
from core.clock import utcnow
from edge_tls import (
    BatchOpener,
    DeviceCredentials,
    DeviceId,
    EnrollmentError,
    ReadingBatch,
    ReadingsError,
    Renewal,
    RenewalDaemon,
    RenewalSchedule,
    SealedBatchError,
    StopSignal,
    VerifiedBatch,
    build_csr,
    parse_est_response,
    reenroll,
    seal_batch,
    sealing_public_key,
    sign_batch,
)
from exchange.cli._context import EXCHANGE_OPTION, TOKEN_OPTION, cli_context
from exchange.cli._output import JSON_OPTION, emit_json
from exchange.error_table import AuthError, ExitCode, ForbiddenError, RemoteRefusalError
from exchange.identities import Identity, Role

__all__ = ["EXIT_SKIPPED", "app"]

EXIT_SKIPPED = ExitCode.PARTIAL
"""``readings pull`` exit status when it skipped at least one batch (the rest were appended)."""

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
_EXEC_TIMEOUT = 300.0


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
        raise ForbiddenError(f"{identity.name} acts for its own devices only, not {enterprise}'s")
    return identity


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    *,
    enterprise: str = typer.Option(..., "--enterprise", help="the enterprise (you)"),
    device: str = typer.Option(..., "--device", help="the device's name"),
    ttl: str | None = typer.Option(None, "--ttl", help="lifetime, e.g. 30m, 24h [default 24h]"),
    as_json: bool = JSON_OPTION,
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
    if as_json:
        emit_json(
            {
                "enterprise": enterprise,
                "device": device,
                "expires_at": f"{expires:%Y-%m-%dT%H:%M:%SZ}",
                "token": secret,
            }
        )
        return
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


def _refused(response: httpx.Response, what: str) -> RemoteRefusalError:
    """The exchange's refusal, with its status (for the exit code) and its problem detail."""
    title: str | None = None
    detail = response.text.strip()
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        try:
            problem = response.json()
        except ValueError:
            problem = None
        if isinstance(problem, dict):
            title = str(problem.get("title") or "") or None
            detail = str(problem.get("detail") or title or detail)
    return RemoteRefusalError(
        f"{what} refused ({response.status_code}): {detail}",
        status=response.status_code,
        title=title,
    )


def _est_headers() -> dict[str, str]:
    return {"Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "base64"}


@app.command("enroll")
def enroll(
    *,
    server: str = typer.Option(..., "--server", help="the exchange's edge URL, https://host:port"),
    ca_bundle: Path = typer.Option(..., "--ca-bundle", help="CA bundle (ibx pki ca-bundle)"),  # noqa: B008
    device: str = typer.Option(..., "--device", help="this device's name"),
    bootstrap: str = typer.Option(
        ...,
        "--token",
        envvar="IBX_BOOTSTRAP_TOKEN",
        help="the one-time bootstrap token (or IBX_BOOTSTRAP_TOKEN, to keep it out of ps)",
    ),
    out: Path = typer.Option(..., "--out", help="directory for the key and certificate"),  # noqa: B008
    enterprise_key: str | None = typer.Option(
        None,
        "--enterprise-key",
        help="pin the enterprise's Ed25519 public key (base64): uploads refuse any other",
    ),
    as_json: bool = JSON_OPTION,
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
    if as_json:
        emit_json(_certificate_fields(device, cert, out))
        return
    typer.echo(f"enrolled {device}: serial {cert.serial_number:x}")
    typer.echo(f"valid until {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}; files in {out}")


@app.command("renew")
def renew(
    directory: Path = _DIR_OPTION,
    daemon: bool = typer.Option(
        False,
        "--daemon",
        help="keep running: renew at two thirds of each certificate's lifetime "
        "(like step ca renew --daemon); stop with SIGTERM or Ctrl-C",
    ),
    renew_period: str | None = typer.Option(
        None,
        "--renew-period",
        help="with --daemon: renew this often instead, e.g. 90s, 30m, 12h "
        "(never later than the two-thirds point)",
    ),
    exec_command: str | None = typer.Option(
        None,
        "--exec",
        help="run this command after each renewal, e.g. to reload a service "
        "(no shell; IBX_EDGE_CERT, IBX_EDGE_KEY and IBX_EDGE_SERIAL are set)",
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Re-enrol over mutual TLS with the current certificate and a new key (EST simplereenroll).

    With --daemon it keeps the certificate renewed: at two thirds of its
    lifetime, retrying failures with exponential backoff (30 s doubling to
    10 min, jittered) until the certificate expires. It exits 4 with one line
    when renewal has become impossible (revoked, superseded, expired: enrol
    again with a new bootstrap token), and 0 on SIGTERM or SIGINT, never
    leaving a half-written file.
    """
    if renew_period is not None and not daemon:
        raise typer.BadParameter("--renew-period needs --daemon")
    period = _ttl(renew_period)
    if period is not None and period <= timedelta(0):
        raise typer.BadParameter("--renew-period must be positive")
    command = _exec_argv(exec_command)
    credentials = DeviceCredentials(directory)
    if daemon:
        if as_json:
            raise typer.BadParameter("--json prints one renewal; the daemon logs to stderr")
        _renew_daemon(credentials, RenewalSchedule(period=period), command)
        return
    finished = credentials.finish_pending()
    if finished is not None:
        typer.echo(f"{directory}: {finished}", err=True)
    device = credentials.device()
    cert = reenroll(credentials, timeout=_TIMEOUT)
    if as_json:
        emit_json(_certificate_fields(device, cert, directory))
    else:
        typer.echo(f"renewed {device}: serial {cert.serial_number:x}")
        typer.echo(f"valid until {cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}")
    if command:
        _run_exec(command, credentials, cert.serial_number)


def _certificate_fields(device: str, cert: x509.Certificate, directory: Path) -> dict[str, str]:
    """``enroll --json`` and ``renew --json``: the device, its new certificate, where it is."""
    return {
        "device": device,
        "serial": f"{cert.serial_number:x}",
        "not_after": f"{cert.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}",
        "directory": str(directory),
    }


def _exec_argv(text: str | None) -> list[str]:
    if text is None:
        return []
    try:
        argv = shlex.split(text)
    except ValueError as exc:
        raise typer.BadParameter(f"--exec: {exc}") from exc
    if not argv:
        raise typer.BadParameter("--exec: an empty command")
    return argv


def _log(line: str) -> None:
    typer.echo(f"{utcnow():%Y-%m-%dT%H:%M:%SZ} ibx edge renew: {line}", err=True)


def _run_exec(argv: list[str], credentials: DeviceCredentials, serial: int) -> None:
    """Run the --exec command; a failure is reported, never fatal (the renewal is done)."""
    env = {
        **os.environ,
        "IBX_EDGE_CERT": str(credentials.cert_path),
        "IBX_EDGE_KEY": str(credentials.key_path),
        "IBX_EDGE_SERIAL": format(serial, "x"),
    }
    try:
        done = subprocess.run(argv, env=env, check=False, timeout=_EXEC_TIMEOUT)  # noqa: S603
    except (OSError, subprocess.TimeoutExpired) as exc:
        _log(f"error: --exec {argv[0]} did not run: {exc}")
        return
    if done.returncode != 0:
        _log(f"error: --exec {argv[0]} exited with {done.returncode}")


def _renew_daemon(
    credentials: DeviceCredentials, schedule: RenewalSchedule, command: list[str]
) -> None:
    """Run the daemon with SIGTERM and SIGINT asking it to stop between steps."""

    def after(renewal: Renewal) -> None:
        if command:
            _run_exec(command, credentials, renewal.serial)

    with StopSignal() as stop:

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            RenewalDaemon(
                credentials,
                schedule,
                stop=stop,
                report=_log,
                after_renewal=after,
                timeout=_TIMEOUT,
            ).run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@app.command("upload")
def upload(
    file: Path = typer.Argument(..., help="a CSV file of readings"),  # noqa: B008
    directory: Path = _DIR_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Sign a CSV batch with this device's key, seal it to its enterprise, upload over mTLS."""
    credentials = DeviceCredentials(directory)
    server = credentials.server()
    readings = file.read_bytes()
    if not readings:
        raise typer.BadParameter(f"{file} is empty")
    signed = sign_batch(
        readings, credentials.private_key(), credentials.certificate(), now=utcnow()
    )
    plaintext = signed.to_bytes()
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
    if response.status_code == 429:
        wait = response.headers.get("retry-after", "?")
        raise SealedBatchError(f"upload refused (429): over this device's quota; retry in {wait} s")
    if response.status_code != 201:
        raise _refused(response, "upload")
    body = response.json()
    if as_json:
        emit_json({"batch": body["batch"], "sha256": body["sha256"]})
        return
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


def _rows(batch: VerifiedBatch) -> list[list[str]]:
    try:
        return list(csv.reader(io.StringIO(batch.readings.decode("utf-8"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SealedBatchError(f"batch {batch.batch_id} is not UTF-8 CSV") from exc


def _append(out: Path, batch: VerifiedBatch) -> int:
    rows = _rows(batch)
    if not rows:
        return 0
    header = ["batch", "device", *rows[0]]
    exists = out.exists() and out.stat().st_size > 0
    if exists:
        with out.open(newline="") as handle:
            current = next(csv.reader(handle), [])
        if current != header:
            raise SealedBatchError(f"it has columns {rows[0]}, but {out} has {current[2:]}")
    if not exists:  # opened plaintext: readable by the enterprise's user only
        os.close(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    with out.open("a", newline="") as handle:
        writer = csv.writer(handle)
        if not exists:
            writer.writerow(header)
        for row in rows[1:]:
            writer.writerow([batch.batch_id, batch.device.device, *row])
    return len(rows) - 1


def _trust(ca_bundle: Path | None, local_chain: str | None) -> list[x509.Certificate]:
    if ca_bundle is None and local_chain is None:
        raise typer.BadParameter(
            "--ca-bundle is required with --exchange: pin the deployment's CA bundle "
            "(`ibx pki ca-bundle` on the exchange, handed over out of band)"
        )
    try:
        pem = ca_bundle.read_bytes() if ca_bundle is not None else (local_chain or "").encode()
        return x509.load_pem_x509_certificates(pem)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"--ca-bundle: no PEM certificates ({exc})") from exc


def _remote_crl(exchange: str) -> bytes:
    response = httpx.get(exchange.rstrip("/") + "/v1/pki/crl", timeout=_TIMEOUT)
    if response.status_code != 200:
        raise AuthError(f"the exchange gave no CRL ({response.status_code})")
    return response.content


def _skip(out: Path, batch: ReadingBatch, reason: str) -> str:
    line = f"skipped batch {batch.id} from {batch.device or '?'}: {reason}"
    log = out.with_name(out.name + ".skipped")
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(f"{batch.id}\t{batch.device}\t{reason}\n")
    typer.echo(line, err=True)
    return line


def _remember(path: Path, nonce: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a") as handle:
        handle.write(nonce + "\n")


@readings_app.command("pull")
def pull(
    ctx: typer.Context,
    *,
    key: Path = typer.Option(  # noqa: B008
        ..., "--key", help="the enterprise key file written by `ibx consent keygen`"
    ),
    out: Path = typer.Option(..., "--out", help="CSV dataset to append the readings to"),  # noqa: B008
    ca_bundle: Path | None = typer.Option(  # noqa: B008
        None,
        "--ca-bundle",
        help="the deployment's CA bundle, pinned (required with --exchange; "
        "default on the data dir: its own CA)",
    ),
    after: int | None = typer.Option(
        None, "--after", min=0, help="re-read from this batch id on (default: <out>.cursor)"
    ),
    enterprise: str | None = typer.Option(
        None, "--enterprise", help="you: only its own devices' signatures count (needed remotely)"
    ),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
) -> None:
    """Fetch this enterprise's new batches, open and verify each, append the rows to a CSV.

    A batch that does not open, is not signed by one of the enterprise's own
    devices under the pinned CA, repeats one already pulled (<out>.nonces), or
    does not fit the CSV is skipped and named (stderr and <out>.skipped); the
    others are appended. Exit 0: nothing skipped; exit 6: some skipped.
    """
    seed = EnterpriseKey.load(key).signer.seed()  # the file `ibx consent keygen` wrote
    cursor_path = out.with_name(out.name + ".cursor")
    if after is None:
        after = int(cursor_path.read_text()) if cursor_path.exists() else 0
    if exchange:
        trust = _trust(ca_bundle, None)
        if enterprise is None:
            raise typer.BadParameter(
                "--enterprise is required with --exchange: the name batches must be signed for "
                "comes from you, not from the exchange"
            )
        crl = _remote_crl(exchange)
        batches = _fetch_remote(exchange, token, after)
    else:
        context = cli_context(ctx)
        caller = _enterprise(context.acting_as(token), enterprise)
        enterprise = caller.name
        pki = context.runtime.edge_pki
        trust = _trust(ca_bundle, pki.authority().chain_pem())
        crl = pki.crl(now=utcnow())
        batches = context.runtime.edge_readings.batches(caller.name, after=after)
    nonces_path = out.with_name(out.name + ".nonces")
    seen = nonces_path.read_text().split() if nonces_path.exists() else []
    opener = BatchOpener(enterprise, seed, trust=trust, crl=crl, seen=seen)
    rows = 0
    skipped: list[str] = []
    for batch in batches:
        try:
            verified = opener.open(batch)
            rows += _append(out, verified)
        except ReadingsError as exc:
            skipped.append(_skip(out, batch, str(exc)))
        else:
            _remember(nonces_path, verified.nonce)
        cursor_path.write_text(f"{batch.id}\n")
    opened = len(batches) - len(skipped)
    summary = f"opened {opened} batches, appended {rows} rows to {out}"
    if as_json:
        emit_json({"opened": opened, "rows": rows, "out": str(out), "skipped": skipped})
        if skipped:
            raise typer.Exit(EXIT_SKIPPED)
        return
    if skipped:
        typer.echo(f"{summary}; skipped {len(skipped)} (listed in {out.name}.skipped)")
        raise typer.Exit(EXIT_SKIPPED)
    typer.echo(summary)
