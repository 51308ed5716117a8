"""A witness: keeps the ledger's last checkpoint, checks each new one is its extension, cosigns.

One :meth:`Witness.round`:

1. fetch the exchange's latest checkpoint and verify it under the pinned
   ledger key (``--ledger-vkey``, never one the exchange hands out);
2. for the newest checkpoint another witness cosigned (if it is newer than
   the kept one) and then the latest: verify the RFC 9162 consistency proof
   from the kept checkpoint; a checkpoint of the kept size with another root,
   a smaller one (rollback) or a failed proof is a **fork**: both checkpoints
   and the proof are kept as evidence in ``<state>/forks/<time>/``, a fork
   report is posted, :class:`ForkDetected` is raised, and the witness cosigns
   nothing more until an operator removes ``<state>/fork``;
3. cosign (C2SP ``tlog-cosignature``: ``cosignature/v1``, Ed25519 key type
   0x04, timestamped) and post the note; keep the checkpoint.

Cosigning the newest checkpoint another witness cosigned first lets several
witnesses converge on one checkpoint (an agent's quorum counts cosignatures
on one note). A latest checkpoint whose only new entries are the witnesses'
own bookkeeping (``ledger.cosignature`` and the ``authz.decision`` of their
``ledger_cosign`` calls) is verified and kept but not cosigned, so witnesses
do not grow the log by cosigning each other's cosignatures.

Only ``ledger`` and ``core``: the exchange is reached through a
:class:`WitnessTransport` the caller provides (``ibx audit witness`` speaks
HTTPS through the exchange client).
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from audit.errors import AuditError
from core.keys import Ed25519Signer
from ledger import (
    Checkpoint,
    CheckpointError,
    ConsistencyProofError,
    CosignatureVerifier,
    LedgerEntry,
    NoteVerifier,
    SignedNote,
    cosign,
    verify_consistency,
    verify_cosignature,
)

__all__ = [
    "BOOKKEEPING_TYPES",
    "ForkDetected",
    "RoundResult",
    "Witness",
    "WitnessError",
    "WitnessState",
    "WitnessTransport",
]

logger = logging.getLogger(__name__)

BOOKKEEPING_TYPES = frozenset({"ledger.cosignature"})
"""Entry types the witnesses' own posts add (with ``authz.decision`` of ``ledger_cosign``)."""
_BOOKKEEPING_SCAN = 64
"""The most new entries a round reads to decide whether they are only bookkeeping."""


class WitnessError(AuditError):
    """The witness could not complete a round (a checkpoint not signed by the pinned key,
    an unreadable state dir)."""

    title = "witness error"


class ForkDetected(WitnessError):  # noqa: N818 -- the event, as the CLI names it
    """Two checkpoints of the ledger that cannot both be its history; evidence is kept."""

    title = "ledger fork"

    def __init__(self, reason: str, evidence: Path) -> None:
        super().__init__(f"{reason} (evidence: {evidence})")
        self.reason = reason
        self.evidence = evidence


class WitnessTransport(Protocol):
    """How the witness reaches the exchange (answers are material to verify, never believed)."""

    def checkpoint(self) -> str:
        """The latest signed checkpoint (``GET /v1/ledger/checkpoint``)."""
        ...

    def witnessed(self) -> str | None:
        """The newest checkpoint a witness cosigned, or None (``?witnessed=true``)."""
        ...

    def consistency(self, first: int, second: int) -> tuple[bytes, ...]:
        """RFC 9162 consistency proof between tree sizes ``first`` and ``second``."""
        ...

    def entries(self, start: int, stop: int) -> Sequence[LedgerEntry]:
        """Entries ``[start, stop)`` (used only to skip a round of bookkeeping)."""
        ...

    def post_cosignature(self, note: str) -> None:
        """``POST /v1/ledger/cosignatures`` with the cosigned note."""
        ...

    def post_fork(
        self, checkpoints: Sequence[str], consistency: Sequence[bytes], reason: str
    ) -> None:
        """``POST /v1/ledger/forks``."""
        ...


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)


class WitnessState:
    """The witness's state dir (mode 0700): the kept checkpoint, the last cosigned note,
    fork evidence.

    * ``checkpoint``: the newest checkpoint verified (the base of the next proof);
    * ``cosigned``: the last note cosigned, with the witness's line;
    * ``fork``: present while a fork stands (names the evidence dir);
    * ``forks/<time>/``: ``kept.checkpoint``, ``served.checkpoint``, ``consistency.json``,
      ``reason.txt``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, root: Path) -> WitnessState:
        """Open (or create) the state dir, mode 0700.

        Raises:
            WitnessError: the path is not a directory or others may read it.
        """
        try:
            root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise WitnessError(f"cannot create the witness state dir {root}: {exc}") from exc
        if not root.is_dir():
            raise WitnessError(f"{root} is not a directory")
        if os.name == "posix" and root.stat().st_mode & 0o077:
            raise WitnessError(f"{root} is readable by others: chmod 700 {root}")
        return cls(root)

    def _read(self, name: str) -> str | None:
        path = self.root / name
        return path.read_text() if path.exists() else None

    def kept(self) -> str | None:
        """The kept checkpoint's note, or None before the first round."""
        return self._read("checkpoint")

    def keep(self, note: str) -> None:
        """Keep ``note`` as the newest checkpoint verified."""
        _write_private(self.root / "checkpoint", note.encode())

    def cosigned(self) -> str | None:
        """The last note this witness cosigned (with its line), or None."""
        return self._read("cosigned")

    def keep_cosigned(self, note: str) -> None:
        """Keep the note just cosigned."""
        _write_private(self.root / "cosigned", note.encode())

    def fork(self) -> str | None:
        """The standing fork's evidence dir, or None."""
        return self._read("fork")

    def raise_fork(
        self, kept: str, served: str, consistency: Sequence[bytes], reason: str, *, now: datetime
    ) -> Path:
        """Keep the evidence of a fork and mark it standing; the evidence dir."""
        forks = self.root / "forks"
        forks.mkdir(mode=0o700, exist_ok=True)
        stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        evidence = forks / stamp
        evidence.mkdir(mode=0o700)
        _write_private(evidence / "kept.checkpoint", kept.encode())
        _write_private(evidence / "served.checkpoint", served.encode())
        proof = {"hashes": [base64.b64encode(h).decode() for h in consistency]}
        _write_private(evidence / "consistency.json", (json.dumps(proof) + "\n").encode())
        _write_private(evidence / "reason.txt", (reason + "\n").encode())
        _write_private(self.root / "fork", (str(evidence) + "\n").encode())
        return evidence


@dataclass(frozen=True)
class RoundResult:
    """What a round did: the latest size seen and the sizes cosigned (ascending)."""

    size: int
    cosigned: tuple[int, ...]
    skipped: str | None = None
    """Why the latest checkpoint was verified but not cosigned, if it was not."""


@dataclass(frozen=True)
class _Seen:
    text: str
    note: SignedNote
    checkpoint: Checkpoint


class Witness:
    """Witness ``name`` (its cosignature key ``signer``) of the ledger under ``ledger_key``."""

    def __init__(
        self,
        transport: WitnessTransport,
        state: WitnessState,
        *,
        name: str,
        signer: Ed25519Signer,
        ledger_key: NoteVerifier,
        origin: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._transport = transport
        self._state = state
        self.name = name
        self._signer = signer
        self._ledger_key = ledger_key
        self._origin = origin
        self._clock = clock
        self.verifier = CosignatureVerifier(name, signer.public_key)

    def _parse(self, text: str, what: str) -> _Seen:
        """``text`` verified under the pinned ledger key.

        Raises:
            WitnessError: malformed, not signed by the pinned key, or another origin.
        """
        try:
            note = SignedNote.from_text(text)
            note.verify(self._ledger_key)
            checkpoint = Checkpoint.from_text(note.text)
        except CheckpointError as exc:
            raise WitnessError(f"{what} is not signed by the pinned ledger key: {exc}") from exc
        origin = self._origin
        if origin is not None and checkpoint.origin != origin:
            raise WitnessError(f"{what} is for origin {checkpoint.origin!r}, not {origin!r}")
        return _Seen(text, note, checkpoint)

    def _ledger_only(self, seen: _Seen) -> str:
        """The note with only the ledger's signature line (what the witness keeps)."""
        lines = tuple(
            s
            for s in seen.note.signatures
            if s.name == self._ledger_key.name and s.key_id == self._ledger_key.key_id
        )
        return SignedNote(seen.note.text, lines).to_text()

    def round(self) -> RoundResult:
        """Fetch, verify, cosign and post (see the module docstring).

        Raises:
            ForkDetected: a fork now or standing (evidence kept, report posted).
            WitnessError: a checkpoint not signed by the pinned key.
            Exception: whatever the transport raises when the exchange is unreachable.
        """
        standing = self._state.fork()
        if standing is not None:
            raise ForkDetected(
                "a fork stands; this witness cosigns nothing until it is cleared "
                f"(rm {self._state.root / 'fork'})",
                Path(standing.strip()),
            )
        head = self._parse(self._transport.checkpoint(), "the exchange's checkpoint")
        kept_text = self._state.kept()
        kept = self._parse(kept_text, "the kept checkpoint") if kept_text is not None else None
        if self._origin is None:
            self._origin = head.checkpoint.origin
        cosigned: list[int] = []
        other = self._transport.witnessed()
        if other is not None:
            seen = self._parse(other, "the newest witnessed checkpoint")
            newer = kept is None or seen.checkpoint.size > kept.checkpoint.size
            if seen.checkpoint.size >= head.checkpoint.size:
                self._check(seen, head)  # the same tree, or a rollback or fork of it
            elif newer:
                self._check(kept, seen)
                self._cosign(seen)
                cosigned.append(seen.checkpoint.size)
                kept = seen
        self._check(kept, head)
        skipped = self._bookkeeping_only(kept, head)
        if skipped is None:
            self._cosign(head)
            cosigned.append(head.checkpoint.size)
        else:
            self._state.keep(self._ledger_only(head))
        return RoundResult(head.checkpoint.size, tuple(cosigned), skipped)

    def _check(self, kept: _Seen | None, served: _Seen) -> None:
        """Check that ``served`` extends ``kept``.

        Raises:
            ForkDetected: it does not (evidence kept, report posted).
        """
        if kept is None:
            return  # trust on first use: the first checkpoint seen is the base
        old, new = kept.checkpoint, served.checkpoint
        proof: tuple[bytes, ...] = ()
        if new.size < old.size:
            reason = (
                f"the ledger was rolled back: it served a checkpoint of {new.size} entries "
                f"after one of {old.size}"
            )
        elif new.size == old.size:
            if new.root == old.root:
                return
            reason = f"two checkpoints of size {new.size} with different roots"
        elif old.size == 0:
            return
        else:
            proof = self._transport.consistency(old.size, new.size)
            try:
                verify_consistency(old.size, new.size, old.root, new.root, proof)
                return
            except ConsistencyProofError as exc:
                reason = (
                    f"the checkpoint of {new.size} entries is not consistent with the kept "
                    f"one of {old.size}: {exc}"
                )
        self._fork(kept, served, proof, reason)

    def _fork(self, kept: _Seen, served: _Seen, proof: tuple[bytes, ...], reason: str) -> None:
        evidence = self._state.raise_fork(kept.text, served.text, proof, reason, now=self._clock())
        logger.error("fork: %s (evidence %s)", reason, evidence)
        notes = [self._ledger_only(kept), self._ledger_only(served)]
        try:
            self._transport.post_fork(notes, proof, reason)
        except Exception as exc:  # the fork stands whatever the exchange says
            logger.warning("the exchange did not take the fork report: %s", exc)
            (evidence / "report-refused.txt").write_text(f"{exc}\n")
        raise ForkDetected(reason, evidence)

    def _bookkeeping_only(self, kept: _Seen | None, head: _Seen) -> str | None:
        """Why ``head`` needs no cosignature (its new entries are only witnesses'
        bookkeeping), or None."""
        if kept is None:
            return None
        start, stop = kept.checkpoint.size, head.checkpoint.size
        if stop == start:
            return "nothing new since the checkpoint kept"
        if stop - start > _BOOKKEEPING_SCAN:
            return None
        try:
            entries = self._transport.entries(start, stop)
        except Exception as exc:  # then cosign: skipping is only an economy
            logger.info("could not read the new entries (%s); cosigning", exc)
            return None
        if len(entries) != stop - start or not all(_bookkeeping(e) for e in entries):
            return None
        return f"the {stop - start} new entries are only witnesses' cosignatures"

    def _cosign(self, seen: _Seen) -> None:
        """Cosign ``seen``, post it, keep it."""
        when = int(self._clock().timestamp())
        previous = self._state.cosigned()
        if previous is not None:
            try:
                last = verify_cosignature(SignedNote.from_text(previous), self.verifier)
                when = max(when, last)  # never back in time
            except CheckpointError:
                pass
        line = cosign(seen.note.text, self.name, self._signer, when)
        ledger_only = SignedNote.from_text(self._ledger_only(seen))
        note = SignedNote(ledger_only.text, (*ledger_only.signatures, line)).to_text()
        self._transport.post_cosignature(note)
        self._state.keep(ledger_only.to_text())
        self._state.keep_cosigned(note)
        logger.info("cosigned checkpoint %d", seen.checkpoint.size)


def _bookkeeping(entry: LedgerEntry) -> bool:
    if entry.type in BOOKKEEPING_TYPES:
        return True
    return entry.type == "authz.decision" and entry.payload.get("action") == "ledger_cosign"
