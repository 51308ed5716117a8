"""The export's checkpoints and the auditor's own, checked against the rebuilt tree; no I/O.

Each checkpoint in an export must be a C2SP signed note for the header's
origin, signed by the ledger key the auditor pinned (``--ledger-vkey``; else
the key the export names, and the report says so), whose root is the root the
leaves rebuild at its size. Two checkpoints of one size with different roots
are a fork. A checkpoint the auditor kept from earlier
(``--trusted-checkpoint``) must be signed by the same key, be no larger than
the export (else the log was rolled back) and sign the root the export's
leaves make at its size (else history was rewritten, or the auditor is shown
a fork). Cosignature lines are counted per witness key the header names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from audit._findings import Finding
from audit.errors import AuditError
from ledger import (
    Checkpoint,
    CheckpointError,
    CosignatureVerifier,
    NoteVerifier,
    SignedNote,
    verify_cosignature,
)

__all__ = [
    "CheckpointCheck",
    "NotedCheckpoint",
    "check_checkpoints",
    "check_trusted",
    "parse_checkpoints",
    "parse_trusted",
]


@dataclass(frozen=True)
class NotedCheckpoint:
    """A checkpoint line parsed: its position among the export's checkpoints, the note
    and its body."""

    position: int
    note: SignedNote
    checkpoint: Checkpoint


@dataclass(frozen=True)
class CheckpointCheck:
    """What the checkpoints showed: the findings, how many verified, and the valid
    cosignatures per witness key (vkey → checkpoints it cosigned)."""

    findings: tuple[Finding, ...]
    verified: int
    cosignatures: Mapping[str, int] = field(default_factory=dict)


def parse_checkpoints(notes: Sequence[str]) -> tuple[list[NotedCheckpoint], list[Finding]]:
    """Parse each checkpoint line; one that is no signed checkpoint is a finding."""
    parsed: list[NotedCheckpoint] = []
    findings: list[Finding] = []
    for position, text in enumerate(notes):
        try:
            note = SignedNote.from_text(text)
            parsed.append(NotedCheckpoint(position, note, Checkpoint.from_text(note.text)))
        except CheckpointError as exc:
            findings.append(
                Finding(
                    "checkpoint.malformed",
                    None,
                    f"checkpoint {position + 1} of the export is no signed checkpoint: {exc}",
                )
            )
    return parsed, findings


def parse_trusted(text: str) -> NotedCheckpoint:
    """Parse the checkpoint the auditor kept.

    Raises:
        AuditError: it is no signed checkpoint (the auditor's own input is wrong).
    """
    try:
        note = SignedNote.from_text(text)
        return NotedCheckpoint(0, note, Checkpoint.from_text(note.text))
    except CheckpointError as exc:
        raise AuditError(f"the trusted checkpoint is no signed checkpoint: {exc}") from exc


def check_checkpoints(
    checkpoints: Sequence[NotedCheckpoint],
    *,
    origin: str,
    verifier: NoteVerifier | None,
    roots: Mapping[int, bytes],
    size: int,
    witnesses: Sequence[str] = (),
) -> CheckpointCheck:
    """Check every checkpoint of the export against the rebuilt tree.

    ``verifier`` None: the export's key was unusable (already a finding); the
    signatures are not checked. ``roots`` holds the rebuilt root at each size
    the checkpoints name that the export's ``size`` leaves reach.
    """
    findings: list[Finding] = []
    verified = 0
    agreeing = [0]
    seen: dict[int, NotedCheckpoint] = {}
    for cp in checkpoints:
        body, label = cp.checkpoint, _label(cp)
        ok = True
        if body.origin != origin:
            findings.append(
                Finding(
                    "checkpoint.origin",
                    None,
                    f"{label} is for origin {body.origin!r}, not this log's {origin!r}",
                )
            )
            ok = False
        if verifier is not None:
            try:
                cp.note.verify(verifier)
            except CheckpointError as exc:
                findings.append(
                    Finding(
                        "checkpoint.signature",
                        None,
                        f"{label} is not signed by the ledger key {verifier.to_vkey()} "
                        f"({exc}): the checkpoint key was replaced or the note forged",
                    )
                )
                ok = False
        earlier = seen.get(body.size)
        if earlier is not None and earlier.checkpoint.root != body.root:
            findings.append(
                Finding(
                    "checkpoint.fork",
                    None,
                    f"{_label(earlier)} and {label} sign different roots for the same "
                    f"size {body.size}: the log was forked",
                )
            )
            ok = False
        seen.setdefault(body.size, cp)
        if body.size > size:
            findings.append(
                Finding(
                    "checkpoint.size",
                    size,
                    f"{label} signs {body.size} entries but the export holds only {size}",
                )
            )
            ok = False
        elif roots.get(body.size) != body.root:
            start = max(s for s in agreeing if s <= body.size)
            findings.append(
                Finding(
                    "checkpoint.root",
                    start,
                    f"{label} signs a root the export's first {body.size} entries do not hash "
                    f"to: an entry in {start}..{body.size - 1} was changed, deleted, inserted "
                    "or moved after it was signed",
                )
            )
            ok = False
        else:
            agreeing.append(body.size)
        if ok:
            verified += 1
    signed = {cp.checkpoint.size for cp in checkpoints}
    if size > 0 and max(signed, default=-1) < size:  # a larger one is checkpoint.size
        last = max(signed, default=0)
        findings.append(
            Finding(
                "checkpoint.missing",
                last,
                f"no checkpoint in the export signs all {size} entries: entries "
                f"{last}..{size - 1} are covered by no signature",
            )
        )
    counts, forged = _cosignatures(checkpoints, witnesses)
    findings.extend(forged)
    return CheckpointCheck(tuple(findings), verified, counts)


def check_trusted(
    trusted: NotedCheckpoint,
    *,
    origin: str,
    verifier: NoteVerifier | None,
    roots: Mapping[int, bytes],
    size: int,
) -> list[Finding]:
    """Check the checkpoint the auditor kept against the export's tree."""
    body = trusted.checkpoint
    findings: list[Finding] = []
    if body.origin != origin:
        findings.append(
            Finding(
                "trusted.origin",
                None,
                f"the trusted checkpoint is for origin {body.origin!r}, this log is {origin!r}",
            )
        )
    if verifier is not None:
        try:
            trusted.note.verify(verifier)
        except CheckpointError as exc:
            findings.append(
                Finding(
                    "trusted.signature",
                    None,
                    f"the trusted checkpoint is not signed by the ledger key "
                    f"{verifier.to_vkey()} ({exc}): the ledger key was replaced",
                )
            )
    if body.size > size:
        findings.append(
            Finding(
                "trusted.rollback",
                size,
                f"the trusted checkpoint signs {body.size} entries but the export holds "
                f"{size}: the log was rolled back",
            )
        )
    elif roots.get(body.size) != body.root:
        findings.append(
            Finding(
                "trusted.inconsistent",
                None,
                f"the trusted checkpoint of size {body.size} signs a root the export's first "
                f"{body.size} entries do not hash to: history was rewritten since, or this "
                "export is of a fork of the log you kept",
            )
        )
    return findings


def _label(cp: NotedCheckpoint) -> str:
    return f"checkpoint {cp.position + 1} (size {cp.checkpoint.size})"


def _cosignatures(
    checkpoints: Sequence[NotedCheckpoint], witnesses: Sequence[str]
) -> tuple[dict[str, int], list[Finding]]:
    """Valid cosignatures (C2SP tlog-cosignature) per witness key the header names: how
    many checkpoints each cosigned. A line in a witness's name and key id that does not
    verify is a forged cosignature: a finding."""
    counts: dict[str, int] = {}
    findings: list[Finding] = []
    for vkey in witnesses:
        try:
            verifier = CosignatureVerifier.from_vkey(vkey)
        except CheckpointError as exc:
            findings.append(
                Finding("export.witness_vkey", None, f"witness key {vkey!r} is malformed: {exc}")
            )
            continue
        counts[vkey] = 0
        for cp in checkpoints:
            if not any(
                sig.name == verifier.name and sig.key_id == verifier.key_id
                for sig in cp.note.signatures
            ):
                continue
            try:
                verify_cosignature(cp.note, verifier)
            except CheckpointError as exc:
                findings.append(
                    Finding(
                        "checkpoint.cosignature",
                        None,
                        f"{_label(cp)} carries a cosignature line of witness {verifier.name} "
                        f"that does not verify ({exc})",
                    )
                )
                continue
            counts[vkey] += 1
    return counts, findings
