"""C2SP signed notes and tlog-checkpoint bodies, checked against the Go sumdb/note vector."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.keys import Ed25519Signer
from ledger import Checkpoint, CheckpointError, NoteVerifier, SignedNote, sign_note

# golang.org/x/mod/sumdb/note note_test.go (BSD-3-Clause): an independent implementation's
# verifier key and signed note.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)


def test_go_sumdb_note_vector_verifies_and_round_trips() -> None:
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    assert verifier.to_vkey() == GO_VKEY
    note = SignedNote.from_text(GO_NOTE)
    note.verify(verifier)
    assert note.to_text() == GO_NOTE


def test_go_vector_with_one_changed_text_byte_fails() -> None:
    forged = GO_NOTE.replace("answer", "answeR")
    with pytest.raises(CheckpointError):
        SignedNote.from_text(forged).verify(NoteVerifier.from_vkey(GO_VKEY))


def test_key_id_is_sha256_of_name_newline_type_and_key() -> None:
    signer = Ed25519Signer.generate("example.org/log")
    verifier = NoteVerifier("example.org/log", signer.public_key)
    want = hashlib.sha256(b"example.org/log\n\x01" + signer.public_key.raw).digest()[:4]
    assert verifier.key_id == want
    name, hex_id, blob = verifier.to_vkey().split("+", 2)
    assert (name, bytes.fromhex(hex_id)) == ("example.org/log", want)
    assert base64.b64decode(blob) == b"\x01" + signer.public_key.raw


def test_checkpoint_body_is_origin_size_root_lines() -> None:
    root = hashlib.sha256(b"x").digest()
    body = Checkpoint("example.org/log", 42, root).to_text()
    assert body == f"example.org/log\n42\n{base64.b64encode(root).decode()}\n"
    assert Checkpoint.from_text(body) == Checkpoint("example.org/log", 42, root)


@pytest.mark.parametrize(
    "body",
    [
        "origin\n042\nAAAA\n",
        "origin\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n1\nnot base64!\n",
        "origin\n1\n" + base64.b64encode(bytes(31)).decode() + "\n",
        "origin\n1\n",
        "origin\n1\n" + base64.b64encode(bytes(32)).decode(),
    ],
    ids=["leading-zero", "negative", "bad-base64", "short-root", "no-root", "no-final-newline"],
)
def test_malformed_checkpoint_bodies_are_refused(body: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.from_text(body)


def test_signature_by_another_key_is_refused() -> None:
    signer = Ed25519Signer.generate("log")
    other = Ed25519Signer.generate("log")
    note = sign_note("hello\n", "log", signer)
    with pytest.raises(CheckpointError):
        note.verify(NoteVerifier("log", other.public_key))


@pytest.mark.parametrize(
    "text",
    ["no newline", "a\n\nb\n", "", "\n"],
    ids=["unterminated", "blank-line", "empty", "only-newline"],
)
def test_sign_note_refuses_text_that_cannot_be_a_note(text: str) -> None:
    with pytest.raises(ValueError):
        sign_note(text, "log", Ed25519Signer.generate("log"))


@given(
    origin=st.from_regex(r"[a-z0-9.]{1,20}/[a-z]{1,10}", fullmatch=True),
    size=st.integers(0, 2**53),
    root=st.binary(min_size=32, max_size=32),
)
def test_sign_parse_verify_round_trip(origin: str, size: int, root: bytes) -> None:
    signer = Ed25519Signer("k", bytes(32))
    body = Checkpoint(origin, size, root).to_text()
    text = sign_note(body, origin, signer).to_text()
    parsed = SignedNote.from_text(text)
    parsed.verify(NoteVerifier.from_vkey(NoteVerifier(origin, signer.public_key).to_vkey()))
    assert Checkpoint.from_text(parsed.text) == Checkpoint(origin, size, root)
    assert parsed.to_text() == text
