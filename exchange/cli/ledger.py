"""``ibx ledger``: the verifiable ledger, on the server's data dir or read over the API.

``append`` and ``export`` are server-side administration only. The read commands
(``checkpoint``, ``vkey``, ``entries``, ``proof``, ``verify``) read the data
dir's ledger without ``--exchange``, and with ``--exchange URL`` (or a
profile) read the exchange's ``/v1/ledger`` routes as the caller's identity:
an auditor or witness reads every entry, others the entries that concern
them. Both modes print the same (:mod:`exchange.cli._ledger_reader`).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from core.canonical import canonical_bytes, parse_json_object
from core.clock import format_rfc3339
from core.errors import CanonicalJsonError
from core.events import Event
from exchange.cli._context import (
    CA_BUNDLE_OPTION,
    CLIENT_CERT_OPTION,
    CLIENT_KEY_OPTION,
    EXCHANGE_OPTION,
    TOKEN_OPTION,
    Remote,
    cli_context,
)
from exchange.cli._output import JSON_OPTION, Table, emit_json, emit_table
from exchange.cli._progress import Progress
from exchange.error_table import ExitCode, ForbiddenError
from ledger import (
    Checkpoint,
    CheckpointError,
    EntryTooLargeError,
    InvalidEntryError,
    LedgerEntry,
    LedgerIntegrityError,
    NoteVerifier,
    SignedNote,
)

if TYPE_CHECKING:
    from exchange.cli._ledger_reader import LedgerReader

__all__ = ["app"]

app = typer.Typer(
    help="The verifiable ledger: the server's data dir, or read over the API (--exchange)."
)
proof_app = typer.Typer(help="RFC 9162 inclusion and consistency proofs (hashes in base64).")
app.add_typer(proof_app, name="proof")

RESERVED_TYPES = (
    "identity.",
    "dataset.",
    "consent.",
    "policy.",
    "edge.",
    "mpc.",
    "pipeline.",
    "authz.",
    "audit.",
    "ledger.",
)
"""Entry types that only the owning package writes: an operator must not be able to
append a policy approval, a consent, a certificate revocation or a key operation."""

_KEPT_OPTION = typer.Option(
    None,
    "--checkpoint",
    help="also prove that this signed checkpoint, kept from earlier, is a prefix of the log",
    exists=True,
    dir_okay=False,
    readable=True,
)
_VKEY_OPTION = typer.Option(
    None,
    "--vkey",
    help="the verifier key you trust (a file holding the C2SP vkey, e.g. from ibx ledger vkey)",
    exists=True,
    dir_okay=False,
    readable=True,
)

_FABRIC_OPTION = typer.Option(
    False,
    "--fabric",
    help="also compare the log with its copy on the Fabric channel (IBX_LEDGER_FABRIC_*)",
)


@app.command("append")
def append(
    ctx: typer.Context,
    type_: str = typer.Option(..., "--type", help="entry type, e.g. demo.reading"),
    actor: str = typer.Option("sysadmin", "--actor", help="who the entries are recorded for"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Append one JSON object per stdin line as one atomic batch; print each new index."""
    if type_.strip().lower().startswith(RESERVED_TYPES):
        raise ForbiddenError(
            f"entry type {type_!r} is reserved for the records the packages write themselves "
            f"({', '.join(t + '*' for t in RESERVED_TYPES)}); use another type for operator notes"
        )
    events: list[Event] = []
    source_lines: list[int] = []
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            payload = parse_json_object(line, what=f"line {number}")
            events.append(Event(type_, actor, payload))
        except CanonicalJsonError as exc:
            raise InvalidEntryError(str(exc)) from exc
        except ValueError as exc:
            raise InvalidEntryError(str(exc), line=number) from exc
        source_lines.append(number)
    if not events:
        raise InvalidEntryError("no JSON objects on standard input; nothing appended")
    try:
        recorded = cli_context(ctx).runtime.ledger.append(events)
    except EntryTooLargeError as exc:
        line = source_lines[exc.line - 1] if exc.line else None
        raise EntryTooLargeError(exc.size, exc.limit, line=line) from exc
    except InvalidEntryError as exc:
        if exc.line is None:
            raise
        reason = str(exc).split(": ", 1)[-1]
        raise InvalidEntryError(reason, line=source_lines[exc.line - 1]) from exc
    if as_json:
        emit_json({"indices": [item.index for item in recorded]})
        return
    for item in recorded:
        typer.echo(item.index)


def _reader(  # noqa: PLR0917 -- the shared remote options, passed through
    ctx: typer.Context,
    token: str | None,
    exchange: str | None,
    ca_bundle: Path | None,
    client_cert: Path | None,
    client_key: Path | None,
) -> LedgerReader:
    from exchange.cli._ledger_reader import open_reader

    opened = open_reader(
        cli_context(ctx), token, Remote(exchange, ca_bundle, client_cert, client_key)
    )
    ctx.call_on_close(opened.close)
    return opened.reader


@app.command("checkpoint")
def checkpoint(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    as_json: bool = JSON_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Print the current signed checkpoint (C2SP signed note)."""
    text = _reader(ctx, token, exchange, ca_bundle, client_cert, client_key).checkpoint_text()
    if as_json:
        body = Checkpoint.from_text(SignedNote.from_text(text).text)
        emit_json(
            {
                "origin": body.origin,
                "size": body.size,
                "root": base64.b64encode(body.root).decode(),
                "note": text,
            }
        )
        return
    typer.echo(text, nl=False)


@app.command("vkey")
def vkey(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    as_json: bool = JSON_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Print the checkpoint verifier key (C2SP vkey)."""
    key = _reader(ctx, token, exchange, ca_bundle, client_cert, client_key).vkey()
    if as_json:
        emit_json({"vkey": key})
        return
    typer.echo(key)


@app.command("entries")
def entries(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    start: int = typer.Option(0, "--start", min=0, help="index of the first entry"),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="indices to read from --start [default: to the end]"
    ),
    as_json: bool = JSON_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Print ledger entries (with --exchange: those the caller may read).

    Auditors and witnesses read every entry; other identities those that concern them.

    In a pipe each line is one entry's RFC 8785 bytes: SHA-256(0x00 || line) is its leaf hash.
    """
    from exchange.cli._ledger_reader import pages

    reader = _reader(ctx, token, exchange, ca_bundle, client_cert, client_key)
    shown: list[LedgerEntry] = []
    after: int | None = None
    scope = "all"
    for page in pages(reader, start, limit):
        shown.extend(LedgerEntry.from_leaf_input(leaf) for _, leaf in page.entries)
        after, scope = page.next, page.scope
    if as_json:
        emit_json(
            {
                "entries": [{"index": e.index, "entry": json.loads(e.leaf_input)} for e in shown],
                "next": after,
                "scope": scope,
            }
        )
        return
    emit_table(
        Table.build(
            ("index", "time", "type", "actor", "payload"),
            (
                (
                    str(e.index),
                    format_rfc3339(e.time),
                    e.type,
                    e.actor,
                    canonical_bytes(e.payload).decode(),
                )
                for e in shown
            ),
            (e.leaf_input.decode() for e in shown),
        )
    )


def _emit_proof(
    head: dict[str, int], hashes: tuple[bytes, ...], as_json: bool, label: tuple[str, str]
) -> None:
    encoded = [base64.b64encode(h).decode() for h in hashes]
    if as_json:
        emit_json({**head, "hashes": encoded})
        return
    first, second = label
    typer.echo(f"{first} {head[first]} {second} {head[second]}")
    for line in encoded:
        typer.echo(line)


def _size(reader: LedgerReader) -> int:
    return Checkpoint.from_text(SignedNote.from_text(reader.checkpoint_text()).text).size


@proof_app.command("inclusion")
def inclusion(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    index: int = typer.Option(..., "--index", min=0, help="the entry's index"),
    tree_size: int | None = typer.Option(
        None, "--tree-size", min=1, help="the tree to prove into [default: the checkpoint's]"
    ),
    as_json: bool = JSON_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Print the inclusion proof of one entry: a line 'index I tree_size N', then the hashes."""
    reader = _reader(ctx, token, exchange, ca_bundle, client_cert, client_key)
    size = tree_size if tree_size is not None else _size(reader)
    hashes = reader.inclusion(index, size)
    _emit_proof({"index": index, "tree_size": size}, hashes, as_json, ("index", "tree_size"))


@proof_app.command("consistency")
def consistency(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    first: int = typer.Option(..., "--first", min=1, help="the earlier tree size"),
    second: int | None = typer.Option(
        None, "--second", min=1, help="the later tree size [default: the checkpoint's]"
    ),
    as_json: bool = JSON_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Print the consistency proof between two tree sizes: 'first A second B', then the hashes."""
    reader = _reader(ctx, token, exchange, ca_bundle, client_cert, client_key)
    size = second if second is not None else _size(reader)
    hashes = reader.consistency(first, size)
    _emit_proof({"first": first, "second": size}, hashes, as_json, ("first", "second"))


@app.command("verify")
def verify(  # noqa: PLR0917 -- one parameter per CLI option
    ctx: typer.Context,
    kept: Path | None = _KEPT_OPTION,
    pinned_vkey: Path | None = _VKEY_OPTION,
    fabric: bool = _FABRIC_OPTION,
    as_json: bool = JSON_OPTION,
    exchange: str | None = EXCHANGE_OPTION,
    ca_bundle: Path | None = CA_BUNDLE_OPTION,
    client_cert: Path | None = CLIENT_CERT_OPTION,
    client_key: Path | None = CLIENT_KEY_OPTION,
    token: str | None = TOKEN_OPTION,
) -> None:
    """Recompute the whole log and check the latest checkpoint (and a kept one).

    With --exchange: the checkpoint must be signed by the --vkey key (or the --checkpoint's).

    With --exchange: every entry served must be there, in place, and hash to the signed root.

    With --fabric: the Fabric channel must hold the same entries and roots (or checkpoints).

    A failure is one line on stderr and exit 5, with or without ``--json``.
    """
    from exchange.cli._ledger_reader import is_remote

    context = cli_context(ctx)
    remote = Remote(exchange, ca_bundle, client_cert, client_key)
    if fabric and is_remote(context, remote):
        typer.echo(
            "ibx: ledger verify --fabric reads the data dir's ledger and its channel; it does "
            "not go with --exchange",
            err=True,
        )
        raise typer.Exit(ExitCode.USAGE)
    if is_remote(context, remote) and pinned_vkey is None and kept is None:
        typer.echo(
            "ibx: ledger verify --exchange needs the verifier key you trust (--vkey FILE, "
            "saved once with ibx ledger vkey) or a checkpoint you kept (--checkpoint FILE): "
            "a key fetched from the exchange being verified proves nothing",
            err=True,
        )
        raise typer.Exit(ExitCode.USAGE)
    try:
        pinned = None if pinned_vkey is None else NoteVerifier.from_vkey(pinned_vkey.read_text())
        kept_text = None if kept is None else kept.read_text()
        if is_remote(context, remote):
            size, root, kept_size = _verify_served(ctx, token, remote, pinned, kept_text)
        else:
            size, root, kept_size = _verify_data_dir(ctx, pinned, kept_text)
    except (LedgerIntegrityError, CheckpointError) as exc:
        also = _fabric_disagreement(ctx) if fabric else ""
        typer.echo(f"ibx: ledger verify failed: {exc}{also}", err=True)
        raise typer.Exit(ExitCode.VERIFICATION_FAILED) from exc
    comparison = None
    if fabric:
        from exchange.cli.ledger_fabric import fabric_comparison

        comparison = fabric_comparison(context.runtime)
        if not comparison.ok:
            typer.echo(
                f"ibx: ledger verify --fabric failed: {comparison.first_disagreement}", err=True
            )
            raise typer.Exit(ExitCode.VERIFICATION_FAILED)
    encoded = base64.b64encode(root).decode()
    if as_json:
        document: dict[str, object] = {
            "ok": True,
            "size": size,
            "root": encoded,
            "kept_checkpoint_size": kept_size,
        }
        if comparison is not None:
            document["fabric"] = comparison.to_dict()
        emit_json(document)
        return
    typer.echo(f"ok size {size} root {encoded}")
    if kept_size is not None:
        typer.echo(f"consistent with kept checkpoint size {kept_size}")
    if comparison is not None:
        from exchange.cli.ledger_fabric import fabric_line

        typer.echo(fabric_line(comparison))


def _fabric_disagreement(ctx: typer.Context) -> str:
    """What the channel says when the SQL log failed its own check (``""`` if nothing)."""
    from exchange.cli.ledger_fabric import fabric_comparison

    try:
        comparison = fabric_comparison(cli_context(ctx).runtime)
    except typer.Exit:  # off, misconfigured or unreachable: said on stderr already
        return ""
    if comparison.ok:
        return ""
    return f"; and the Fabric channel: {comparison.first_disagreement}"


def _verify_data_dir(
    ctx: typer.Context, pinned: NoteVerifier | None, kept_text: str | None
) -> tuple[int, bytes, int | None]:
    log = cli_context(ctx).runtime.ledger
    if pinned is not None and pinned.to_vkey() != log.vkey():
        raise CheckpointError("the ledger's checkpoint key is not the verifier key given")
    with Progress.for_stderr().counting("verifying entries", log.head().size) as advance:
        report = log.verify(progress=advance)
    earlier = None if kept_text is None else log.verify_kept_checkpoint(kept_text)
    return report.size, report.root, None if earlier is None else earlier.checkpoint.size


def _verify_served(
    ctx: typer.Context,
    token: str | None,
    remote: Remote,
    pinned: NoteVerifier | None,
    kept_text: str | None,
) -> tuple[int, bytes, int | None]:
    from exchange.cli._ledger_reader import open_reader, verify_served_log

    opened = open_reader(cli_context(ctx), token, remote)
    try:
        with Progress.for_stderr().counting("verifying entries", 0) as advance:
            verdict = verify_served_log(opened.reader, pinned, kept_text, advance)
    finally:
        opened.close()
    kept_size = None if verdict.kept is None else verdict.kept.checkpoint.size
    return verdict.report.size, verdict.report.root, kept_size


_EXPORT_OUT_OPTION = typer.Option(
    ..., "--out", help="the file to write (ibx-ledger-export/v1, docs/audit.md)"
)
_EXPORT_FORCE_OPTION = typer.Option(False, "--force", help="replace the file if it exists")


@app.command("export")
def export(
    ctx: typer.Context,
    out: Path = _EXPORT_OUT_OPTION,
    force: bool = _EXPORT_FORCE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Export the data dir's ledger for auditors: entries, checkpoints, keys, rows.

    The entries as stored, the checkpoints witnesses cosigned and the latest one.

    Check it offline with ibx audit verify --export.
    """
    from exchange.cli._ledger_export import DataDirExport, print_written, write_atomically

    if out.exists() and not force:
        typer.echo(f"ibx: {out} exists; pass --force to replace it", err=True)
        raise typer.Exit(ExitCode.USAGE)
    made = DataDirExport.of(cli_context(ctx).runtime)
    entries: list[int] = []
    written = write_atomically(out, made.lines(entries), force=force)
    print_written(out, entries[0], len(made.checkpoints), written, as_json=as_json)


from exchange.cli.ledger_chaincode import (  # noqa: E402 -- the Fabric chaincode commands register below
    chaincode,
    chaincode_package,
)
from exchange.cli.ledger_fabric import follow, ship  # noqa: E402 -- likewise the shipping commands

app.command("chaincode")(chaincode)
app.command("chaincode-package")(chaincode_package)
app.command("ship")(ship)
app.command("follow")(follow)
