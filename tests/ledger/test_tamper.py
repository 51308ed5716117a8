"""An operator with write access to the database edits it; `ibx ledger verify` catches it.

Each attack works on the SQLite file directly, as someone bypassing ibx would,
then runs the real CLI and expects a non-zero exit naming the first bad index.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

IBX = [sys.executable, "-m", "exchange.cli"]
N = 12


def _ibx(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IBX, "--data-dir", str(data_dir), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("pristine") / "data"
    assert _ibx(data, "init").returncode == 0
    lines = "".join(f'{{"reading": {i}, "site": "plant-{i % 3}"}}\n' for i in range(N))
    done = _ibx(data, "ledger", "append", "--type", "demo.reading", stdin=lines)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(i) for i in range(N)]
    return data


@pytest.fixture
def data_dir(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    copy.mkdir()
    for item in pristine.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    (copy / "master.key").chmod(0o600)
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
    leaf = _leaf(d, 5).replace(b'"reading":5', b'"reading":6')
    con = sqlite3.connect(d / "ibx.db")
    with con:
        con.execute("UPDATE ledger_entries SET leaf_input = ? WHERE idx = 5", (leaf,))
    con.close()


def _edit_stored_hash(d: Path) -> None:
    _sql(d, "UPDATE ledger_nodes SET hash = zeroblob(32) WHERE id = 7")


def _edit_payload_and_its_hash(d: Path) -> None:
    import hashlib

    leaf = _leaf(d, 3).replace(b'"reading":3', b'"reading":30')
    con = sqlite3.connect(d / "ibx.db")
    with con:
        con.execute("UPDATE ledger_entries SET leaf_input = ? WHERE idx = 3", (leaf,))
        con.execute(
            "UPDATE ledger_nodes SET hash = ? WHERE id = 3",
            (hashlib.sha256(b"\0" + leaf).digest(),),
        )
    con.close()


def _delete_row(d: Path) -> None:
    _sql(d, "DELETE FROM ledger_entries WHERE idx = 4")


def _delete_last_row(d: Path) -> None:
    _sql(d, f"DELETE FROM ledger_entries WHERE idx = {N - 1}")


def _swap_rows(d: Path) -> None:
    a, b = _leaf(d, 2), _leaf(d, 8)
    con = sqlite3.connect(d / "ibx.db")
    with con:
        con.execute("UPDATE ledger_entries SET leaf_input = ? WHERE idx = 2", (b,))
        con.execute("UPDATE ledger_entries SET leaf_input = ? WHERE idx = 8", (a,))
    con.close()


def _truncate_head(d: Path) -> None:
    _sql(d, "UPDATE ledger_head SET size = 10")


ATTACKS: list[tuple[str, Callable[[Path], None], str]] = [
    ("edited-payload", _edit_payload, "index 5:"),
    ("edited-stored-hash", _edit_stored_hash, "index 7:"),
    ("edited-payload-and-leaf-hash", _edit_payload_and_its_hash, "index 2:"),
    ("deleted-row", _delete_row, "index 4:"),
    ("deleted-last-row", _delete_last_row, f"index {N - 1}:"),
    ("swapped-rows", _swap_rows, "index 2:"),
    ("rolled-back-head", _truncate_head, "checkpoint"),
]


def test_untouched_ledger_verifies(data_dir: Path) -> None:
    done = _ibx(data_dir, "ledger", "verify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok size {N} root ")


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
    assert _ibx(data_dir, "ledger", "verify").stdout.startswith(f"ok size {N} ")


def test_an_oversized_line_is_named_by_its_stdin_line_number(data_dir: Path) -> None:
    big = '{"blob": "' + "x" * 70_000 + '"}'
    done = _ibx(data_dir, "ledger", "append", "--type", "demo.big", stdin=f'{{"ok": 1}}\n\n{big}\n')
    assert done.returncode == 2
    assert "line 3" in done.stderr and "65536" in done.stderr
    assert _ibx(data_dir, "ledger", "verify").stdout.startswith(f"ok size {N} ")
