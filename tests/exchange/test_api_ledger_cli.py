"""``ibx ledger`` read commands with ``--exchange``: the same output as on the data dir,
and a ``verify`` that trusts nothing the exchange says that it cannot check.

A real ``ibx serve`` (HTTPS, deployment CA) runs on a free port. A witness
reads without a client certificate; the auditor presents its own. A tampering
proxy (a real HTTP server speaking the same wire format) sits in front of the
exchange to show that ``ledger verify --exchange`` catches edited, dropped
and swapped entries, a forged checkpoint or key, and a rolled-back log.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import rfc8785

from core.clock import utcnow
from core.events import Event
from core.keys import Ed25519Signer
from exchange.cli import main
from exchange.deployment_ca import ensure_deployment_ca
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from ledger import Checkpoint, NoteVerifier, SignedNote, sign_note
from tests.conftest import initialised
from tests.identities import bootstrap, register
from tests.ledger.reference import mth
from tests.server import ExchangeUrl, running_exchange
from tests.zygote import ibx_argv

LB = "lithium-battery"


@dataclass
class World:
    data_dir: Path
    url: ExchangeUrl
    files: Path
    own: set[int]
    """The indices that concern ``cathode-co``."""

    def token(self, name: str) -> list[str]:
        return ["--token-file", str(self.files / f"{name}.token")]

    @property
    def vkey(self) -> Path:
        return self.files / "ledger.vkey"

    @property
    def kept(self) -> Path:
        return self.files / "kept.checkpoint"

    def client_cert(self, name: str) -> list[str]:
        return [
            "--client-cert",
            str(self.files / f"{name}.crt"),
            "--client-key",
            str(self.files / f"{name}.key"),
        ]


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


def ibx(*args: str) -> Done:
    """Run ``ibx ARGS`` in this process, as the console script does (one-line errors, exit
    codes); a subprocess per call would cost seconds each on a loaded machine."""
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


def ibx_process(*args: str) -> Done:
    """Run ``python -m exchange.cli ARGS`` as a separate process, without IBX_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IBX_")}
    done = subprocess.run(
        [*ibx_argv(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def _write_secret(path: Path, text: str) -> None:
    path.write_text(text + "\n")
    path.chmod(0o600)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("ledger-cli")
    data = initialised(root / "data")
    files = root / "files"
    files.mkdir()
    runtime = Runtime(Settings(data_dir=data))
    own: set[int] = set()
    bootstrap(runtime)
    for name, role, industry in [
        ("wit", Role.WITNESS, None),
        ("cathode-co", Role.ENTERPRISE, LB),
        ("anode-co", Role.ENTERPRISE, LB),
        ("aud", Role.AUDITOR, None),
    ]:
        if name == "cathode-co":
            own.add(runtime.ledger.size())
        _write_secret(files / f"{name}.token", register(runtime, name, role, industry).token)
    ensure_deployment_ca(runtime.edge_pki, actor="sysadmin", now=utcnow())
    runtime.admin_certificates.issue("aud", actor="sysadmin", now=utcnow()).write(files)
    for i in range(7):
        if i == 3:
            (files / "kept.checkpoint").write_text(runtime.ledger.checkpoint().to_text())
        actor = "cathode-co" if i % 2 else "anode-co"
        if actor == "cathode-co":
            own.add(runtime.ledger.size())
        runtime.ledger.append([Event("demo.reading", actor, {"kwh": 100 + i, "i": i})])
    (files / "ledger.vkey").write_text(runtime.ledger.vkey() + "\n")
    runtime.close()
    with running_exchange(data) as url:
        yield World(data, url, files, own)


def local(world: World, *args: str) -> Done:
    return ibx("--data-dir", str(world.data_dir), "ledger", *args)


def remote(world: World, who: str, *args: str, url: str | None = None) -> Done:
    where = ["--exchange", url] if url else world.url.cli_args()
    cert = world.client_cert(who) if who == "aud" else []
    return ibx(*world.token(who), "ledger", *args, *where, *cert)


# --- both modes print the same ------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["checkpoint"],
        ["checkpoint", "--json"],
        ["vkey"],
        ["entries"],
        ["entries", "--json", "--start", "2", "--limit", "3"],
        ["proof", "inclusion", "--index", "3"],
        ["proof", "consistency", "--first", "2", "--json"],
        ["verify", "--vkey", "{vkey}"],
        ["verify", "--checkpoint", "{kept}", "--json"],
    ],
    ids=lambda a: " ".join(a).replace("{", "").replace("}", ""),
)
def test_a_witness_over_https_sees_what_the_data_dir_prints(world: World, args: list[str]) -> None:
    args = [a.format(vkey=world.vkey, kept=world.kept) for a in args]
    here = local(world, *args)
    there = remote(world, "wit", *args)
    assert here.returncode == 0, here.stderr
    assert (there.returncode, there.stdout, there.stderr) == (0, here.stdout, here.stderr)


@pytest.mark.parametrize(
    "args",
    [["entries", "--start", "999"], ["proof", "inclusion", "--index", "999"]],
    ids=["entries-beyond", "proof-beyond"],
)
def test_errors_are_the_same_in_both_modes(world: World, args: list[str]) -> None:
    here, there = local(world, *args), remote(world, "wit", *args)
    assert here.returncode == 2
    assert (there.returncode, there.stdout, there.stderr) == (2, "", here.stderr)


def test_the_auditor_verifies_with_its_client_certificate(world: World) -> None:
    """As separate processes, the way an auditor runs them: the console script's whole path."""
    kept = ["--checkpoint", str(world.kept)]
    here = ibx_process("--data-dir", str(world.data_dir), "ledger", "verify", *kept)
    there = ibx_process(
        *world.token("aud"),
        "ledger",
        "verify",
        "--vkey",
        str(world.vkey),
        *kept,
        *world.url.cli_args(),
        *world.client_cert("aud"),
    )
    assert (there.returncode, there.stdout) == (0, here.stdout)
    assert there.stdout.startswith("ok size ")
    assert "consistent with kept checkpoint size" in there.stdout


def test_a_profile_names_the_exchange_and_the_token(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IBX_CONFIG_DIR", str(tmp_path / "config"))
    login = ibx("login", *world.url.cli_args(), *world.token("wit"), "--profile", "witness")
    assert login.returncode == 0, login.stderr
    there = ibx("--profile", "witness", "ledger", "entries", "--json")
    assert (there.returncode, there.stdout) == (0, local(world, "entries", "--json").stdout)


def test_the_auditor_without_its_certificate_is_refused(world: World) -> None:
    done = ibx(*world.token("aud"), "ledger", "entries", *world.url.cli_args())
    assert done.returncode == 4, done.stderr
    assert "client certificate" in done.stderr


def test_anonymous_readers_get_the_checkpoint_but_no_entries(world: World) -> None:
    assert ibx("ledger", "checkpoint", *world.url.cli_args()).returncode == 0
    done = ibx("ledger", "entries", *world.url.cli_args())
    assert done.returncode == 4
    assert done.stderr.startswith("ibx: authentication required: ")


# --- an enterprise reads its own ------------------------------------------------------------


def test_an_enterprise_lists_only_the_entries_that_concern_it(world: World) -> None:
    done = remote(world, "cathode-co", "entries", "--json")
    assert done.returncode == 0, done.stderr
    page = json.loads(done.stdout)
    assert page["scope"] == "own"
    assert {item["index"] for item in page["entries"]} == world.own
    assert page["next"] is None


def test_an_enterprise_cannot_prove_anothers_entry(world: World) -> None:
    size = json.loads(local(world, "checkpoint", "--json").stdout)["size"]
    other = min(set(range(size)) - world.own)
    done = remote(world, "cathode-co", "proof", "inclusion", "--index", str(other))
    assert done.returncode == 3
    assert done.stderr == (
        f"ibx: forbidden: ledger entry {other} does not concern cathode-co; "
        "only auditors and witnesses read every entry\n"
    )
    mine = remote(world, "cathode-co", "proof", "inclusion", "--index", str(min(world.own)))
    assert mine.returncode == 0, mine.stderr


def test_an_enterprise_cannot_verify_the_whole_log(world: World) -> None:
    done = remote(world, "cathode-co", "verify", "--vkey", str(world.vkey))
    assert done.returncode == 3
    assert "ledger_read" in done.stderr


def test_verify_over_the_api_needs_a_key_it_did_not_get_from_the_exchange(world: World) -> None:
    done = remote(world, "wit", "verify")
    assert done.returncode == 2
    assert "--vkey FILE" in done.stderr


def test_a_wrong_pinned_key_fails_in_both_modes(world: World, tmp_path: Path) -> None:
    other = tmp_path / "other.vkey"
    other.write_text(
        ibx("--data-dir", str(initialised(tmp_path / "other")), "ledger", "vkey").stdout
    )
    assert local(world, "verify", "--vkey", str(other)).returncode == 5
    done = remote(world, "wit", "verify", "--vkey", str(other))
    assert done.returncode == 5
    assert done.stderr.startswith("ibx: ledger verify failed: ")


# --- a tampering exchange -------------------------------------------------------------------

Tamper = Callable[[str, bytes], bytes]
"""``tamper(path, body)``: the body the proxy answers with instead of the exchange's."""


class _Proxy(ThreadingHTTPServer):
    def __init__(self, upstream: ExchangeUrl, tamper: Tamper) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.upstream = upstream
        self.tamper = tamper


class _Forward(BaseHTTPRequestHandler):
    server: _Proxy

    def do_GET(self) -> None:
        upstream = self.server.upstream
        headers = {k: v for k, v in self.headers.items() if k.lower() == "authorization"}
        with httpx.Client(verify=upstream.verify()) as client:
            answer = client.get(upstream.url + self.path, headers=headers)
        body = answer.content
        if answer.status_code == 200:
            body = self.server.tamper(self.path, body)
        self.send_response(answer.status_code)
        self.send_header("content-type", answer.headers["content-type"])
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def tampering(upstream: ExchangeUrl, tamper: Tamper) -> Iterator[str]:
    """A plain-HTTP exchange that forwards to ``upstream`` and tampers with its answers."""
    proxy = _Proxy(upstream, tamper)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{proxy.server_port}"
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join()


def _on_entries(change: Callable[[list[dict[str, Any]]], None]) -> Tamper:
    def tamper(path: str, body: bytes) -> bytes:
        if not path.startswith("/v1/ledger/entries"):
            return body
        page = json.loads(body)
        change(page["entries"])
        return json.dumps(page).encode()

    return tamper


def _edit(entries: list[dict[str, Any]]) -> None:
    for item in entries:
        if item["entry"]["type"] == "demo.reading":
            item["entry"]["payload"]["kwh"] += 1
            return


def _drop(entries: list[dict[str, Any]]) -> None:
    del entries[len(entries) // 2]


def _swap_contents(entries: list[dict[str, Any]]) -> None:
    """Swap two entries' contents but keep every index where it belongs."""
    a, b = entries[-2]["entry"], entries[-1]["entry"]
    a["payload"], b["payload"] = b["payload"], a["payload"]
    a["actor"], b["actor"] = b["actor"], a["actor"]


def _reorder(entries: list[dict[str, Any]]) -> None:
    entries[-2], entries[-1] = entries[-1], entries[-2]


def _forged_checkpoint(path: str, body: bytes) -> bytes:
    if path != "/v1/ledger/checkpoint":
        return body
    note = SignedNote.from_text(body.decode())
    name = note.signatures[0].name
    return sign_note(note.text, name, Ed25519Signer.generate(name)).to_text().encode()


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_on_entries(_edit), "is not the root the checkpoint signs"),
        (_on_entries(_drop), "is missing or repeated"),
        (_on_entries(_swap_contents), "is not the root the checkpoint signs"),
        (_on_entries(_reorder), "is missing or repeated"),
        (_forged_checkpoint, "signature"),
    ],
    ids=["edited-entry", "dropped-entry", "swapped-contents", "reordered", "forged-checkpoint"],
)
def test_verify_over_the_api_catches_a_tampering_exchange(
    world: World, tamper: Tamper, expected: str
) -> None:
    with tampering(world.url, tamper) as url:
        done = remote(world, "wit", "verify", "--vkey", str(world.vkey), url=url)
    assert done.returncode == 5, done.stdout + done.stderr
    assert done.stdout == ""
    assert done.stderr.startswith("ibx: ledger verify failed: ")
    assert expected in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_an_honest_proxy_verifies_the_same(world: World) -> None:
    """The proxy itself changes nothing: what the tests above catch is the tampering."""
    with tampering(world.url, lambda _path, body: body) as url:
        done = remote(world, "wit", "verify", "--vkey", str(world.vkey), url=url)
    assert (done.returncode, done.stdout) == (0, local(world, "verify").stdout)


def test_a_rewritten_log_under_a_new_key_fails_against_a_kept_checkpoint(world: World) -> None:
    """The exchange rewrites history and signs it with a key of its own, serving that key:
    every signature checks under the served key, but the kept checkpoint does not."""
    with world.url.client() as reader:
        reader.headers["Authorization"] = "Bearer " + _token_text(world, "wit")
        page = reader.get("/v1/ledger/entries", params={"start": 0, "limit": 1000}).json()
        genuine = SignedNote.from_text(reader.get("/v1/ledger/checkpoint").text)
    _edit(page["entries"])
    leaves = [bytes(rfc8785.dumps(item["entry"])) for item in page["entries"]]
    body = Checkpoint.from_text(genuine.text)
    name = genuine.signatures[0].name
    forger = Ed25519Signer.generate(name)
    forged_body = Checkpoint(body.origin, len(leaves), mth(leaves)).to_text()
    forged_note = sign_note(forged_body, name, forger).to_text().encode()
    forged_vkey = (NoteVerifier(name, forger.public_key).to_vkey() + "\n").encode()
    forged_page = json.dumps({**page, "next": None}).encode()

    def rewrite(path: str, answer: bytes) -> bytes:
        if path == "/v1/ledger/checkpoint":
            return forged_note
        if path == "/v1/ledger/vkey":
            return forged_vkey
        if path.startswith("/v1/ledger/entries"):
            return forged_page
        return answer

    with tampering(world.url, rewrite) as url:
        pinned_by_kept = remote(world, "wit", "verify", "--checkpoint", str(world.kept), url=url)
        pinned_key = remote(world, "wit", "verify", "--vkey", str(world.vkey), url=url)
    for done in (pinned_by_kept, pinned_key):
        assert done.returncode == 5, done.stdout + done.stderr
        assert done.stderr.startswith("ibx: ledger verify failed: ")


def test_a_rolled_back_log_fails_against_a_later_kept_checkpoint(
    world: World, tmp_path: Path
) -> None:
    latest = tmp_path / "latest.checkpoint"
    latest.write_text(local(world, "checkpoint").stdout)
    earlier = world.kept.read_bytes()

    def roll_back(path: str, answer: bytes) -> bytes:
        return earlier if path == "/v1/ledger/checkpoint" else answer

    with tampering(world.url, roll_back) as url:
        done = remote(world, "wit", "verify", "--checkpoint", str(latest), url=url)
    assert done.returncode == 5, done.stdout + done.stderr
    assert "rolled back" in done.stderr


def _token_text(world: World, name: str) -> str:
    return (world.files / f"{name}.token").read_text().strip()
