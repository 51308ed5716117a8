"""The ledger as ``ibx ledger``'s read commands see it: the data dir, or an exchange's API.

Without ``--exchange`` (or a profile) the read commands are server-side
administration: they read the data dir's ledger directly, as before. With it
they are an auditor's or witness's commands: every read goes through
:class:`exchange.client.ExchangeClient` (``/v1/ledger/...``, authorized by the
caller's token and, for an auditor, client certificate), and ``verify``
trusts nothing the exchange says that it cannot check: the checkpoint must be
signed by a key the auditor pinned, and the entries served must recompute to
its root (:class:`ledger.FetchedLog`). Both readers hand the commands the same
values, so both modes print the same.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from core.canonical import canonical_bytes
from core.errors import CanonicalJsonError
from exchange.error_table import ForbiddenError
from ledger import (
    FetchedLog,
    IntegrityReport,
    KeptCheckpoint,
    LedgerIntegrityError,
    NoteVerifier,
    check_kept_checkpoint,
)

if TYPE_CHECKING:
    from exchange.cli._context import CliContext, Remote
    from exchange.client import ExchangeClient
    from ledger import Ledger

__all__ = [
    "ApiReader",
    "DataDirReader",
    "EntryPage",
    "LedgerReader",
    "OpenedReader",
    "RemoteVerdict",
    "is_remote",
    "open_reader",
    "pages",
    "verify_served_log",
]

PAGE = 1000
"""Entries asked for per request (the API's largest page)."""


@dataclass(frozen=True)
class EntryPage:
    """Entries of ``[start, next)`` as served: ``(index, leaf input)`` pairs.

    ``next`` is the start of the following page (None at the end of the log);
    ``scope`` is ``own`` when the reader may see only the entries that concern it.
    """

    entries: tuple[tuple[int, bytes], ...]
    next: int | None
    scope: str


class LedgerReader(Protocol):
    """What the read commands need from a ledger, wherever it is."""

    def checkpoint_text(self) -> str:
        """The latest signed checkpoint (C2SP signed note text)."""
        ...

    def vkey(self) -> str:
        """The checkpoint verifier key (C2SP vkey, no newline)."""
        ...

    def entries(self, start: int, limit: int) -> EntryPage:
        """The entries of ``[start, start + limit)`` this reader may see."""
        ...

    def inclusion(self, index: int, tree_size: int) -> tuple[bytes, ...]:
        """The RFC 9162 inclusion proof of ``index`` in the tree of ``tree_size``."""
        ...

    def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        """The RFC 9162 consistency proof from ``first`` to ``second``."""
        ...


class DataDirReader:
    """The data dir's own ledger (server-side administration: every entry)."""

    def __init__(self, log: Ledger) -> None:
        self._log = log

    def checkpoint_text(self) -> str:
        """See :class:`LedgerReader`."""
        return self._log.checkpoint().to_text()

    def vkey(self) -> str:
        """See :class:`LedgerReader`."""
        return self._log.vkey()

    def entries(self, start: int, limit: int) -> EntryPage:
        """See :class:`LedgerReader`.

        Raises:
            TreeSizeError: ``start`` is beyond the log.
        """
        rows = self._log.entries(start, min(limit, PAGE))
        end = start + len(rows)
        more = end < self._log.size()
        return EntryPage(tuple((r.index, r.leaf_input) for r in rows), end if more else None, "all")

    def inclusion(self, index: int, tree_size: int) -> tuple[bytes, ...]:
        """See :class:`LedgerReader`.

        Raises:
            TreeSizeError: ``index`` or ``tree_size`` outside the log.
        """
        return self._log.inclusion_proof(index, tree_size).hashes

    def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        """See :class:`LedgerReader`.

        Raises:
            TreeSizeError: unless ``0 < first <= second <= size``.
        """
        return self._log.consistency_proof(first, second).hashes


class ApiReader:
    """An exchange's ``/v1/ledger`` routes, read as the caller's identity.

    Answers that are not what the API promises raise
    :class:`ledger.LedgerIntegrityError`: a reader of a log it does not run
    treats a malformed answer as a failed check.
    """

    def __init__(self, client: ExchangeClient) -> None:
        self._client = client

    def checkpoint_text(self) -> str:
        """See :class:`LedgerReader`.

        Raises:
            RemoteRefusalError: the exchange refused.
        """
        return self._client.call("GET", "/v1/ledger/checkpoint").text

    def vkey(self) -> str:
        """See :class:`LedgerReader`.

        Raises:
            RemoteRefusalError: the exchange refused.
        """
        return self._client.call("GET", "/v1/ledger/vkey").text.strip()

    def entries(self, start: int, limit: int) -> EntryPage:
        """See :class:`LedgerReader`; each entry is re-canonicalised (RFC 8785) to hash it.

        Raises:
            RemoteRefusalError: the exchange refused (no token: 401; no read grant: 403).
            LedgerIntegrityError: the answer is not a page of ledger entries.
        """
        body = self._client.get("/v1/ledger/entries", start=start, limit=min(limit, PAGE))
        try:
            items = body["entries"]
            after = body["next"]
            scope = body["scope"]
            served = tuple(
                (_integer(item["index"]), canonical_bytes(item["entry"])) for item in items
            )
        except (KeyError, TypeError, ValueError, CanonicalJsonError) as exc:
            raise LedgerIntegrityError(
                f"the exchange's answer for entries from {start} is not a page of entries"
            ) from exc
        if (after is not None and not isinstance(after, int)) or scope not in ("all", "own"):
            raise LedgerIntegrityError(
                f"the exchange's answer for entries from {start} has a malformed next or scope"
            )
        return EntryPage(served, after, scope)

    def inclusion(self, index: int, tree_size: int) -> tuple[bytes, ...]:
        """See :class:`LedgerReader`.

        Raises:
            RemoteRefusalError: the exchange refused (own scope: 403 for another's entry).
            LedgerIntegrityError: the answer is not a proof.
        """
        body = self._client.get("/v1/ledger/proof/inclusion", index=index, tree_size=tree_size)
        return _hashes(body, "inclusion proof")

    def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        """See :class:`LedgerReader`.

        Raises:
            RemoteRefusalError: the exchange refused.
            LedgerIntegrityError: the answer is not a proof.
        """
        body = self._client.get("/v1/ledger/proof/consistency", first=first, second=second)
        return _hashes(body, "consistency proof")


def _integer(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("not an integer")
    return value


def _hashes(body: Any, what: str) -> tuple[bytes, ...]:
    try:
        return tuple(base64.b64decode(h, validate=True) for h in body["hashes"])
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise LedgerIntegrityError(f"the exchange's {what} is malformed") from exc


def is_remote(context: CliContext, remote: Remote) -> bool:
    """Whether the read commands go to an exchange (``--exchange``, ``IBX_EXCHANGE`` or a
    profile) rather than the data dir."""
    return remote.exchange is not None or context.profile is not None


@dataclass
class OpenedReader:
    """A reader and the API client it holds open (None on the data dir)."""

    reader: LedgerReader
    client: ExchangeClient | None

    def close(self) -> None:
        """Close the client's connections."""
        if self.client is not None:
            self.client.close()


def open_reader(context: CliContext, token: str | None, remote: Remote) -> OpenedReader:
    """The data dir's ledger, or the exchange's API as the caller (see :func:`is_remote`).

    Raises:
        ConfigurationError: a token file or profile that cannot be used.
    """
    if not is_remote(context, remote):
        return OpenedReader(DataDirReader(context.runtime.ledger), None)
    client = context.client(token, remote)
    return OpenedReader(ApiReader(client), client)


def pages(reader: LedgerReader, start: int, count: int | None) -> Iterator[EntryPage]:
    """The pages of ``[start, start + count)`` (to the end of the log when ``count`` is
    None), following ``next``; the last page's ``next`` says where a reader would go on."""
    position, left = start, count
    while True:
        page = reader.entries(position, PAGE if left is None else min(left, PAGE))
        yield page
        if page.next is None:
            return
        if page.next <= position:
            raise LedgerIntegrityError(
                f"the exchange's page from {position} says the next starts at {page.next}"
            )
        if left is not None:
            left -= page.next - position
            if left <= 0:
                return
        position = page.next


@dataclass(frozen=True)
class RemoteVerdict:
    """A log fetched and recomputed: its size and root, and the kept checkpoint's size."""

    report: IntegrityReport
    kept: KeptCheckpoint | None


def verify_served_log(
    reader: LedgerReader,
    pinned: NoteVerifier | None,
    kept_text: str | None,
    progress: Callable[[int, int], None],
) -> RemoteVerdict:
    """Fetch the checkpoint and every entry it signs; recompute; check a kept checkpoint.

    ``pinned`` is the verifier key the auditor trusts (``--vkey``). Without it the
    kept checkpoint pins the key: the key the exchange serves now must have signed
    the checkpoint kept earlier, so a server that swapped its key (to sign a
    rewritten log) fails here.

    Raises:
        ValueError: neither a pinned key nor a kept checkpoint was given.
        CheckpointError: the checkpoint or the kept one is malformed or not signed by
            the pinned key, or of another origin.
        LedgerIntegrityError: an entry is missing, extra, edited or out of order, the
            root is not the signed one, or the kept checkpoint is no prefix of the log.
        ForbiddenError: the caller may read only the entries that concern it.
        RemoteRefusalError: the exchange refused a request.
    """
    if pinned is None:
        if kept_text is None:
            raise ValueError(
                "give the verifier key you trust (--vkey FILE, e.g. saved once with "
                "ibx ledger vkey) or a checkpoint you kept (--checkpoint FILE): a key "
                "fetched from the exchange being verified proves nothing"
            )
        pinned = NoteVerifier.from_vkey(reader.vkey())
    log = FetchedLog.from_signed_checkpoint(reader.checkpoint_text(), pinned)
    kept = None
    if kept_text is not None:
        kept = KeptCheckpoint.parse(kept_text, pinned, log.checkpoint.origin)
    progress(0, log.checkpoint.size)
    while log.remaining:
        page = reader.entries(log.size, min(log.remaining, PAGE))
        if page.scope != "all":
            raise ForbiddenError(
                "this identity reads only the ledger entries that concern it; verifying the "
                "whole log takes an auditor's or witness's ledger_read"
            )
        if not page.entries:
            raise LedgerIntegrityError(
                f"the exchange served no entries from {log.size} though its checkpoint signs "
                f"{log.checkpoint.size}",
                index=log.size,
            )
        for index, leaf in page.entries:
            log.add(index, leaf)
        progress(log.size, log.checkpoint.size)
    report = log.verify()
    if kept is not None:
        first = kept.checkpoint.size
        proof = reader.consistency(first, report.size) if 0 < first < report.size else ()
        check_kept_checkpoint(kept, report.size, report.root, proof)
    return RemoteVerdict(report, kept)
