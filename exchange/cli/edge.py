"""``ibx edge``: bootstrap tokens (enterprise), the device client, and pulling sealed readings.

``token create`` and ``readings pull`` act as the identity of ``--token``/
``IBX_TOKEN`` (an enterprise) through the exchange's API: in-process on the
data dir, or over HTTPS with ``--exchange URL``; the same routes and the same
policy decide either way, so both print and exit the same. ``enroll``,
``renew`` and ``upload`` run on the device, through the EST client and the
uplink of :mod:`edge_tls`: its key is generated there and never leaves it;
``upload`` signs each batch with it inside the sealed box, and ``readings
pull`` opens each batch with the enterprise's own key, here, and verifies
that signature against the CA bundle the enterprise pinned. ``renew
--daemon`` keeps running and renews at two thirds of each certificate's
lifetime (the timing rules are ``edge_tls.RenewalSchedule``, the loop
``edge_tls.RenewalDaemon``; this module only wires signals, ``--exec`` and
stderr to them).

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
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from cryptography import x509

from consent import EnterpriseKey
from core.clock import parse_rfc3339, utcnow
from edge_tls import (
    BatchOpener,
    DeviceCredentials,
    EdgeRefusedError,
    ReadingBatch,
    ReadingsError,
    Renewal,
    RenewalDaemon,
    RenewalSchedule,
    SealedBatchError,
    StopSignal,
    VerifiedBatch,
    reenroll,
    upload_readings,
)
from edge_tls import enroll as est_enroll
from exchange.cli._api_client import user_client
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
    CliContext,
    cli_context,
)
from exchange.cli._output import JSON_OPTION, emit_json
from exchange.error_table import ExitCode, RemoteRefusalError

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
_PAGE = 500  # batches per page of GET /v1/edge/readings


def _ttl(text: str | None) -> timedelta | None:
    if text is None:
        return None
    match = _TTL.fullmatch(text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r}: use e.g. 30m, 24h or 7d")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


@contextmanager
def _edge_listener() -> Iterator[None]:
    """A refusal by the edge listener exits as the same status from the API would."""
    try:
        yield
    except EdgeRefusedError as exc:
        raise RemoteRefusalError(str(exc), status=exc.status, title=exc.title) from exc


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    *,
    enterprise: str | None = typer.Option(
        None, "--enterprise", help="you, the enterprise (refused if the token is someone else's)"
    ),
    device: str = typer.Option(..., "--device", help="the device's name"),
    ttl: str | None = typer.Option(None, "--ttl", help="lifetime, e.g. 30m, 24h [default 24h]"),
    as_json: bool = JSON_OPTION,
    token: str | None = TOKEN_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
) -> None:
    """Create a one-time bootstrap token for a device; printed once, as the last line."""
    lifetime = _ttl(ttl)
    body: dict[str, object] = {"device": device}
    if lifetime is not None:
        body["ttl_seconds"] = int(lifetime.total_seconds())
    if enterprise is not None:
        body["enterprise"] = enterprise
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        answer = client.post("/v1/edge/tokens", body)
    owner, name, secret = str(answer["enterprise"]), str(answer["device"]), str(answer["token"])
    expires = f"{datetime.fromisoformat(answer['expires_at']):%Y-%m-%dT%H:%M:%SZ}"
    if as_json:
        emit_json({"enterprise": owner, "device": name, "expires_at": expires, "token": secret})
        return
    typer.echo(f"bootstrap token for {owner}/{name}, one use, expires {expires}")
    typer.echo(secret)


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
    with _edge_listener():
        cert = est_enroll(
            DeviceCredentials(out),
            server=server,
            ca_pem=ca_bundle.read_bytes(),
            device=device,
            token=bootstrap,
            enterprise_key=enterprise_key,
            timeout=_TIMEOUT,
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
    readings = file.read_bytes()
    if not readings:
        raise typer.BadParameter(f"{file} is empty")
    with _edge_listener():
        receipt = upload_readings(
            DeviceCredentials(directory), readings, now=utcnow(), timeout=_TIMEOUT
        )
    if as_json:
        emit_json({"batch": receipt.batch, "sha256": receipt.sha256})
        return
    typer.echo(f"uploaded sealed batch {receipt.batch} sha256 {receipt.sha256}")


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


def _pinned_ca(context: CliContext, ca_bundle: Path | None, local: bool) -> bytes | None:
    """The CA bundle batches must chain to: ``--ca-bundle``, else the ``--profile``'s
    pinned bundle, else (None) the data dir's own CA, which only the local mode may use."""
    if ca_bundle is not None:
        return ca_bundle.read_bytes()
    if context.profile is not None and not local:
        from exchange.cli._profiles import ProfileStore

        pem = ProfileStore.from_environment(os.environ).load(context.profile).ca_bundle_pem
        if pem:
            return pem.encode()
    if local:
        return None
    raise typer.BadParameter(
        "--ca-bundle is required with --exchange: pin the deployment's CA bundle "
        "(`ibx pki ca-bundle` on the exchange, handed over out of band)"
    )


def _certificates(pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise typer.BadParameter(f"--ca-bundle: no PEM certificates ({exc})") from exc


def _batch(item: dict[str, Any], enterprise: str) -> ReadingBatch:
    """One listed batch, as the opener takes it.

    Raises:
        SealedBatchError: the exchange listed something that is not a batch.
    """
    try:
        return ReadingBatch(
            id=int(item["id"]),
            enterprise=enterprise,
            device=str(item["device"]),
            sha256=str(item["sha256"]),
            ciphertext=base64.b64decode(item["ciphertext"], validate=True),
            received_at=parse_rfc3339(str(item["received_at"])),
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise SealedBatchError(f"the exchange listed a malformed batch: {exc}") from exc


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
        envvar="IBX_CA_BUNDLE",
        help="the deployment's CA bundle, pinned: batches must chain to it, and the exchange's "
        "TLS certificate too (required with --exchange unless the --profile pinned one; "
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
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
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
    context = cli_context(ctx)
    with user_client(
        ctx,
        token,
        exchange=exchange,
        ca_bundle=ca_bundle,
        client_cert=client_cert,
        client_key=client_key,
    ) as client:
        local = client.where == "local"
        if enterprise is None and not local:
            raise typer.BadParameter(
                "--enterprise is required with --exchange: the name batches must be signed for "
                "comes from you, not from the exchange"
            )
        pinned = _pinned_ca(context, ca_bundle, local)
        me = str(client.get("/v1/me")["name"])
        if enterprise is not None and enterprise != me:
            raise typer.BadParameter(
                f"--enterprise {enterprise}: the token is {me}'s, and an enterprise pulls "
                "only its own batches"
            )
        trust = _certificates(pinned or client.call("GET", "/v1/pki/ca").content)
        crl = client.call("GET", "/v1/pki/crl").content
        nonces_path = out.with_name(out.name + ".nonces")
        seen = nonces_path.read_text().split() if nonces_path.exists() else []
        opener = BatchOpener(me, seed, trust=trust, crl=crl, seen=seen)
        pulled = rows = 0
        skipped: list[str] = []
        for item in client.pages("/v1/edge/readings", after=after, limit=_PAGE):
            batch = _batch(item, me)
            pulled += 1
            try:
                verified = opener.open(batch)
                rows += _append(out, verified)
            except ReadingsError as exc:
                skipped.append(_skip(out, batch, str(exc)))
            else:
                _remember(nonces_path, verified.nonce)
            cursor_path.write_text(f"{batch.id}\n")
    opened = pulled - len(skipped)
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
