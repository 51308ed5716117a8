"""``ibx audit witness`` against real ``ibx serve`` processes (HTTPS, deployment CA).

Exchange A is a deployment; exchange B is a copy of A's data dir (the same
ledger key) that then appends other entries: two diverging logs under one
key. A witness cosigns A, and the checkpoint A serves carries its line, which
a verifier written from the C2SP spec alone accepts; a cosignature by another
key, a body A never signed and a caller that is no witness are refused. The
same witness shown B raises a fork, a witness that kept B's longer log and
is shown A raises a rollback: each keeps the evidence, prints ``FORK``,
exits 5, and the ``witness.fork`` alert lands on the exchange's ledger.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.events import Event
from core.keys import Ed25519Signer
from exchange.cli import main
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from ledger import (
    Checkpoint,
    CosignatureVerifier,
    LedgerEntry,
    SignedNote,
    cosign,
    sign_note,
    with_cosignatures,
)
from tests.conftest import initialised
from tests.identities import admin_signer, register_all, write_key_file
from tests.ledger.test_cosignature import _independent_check
from tests.server import ExchangeUrl, running_exchange


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


def ibx(*args: str) -> Done:
    """``ibx ARGS`` in this process, as the console script runs it."""
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


@dataclass(frozen=True)
class World:
    root: Path
    a: ExchangeUrl
    b_data: Path
    tokens: dict[str, str]
    vkey: Path
    key: Path

    def witness(self, url: ExchangeUrl | Path, state: Path, who: str = "wit", *extra: str) -> Done:
        """One round against the exchange at ``url``, or in-process on data dir ``url``."""
        where = url.cli_args() if isinstance(url, ExchangeUrl) else []
        local = ["--data-dir", str(url)] if isinstance(url, Path) else []
        return ibx(
            *local,
            "audit",
            "witness",
            *where,
            "--token",
            self.tokens[who],
            "--state",
            str(state),
            "--key",
            str(self.root / f"{who}.key"),
            "--ledger-vkey",
            str(self.vkey),
            "--once",
            *extra,
        )

    def http(self, url: ExchangeUrl, who: str | None = None) -> httpx.Client:
        return url.client(self.tokens[who] if who else None)


def _entries(client: httpx.Client) -> list[LedgerEntry]:
    out: list[LedgerEntry] = []
    start: int | None = 0
    while start is not None:
        page = client.get("/v1/ledger/entries", params={"start": start, "limit": 1000}).json()
        out += [
            LedgerEntry.from_leaf_input(json.dumps(i["entry"]).encode()) for i in page["entries"]
        ]
        start = page["next"]
    return out


def _reason(alert: LedgerEntry) -> str:
    details = alert.payload["details"]
    assert isinstance(details, dict)
    return str(details["reason"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("witness")
    data = initialised(root / "a")
    runtime = Runtime(Settings(data_dir=data))
    made = register_all(
        runtime,
        {"wit": (Role.WITNESS, None), "wit2": (Role.WITNESS, None), "acme": (Role.ENTERPRISE, "x")},
    )
    tokens = {name: issued.token for name, issued in made.items()}
    for i in range(5):
        runtime.ledger.append([Event("demo.reading", "acme", {"i": i})])
    vkey = root / "ledger.vkey"
    vkey.write_text(runtime.ledger.vkey() + "\n")
    runtime.close()
    b_data = root / "b"
    shutil.copytree(data, b_data)  # the same ledger key: a second log that will diverge
    clone = Runtime(Settings(data_dir=b_data))
    for i in range(30):
        clone.ledger.append([Event("demo.reading", "acme", {"i": i, "fork": True})])
    clone.close()
    for name in ("wit", "wit2"):
        write_key_file(root, name)
    with running_exchange(data) as a:
        yield World(root, a, b_data, tokens, vkey, root / "wit.key")


def test_a_witness_cosigns_and_the_checkpoint_carries_its_line(world: World) -> None:
    state = world.root / "state-honest"
    done = world.witness(world.a, state)
    assert done.returncode == 0, done.stderr
    assert "cosigned checkpoint" in done.stdout
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "checkpoint").stat().st_mode & 0o777 == 0o600
    assert (state / "cosigned").stat().st_mode & 0o777 == 0o600
    kept = (state / "checkpoint").read_text()
    size = Checkpoint.from_text(SignedNote.from_text(kept).text).size

    with world.http(world.a) as public:
        served = public.get("/v1/ledger/checkpoint", params={"witnessed": "true"}).text
        page = public.get("/v1/ledger/checkpoints").json()
        head = public.get("/v1/ledger/checkpoint").text
    assert served.startswith(kept[:-1])  # the ledger's body and line, byte for byte
    vkey = CosignatureVerifier("wit", admin_signer("wit").public_key).to_vkey()
    _independent_check(served, vkey)
    assert page == {"checkpoints": [served], "next": None}
    assert Checkpoint.from_text(SignedNote.from_text(head).text).size > size

    with world.http(world.a, "wit") as reader:
        entries = _entries(reader)
    recorded = [e for e in entries if e.type == "ledger.cosignature"]
    assert len(recorded) == 1
    assert recorded[0].actor == "wit"
    assert recorded[0].payload["size"] == size
    assert recorded[0].payload["key_id"] == CosignatureVerifier.from_vkey(vkey).key_id.hex()

    again = world.witness(world.a, state)  # only its own cosignature is new: nothing to cosign
    assert again.returncode == 0, again.stderr
    assert "not cosigned" in again.stdout and "only witnesses' cosignatures" in again.stdout

    second = world.witness(world.a, world.root / "state-second", "wit2")  # converges on it
    assert second.returncode == 0, second.stderr
    assert f"cosigned checkpoint {size}" in second.stdout
    with world.http(world.a) as public:
        both = SignedNote.from_text(
            public.get("/v1/ledger/checkpoint", params={"witnessed": "true"}).text
        )
    assert Checkpoint.from_text(both.text).size == size
    assert {s.name for s in both.signatures} >= {"wit", "wit2"}


def test_a_cosignature_by_another_key_is_refused(world: World) -> None:
    with world.http(world.a) as public:
        note = SignedNote.from_text(public.get("/v1/ledger/checkpoint").text)
    mallory = Ed25519Signer("mallory", bytes(range(7, 39)))
    forged = with_cosignatures(note, [cosign(note.text, "wit", mallory, 1_790_000_000)])
    headers = {"Content-Type": "text/plain"}
    with world.http(world.a, "wit") as wit:
        refused = wit.post("/v1/ledger/cosignatures", content=forged.to_text(), headers=headers)
        assert refused.status_code == 403
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "registered key" in refused.json()["detail"]

        other_log = sign_note(note.text, note.signatures[0].name, mallory)
        foreign = with_cosignatures(
            other_log, [cosign(note.text, "wit", admin_signer("wit"), 1_790_000_000)]
        )
        unknown = wit.post("/v1/ledger/cosignatures", content=foreign.to_text(), headers=headers)
        assert unknown.status_code == 409, unknown.text
        assert "not a checkpoint this exchange signed" in unknown.json()["detail"]

        garbage = wit.post("/v1/ledger/cosignatures", content="hello", headers=headers)
        assert garbage.status_code == 400

        false_report = wit.post(
            "/v1/ledger/forks", json={"checkpoints": [note.to_text(), note.to_text()]}
        )
        assert false_report.status_code == 422
    honest = with_cosignatures(note, [cosign(note.text, "wit", admin_signer("wit"), 1_790_000_000)])
    with world.http(world.a, "acme") as enterprise:
        denied = enterprise.post(
            "/v1/ledger/cosignatures", content=honest.to_text(), headers=headers
        )
        assert denied.status_code == 403


def test_two_diverging_logs_are_a_fork(world: World) -> None:
    state = world.root / "state-fork"
    first = world.witness(world.a, state)
    assert first.returncode == 0, first.stderr
    done = world.witness(world.b_data, state)
    assert done.returncode == 5, done.stdout + done.stderr
    fork_lines = [line for line in done.stdout.splitlines() if line.startswith("FORK ")]
    assert len(fork_lines) == 1 and "not consistent" in fork_lines[0]
    (evidence,) = (state / "forks").iterdir()
    assert {p.name for p in evidence.iterdir()} >= {
        "kept.checkpoint",
        "served.checkpoint",
        "consistency.json",
        "reason.txt",
    }
    assert json.loads((evidence / "consistency.json").read_text())["hashes"]
    clone = Runtime(Settings(data_dir=world.b_data))
    try:
        alerts = [e for e in clone.ledger.entries(0, 1000) if e.type == "audit.alert"]
    finally:
        clone.close()
    assert [a.payload["rule"] for a in alerts] == ["witness.fork"]
    assert alerts[0].payload["severity"] == "critical"
    assert "not this ledger's" in _reason(alerts[0])

    standing = world.witness(world.a, state)  # cosigns nothing while the fork stands
    assert standing.returncode == 5 and "FORK" in standing.stdout


def test_a_rollback_is_raised(world: World) -> None:
    state = world.root / "state-rollback"
    first = world.witness(world.b_data, state)  # B's log is the longer one
    assert first.returncode == 0, first.stderr
    done = world.witness(world.a, state)
    assert done.returncode == 5, done.stdout + done.stderr
    assert "FORK" in done.stdout and "rolled back" in done.stdout
    assert any((state / "forks").iterdir())
    with world.http(world.a, "wit") as reader:
        alerts = [e for e in _entries(reader) if e.type == "audit.alert"]
    assert [a.payload["rule"] for a in alerts] == ["witness.fork"]
    assert "rolled back" in _reason(alerts[0])
