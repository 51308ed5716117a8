"""``/v1/ledger``: who reads which entries and proofs, attacked through the real app.

Every call goes through :class:`exchange.client.ExchangeClient.local` (the same
ASGI app, access table and decision point as ``ibx serve``; the in-process
mode stands for an administrator's second factor). The deployment holds real
entries of several parties, so an enterprise that pages over everything, or
asks for a proof of another's entry, is seen to get nothing of theirs.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import Classification
from core.canonical import JsonValue
from core.clock import utcnow
from core.events import Event
from exchange.client import ExchangeClient
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.routes.ledger import PARTY_KEYS, concerns
from exchange.runtime import Runtime
from exchange.settings import Settings
from ledger import Checkpoint, LedgerEntry, SignedNote, verify_consistency, verify_inclusion
from tests.conftest import initialised
from tests.identities import bootstrap, register

LB = "lithium-battery"


@dataclass
class Deployment:
    runtime: Runtime
    tokens: dict[str, str]
    own: dict[str, set[int]]
    """The indices each enterprise must see, written down as the entries were made."""

    def client(self, who: str | None) -> ExchangeClient:
        return ExchangeClient.local(self.runtime, token=self.tokens[who] if who else None)

    def size(self) -> int:
        return self.runtime.ledger.size()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    data = initialised(tmp_path_factory.mktemp("ledger-api") / "data")
    runtime = Runtime(Settings(data_dir=data))
    people = {
        "cathode-co": (Role.ENTERPRISE, LB),
        "anode-co": (Role.ENTERPRISE, LB),
        "acme": (Role.ENTERPRISE, LB),
        "acme.labs": (Role.ENTERPRISE, LB),
        "lb-brain": (Role.SUBBRAIN, LB),
        "aud": (Role.AUDITOR, None),
        "wit": (Role.WITNESS, None),
        "ops": (Role.SYSADMIN, None),
        "sec": (Role.SECURITY_OFFICER, None),
    }
    tokens: dict[str, str] = {}
    own: dict[str, set[int]] = {name: set() for name in people}
    bootstrap(runtime)
    for name, (role, industry) in people.items():
        before = runtime.ledger.size()
        tokens[name] = register(runtime, name, role, industry).token
        own[name].add(before)  # identity.create names it ("name")
    before = runtime.ledger.size()
    runtime.consents.catalog.register(
        "cathode-co.energy",
        owner="cathode-co",
        fields=["energy_kwh"],
        classification=Classification.GENERAL,
        now=utcnow(),
    )
    own["cathode-co"].add(before)  # dataset.register: actor and owner
    notes: list[tuple[str, dict[str, JsonValue], set[str]]] = [
        # (actor, payload, who it concerns)
        ("cathode-co", {"site": "plant-a"}, {"cathode-co"}),
        ("exchange", {"consents": [{"enterprise": "anode-co", "id": "c1"}]}, {"anode-co"}),
        ("exchange", {"request": {"requester": "lb-brain", "datasets": ["cathode-co.energy"]}},
         {"lb-brain"}),
        ("ops", {"owner": "acme.labs", "description": "acme"}, {"acme.labs"}),
        ("ops", {"note": "cathode-co", "kind": "anode-co:x", "list": ["acme", "acme.x"]}, set()),
        ("ops", {"resource": "consent:cathode-co", "cathode-co": "key, not a value"}, set()),
        ("ops", {"deep": [[{"x": {"identity": "anode-co"}}]]}, {"anode-co"}),
        ("anode-co", {"enterprise": "cathode-co"}, {"anode-co", "cathode-co"}),
    ]  # fmt: skip
    for i in range(3):  # a longer log, so pages and proofs have depth
        for actor, payload, concerned in notes:
            before = runtime.ledger.size()
            runtime.ledger.append([Event("demo.note", actor, {**payload, "round": i})])
            for name in concerned:
                own[name].add(before)
    yield Deployment(runtime, tokens, own)
    runtime.close()


def _raw_page(client: ExchangeClient, **params: Any) -> tuple[bytes, dict[str, Any]]:
    response = client.call("GET", "/v1/ledger/entries", params=params)
    return response.content, response.json()


def _all_pages(client: ExchangeClient, limit: int) -> tuple[list[dict[str, Any]], list[int | None]]:
    entries: list[dict[str, Any]] = []
    nexts: list[int | None] = []
    start: int | None = 0
    while start is not None:
        _, page = _raw_page(client, start=start, limit=limit)
        entries.extend(page["entries"])
        nexts.append(page["next"])
        start = page["next"]
    return entries, nexts


def _problem(exc: pytest.ExceptionInfo[RemoteRefusalError]) -> tuple[int, str | None]:
    return exc.value.status, exc.value.code


# --- anonymous ---------------------------------------------------------------------------


def test_checkpoint_and_vkey_stay_public(deployment: Deployment) -> None:
    with deployment.client(None) as anonymous:
        note = anonymous.call("GET", "/v1/ledger/checkpoint").text
        vkey = anonymous.call("GET", "/v1/ledger/vkey").text
    assert note == deployment.runtime.ledger.checkpoint().to_text()
    assert vkey == deployment.runtime.ledger.vkey() + "\n"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/ledger/entries", {"start": 0}),
        ("/v1/ledger/proof/inclusion", {"index": 0, "tree_size": 1}),
        ("/v1/ledger/proof/consistency", {"first": 1, "second": 2}),
    ],
    ids=["entries", "inclusion", "consistency"],
)
def test_entries_and_proofs_need_a_token(
    deployment: Deployment, path: str, params: dict[str, int]
) -> None:
    with deployment.client(None) as anonymous, pytest.raises(RemoteRefusalError) as refused:
        anonymous.call("GET", path, params=params)
    assert _problem(refused) == (401, "exchange.error_table.AuthError")


# --- who reads what ----------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["aud", "wit"])
def test_auditors_and_witnesses_read_every_entry_byte_for_byte(
    deployment: Deployment, reader: str
) -> None:
    size = deployment.size()
    with deployment.client(reader) as client:
        raw, page = _raw_page(client, start=0, limit=1000)
    assert page["scope"] == "all"
    assert page["next"] is None
    assert [item["index"] for item in page["entries"]] == list(range(size))
    for row in deployment.runtime.ledger.entries(0, size):
        assert b'{"entry":' + row.leaf_input + b',"index":' in raw  # the stored bytes


@pytest.mark.parametrize("name", ["cathode-co", "anode-co", "acme", "acme.labs", "lb-brain"])
def test_an_enterprise_or_subbrain_pages_over_everything_and_gets_only_its_own(
    deployment: Deployment, name: str
) -> None:
    with deployment.client(name) as client:
        entries, nexts = _all_pages(client, limit=4)
    assert {item["index"] for item in entries} == deployment.own[name]
    assert nexts == [*range(4, deployment.size(), 4), None]  # the same pages as everyone's
    for item in entries:
        entry = LedgerEntry.from_leaf_input(bytes(rfc8785.dumps(item["entry"])))
        assert concerns(entry, name)


def test_a_page_of_others_entries_is_empty_but_says_where_to_go_on(
    deployment: Deployment,
) -> None:
    theirs = sorted(set(range(deployment.size())) - deployment.own["acme"])
    start = next(i for i in theirs if i + 1 in theirs and i + 2 in theirs)
    with deployment.client("acme") as client:
        raw, page = _raw_page(client, start=start, limit=3)
    assert page == {"entries": [], "next": start + 3, "scope": "own"}
    assert raw == b'{"entries":[],"next":' + str(start + 3).encode() + b',"scope":"own"}'


def test_a_name_that_prefixes_another_or_equals_free_text_reads_nothing_by_it(
    deployment: Deployment,
) -> None:
    """``acme`` appears as a description, a list value and the prefix of ``acme.labs``
    and ``acme.x``; ``cathode-co`` as a note, a resource suffix and a key."""
    with deployment.client("acme") as client:
        acme, _ = _all_pages(client, limit=1000)
    assert all(
        item["entry"]["actor"] == "sysadmin" and item["entry"]["type"] == "identity.create"
        for item in acme
    )
    assert len(acme) == 1


@pytest.mark.parametrize("name", ["ops", "sec"])
def test_the_other_administrators_read_no_entries(deployment: Deployment, name: str) -> None:
    with deployment.client(name) as client, pytest.raises(RemoteRefusalError) as refused:
        client.get("/v1/ledger/entries", start=0)
    assert _problem(refused) == (403, "exchange.error_table.ForbiddenError")


# --- proofs ------------------------------------------------------------------------------


def _root(deployment: Deployment) -> tuple[int, bytes]:
    note = SignedNote.from_text(deployment.runtime.ledger.checkpoint().to_text())
    checkpoint = Checkpoint.from_text(note.text)
    return checkpoint.size, checkpoint.root


def test_an_enterprise_proves_its_own_entries_into_the_signed_root(
    deployment: Deployment,
) -> None:
    size, root = _root(deployment)
    with deployment.client("cathode-co") as client:
        entries, _ = _all_pages(client, limit=1000)
        for item in entries:
            proof = client.get("/v1/ledger/proof/inclusion", index=item["index"], tree_size=size)
            leaf = hashlib.sha256(b"\x00" + bytes(rfc8785.dumps(item["entry"]))).digest()
            hashes = [base64.b64decode(h) for h in proof["hashes"]]
            verify_inclusion(item["index"], size, leaf, hashes, root)


def test_an_inclusion_proof_of_anothers_entry_is_refused(deployment: Deployment) -> None:
    size = deployment.size()
    theirs = sorted(set(range(size)) - deployment.own["cathode-co"])
    assert theirs
    with deployment.client("cathode-co") as client:
        for index in theirs:
            with pytest.raises(RemoteRefusalError) as refused:
                client.get("/v1/ledger/proof/inclusion", index=index, tree_size=size)
            assert _problem(refused) == (403, "exchange.error_table.ForbiddenError")
            assert f"entry {index} does not concern cathode-co" in str(refused.value)
    with deployment.client("wit") as witness:  # the same proofs exist for a reader of all
        assert witness.get("/v1/ledger/proof/inclusion", index=theirs[0], tree_size=size)


@pytest.mark.parametrize("reader", ["cathode-co", "lb-brain", "aud", "wit"])
def test_consistency_proofs_carry_only_hashes_for_any_reader(
    deployment: Deployment, reader: str
) -> None:
    size, root = _root(deployment)
    first = size // 2
    with deployment.client(reader) as client:
        proof = client.get("/v1/ledger/proof/consistency", first=first, second=size)
    assert set(proof) == {"first", "second", "hashes"}
    hashes = [base64.b64decode(h) for h in proof["hashes"]]
    verify_consistency(first, size, deployment.runtime.ledger.root_at(first), root, hashes)


# --- paging ------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 5, 7, 1000])
def test_pages_by_next_cover_the_log_once_in_order(deployment: Deployment, limit: int) -> None:
    with deployment.client("wit") as client:
        entries, nexts = _all_pages(client, limit=limit)
    assert [item["index"] for item in entries] == list(range(deployment.size()))
    assert nexts[-1] is None
    assert all(isinstance(n, int) for n in nexts[:-1])


def test_a_start_beyond_the_log_is_a_400_for_every_scope(deployment: Deployment) -> None:
    for reader in ("wit", "cathode-co"):
        with deployment.client(reader) as client, pytest.raises(RemoteRefusalError) as refused:
            client.get("/v1/ledger/entries", start=deployment.size())
        assert refused.value.status == 400


def test_the_openapi_document_describes_the_page_and_the_proofs(deployment: Deployment) -> None:
    with deployment.client(None) as anonymous:
        document = anonymous.get("/openapi.json")
    get = document["paths"]["/v1/ledger/entries"]["get"]
    page = get["responses"]["200"]["content"]["application/json"]
    assert set(page["schema"]["required"]) == {"entries", "next", "scope"}
    assert page["example"]["next"] == 4
    assert {"401", "403"} <= set(get["responses"])
    params = {p["name"] for p in get["parameters"]}
    assert params == {"start", "limit", "type", "actor", "since", "until"}
    for path in ("/v1/ledger/proof/inclusion", "/v1/ledger/proof/consistency"):
        assert (
            "schema"
            in document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
        )


# --- the rule itself ---------------------------------------------------------------------

_NAMES = st.sampled_from(["acme", "acme.labs", "cathode-co", "a", "x@y"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | _NAMES | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from([*sorted(PARTY_KEYS), "note", "acme"]), inner, max_size=3)
    ),
    max_leaves=12,
)


def _reference(entry: dict[str, Any], name: str) -> bool:
    """The rule written the slow, obvious way: actor, or a party key naming ``name``."""

    def walk(value: Any) -> bool:
        if isinstance(value, dict):
            return any((k in PARTY_KEYS and v == name) or walk(v) for k, v in value.items())
        if isinstance(value, list):
            return any(walk(v) for v in value)
        return False

    return entry["actor"] == name or walk(entry["payload"])


@settings(max_examples=300, deadline=None)
@given(
    actor=_NAMES,
    payload=st.dictionaries(st.sampled_from([*sorted(PARTY_KEYS), "note"]), _JSON, max_size=4),
    name=_NAMES,
)
def test_concerns_agrees_with_the_obvious_reading_of_the_rule(
    actor: str, payload: dict[str, Any], name: str
) -> None:
    obj: dict[str, Any] = {"actor": actor, "index": 0, "payload": payload, "type": "t"}
    obj["time"] = "2025-01-01T00:00:00Z"
    entry = LedgerEntry.from_leaf_input(bytes(rfc8785.dumps(obj)))
    assert concerns(entry, name) == _reference(json.loads(entry.leaf_input), name)


def test_real_entries_of_each_kind_concern_their_parties(deployment: Deployment) -> None:
    rows = deployment.runtime.ledger.entries(0, deployment.size())
    registered = next(r for r in rows if r.type == "dataset.register")
    assert concerns(registered, "cathode-co")
    assert not concerns(registered, "anode-co")
    created = [r for r in rows if r.type == "identity.create"]
    assert [r for r in created if concerns(r, "aud")] == [
        r for r in created if r.payload["name"] == "aud"
    ]
