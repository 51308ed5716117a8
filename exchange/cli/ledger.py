"""``ibx ledger``: append, checkpoint, vkey and verify on the server's data dir."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import typer

from core.canonical import parse_json_object
from core.errors import CanonicalJsonError
from core.events import Event
from exchange.cli._context import cli_context
from exchange.cli._output import JSON_OPTION, emit_json
from exchange.cli._progress import Progress
from exchange.error_table import ExitCode, ForbiddenError
from ledger import (
    Checkpoint,
    CheckpointError,
    EntryTooLargeError,
    InvalidEntryError,
    LedgerIntegrityError,
)

__all__ = ["app"]

app = typer.Typer(help="The verifiable ledger (on the server's data dir).")

RESERVED_TYPES = ("identity.", "dataset.", "consent.", "policy.", "edge.", "mpc.")
"""Entry types that only the owning package writes: an operator must not be able to
append a policy approval, a consent, a certificate revocation or a key operation."""


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


@app.command("checkpoint")
def checkpoint(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Print the current signed checkpoint (C2SP signed note)."""
    note = cli_context(ctx).runtime.ledger.checkpoint()
    if as_json:
        body = Checkpoint.from_text(note.text)
        emit_json(
            {
                "origin": body.origin,
                "size": body.size,
                "root": base64.b64encode(body.root).decode(),
                "note": note.to_text(),
            }
        )
        return
    typer.echo(note.to_text(), nl=False)


@app.command("vkey")
def vkey(ctx: typer.Context, as_json: bool = JSON_OPTION) -> None:
    """Print the checkpoint verifier key (C2SP vkey)."""
    key = cli_context(ctx).runtime.ledger.vkey()
    if as_json:
        emit_json({"vkey": key})
        return
    typer.echo(key)


@app.command("verify")
def verify(
    ctx: typer.Context,
    kept: Path | None = typer.Option(  # noqa: B008
        None,
        "--checkpoint",
        help="also prove that this signed checkpoint, kept from earlier, is a prefix of the log",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Recompute the whole log and check the latest checkpoint (and a kept one).

    A failure is one line on stderr and exit 5, with or without ``--json``.
    """
    log = cli_context(ctx).runtime.ledger
    try:
        with Progress.for_stderr().counting("verifying entries", log.head().size) as advance:
            report = log.verify(progress=advance)
        earlier = None if kept is None else log.verify_kept_checkpoint(kept.read_text())
    except (LedgerIntegrityError, CheckpointError) as exc:
        typer.echo(f"ibx: ledger verify failed: {exc}", err=True)
        raise typer.Exit(ExitCode.VERIFICATION_FAILED) from exc
    root = base64.b64encode(report.root).decode()
    if as_json:
        kept_size = None if earlier is None else earlier.checkpoint.size
        emit_json(
            {"ok": True, "size": report.size, "root": root, "kept_checkpoint_size": kept_size}
        )
        return
    typer.echo(f"ok size {report.size} root {root}")
    if earlier is not None:
        typer.echo(f"consistent with kept checkpoint size {earlier.checkpoint.size}")
