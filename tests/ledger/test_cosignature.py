"""C2SP ``tlog-cosignature`` v1 (Ed25519): key ids, vkeys, the signed message, round trips,
and the checkpoint store that keeps the lines witnesses bring back.

Vectors: the vkey ``remora.n621.de+da77ade7+BOvN…`` and the cosignature
``ZGhGuQAAAABm/qTP…`` (timestamp 1727964367) are from transparency-dev/formats,
``note/note_cosigv1_test.go`` (``TestCoSigV1NewVerifier``, ``TestCoSigV1Timestamp``).
The independent check below re-derives everything from the spec text
(c2sp.org/tlog-cosignature, "Format" and "Ed25519 signed message") with
``cryptography``'s Ed25519, not PyNaCl, and no code of ``ledger``.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey as CryptoEd25519
from hypothesis import given
from hypothesis import strategies as st

from core.db import Database, migrate
from core.keys import Ed25519Signer
from ledger import (
    MIGRATIONS,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    CosignatureVerifier,
    NoteSignature,
    NoteVerifier,
    SignedNote,
    StoredCosignature,
    cosign,
    cosignature_message,
    cosignature_timestamp,
    count_cosignatures,
    sign_note,
    verify_cosignature,
    with_cosignatures,
)

LOG = Ed25519Signer("log", bytes(range(32)))
WITNESS = Ed25519Signer("w1", bytes(range(1, 33)))
OTHER = Ed25519Signer("w2", bytes(range(2, 34)))
ORIGIN = "ibx.test/ledger"
T = 1_790_000_000


def _note(size: int = 7, extensions: tuple[str, ...] = ()) -> SignedNote:
    body = Checkpoint(ORIGIN, size, hashlib.sha256(str(size).encode()).digest(), extensions)
    return sign_note(body.to_text(), ORIGIN, LOG)


def _cosigned(note: SignedNote, *signers: tuple[str, Ed25519Signer], at: int = T) -> SignedNote:
    return with_cosignatures(note, [cosign(note.text, name, s, at) for name, s in signers])


def _independent_check(note_text: str, vkey: str) -> int:
    """Verify the named witness's cosignature from the spec alone; its timestamp."""
    name, hex_id, blob = vkey.split("+", 2)
    raw = base64.b64decode(blob)
    assert raw[0] == 0x04 and len(raw) == 33
    public = raw[1:]
    key_id = hashlib.sha256(name.encode() + b"\x0a" + b"\x04" + public).digest()[:4]
    assert key_id.hex() == hex_id
    text, _, sigs = note_text.partition("\n\n")
    body = text + "\n"
    for line in sigs.splitlines():
        dash, signer_name, b64 = line.split(" ")
        assert dash == "\u2014"
        decoded = base64.b64decode(b64)
        if signer_name != name or decoded[:4] != key_id:
            continue
        assert len(decoded) == 4 + 8 + 64
        (timestamp,) = struct.unpack(">Q", decoded[4:12])
        message = b"cosignature/v1\n" + f"time {timestamp}\n".encode() + body.encode()
        CryptoEd25519.from_public_bytes(public).verify(decoded[12:], message)
        return int(timestamp)
    raise AssertionError("no cosignature line by that witness")


def test_an_independent_verifier_built_from_the_spec_accepts_our_cosignature() -> None:
    vkey = CosignatureVerifier("w1", WITNESS.public_key).to_vkey()
    note = _cosigned(_note(), ("w1", WITNESS))
    assert _independent_check(note.to_text(), vkey) == T
    tampered = note.to_text().replace("\n7\n", "\n8\n")
    with pytest.raises(InvalidSignature):
        _independent_check(tampered, vkey)


def test_the_signed_message_is_header_time_line_and_the_whole_body() -> None:
    body = _note(extensions=("ext line",)).text
    assert cosignature_message(body, 1679315147) == (
        b"cosignature/v1\ntime 1679315147\n" + body.encode()
    )
    with pytest.raises(ValueError, match=r"0\.\.2"):
        cosignature_message(body, 1 << 63)
    with pytest.raises(ValueError, match=r"0\.\.2"):
        cosignature_message(body, -1)


def test_published_vkey_parses_and_its_key_id_recomputes() -> None:
    vkey = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
    verifier = CosignatureVerifier.from_vkey(vkey)
    assert verifier.name == "remora.n621.de"
    assert verifier.key_id.hex() == "da77ade7"
    assert verifier.to_vkey() == vkey


@pytest.mark.parametrize(
    "vkey",
    [
        "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6",  # a 0x01 note key
        "remora.n621.de+00000000+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
        "remora.n621.de+da77ade7",
        "remora.n621.de+da77ade7+THIS_IS_NOT_BASE64!",
        "other.name+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
    ],
    ids=["note-key-type-0x01", "wrong-key-id", "two-parts", "not-base64", "another-name"],
)
def test_malformed_or_foreign_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(CheckpointError):
        CosignatureVerifier.from_vkey(vkey)


def test_published_cosignature_timestamp() -> None:
    blob = base64.b64decode(
        "ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA=="
    )
    assert cosignature_timestamp(NoteSignature("w", blob[:4], blob[4:])) == 1727964367
    plain = base64.b64decode(
        "eQjRQm6eSKzFoiYalgwCPXu2y3ijtg68is9M46JKxuZB+dRfTmeQeDBoXnvxZx2ugnkyV+MUMLXpWs1hPb/W/4xkNQY="
    )
    with pytest.raises(CheckpointError, match="not an Ed25519 cosignature"):
        cosignature_timestamp(NoteSignature("w", plain[:4], plain[4:]))


def test_cosignature_and_note_key_ids_differ_for_one_key() -> None:
    assert (
        CosignatureVerifier("w1", WITNESS.public_key).key_id
        != NoteVerifier("w1", WITNESS.public_key).key_id
    )


def test_the_ledger_signature_and_cosignatures_round_trip_byte_for_byte() -> None:
    note = _cosigned(_note(), ("w1", WITNESS), ("w2", OTHER))
    text = note.to_text()
    assert text.count("\u2014 ") == 3
    assert SignedNote.from_text(text).to_text() == text
    parsed = SignedNote.from_text(text)
    parsed.verify(NoteVerifier(ORIGIN, LOG.public_key))  # the ledger's line still verifies
    assert verify_cosignature(parsed, CosignatureVerifier("w1", WITNESS.public_key)) == T
    assert verify_cosignature(parsed, CosignatureVerifier("w2", OTHER.public_key)) == T


@given(
    size=st.integers(min_value=0, max_value=2**40),
    at=st.integers(min_value=0, max_value=(1 << 63) - 1),
    extensions=st.lists(
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20),
        max_size=2,
    ),
)
def test_cosign_verify_round_trip(size: int, at: int, extensions: list[str]) -> None:
    note = _cosigned(_note(size, tuple(extensions)), ("w1", WITNESS), at=at)
    again = SignedNote.from_text(note.to_text())
    assert again.to_text() == note.to_text()
    assert verify_cosignature(again, CosignatureVerifier("w1", WITNESS.public_key)) == at


def test_a_cosignature_by_another_key_or_on_another_body_is_refused() -> None:
    note = _cosigned(_note(), ("w1", OTHER))  # w1's name, another key: another key id
    w1 = CosignatureVerifier("w1", WITNESS.public_key)
    with pytest.raises(CheckpointError, match="no cosignature by w1"):
        verify_cosignature(note, w1)
    forged_id = NoteSignature("w1", w1.key_id, note.signatures[1].signature)
    forged = SignedNote(note.text, (note.signatures[0], forged_id))
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_cosignature(forged, w1)
    honest = _cosigned(_note(7), ("w1", WITNESS))
    moved = SignedNote(_note(8).text, honest.signatures)
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_cosignature(moved, w1)


def test_extension_lines_are_covered() -> None:
    note = _cosigned(_note(extensions=("a",)), ("w1", WITNESS))
    changed = SignedNote(note.text.replace("a\n", "b\n"), note.signatures)
    with pytest.raises(CheckpointError, match="does not verify"):
        verify_cosignature(changed, CosignatureVerifier("w1", WITNESS.public_key))


def test_a_future_timestamp_is_refused_when_asked() -> None:
    note = _cosigned(_note(), ("w1", WITNESS), at=T + 3600)
    w1 = CosignatureVerifier("w1", WITNESS.public_key)
    with pytest.raises(CheckpointError, match="future"):
        verify_cosignature(note, w1, not_after=T)
    assert verify_cosignature(note, w1, not_after=T + 3600) == T + 3600


def test_counting_counts_distinct_valid_witnesses_only() -> None:
    note = _cosigned(_note(), ("w1", WITNESS), ("w2", OTHER))
    w1 = CosignatureVerifier("w1", WITNESS.public_key)
    w2 = CosignatureVerifier("w2", OTHER.public_key)
    stranger = CosignatureVerifier("w3", Ed25519Signer.generate("w3").public_key)
    assert count_cosignatures(note, [w1, w2]) == 2
    assert count_cosignatures(note, [w1, w1, w1]) == 1
    assert count_cosignatures(note, [stranger]) == 0
    assert count_cosignatures(_note(), [w1, w2]) == 0


def test_with_cosignatures_skips_a_line_already_carried() -> None:
    note = _cosigned(_note(), ("w1", WITNESS))
    again = with_cosignatures(note, [cosign(note.text, "w1", WITNESS, T + 1)])
    assert again == note


# -- the store ---------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Database, CheckpointStore]]:
    db = Database(f"sqlite:///{tmp_path / 'ledger.db'}")
    migrate(db, [MIGRATIONS])
    yield db, CheckpointStore(db)
    db.dispose()


def _keep(
    db: Database, store: CheckpointStore, note: SignedNote, name: str, s: Ed25519Signer, at: int = T
) -> bool:
    line = cosign(note.text, name, s, at)
    size = Checkpoint.from_text(note.text).size
    with db.write() as session:
        return store.add(note, StoredCosignature(size, line, at), session=session)


def test_the_store_serves_a_note_with_its_lines_and_pages_ascending(
    store: tuple[Database, CheckpointStore],
) -> None:
    db, kept = store
    n5, n9 = _note(5), _note(9)
    assert kept.latest() is None
    assert kept.served(n5) == n5
    assert _keep(db, kept, n9, "w1", WITNESS)
    assert _keep(db, kept, n5, "w2", OTHER)
    assert _keep(db, kept, n9, "w2", OTHER)
    assert not _keep(db, kept, n9, "w1", WITNESS, T + 10)  # a later line replaces the first
    served = kept.served(n9)
    assert served.to_text().startswith(n9.to_text()[:-1])  # the ledger's note, byte for byte
    assert (
        count_cosignatures(
            served,
            [
                CosignatureVerifier("w1", WITNESS.public_key),
                CosignatureVerifier("w2", OTHER.public_key),
            ],
        )
        == 2
    )
    assert verify_cosignature(served, CosignatureVerifier("w1", WITNESS.public_key)) == T + 10
    notes, more = kept.page(-1, 1)
    assert [Checkpoint.from_text(n.text).size for n in notes] == [5] and more
    notes, more = kept.page(5, 10)
    assert [Checkpoint.from_text(n.text).size for n in notes] == [9] and not more
    latest = kept.latest()
    assert latest is not None and latest.to_text() == served.to_text()


def test_the_store_refuses_another_body_of_a_stored_size(
    store: tuple[Database, CheckpointStore],
) -> None:
    db, kept = store
    _keep(db, kept, _note(5), "w1", WITNESS)
    other = sign_note(Checkpoint(ORIGIN, 5, bytes(32)).to_text(), ORIGIN, LOG)
    with pytest.raises(CheckpointError, match="another checkpoint body"):
        _keep(db, kept, other, "w2", OTHER)
    assert kept.served(other) == other  # never another body's lines
