"""C2SP ``tlog-cosignature`` (v1, Ed25519): a witness's timestamped signature on a checkpoint.

A cosignature is one more signature line of the checkpoint's signed note::

    — <witness name> base64(key id || u64 timestamp, big-endian || Ed25519 signature)

* key id: the first four bytes of ``SHA-256(name || 0x0A || 0x04 || public key)``
  (signature type ``0x04``, cosignature/v1);
* verifier key (vkey): ``<name>+<hex key id>+base64(0x04 || public key)``;
* the signed message: ``cosignature/v1\\n``, ``time <decimal timestamp>\\n``, then
  the whole checkpoint body (origin, size, root, any extension lines), without
  the signature lines.

A cosignature states that, as of its timestamp, the witness saw no larger
consistent tree for that origin. The timestamp must not exceed ``2**63 - 1``.
No I/O here: :mod:`audit.witness` drives a witness, the exchange stores the
lines it is given (:mod:`ledger.backends.checkpoint_store`).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from core.keys import Ed25519PublicKey, Ed25519Signer, verify_ed25519
from ledger._checkpoint import NoteSignature, SignedNote, format_vkey, key_id, parse_vkey
from ledger.errors import CheckpointError

__all__ = [
    "COSIGNATURE_V1",
    "MAX_TIMESTAMP",
    "CosignatureVerifier",
    "cosign",
    "cosignature_message",
    "cosignature_timestamp",
    "count_cosignatures",
    "verify_cosignature",
    "with_cosignatures",
]

COSIGNATURE_V1: Final = 0x04
"""The signature type byte of an Ed25519 cosignature/v1 key."""

MAX_TIMESTAMP: Final = (1 << 63) - 1
_HEADER: Final = b"cosignature/v1\n"
_NAME = re.compile(r"^[^\s+]+$")
_BLOB_SIZE: Final = 8 + 64
"""A cosignature's bytes after the key id: the timestamp and the Ed25519 signature."""


@dataclass(frozen=True)
class CosignatureVerifier:
    """A witness's cosignature/v1 verifier: its name and Ed25519 public key."""

    name: str
    public_key: Ed25519PublicKey

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"witness name {self.name!r} must be non-empty, no spaces or '+'")

    @property
    def key_id(self) -> bytes:
        """First four bytes of SHA-256(name || '\\n' || 0x04 || public key)."""
        return key_id(self.name, self.public_key.raw, COSIGNATURE_V1)

    def to_vkey(self) -> str:
        """The C2SP verifier key: ``name+hexid+base64(0x04 || public key)``."""
        return format_vkey(self.name, self.public_key.raw, COSIGNATURE_V1)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse a cosignature/v1 verifier key.

        Raises:
            CheckpointError: malformed, not of type 0x04, or the key id does not match.
        """
        return cls(*parse_vkey(vkey, COSIGNATURE_V1, "an Ed25519 cosignature/v1 (type 0x04) key"))


def cosignature_message(checkpoint_body: str, timestamp: int) -> bytes:
    """The bytes a witness signs: header line, time line, the checkpoint body.

    Raises:
        ValueError: the timestamp is negative or above ``2**63 - 1``, or the body
            does not end with a newline.
    """
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError(f"a cosignature timestamp is 0..2^63-1, not {timestamp}")
    if not checkpoint_body.endswith("\n"):
        raise ValueError("a checkpoint body ends with a newline")
    return _HEADER + b"time %d\n" % timestamp + checkpoint_body.encode()


def cosign(checkpoint_body: str, name: str, signer: Ed25519Signer, timestamp: int) -> NoteSignature:
    """The cosignature line of witness ``name`` on ``checkpoint_body`` at ``timestamp``
    (POSIX seconds), as a note signature (append it to the note's signatures).

    Raises:
        ValueError: a malformed name, body or timestamp.
    """
    verifier = CosignatureVerifier(name, signer.public_key)
    signature = signer.sign(cosignature_message(checkpoint_body, timestamp))
    return NoteSignature(name, verifier.key_id, struct.pack(">Q", timestamp) + signature)


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The timestamp a cosignature line states (unverified).

    Raises:
        CheckpointError: not the 8 + 64 bytes of an Ed25519 cosignature, or a
            timestamp above ``2**63 - 1``.
    """
    if len(signature.signature) != _BLOB_SIZE:
        raise CheckpointError(f"signature by {signature.name} is not an Ed25519 cosignature")
    (timestamp,) = struct.unpack(">Q", signature.signature[:8])
    if timestamp > MAX_TIMESTAMP:
        raise CheckpointError(f"cosignature by {signature.name} has a timestamp above 2^63-1")
    return int(timestamp)


def _check(note: SignedNote, sig: NoteSignature, verifier: CosignatureVerifier) -> int:
    timestamp = cosignature_timestamp(sig)
    message = cosignature_message(note.text, timestamp)
    if not verify_ed25519(verifier.public_key, message, sig.signature[8:]):
        raise CheckpointError(f"cosignature by {verifier.name} does not verify")
    return timestamp


def verify_cosignature(
    note: SignedNote, verifier: CosignatureVerifier, *, not_after: int | None = None
) -> int:
    """Check ``verifier``'s cosignature on ``note``; its timestamp.

    Lines of other names or key ids are ignored (C2SP). ``not_after`` (POSIX
    seconds), if given, refuses a cosignature timestamped later.

    Raises:
        CheckpointError: no cosignature by that key, it does not verify, or it is
            timestamped after ``not_after``.
    """
    for sig in note.signatures:
        if sig.name == verifier.name and sig.key_id == verifier.key_id:
            timestamp = _check(note, sig, verifier)
            if not_after is not None and timestamp > not_after:
                raise CheckpointError(
                    f"cosignature by {verifier.name} is timestamped in the future ({timestamp})"
                )
            return timestamp
    raise CheckpointError(f"note carries no cosignature by {verifier.name}")


def count_cosignatures(
    note: SignedNote, verifiers: Iterable[CosignatureVerifier], *, not_after: int | None = None
) -> int:
    """How many of ``verifiers`` (distinct keys) validly cosigned ``note``."""
    seen: set[tuple[str, bytes]] = set()
    valid = 0
    for verifier in verifiers:
        key = (verifier.name, verifier.public_key.raw)
        if key in seen:
            continue
        seen.add(key)
        try:
            verify_cosignature(note, verifier, not_after=not_after)
        except CheckpointError:
            continue
        valid += 1
    return valid


def with_cosignatures(note: SignedNote, lines: Sequence[NoteSignature]) -> SignedNote:
    """``note`` with ``lines`` appended after its own signatures, skipping a line whose
    name and key id it already carries."""
    have = {(sig.name, sig.key_id) for sig in note.signatures}
    extra: list[NoteSignature] = []
    for line in lines:
        if (line.name, line.key_id) not in have:
            have.add((line.name, line.key_id))
            extra.append(line)
    return SignedNote(note.text, (*note.signatures, *extra))
