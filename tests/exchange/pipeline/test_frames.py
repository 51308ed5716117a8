"""The binary HE contribution form: framing round-trips, its hash is the engine's, and a
body that is not framed chunks is refused (exchange/pipeline/frames.py)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

import mpc
from exchange.pipeline.engine import PayloadError
from exchange.pipeline.frames import (
    MAX_CHUNKS,
    FramedContribution,
    frame_chunks,
    split_frames,
)
from exchange.pipeline.statements import CONTRIBUTION_KIND, AgentStatement

chunk_lists = st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=8)


@given(chunk_lists)
def test_frames_round_trip_and_hash_as_the_he_digest(chunks: list[bytes]) -> None:
    body = frame_chunks(chunks)
    assert split_frames(body) == tuple(chunks)
    framed = FramedContribution({}, "sig", "ab" * 32, body)
    assert framed.digest == mpc.HeContribution("job", "e", "ab" * 32, tuple(chunks)).digest
    payload = framed.payload()
    assert payload["chunks"] == [base64.b64encode(c).decode() for c in chunks]


@given(chunk_lists, st.integers(min_value=1, max_value=7))
def test_a_truncated_body_is_refused(chunks: list[bytes], cut: int) -> None:
    body = frame_chunks(chunks)  # every frame is at least 9 bytes: a cut ends inside one
    with pytest.raises(PayloadError):
        split_frames(body[:-cut])


CASES = [
    ("empty", b""),
    ("a length only", (5).to_bytes(8, "big")),
    ("half a length", b"\x00\x00\x00"),
    ("a zero-length chunk", (0).to_bytes(8, "big")),
    ("a length past the end", (10).to_bytes(8, "big") + b"abc"),
    ("too many chunks", frame_chunks([b"x"] * (MAX_CHUNKS + 1))),
]


@pytest.mark.parametrize(("body"), [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_bodies_that_are_not_framed_chunks_are_refused(body: bytes) -> None:
    with pytest.raises(PayloadError):
        split_frames(body)


def test_headers_carry_the_statement_as_base64url_of_its_canonical_bytes() -> None:
    statement = AgentStatement(CONTRIBUTION_KIND, "job_" + "0" * 32, "e1", 1, "ab" * 32)
    framed = FramedContribution.of(statement, "c2ln", "cd" * 32, [b"one", b"two"])
    headers = framed.headers()
    assert headers["Content-Type"] == "application/octet-stream"
    assert "=" not in headers["Ibx-Statement"]
    again = FramedContribution.from_http(
        headers["Ibx-Statement"], headers["Ibx-Signature"], headers["Ibx-Key-Fingerprint"], b""
    )
    assert AgentStatement.from_dict(dict(again.statement)) == statement
    assert again.signature == "c2ln" and again.key_fingerprint == "cd" * 32


@pytest.mark.parametrize(
    ("statement", "signature", "fingerprint"),
    [
        (None, "s", "f"),
        ("e30", None, "f"),
        ("e30", "s", None),
        ("!!", "s", "f"),
        ("WzFd", "s", "f"),
    ],
    ids=["no statement", "no signature", "no fingerprint", "not base64url", "not an object"],
)
def test_missing_or_malformed_headers_are_refused(
    statement: str | None, signature: str | None, fingerprint: str | None
) -> None:
    with pytest.raises(PayloadError):
        FramedContribution.from_http(statement, signature, fingerprint, b"")
