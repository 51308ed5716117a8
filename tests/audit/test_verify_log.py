"""``ibx audit verify`` on the log itself: a real data dir, tampered in its database.

One deployment (SQLite) is built through the real services: administrators
registered with officers' duties, enterprises, datasets, a token rotation, and
a witness cosigning the checkpoint three times (so the export carries stored,
cosigned checkpoints at several sizes). Each test copies the data dir, edits
the copy's ledger tables with SQL as an operator with database access could,
runs ``ibx ledger export`` and ``ibx audit verify`` (in this process, as the
console script runs them) and checks that the change is found and named by
code and index, in text and ``--json``. Two copies that each append after a
common prefix are two diverging logs under one key: a checkpoint kept from
one fails against the other's export.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit import ExportedEntry
from audit._tree import CompactRange, claimed_index, rebuild_tree
from consent import Classification
from core.clock import utcnow
from core.keys import Ed25519Signer
from exchange.access import Grant, Scope
from exchange.cli import main
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from exchange.witnessing import accept_cosignature
from ledger import Checkpoint, SignedNote, cosign, leaf_hash, sign_note, with_cosignatures
from ledger._merkle import append_nodes, root_from_nodes
from tests.conftest import initialised
from tests.identities import admin_signer, register_all
from tests.ledger.reference import mth

LB = "lithium-battery"


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str

    def findings(self) -> list[dict[str, Any]]:
        """The ``--json`` report's findings."""
        found: list[dict[str, Any]] = json.loads(self.stdout)["findings"]
        return found


def ibx(*args: str) -> Done:
    """``ibx ARGS`` in this process, as the console script runs it (one-line errors, exit
    codes); a subprocess per call would cost seconds on a loaded machine."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.argv
    sys.argv = ["ibx", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    else:  # pragma: no cover -- main always exits
        code = 0
    finally:
        sys.argv = saved
    return Done(code, out.getvalue(), err.getvalue())


def cosign_head(runtime: Runtime, witness: str = "wit") -> None:
    """``witness`` cosigns the latest checkpoint through the exchange's acceptance path."""
    note = runtime.ledger.checkpoint()
    line = cosign(note.text, witness, admin_signer(witness), int(time.time()))
    grant = Grant(runtime.identities.get(witness), "ledger_cosign", Scope.ALL, None)
    accept_cosignature(runtime, grant, with_cosignatures(note, [line]).to_text())


def register_dataset(runtime: Runtime, dataset: str, owner: str) -> None:
    runtime.consents.catalog.register(
        dataset,
        owner=owner,
        fields=("energy_kwh", "output_units"),
        classification=Classification.GENERAL,
        now=utcnow(),
        description=f"monthly energy use of {owner}",
    )


@dataclass(frozen=True)
class World:
    root: Path
    data: Path
    export: Path
    vkey: Path
    kept: Path
    """The checkpoint an auditor kept after the first datasets (size ``kept_size``)."""
    kept_size: int
    size: int
    datasets: tuple[int, ...]
    """The indices of the dataset.register entries."""
    cosigned: tuple[int, ...]
    """The sizes of the checkpoints the witness cosigned."""

    def copy(self, name: str) -> Path:
        """A copy of the deployment's data dir, to tamper with."""
        target = self.root / "copies" / name
        shutil.copytree(self.data, target)
        return target


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("verify-log")
    data = initialised(root / "data")
    runtime = Runtime(Settings(data_dir=data))
    try:
        register_all(
            runtime,
            {
                "aud": (Role.AUDITOR, None),
                "wit": (Role.WITNESS, None),
                "cathode-co": (Role.ENTERPRISE, LB),
                "anode-co": (Role.ENTERPRISE, LB),
            },
        )
        datasets: list[int] = []
        cosigned: list[int] = []
        for owner in ("cathode-co", "anode-co"):
            datasets.append(runtime.ledger.size())
            register_dataset(runtime, f"{owner}.energy", owner)
            cosigned.append(runtime.ledger.size())
            cosign_head(runtime)
        kept_size = runtime.ledger.size()
        (root / "kept.checkpoint").write_text(runtime.ledger.checkpoint().to_text())
        runtime.identities.rotate_token("cathode-co", actor="sysadmin")
        datasets.append(runtime.ledger.size())
        register_dataset(runtime, "cathode-co.yield", "cathode-co")
        cosigned.append(runtime.ledger.size())
        cosign_head(runtime)
        (root / "ledger.vkey").write_text(runtime.ledger.vkey() + "\n")
        size = runtime.ledger.size()
    finally:
        runtime.close()
    export = root / "clean.jsonl"
    done = ibx("--data-dir", str(data), "ledger", "export", "--out", str(export))
    assert done.returncode == 0, done.stderr
    return World(
        root,
        data,
        export,
        root / "ledger.vkey",
        root / "kept.checkpoint",
        kept_size,
        size,
        tuple(datasets),
        tuple(cosigned),
    )


def verify(world: World, export: Path, *extra: str) -> tuple[Done, Done]:
    """``ibx audit verify`` on ``export`` pinned to the ledger key: text and ``--json``."""
    args = ["audit", "verify", "--export", str(export), "--ledger-vkey", str(world.vkey), *extra]
    return ibx(*args), ibx(*args, "--json")


def export_of(data: Path, out: Path) -> Path:
    done = ibx("--data-dir", str(data), "ledger", "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


@contextlib.contextmanager
def database(data: Path) -> Iterator[sqlite3.Connection]:
    """The data dir's SQLite database, opened as an operator would, committed at the end."""
    connection = sqlite3.connect(data / "ibx.db")
    try:
        with connection:
            yield connection
    finally:
        connection.close()


def leaf(db: sqlite3.Connection, index: int) -> bytes:
    row = db.execute("SELECT leaf_input FROM ledger_entries WHERE idx = ?", (index,)).fetchone()
    return bytes(row[0])


def assert_named(text: Done, as_json: Done, code: str, index: int | None) -> None:
    """The finding is in the text (one FINDING line) and in ``--json``; both exit 5."""
    where = "-" if index is None else str(index)
    assert text.returncode == 5, text.stdout + text.stderr
    assert as_json.returncode == 5, as_json.stderr
    assert f"FINDING #{where} {code}: " in text.stdout, text.stdout
    assert {"code": code, "index": index} in [
        {"code": f["code"], "index": f["index"]} for f in as_json.findings()
    ], as_json.stdout
    assert json.loads(as_json.stdout)["ok"] is False


# --- the tree, against the reference ---------------------------------------------------------


@given(leaves=st.lists(st.binary(max_size=24), max_size=40), data=st.data())
def test_the_rebuilt_tree_is_rfc9162s_at_every_size(leaves: list[bytes], data: Any) -> None:
    """The compact range's root equals the RFC 9162 recursion (tests/ledger/reference.py)."""
    sizes = data.draw(st.sets(st.integers(0, len(leaves) + 2)))
    tree = rebuild_tree([ExportedEntry(i, leaf) for i, leaf in enumerate(leaves)], sizes)
    assert tree.root == mth(leaves)
    assert tree.roots == {s: mth(leaves[:s]) for s in sizes if s <= len(leaves)}
    growing = CompactRange()
    assert growing.root() == mth([])


@pytest.mark.parametrize(
    ("leaf", "index"),
    [
        (b'{"actor":"a","index":12,"payload":{},"time":"t","type":"x"}', 12),
        (b'{"actor":"a\\",\\"index\\":9","index":3,"payload":{}}', 3),
        (b'{"index":5,"actor":"a"}', 5),  # not canonical: parsed in full
        (b'{"actor":"a","index":012,"payload":{}}', None),
        (b"not json", None),
    ],
    ids=["canonical", "index-in-actor", "other-order", "leading-zero", "not-json"],
)
def test_the_claimed_index_is_the_entrys_own(leaf: bytes, index: int | None) -> None:
    assert claimed_index(leaf) == index


# --- the untampered log ------------------------------------------------------------------------


def test_the_untampered_export_passes(world: World) -> None:
    text, as_json = verify(world, world.export)
    assert text.returncode == 0, text.stdout + text.stderr
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 0
    assert (report["ok"], report["findings"], report["tree_size"]) == (True, [], world.size)
    assert report["checkpoints"] == len(world.cosigned) + 1  # the cosigned ones and the head
    assert report["ledger_vkey_pinned"] is True
    runtime = Runtime(Settings(data_dir=world.data))
    try:
        root = runtime.ledger.head().root.hex()
        (witness,) = report["cosignatures"]
        assert witness.startswith("wit+")
        assert report["cosignatures"][witness] == len(world.cosigned)
    finally:
        runtime.close()
    assert report["root"] == root
    assert text.stdout.splitlines()[-1] == (
        f"ok: {world.size} entries, {len(world.cosigned) + 1} checkpoints, root {root}"
    )
    assert "note:" not in text.stdout


def test_without_a_pinned_key_the_report_says_so(world: World) -> None:
    done = ibx("audit", "verify", "--export", str(world.export))
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("note: checkpoints checked with the export's own key ")
    assert "--ledger-vkey" in done.stdout


def test_the_trusted_checkpoint_of_the_same_log_passes(world: World) -> None:
    text, _ = verify(world, world.export, "--trusted-checkpoint", str(world.kept))
    assert text.returncode == 0, text.stdout


# --- database edits ----------------------------------------------------------------------------


def edit_payload(db: sqlite3.Connection, index: int) -> None:
    old = leaf(db, index)
    new = old.replace(b"monthly energy use", b"monthly energy sold")
    assert new != old
    db.execute("UPDATE ledger_entries SET leaf_input = ? WHERE idx = ?", (new, index))


def test_an_edited_payload_is_found(world: World) -> None:
    """The entry still parses: the signed roots name it, between the last checkpoint that
    agrees and the first that does not."""
    data = world.copy("edited")
    edited = world.datasets[1]
    with database(data) as db:
        edit_payload(db, edited)
    text, as_json = verify(world, export_of(data, world.root / "edited.jsonl"))
    assert_named(text, as_json, "checkpoint.root", world.cosigned[0])
    first = next(f for f in as_json.findings() if f["code"] == "checkpoint.root")
    assert f"an entry in {world.cosigned[0]}..{world.cosigned[1] - 1} " in first["message"]
    assert world.cosigned[0] <= edited < world.cosigned[1]


def test_a_deleted_entry_is_found(world: World) -> None:
    data = world.copy("deleted")
    gone = world.datasets[0]
    with database(data) as db:
        db.execute("DELETE FROM ledger_entries WHERE idx = ?", (gone,))
    text, as_json = verify(world, export_of(data, world.root / "deleted.jsonl"))
    assert_named(text, as_json, "entry.missing", gone)
    assert_named(text, as_json, "export.size", world.size - 1)


def test_two_swapped_entries_are_found(world: World) -> None:
    data = world.copy("swapped")
    a, b = world.datasets[0], world.datasets[1]
    with database(data) as db:
        first, second = leaf(db, a), leaf(db, b)
        db.execute("UPDATE ledger_entries SET leaf_input = ? WHERE idx = ?", (second, a))
        db.execute("UPDATE ledger_entries SET leaf_input = ? WHERE idx = ?", (first, b))
    text, as_json = verify(world, export_of(data, world.root / "swapped.jsonl"))
    assert_named(text, as_json, "entry.index", a)
    assert_named(text, as_json, "entry.index", b)


def test_a_replaced_checkpoint_key_is_found(world: World) -> None:
    """The head re-signed with another key: its signature is not the ledger's."""
    data = world.copy("rekeyed")
    with database(data) as db:
        (note,) = db.execute("SELECT checkpoint FROM ledger_head WHERE id = 1").fetchone()
        body = SignedNote.from_text(note).text
        name = SignedNote.from_text(note).signatures[0].name
        forged = sign_note(body, name, Ed25519Signer.generate("intruder")).to_text()
        db.execute("UPDATE ledger_head SET checkpoint = ? WHERE id = 1", (forged,))
    text, as_json = verify(world, export_of(data, world.root / "rekeyed.jsonl"))
    assert_named(text, as_json, "checkpoint.signature", None)
    assert f"(size {world.size}) is not signed by the ledger key" in text.stdout


def rewrite_history(data: Path, index: int) -> None:
    """An operator with the database and the ledger key: entry ``index`` edited, the tree
    rebuilt and the head re-signed with the ledger's own key, the cosigned checkpoints
    (which would no longer match) dropped. ``ibx ledger verify`` cannot tell."""
    runtime = Runtime(Settings(data_dir=data))
    try:
        signer = runtime.keyring.get_or_create("ledger")
        origin, name = runtime.ledger.config.origin, runtime.ledger.config.note_name
    finally:
        runtime.close()
    with database(data) as db:
        edit_payload(db, index)
        leaves = [
            bytes(r[0]) for r in db.execute("SELECT leaf_input FROM ledger_entries ORDER BY idx")
        ]
        nodes = append_nodes(0, [leaf_hash(x) for x in leaves], {})
        root = root_from_nodes(len(leaves), nodes)
        note = sign_note(Checkpoint(origin, len(leaves), root).to_text(), name, signer)
        db.execute("DELETE FROM ledger_nodes")
        db.executemany(
            "INSERT INTO ledger_nodes (id, hash) VALUES (?, ?)",
            [((level << 50) | i, h) for (level, i), h in nodes.items()],
        )
        db.execute(
            "UPDATE ledger_head SET root = ?, checkpoint = ? WHERE id = 1", (root, note.to_text())
        )
        db.execute("DELETE FROM ledger_cosignatures")
        db.execute("DELETE FROM ledger_checkpoints")


def test_a_trusted_checkpoint_from_before_a_rewrite_is_a_finding(world: World) -> None:
    data = world.copy("rewritten")
    rewrite_history(data, world.datasets[0])
    assert ibx("--data-dir", str(data), "ledger", "verify").returncode == 0
    rewritten = export_of(data, world.root / "rewritten.jsonl")
    alone, _ = verify(world, rewritten)
    assert alone.returncode == 0, alone.stdout  # signed by the real key, self-consistent
    text, as_json = verify(world, rewritten, "--trusted-checkpoint", str(world.kept))
    assert_named(text, as_json, "trusted.inconsistent", None)
    assert f"the trusted checkpoint of size {world.kept_size} " in text.stdout


# --- two diverging logs under one key ----------------------------------------------------------


@pytest.fixture(scope="module")
def fork(world: World) -> tuple[Path, Path, str]:
    """Two copies of the deployment, each appending one other dataset: the same size, the
    same key, different roots. Returns both data dirs and the first one's checkpoint."""
    left, right = world.copy("fork-left"), world.copy("fork-right")
    notes: list[str] = []
    for data, dataset in ((left, "cathode-co.left"), (right, "cathode-co.right")):
        runtime = Runtime(Settings(data_dir=data))
        try:
            register_dataset(runtime, dataset, "cathode-co")
            notes.append(runtime.ledger.checkpoint().to_text())
        finally:
            runtime.close()
    assert Checkpoint.from_text(SignedNote.from_text(notes[0]).text).size == world.size + 1
    return left, right, notes[0]


def test_a_checkpoint_kept_from_one_branch_fails_on_the_other(
    world: World, fork: tuple[Path, Path, str]
) -> None:
    left, right, left_note = fork
    kept = world.root / "left.checkpoint"
    kept.write_text(left_note)
    left_export = export_of(left, world.root / "left.jsonl")
    on_left, _ = verify(world, left_export, "--trusted-checkpoint", str(kept))
    assert on_left.returncode == 0, on_left.stdout
    right_export = export_of(right, world.root / "right.jsonl")
    plain, _ = verify(world, right_export)
    assert plain.returncode == 0, plain.stdout  # each branch alone is a valid log
    text, as_json = verify(world, right_export, "--trusted-checkpoint", str(kept))
    assert_named(text, as_json, "trusted.inconsistent", None)


def test_two_checkpoints_of_one_size_in_one_export_are_a_fork(
    world: World, fork: tuple[Path, Path, str]
) -> None:
    """The right branch's database holds the left branch's checkpoint (as if a witness had
    cosigned it there): its export carries two roots for one size."""
    _, right, left_note = fork
    data = world.copy("fork-both")
    shutil.rmtree(data)
    shutil.copytree(right, data)
    size = world.size + 1
    with database(data) as db:
        db.execute(
            "INSERT INTO ledger_checkpoints (size, note, stored_at) VALUES (?, ?, ?)",
            (size, left_note, "2026-12-02T08:00:00Z"),
        )
    text, as_json = verify(world, export_of(data, world.root / "both.jsonl"))
    assert_named(text, as_json, "checkpoint.fork", None)
    assert f"for the same size {size}" in text.stdout


def test_a_rolled_back_log_is_found(world: World, fork: tuple[Path, Path, str]) -> None:
    """The checkpoint kept from the longer log, shown the original (shorter) one."""
    _, _, left_note = fork
    kept = world.root / "longer.checkpoint"
    kept.write_text(left_note)
    text, as_json = verify(world, world.export, "--trusted-checkpoint", str(kept))
    assert_named(text, as_json, "trusted.rollback", world.size)


# --- input that cannot be verified -------------------------------------------------------------


Case = Callable[[World, Path], list[str]]


def _malformed(world: World, tmp: Path) -> list[str]:
    bad = tmp / "bad.jsonl"
    bad.write_bytes(world.export.read_bytes() + b'{"what": 1}\n')
    return ["--export", str(bad)]


def _missing(world: World, tmp: Path) -> list[str]:
    return ["--export", str(tmp / "absent.jsonl")]


def _bad_vkey(world: World, tmp: Path) -> list[str]:
    vkey = tmp / "bad.vkey"
    vkey.write_text("not a key\n")
    return ["--export", str(world.export), "--ledger-vkey", str(vkey)]


def _bad_kept(world: World, tmp: Path) -> list[str]:
    kept = tmp / "bad.checkpoint"
    kept.write_text("no note\n")
    return ["--export", str(world.export), "--trusted-checkpoint", str(kept)]


def _nothing(world: World, tmp: Path) -> list[str]:
    return []


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (_malformed, "ibx: malformed ledger export: line "),
        (_missing, "does not exist"),
        (_bad_vkey, "the pinned ledger key is no verifier key"),
        (_bad_kept, "the trusted checkpoint is no signed checkpoint"),
        (_nothing, "give --export PATH or --exchange URL"),
    ],
    ids=["malformed-export", "missing-file", "malformed-vkey", "malformed-kept", "no-input"],
)
def test_input_that_cannot_be_verified_exits_2(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case, message: str
) -> None:
    monkeypatch.delenv("IBX_EXCHANGE", raising=False)
    done = ibx("audit", "verify", *case(world, tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert done.stdout == ""


def test_an_export_is_not_overwritten_without_force(world: World, tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    out.write_text("keep me\n")
    done = ibx("--data-dir", str(world.data), "ledger", "export", "--out", str(out))
    assert (done.returncode, out.read_text()) == (2, "keep me\n")
    assert "--force" in done.stderr
    forced = ibx("--data-dir", str(world.data), "ledger", "export", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert out.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["x.jsonl"]  # no temporary file left
