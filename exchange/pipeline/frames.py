"""The binary form of an HE contribution: the signed statement in headers, the chunks framed.

``POST /v1/agent/jobs/{id}/contributions`` with ``Content-Type:
application/octet-stream`` carries

* ``Ibx-Statement``: base64url (padding optional) of the statement's RFC 8785 bytes;
* ``Ibx-Signature``: the Ed25519 signature over them, base64 (as in the JSON form);
* ``Ibx-Key-Fingerprint``: the payload's ``key_fingerprint`` (hex);
* the body: each ciphertext chunk as its 8-byte big-endian length and its bytes —
  exactly what :attr:`mpc.HeContribution.digest` hashes, so the payload's hash is
  SHA-256 of the body as received, with no base64 or JSON to parse.

The JSON form (``{"statement", "signature", "payload"}``) stays valid for every engine.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.canonical import JsonValue, canonical_bytes
from exchange.pipeline.engine import PayloadError
from exchange.pipeline.statements import AgentStatement

__all__ = [
    "FINGERPRINT_HEADER",
    "FRAMED_MEDIA_TYPE",
    "MAX_CHUNKS",
    "SIGNATURE_HEADER",
    "STATEMENT_HEADER",
    "FramedContribution",
    "frame_chunks",
    "split_frames",
]

FRAMED_MEDIA_TYPE = "application/octet-stream"
STATEMENT_HEADER = "Ibx-Statement"
SIGNATURE_HEADER = "Ibx-Signature"
FINGERPRINT_HEADER = "Ibx-Key-Fingerprint"
MAX_CHUNKS = 4096
"""As many chunks as the JSON form allows."""

_LENGTH = 8


def frame_chunks(chunks: Sequence[bytes]) -> bytes:
    """The body of ``chunks``: each one's 8-byte big-endian length, then its bytes."""
    return b"".join(len(c).to_bytes(_LENGTH, "big") + c for c in chunks)


def split_frames(body: bytes) -> tuple[bytes, ...]:
    """The chunks of a framed body (the inverse of :func:`frame_chunks`).

    Raises:
        PayloadError: a truncated frame, a length past the end, no chunk, or too many.
    """
    view = memoryview(body)
    chunks: list[bytes] = []
    at = 0
    while at < len(view):
        if len(view) - at < _LENGTH:
            raise PayloadError("the body ends inside a chunk's 8-byte length")
        size = int.from_bytes(view[at : at + _LENGTH], "big")
        at += _LENGTH
        if size == 0 or size > len(view) - at:
            raise PayloadError("a chunk's length is zero or runs past the end of the body")
        chunks.append(bytes(view[at : at + size]))
        at += size
        if len(chunks) > MAX_CHUNKS:
            raise PayloadError(f"an HE payload has 1 to {MAX_CHUNKS} chunks")
    if not chunks:
        raise PayloadError(f"an HE payload has 1 to {MAX_CHUNKS} chunks")
    return tuple(chunks)


def _b64url(text: str) -> bytes:
    text = text.strip()
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class FramedContribution:
    """A binary HE contribution as received: headers and the framed body."""

    statement: Mapping[str, JsonValue]
    signature: str
    key_fingerprint: str
    body: bytes = field(repr=False)

    @classmethod
    def from_http(
        cls, statement: str | None, signature: str | None, fingerprint: str | None, body: bytes
    ) -> FramedContribution:
        """Decode the three headers (the body is split later, once the statement verified).

        Raises:
            PayloadError: a header is missing or the statement is not base64url JSON
                of an object.
        """
        if not statement or not signature or not fingerprint:
            raise PayloadError(
                f"a binary contribution carries {STATEMENT_HEADER}, {SIGNATURE_HEADER} "
                f"and {FINGERPRINT_HEADER}"
            )
        try:
            decoded = json.loads(_b64url(statement))
        except (binascii.Error, ValueError) as exc:
            raise PayloadError(
                f"{STATEMENT_HEADER} is not base64url of the statement's JSON"
            ) from exc
        if not isinstance(decoded, dict):
            raise PayloadError(f"{STATEMENT_HEADER} holds no statement object")
        return cls(decoded, signature.strip(), fingerprint.strip(), body)

    @classmethod
    def of(
        cls, statement: AgentStatement, signature: str, fingerprint: str, chunks: Sequence[bytes]
    ) -> FramedContribution:
        """What an agent sends for ``chunks`` under ``statement`` (signed: ``signature``)."""
        return cls(statement.to_dict(), signature, fingerprint, frame_chunks(chunks))

    def headers(self) -> dict[str, str]:
        """The request's headers (with its media type)."""
        encoded = base64.urlsafe_b64encode(canonical_bytes(dict(self.statement)))
        return {
            "Content-Type": FRAMED_MEDIA_TYPE,
            STATEMENT_HEADER: encoded.rstrip(b"=").decode(),
            SIGNATURE_HEADER: self.signature,
            FINGERPRINT_HEADER: self.key_fingerprint,
        }

    @property
    def digest(self) -> str:
        """Hex SHA-256 of the body: :attr:`mpc.HeContribution.digest` of its chunks."""
        return hashlib.sha256(self.body).hexdigest()

    def payload(self) -> dict[str, JsonValue]:
        """The JSON form of the payload, ``{"key_fingerprint", "chunks": [base64...]}``.

        Raises:
            PayloadError: the body is not framed chunks.
        """
        chunks: list[JsonValue] = [base64.b64encode(c).decode() for c in split_frames(self.body)]
        return {"key_fingerprint": self.key_fingerprint, "chunks": chunks}
