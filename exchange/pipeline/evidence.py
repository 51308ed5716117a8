"""The ledger material an agent checks a task against, served in one answer.

Before it reads any data an agent verifies the signed checkpoint under its
pinned key, the checkpoint's consistency with the one it kept, the decision
entry's inclusion under that checkpoint and (PSI round r > 1) the handed-on
contribution entry's (docs/pipeline.md). Fetched one read at a time that is
five requests per task; here the exchange gathers them at once, all under
one checkpoint, for ``GET /v1/agent/tasks?since=N`` and ``GET
/v1/agent/jobs/{id}/evidence``. It changes only how the material travels:
the agent believes none of it and checks every piece exactly as before
(:class:`exchange.agent.reads.EvidenceReads`).

Wire form (hashes and leaf bytes in base64)::

    head:  {"checkpoint": signed note text (with its witnesses' cosignature lines),
            "consistency": {"first", "second", "hashes": [...]} | null}
    entry: {"index": i, "entry": leaf input bytes, "inclusion": [...]}
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TypeVar

from core.canonical import JsonValue
from ledger import Checkpoint, Ledger, LedgerEntry, SignedNote

T = TypeVar("T")

__all__ = ["EvidenceCache", "LedgerHead", "ProvenEntry", "ledger_head", "proven_entry"]

CACHED_PROOFS = 1024
"""Inclusion and consistency proofs kept (each a few hundred bytes)."""


def _b64(hashes: tuple[bytes, ...]) -> list[JsonValue]:
    return [base64.b64encode(h).decode() for h in hashes]


@dataclass(frozen=True)
class LedgerHead:
    """The latest signed checkpoint, and its consistency proof from the agent's kept size."""

    checkpoint: str
    size: int
    first: int | None = None
    consistency: tuple[bytes, ...] = ()

    def to_dict(self) -> dict[str, JsonValue]:
        """The wire form (see the module docstring)."""
        proof: JsonValue = None
        if self.first is not None:
            proof = {"first": self.first, "second": self.size, "hashes": _b64(self.consistency)}
        return {"checkpoint": self.checkpoint, "consistency": proof}


@dataclass(frozen=True)
class ProvenEntry:
    """One ledger entry's exact leaf bytes and its inclusion proof under a tree size."""

    entry: LedgerEntry
    inclusion: tuple[bytes, ...]

    @property
    def index(self) -> int:
        """The entry's ledger index."""
        return self.entry.index

    def to_dict(self) -> dict[str, JsonValue]:
        """The wire form (see the module docstring)."""
        return {
            "index": self.index,
            "entry": base64.b64encode(self.entry.leaf_input).decode(),
            "inclusion": _b64(self.inclusion),
        }


def ledger_head(ledger: Ledger, since: int) -> LedgerHead:
    """The latest checkpoint, with a consistency proof from tree size ``since`` when
    ``0 < since < size`` (else none: nothing to prove, or a log smaller than what the
    agent kept, which its own check refuses)."""
    note: SignedNote = ledger.checkpoint()
    size = Checkpoint.from_text(note.text).size
    if 0 < since < size:
        proof = ledger.consistency_proof(since, size)
        return LedgerHead(note.to_text(), size, since, proof.hashes)
    return LedgerHead(note.to_text(), size)


def proven_entry(ledger: Ledger, index: int, tree_size: int) -> ProvenEntry | None:
    """The entry at ``index`` with its inclusion proof in the tree of ``tree_size``; None
    when ``index`` is beyond that tree (the agent then refuses or reads it on its own)."""
    if not 0 <= index < tree_size:
        return None
    entry = ledger.entry(index)
    return ProvenEntry(entry, ledger.inclusion_proof(index, tree_size).hashes)


class EvidenceCache:
    """:func:`ledger_head` and :func:`proven_entry` with their proofs kept: a proof for
    given tree sizes never changes, and the agents of one job ask for the same ones (the
    same decision, the same sizes) at about the same time. The checkpoint is read anew
    every time."""

    def __init__(
        self,
        ledger: Callable[[], Ledger],
        size: int = CACHED_PROOFS,
        *,
        served: Callable[[SignedNote], SignedNote] | None = None,
    ) -> None:
        self._ledger = ledger
        self._size = size
        self._served = served
        """The checkpoint as served: with its witnesses' cosignature lines (exchange.witnessing)."""
        self._lock = threading.Lock()
        self._kept: OrderedDict[Hashable, object] = OrderedDict()

    def _cached(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._kept:
                self._kept.move_to_end(key)
                return self._kept[key]  # type: ignore[return-value]
        made = make()
        with self._lock:
            self._kept[key] = made
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return made

    def head(self, since: int) -> LedgerHead:
        """:func:`ledger_head`, its consistency proof kept."""
        ledger = self._ledger()
        note = ledger.checkpoint()
        if self._served is not None:
            note = self._served(note)
        size = Checkpoint.from_text(note.text).size
        if not 0 < since < size:
            return LedgerHead(note.to_text(), size)
        hashes = self._cached(
            ("consistency", since, size), lambda: ledger.consistency_proof(since, size).hashes
        )
        return LedgerHead(note.to_text(), size, since, hashes)

    def entry(self, index: int, tree_size: int) -> ProvenEntry | None:
        """:func:`proven_entry`, kept."""
        if not 0 <= index < tree_size:
            return None
        return self._cached(
            ("entry", index, tree_size), lambda: proven_entry(self._ledger(), index, tree_size)
        )
