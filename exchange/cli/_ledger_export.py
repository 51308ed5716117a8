"""Building ``ibx-ledger-export/v1`` files: from the data dir, or from an exchange's API.

``ibx ledger export`` (operator, :class:`DataDirExport`) streams the stored
entries as they are in the database (the backend's raw scan: a tampered row is
exported as it is, for ``ibx audit verify`` to find); ``ibx audit export`` and
``ibx audit verify --exchange`` (auditor, :func:`fetch_export`) read the same
through ``/v1/ledger``, each served entry's leaf being the RFC 8785 bytes of
the entry object. Both write the same file for the same log.

Both take the head first (its signed checkpoint names the size), then exactly
that many entries, so a log that grows meanwhile exports consistently. The
checkpoints are the ones witnesses cosigned (stored, with their cosignature
lines) and the head, ascending by size; a stored note and a head of the same
size with different bodies are both kept (the verifier calls that a fork). The
witness keys in the header are those the ledger itself records for the active
witnesses (``identity.create`` / ``identity.public_key`` / ``identity.revoke``).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import typer
from pydantic import ValidationError

from audit import ExportedEntry, ExportHeader, LedgerExport, export_lines
from core.canonical import JsonValue
from core.clock import utcnow
from core.keys import Ed25519PublicKey
from exchange.error_table import ForbiddenError, RemoteRefusalError
from exchange.identity_entries import IdentityCreateEntry, IdentityRevokeEntry, PublicKeyEntry
from ledger import (
    Checkpoint,
    CheckpointError,
    CosignatureVerifier,
    InvalidEntryError,
    LedgerEntry,
    LedgerIntegrityError,
    SignedNote,
)

if TYPE_CHECKING:
    from exchange.client import ExchangeClient
    from exchange.runtime import Runtime

__all__ = [
    "DataDirExport",
    "fetch_export",
    "merge_checkpoints",
    "print_written",
    "witness_vkeys",
    "write_atomically",
]

_IDENTITY_TYPES: Final = ("identity.create", "identity.public_key", "identity.revoke")
_WITNESS: Final = "witness"
_PAGE: Final = 1000


def witness_vkeys(leaves: Iterable[bytes]) -> tuple[str, ...]:
    """The cosignature verifier keys of the witnesses the ledger records as active, by name.

    ``leaves`` are entries in index order (others than ``identity.*`` are skipped);
    an identity entry that does not parse is skipped here (the verifier reports it).
    """
    keys: dict[str, str] = {}
    for leaf in leaves:
        if b'"type":"identity.' not in leaf:
            continue
        try:
            entry = LedgerEntry.from_leaf_input(leaf)
            if entry.type == IdentityCreateEntry.TYPE:
                create = IdentityCreateEntry.model_validate(entry.payload)
                if create.role == _WITNESS and create.public_key is not None:
                    keys[create.name] = create.public_key
            elif entry.type == PublicKeyEntry.TYPE:
                rotated = PublicKeyEntry.model_validate(entry.payload)
                if rotated.name in keys:
                    keys[rotated.name] = rotated.public_key
            elif entry.type == IdentityRevokeEntry.TYPE:
                keys.pop(IdentityRevokeEntry.model_validate(entry.payload).name, None)
        except (InvalidEntryError, ValidationError):
            continue
    vkeys: list[str] = []
    for name in sorted(keys):
        try:
            vkeys.append(
                CosignatureVerifier(name, Ed25519PublicKey.from_base64(keys[name])).to_vkey()
            )
        except ValueError:
            continue
    return tuple(vkeys)


def merge_checkpoints(stored: Iterable[str], head: str) -> list[str]:
    """The stored notes and the head's, one per distinct body, ascending by size."""
    by_body: dict[str, tuple[int, str]] = {}
    for text in (*stored, head):
        note = SignedNote.from_text(text)
        by_body.setdefault(note.text, (Checkpoint.from_text(note.text).size, text))
    return [text for _, text in sorted(by_body.values(), key=lambda item: item[0])]


# -- the data dir ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataDirExport:
    """The data dir's ledger ready to export: header, checkpoints, rows; entries streamed."""

    runtime: Runtime
    header: ExportHeader
    checkpoints: tuple[str, ...]
    state: Mapping[str, JsonValue] | None

    @classmethod
    def of(cls, runtime: Runtime) -> DataDirExport:
        """Read the head (its size bounds the entries), the checkpoints, the witness keys.

        Raises:
            LedgerError: the ledger tables could not be read.
        """
        from ledger import CheckpointStore, SqlLedgerBackend

        log = runtime.ledger
        size = SqlLedgerBackend(runtime.db).head().size
        store = CheckpointStore(runtime.db)
        head = store.served(log.checkpoint()).to_text()
        stored: list[str] = []
        after = -1
        while True:
            notes, more = store.page(after, _PAGE)
            stored.extend(note.to_text() for note in notes)
            if not more or not notes:
                break
            after = Checkpoint.from_text(notes[-1].text).size
        header = ExportHeader(
            origin=log.config.origin,
            ledger_vkey=log.vkey(),
            tree_size=size,
            exported_at=utcnow(),
            witness_vkeys=witness_vkeys(_identity_leaves(runtime, size)),
        )
        return cls(
            runtime, header, tuple(merge_checkpoints(stored, head)), _data_dir_state(runtime)
        )

    def lines(self, written: list[int] | None = None) -> Iterator[bytes]:
        """The export's lines: the entries as the backend stores them, read in large batches
        (``written``, if given, gets the number of entry lines appended once they are).

        Raises:
            LedgerError: the ledger tables could not be read.
        """
        from ledger import SqlLedgerBackend

        count = 0

        def entries() -> Iterator[tuple[int, bytes]]:
            nonlocal count
            for row in SqlLedgerBackend(self.runtime.db).scan_entries(0, self.header.tree_size):
                count += 1
                yield row

        yield from export_lines(self.header, entries(), self.checkpoints, self.state)
        if written is not None:
            written.append(count)


def _identity_leaves(runtime: Runtime, size: int) -> list[bytes]:
    """The ``identity.*`` entries below ``size``, by index (one indexed query)."""
    from sqlalchemy import text

    query = text(
        "SELECT leaf_input FROM ledger_entries WHERE type IN ('identity.create', "
        "'identity.public_key', 'identity.revoke') AND idx < :size ORDER BY idx"
    )
    with runtime.db.read() as session:
        return [bytes(row[0]) for row in session.connection().execute(query, {"size": size})]


def _data_dir_state(runtime: Runtime) -> Mapping[str, JsonValue] | None:
    """The rows as the exchange holds them (:func:`exchange.audit_state.served_state`)."""
    from exchange.audit_state import served_state

    return served_state(runtime).to_dict()


# -- an exchange's API -------------------------------------------------------------------------


def fetch_export(client: ExchangeClient) -> LedgerExport:
    """The export of the ledger an exchange serves, read as the client's identity.

    Raises:
        RemoteRefusalError: the exchange refused (no ledger read grant: 403).
        ForbiddenError: the identity reads only the entries that concern it.
        LedgerIntegrityError: an answer is not what the API promises (a malformed page,
            a checkpoint that is no signed note, entries missing from a page).
    """
    from exchange.cli._ledger_reader import ApiReader

    reader = ApiReader(client)
    head = reader.checkpoint_text()
    try:
        checkpoint = Checkpoint.from_text(SignedNote.from_text(head).text)
    except CheckpointError as exc:
        raise LedgerIntegrityError(f"the exchange's checkpoint is no signed note: {exc}") from exc
    size = checkpoint.size
    entries: list[ExportedEntry] = []
    position = 0
    while position < size:
        page = reader.entries(position, min(_PAGE, size - position))
        if page.scope != "all":
            raise ForbiddenError(
                "this identity reads only the ledger entries that concern it; exporting the "
                "whole log takes an auditor's or witness's ledger_read"
            )
        if not page.entries:
            break  # fewer entries than the checkpoint signs: the verifier names them
        entries.extend(ExportedEntry(i, leaf) for i, leaf in page.entries if i < size)
        if page.next is None or page.next <= position:
            break
        position = page.next
    header = ExportHeader(
        origin=checkpoint.origin,
        ledger_vkey=reader.vkey(),
        tree_size=size,
        exported_at=utcnow(),
        witness_vkeys=witness_vkeys(e.leaf for e in entries),
    )
    notes = merge_checkpoints(_stored_checkpoints(client), head)
    return LedgerExport(header, tuple(entries), tuple(notes), _served_state(client), client.where)


def _stored_checkpoints(client: ExchangeClient) -> list[str]:
    """``GET /v1/ledger/checkpoints``, every page (none on an exchange without the route)."""
    notes: list[str] = []
    start: int | None = 0
    while start is not None:
        try:
            body = client.get("/v1/ledger/checkpoints", start=start, limit=_PAGE)
        except RemoteRefusalError as exc:
            if exc.status == 404:
                return notes
            raise
        try:
            page = [str(note) for note in body["checkpoints"]]
            after = body["next"]
        except (KeyError, TypeError) as exc:
            raise LedgerIntegrityError("the exchange's checkpoint list is malformed") from exc
        if after is not None and (not isinstance(after, int) or after <= start):
            raise LedgerIntegrityError("the exchange's checkpoint list has a malformed next")
        notes.extend(page)
        start = after
    return notes


def _served_state(client: ExchangeClient) -> Mapping[str, JsonValue] | None:
    """``GET /v1/audit/state``: the rows as served (None where the route is absent)."""
    try:
        body = client.get("/v1/audit/state")
    except RemoteRefusalError as exc:
        if exc.status == 404:
            return None
        raise
    if not isinstance(body, dict):
        raise LedgerIntegrityError("the exchange's audit state is not a JSON object")
    return body


# -- the file ----------------------------------------------------------------------------------


def write_atomically(path: Path, lines: Iterable[bytes], *, force: bool) -> int:
    """Write ``lines`` to ``path`` through a temporary file renamed into place (mode 0644);
    the number of bytes written.

    Raises:
        FileExistsError: ``path`` exists and ``force`` is false.
        FileNotFoundError: its directory does not exist.
        OSError: the directory is not writable.
    """
    if path.exists() and not force:
        raise FileExistsError(errno.EEXIST, "the file exists (--force replaces it)", str(path))
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(path.parent))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)
            for line in lines:
                out.write(line)
                written += len(line)
            out.flush()
            os.fsync(out.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return written


def print_written(out: Path, entries: int, checkpoints: int, size: int, *, as_json: bool) -> None:
    """What an export command wrote: one line, or ``{"path", "entries", "checkpoints",
    "bytes"}`` with ``--json``."""
    from exchange.cli._output import emit_json

    if as_json:
        emit_json({"path": str(out), "entries": entries, "checkpoints": checkpoints, "bytes": size})
        return
    typer.echo(f"wrote {out}: {entries} entries, {checkpoints} checkpoint(s), {size} bytes")
