"""An operator with write access to the database edits it; `ibx ledger verify` catches it.

Each attack works on the SQLite file directly, as someone bypassing ibx would,
then runs the real CLI (its entry point in process; the untouched ledger and one
edit in a real process) and expects a non-zero exit naming the first bad index.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core.db import Database, migrate
from core.events import Event, RecordedEvent
from core.keys import Ed25519Signer
from ledger import MIGRATIONS, Ledger, SqlLedgerBackend
from tests.in_process import Done, ibx
from tests.zygote import ibx_argv

N = 12
B = 2
"""`ibx init` records its two bootstrap officers first: the readings start at index B."""


def _process(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``ibx`` in its own process, as the operator runs it."""
    return subprocess.run(
        [*ibx_argv(), "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _ibx(data_dir: Path, *args: str, stdin: str = "") -> Done:
    """``ibx`` through its entry point in this process."""
    return ibx("--data-dir", str(data_dir), *args, stdin=stdin)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("pristine") / "data"
    assert _ibx(data, "init").returncode == 0
    lines = "".join(f'{{"reading": {i}, "site": "plant-{i % 3}"}}\n' for i in range(N))
    done = _ibx(data, "ledger", "append", "--type", "demo.reading", stdin=lines)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(B + i) for i in range(N)]
    return data


@pytest.fixture
def data_dir(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


def _sql(data_dir: Path, *statements: str) -> None:
    con = sqlite3.connect(data_dir / "ibx.db")
    with con:
        for statement in statements:
            con.execute(statement)
    con.close()


def _leaf(data_dir: Path, idx: int) -> bytes:
    con = sqlite3.connect(data_dir / "ibx.db")
    (leaf,) = con.execute("SELECT leaf_input FROM ledger_entries WHERE idx = ?", (idx,)).fetchone()
    con.close()
    return bytes(leaf)


def _edit_payload(d: Path) -> None:
    leaf = _leaf(d, B + 5).replace(b'"reading":5', b'"reading":6')
    con = sqlite3.connect(d / "ibx.db")
    with con:
        con.execute("UPDATE ledger_entries SET leaf_input = ? WHERE idx = ?", (leaf, B + 5))
    con.close()


def _edit_stored_hash(d: Path) -> None:
    _sql(d, f"UPDATE ledger_nodes SET hash = zeroblob(32) WHERE id = {B + 7}")


def _edit_payload_and_its_hash(d: Path) -> None:
    import hashlib

    leaf = _leaf(d, B + 3).replace(b'"reading":3', b'"reading":30')
    con = sqlite3.connect(d / "ibx.db")
    with con:
        con.execute("UPDATE ledger_entries SET leaf_input = ? WHERE idx = ?", (leaf, B + 3))
        con.execute(
            "UPDATE ledger_nodes SET hash = ? WHERE id = ?",
            (hashlib.sha256(b"\0" + leaf).digest(), B + 3),
        )
    con.close()


def _delete_row(d: Path) -> None:
    _sql(d, f"DELETE FROM ledger_entries WHERE idx = {B + 4}")


def _delete_last_row(d: Path) -> None:
    _sql(d, f"DELETE FROM ledger_entries WHERE idx = {B + N - 1}")


def _swap_rows(d: Path) -> None:
    a, b = _leaf(d, B + 2), _leaf(d, B + 8)
    con = sqlite3.connect(d / "ibx.db")
    with con:
        con.execute("UPDATE ledger_entries SET leaf_input = ? WHERE idx = ?", (b, B + 2))
        con.execute("UPDATE ledger_entries SET leaf_input = ? WHERE idx = ?", (a, B + 8))
    con.close()


def _truncate_head(d: Path) -> None:
    _sql(d, f"UPDATE ledger_head SET size = {B + 10}")


ATTACKS: list[tuple[str, Callable[[Path], None], str]] = [
    ("edited-payload", _edit_payload, f"index {B + 5}:"),
    ("edited-stored-hash", _edit_stored_hash, f"index {B + 7}:"),
    ("edited-payload-and-leaf-hash", _edit_payload_and_its_hash, f"index {B + 2}:"),
    ("deleted-row", _delete_row, f"index {B + 4}:"),
    ("deleted-last-row", _delete_last_row, f"index {B + N - 1}:"),
    ("swapped-rows", _swap_rows, f"index {B + 2}:"),
    ("rolled-back-head", _truncate_head, "checkpoint"),
]


def test_untouched_ledger_verifies(data_dir: Path) -> None:
    done = _process(data_dir, "ledger", "verify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok size {B + N} root ")
    _edit_payload(data_dir)  # and the same process catches an edit
    done = _process(data_dir, "ledger", "verify")
    assert done.returncode != 0 and f"index {B + 5}:" in done.stderr, done.stderr


@pytest.mark.parametrize(("name", "attack", "names"), ATTACKS, ids=[a[0] for a in ATTACKS])
def test_verify_catches(
    data_dir: Path, name: str, attack: Callable[[Path], None], names: str
) -> None:
    attack(data_dir)
    done = _ibx(data_dir, "ledger", "verify")
    assert done.returncode != 0, f"{name} was not detected: {done.stdout}"
    assert names in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_bad_stdin_line_appends_nothing_and_names_the_line(data_dir: Path) -> None:
    done = _ibx(
        data_dir,
        "ledger",
        "append",
        "--type",
        "demo.reading",
        stdin='{"ok": 1}\n{"bad": \n{"ok": 2}\n',
    )
    assert done.returncode != 0
    assert "line 2" in done.stderr
    assert _ibx(data_dir, "ledger", "verify").stdout.startswith(f"ok size {B + N} ")


def test_an_oversized_line_is_named_by_its_stdin_line_number(data_dir: Path) -> None:
    big = '{"blob": "' + "x" * 70_000 + '"}'
    done = _ibx(data_dir, "ledger", "append", "--type", "demo.big", stdin=f'{{"ok": 1}}\n\n{big}\n')
    assert done.returncode == 2
    assert "line 3" in done.stderr and "65536" in done.stderr
    assert _ibx(data_dir, "ledger", "verify").stdout.startswith(f"ok size {B + N} ")


def test_verify_reads_a_growing_log_again_under_its_new_head(tmp_path: Path) -> None:
    """``ibx ledger verify`` on a running exchange: rows appended while the log is read are
    not tampering (the head grew); rows beyond a head that did not move still are."""
    db = Database(f"sqlite:///{tmp_path / 'grow.db'}")
    migrate(db, [MIGRATIONS])
    backend = SqlLedgerBackend(db)
    ledger = Ledger(backend, Ed25519Signer("grow", bytes(32)))
    ledger.record_batch([Event("t.x", "a", {"n": n}) for n in range(5)])
    scan = backend.scan_entries
    appended: list[RecordedEvent] = []

    def scan_while_appending(start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        if not appended:
            appended.append(ledger.record(Event("t.x", "a", {"n": 99})))
        yield from scan(start, stop)

    backend.scan_entries = scan_while_appending  # type: ignore[method-assign]
    assert ledger.verify().size == 6
    db.dispose()
