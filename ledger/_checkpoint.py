"""C2SP ``tlog-checkpoint`` bodies inside C2SP ``signed-note`` envelopes (Ed25519).

A note is ``text`` (ending in a newline), a blank line, and one or more
signature lines ``— <name> <base64(key id || signature)>``. The key id of an
Ed25519 key is the first four bytes of ``SHA-256(name || 0x0A || 0x01 || pub)``;
its verifier key is ``<name>+<hex key id>+<base64(0x01 || pub)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from core.keys import Ed25519PublicKey, Ed25519Signer, verify_ed25519
from ledger._merkle import HASH_SIZE
from ledger.errors import CheckpointError

__all__ = ["Checkpoint", "NoteSignature", "NoteVerifier", "SignedNote", "sign_note"]

_ED25519 = 0x01
_SIG_PREFIX = "\u2014 "
_NAME = re.compile(r"^[^\s+]+$")


def key_id(name: str, public: bytes, key_type: int = _ED25519) -> bytes:
    """A note key's id: the first four bytes of SHA-256(name || 0x0A || type || public key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public).digest()[:4]


def format_vkey(name: str, public: bytes, key_type: int) -> str:
    """The C2SP verifier key ``name+hexid+base64(type || public key)``."""
    blob = base64.b64encode(bytes([key_type]) + public).decode()
    return f"{name}+{key_id(name, public, key_type).hex()}+{blob}"


def parse_vkey(vkey: str, key_type: int, what: str) -> tuple[str, Ed25519PublicKey]:
    """The name and Ed25519 key of a verifier key of ``key_type`` (``what`` names the type).

    Raises:
        CheckpointError: malformed, another type or name, or the key id does not match.
    """
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3:
        raise CheckpointError("a verifier key is <name>+<hex key id>+<base64 key>")
    name, hex_id, blob = parts
    try:
        raw = base64.b64decode(blob, validate=True)
        claimed = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError("verifier key has a malformed id or key") from exc
    if len(raw) != 33 or raw[0] != key_type:
        raise CheckpointError(f"verifier key is not {what}")
    if not _NAME.fullmatch(name):
        raise CheckpointError(f"key name {name!r} must be non-empty, no spaces or '+'")
    try:
        public = Ed25519PublicKey(raw[1:])
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    if len(hex_id) != 8 or key_id(name, public.raw, key_type) != claimed:
        raise CheckpointError("verifier key id does not match its name and key")
    return name, public


@dataclass(frozen=True)
class NoteVerifier:
    """An Ed25519 note verifier key: ``name+hexid+base64(0x01||pub)``."""

    name: str
    public_key: Ed25519PublicKey

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"key name {self.name!r} must be non-empty, no spaces or '+'")

    @property
    def key_id(self) -> bytes:
        """First four bytes of SHA-256(name || '\\n' || 0x01 || public key)."""
        return key_id(self.name, self.public_key.raw)

    def to_vkey(self) -> str:
        """The C2SP verifier key string."""
        return format_vkey(self.name, self.public_key.raw, _ED25519)

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key string.

        Raises:
            CheckpointError: malformed, not Ed25519, or the key id does not match.
        """
        return cls(*parse_vkey(vkey, _ED25519, "an Ed25519 (type 0x01) key"))


@dataclass(frozen=True)
class Checkpoint:
    """A ``tlog-checkpoint`` body: origin, tree size, root hash, optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or self.origin != self.origin.strip():
            raise ValueError("checkpoint origin must be one non-empty line")
        if self.size < 0:
            raise ValueError("checkpoint size must not be negative")
        if len(self.root) != HASH_SIZE:
            raise ValueError("checkpoint root must be a 32-byte SHA-256 hash")
        for ext in self.extensions:
            if not ext or "\n" in ext:
                raise ValueError("checkpoint extension lines must be non-empty single lines")

    def to_text(self) -> str:
        """The body: ``origin\\nsize\\nbase64(root)\\n`` followed by extension lines."""
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body.

        Raises:
            CheckpointError: malformed body.
        """
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint body must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("checkpoint body needs origin, size and root lines")
        origin, size_line, root_line, *extensions = lines
        if not re.fullmatch(r"0|[1-9][0-9]*", size_line):
            raise CheckpointError(f"checkpoint size {size_line!r} is not a decimal number")
        try:
            root = base64.b64decode(root_line, validate=True)
            return cls(origin, int(size_line), root, tuple(extensions))
        except (binascii.Error, ValueError) as exc:
            raise CheckpointError(f"malformed checkpoint: {exc}") from exc


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class SignedNote:
    """A signed note: its text and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def to_text(self) -> str:
        """The full note, as served at ``/v1/ledger/checkpoint``."""
        lines = [
            f"{_SIG_PREFIX}{sig.name} {base64.b64encode(sig.key_id + sig.signature).decode()}\n"
            for sig in self.signatures
        ]
        return self.text + "\n" + "".join(lines)

    @classmethod
    def from_text(cls, note: str) -> SignedNote:
        """Parse a signed note.

        Raises:
            CheckpointError: malformed note.
        """
        sep = note.rfind("\n\n")
        if sep < 0 or not note.endswith("\n"):
            raise CheckpointError("a signed note is text, a blank line and signature lines")
        text, sig_block = note[: sep + 1], note[sep + 2 :]
        signatures: list[NoteSignature] = []
        for line in sig_block[:-1].split("\n"):
            if not line.startswith(_SIG_PREFIX):
                raise CheckpointError("a signature line must start with an em dash and a space")
            fields = line[len(_SIG_PREFIX) :].split(" ")
            if len(fields) != 2 or not _NAME.fullmatch(fields[0]):
                raise CheckpointError("a signature line is '— <name> <base64>'")
            try:
                blob = base64.b64decode(fields[1], validate=True)
            except binascii.Error as exc:
                raise CheckpointError("signature is not base64") from exc
            if len(blob) < 5:
                raise CheckpointError("signature is too short")
            signatures.append(NoteSignature(fields[0], blob[:4], blob[4:]))
        if not signatures:
            raise CheckpointError("note has no signatures")
        return cls(text, tuple(signatures))

    def verify(self, verifier: NoteVerifier) -> None:
        """Check that ``verifier`` signed this note.

        Raises:
            CheckpointError: no signature by that key, or the signature is invalid.
        """
        for sig in self.signatures:
            if sig.name == verifier.name and sig.key_id == verifier.key_id:
                if verify_ed25519(verifier.public_key, self.text.encode(), sig.signature):
                    return
                raise CheckpointError(f"signature by {verifier.name} does not verify")
        raise CheckpointError(f"note carries no signature by {verifier.name}")


def sign_note(text: str, name: str, signer: Ed25519Signer) -> SignedNote:
    """Sign ``text`` as a C2SP note under key ``name``.

    Raises:
        ValueError: the text is empty, does not end with a newline, or has a blank line.
    """
    if not text.endswith("\n") or "\n\n" in text or not text.strip():
        raise ValueError("note text must be non-empty lines each ending in a newline")
    kid = key_id(name, signer.public_key.raw)
    return SignedNote(text, (NoteSignature(name, kid, signer.sign(text.encode())),))
