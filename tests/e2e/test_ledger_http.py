"""The ledger's HTTP contract, through a real uvicorn, checked as an outside verifier would.

The checkpoint and verifier key are public; entries and proofs are read with a
witness's token (a reader of every entry that needs no client certificate).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest
import rfc8785

from exchange.identities import Role
from exchange.risk_watch import RiskWatch, load_rules
from exchange.runtime import Runtime
from exchange.settings import Settings
from ledger import Checkpoint, NoteVerifier, SignedNote, verify_consistency, verify_inclusion
from tests.conftest import initialised
from tests.identities import register
from tests.in_process import ibx
from tests.server import running_exchange

N = 23
FIRST = 4
"""The bootstrap officers' and the witness's ``identity.create`` (0-2) and the risk rules in
force (3; ``ibx serve`` would record them at start otherwise) come first."""
SIZE = N + FIRST
"""Those, then the N appended entries."""
HEADERS: dict[str, str] = {}
"""``Authorization`` of the witness the fixture creates."""


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = initialised(tmp_path_factory.mktemp("http") / "data")
    runtime = Runtime(Settings(data_dir=data))
    HEADERS["Authorization"] = "Bearer " + register(runtime, "wit", Role.WITNESS).token
    assert RiskWatch(runtime, load_rules(runtime.settings)).record_rules()
    first = runtime.ledger.size()
    runtime.close()
    assert first == FIRST  # identity.create x 3, audit.risk_rules; the N entries follow them
    lines = [json.dumps({"k": i, "名": "值", "f": i / 3}) + "\n" for i in range(N)]
    for chunk in ("".join(lines[: N // 2]), "".join(lines[N // 2 :])):  # two batches
        args = ("ledger", "append", "--type", "http.test", "--actor", "tester")
        appended = ibx("--data-dir", str(data), *args, stdin=chunk)
        assert appended.returncode == 0, appended.stderr
    with running_exchange(data, tls=False) as url:
        yield url


def _b64(values: list[str]) -> list[bytes]:
    return [base64.b64decode(v) for v in values]


def test_checkpoint_and_vkey_verify_and_are_plain_text(base: str) -> None:
    note_resp = httpx.get(f"{base}/v1/ledger/checkpoint")
    vkey_resp = httpx.get(f"{base}/v1/ledger/vkey")
    assert note_resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert vkey_resp.headers["content-type"] == "text/plain; charset=utf-8"
    note = SignedNote.from_text(note_resp.text)
    note.verify(NoteVerifier.from_vkey(vkey_resp.text.strip()))
    assert Checkpoint.from_text(note.text).size == SIZE


def test_entries_hash_to_leaves_that_prove_into_the_checkpoint(base: str) -> None:
    checkpoint = Checkpoint.from_text(
        SignedNote.from_text(httpx.get(f"{base}/v1/ledger/checkpoint").text).text
    )
    got = httpx.get(
        f"{base}/v1/ledger/entries", params={"start": FIRST, "limit": 1000}, headers=HEADERS
    )
    assert got.headers["content-type"] == "application/json"
    assert got.json()["next"] is None
    assert got.json()["scope"] == "all"
    entries = got.json()["entries"]
    assert [e["index"] for e in entries] == list(range(FIRST, SIZE))
    for item in entries:
        leaf = bytes(rfc8785.dumps(item["entry"]))  # an outside verifier re-canonicalises
        assert item["entry"]["index"] == item["index"]
        proof = httpx.get(
            f"{base}/v1/ledger/proof/inclusion",
            params={"index": item["index"], "tree_size": SIZE},
            headers=HEADERS,
        ).json()
        assert (proof["index"], proof["tree_size"]) == (item["index"], SIZE)
        leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()
        verify_inclusion(item["index"], SIZE, leaf_hash, _b64(proof["hashes"]), checkpoint.root)


def test_consistency_proofs_link_every_earlier_size(base: str) -> None:
    page = httpx.get(
        f"{base}/v1/ledger/entries", params={"start": 0, "limit": SIZE}, headers=HEADERS
    ).json()
    leaves = [bytes(rfc8785.dumps(e["entry"])) for e in page["entries"]]
    from tests.ledger.reference import mth

    for first in range(1, SIZE + 1):
        body = httpx.get(
            f"{base}/v1/ledger/proof/consistency",
            params={"first": first, "second": SIZE},
            headers=HEADERS,
        ).json()
        assert (body["first"], body["second"]) == (first, SIZE)
        verify_consistency(first, SIZE, mth(leaves[:first]), mth(leaves), _b64(body["hashes"]))


def test_pages_follow_next_to_the_end(base: str) -> None:
    seen: list[int] = []
    start: int | None = 0
    while start is not None:
        page = httpx.get(
            f"{base}/v1/ledger/entries", params={"start": start, "limit": 5}, headers=HEADERS
        ).json()
        seen += [e["index"] for e in page["entries"]]
        start = page["next"]
    assert seen == list(range(SIZE))


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/ledger/entries", {"start": 0}),
        ("/v1/ledger/proof/inclusion", {"index": 0, "tree_size": SIZE}),
        ("/v1/ledger/proof/consistency", {"first": 1, "second": SIZE}),
    ],
    ids=["entries", "inclusion", "consistency"],
)
def test_entries_and_proofs_are_not_public(base: str, path: str, params: dict[str, int]) -> None:
    got = httpx.get(f"{base}{path}", params=params)
    assert got.status_code == 401
    assert got.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/ledger/proof/inclusion", {"index": SIZE, "tree_size": SIZE}, 400),
        ("/v1/ledger/proof/inclusion", {"index": 0, "tree_size": SIZE + 1}, 400),
        ("/v1/ledger/proof/inclusion", {"index": -1, "tree_size": SIZE}, 400),
        ("/v1/ledger/proof/inclusion", {"index": "x", "tree_size": SIZE}, 400),
        ("/v1/ledger/proof/inclusion", {"tree_size": SIZE}, 400),
        ("/v1/ledger/proof/inclusion", {"index": 0, "tree_size": 10**30}, 400),
        ("/v1/ledger/proof/consistency", {"first": 0, "second": SIZE}, 400),
        ("/v1/ledger/proof/consistency", {"first": 5, "second": 4}, 400),
        ("/v1/ledger/proof/consistency", {"first": 1, "second": SIZE + 1}, 400),
        ("/v1/ledger/entries", {"start": SIZE}, 400),
        ("/v1/ledger/entries", {"start": 0, "limit": 0}, 400),
        ("/v1/ledger/entries", {"start": 0, "limit": 5000}, 400),
        ("/v1/ledger/nothing-here", {}, 404),
    ],
    ids=[
        "index-at-size",
        "tree-beyond-log",
        "negative-index",
        "non-integer",
        "missing-index",
        "huge-tree-size",
        "consistency-from-zero",
        "consistency-shrinking",
        "consistency-beyond-log",
        "entries-beyond",
        "zero-limit",
        "limit-too-large",
        "unknown-route",
    ],
)
def test_bad_parameters_get_problem_json_never_500(
    base: str, path: str, params: dict[str, object], status: int
) -> None:
    got = httpx.get(f"{base}{path}", params=params, headers=HEADERS)  # type: ignore[arg-type]
    assert got.status_code == status
    assert got.headers["content-type"] == "application/problem+json"
    problem = got.json()
    assert problem["status"] == status
    assert problem["title"]
