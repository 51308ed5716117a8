"""``GET /v1/ledger/entries?type=&actor=&since=&until=``: a scanned range, filtered.

The filters narrow what a page lists, never what a caller may read: an
enterprise filtering by another's actor still gets only its own entries, and
``next`` is the same as without filters (page on to find more).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from core.clock import format_rfc3339, utcnow
from core.events import Event
from exchange.client import ExchangeClient
from exchange.error_table import RemoteRefusalError
from exchange.identities import Role
from exchange.runtime import Runtime
from exchange.settings import Settings
from tests.conftest import initialised
from tests.identities import bootstrap, register

LB = "lithium-battery"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, dict[str, str]]]:
    data = initialised(tmp_path_factory.mktemp("ledger-filters") / "data")
    runtime = Runtime(Settings(data_dir=data))
    bootstrap(runtime)
    tokens = {
        name: register(runtime, name, role, industry).token
        for name, role, industry in (
            ("aud", Role.AUDITOR, None),
            ("plant-a", Role.ENTERPRISE, LB),
            ("plant-b", Role.ENTERPRISE, LB),
        )
    }
    for i in range(4):
        runtime.ledger.append(
            [
                Event("demo.reading", "plant-a", {"enterprise": "plant-a", "round": i}),
                Event("demo.note", "plant-b", {"enterprise": "plant-b", "round": i}),
                Event("demo.reading", "plant-b", {"enterprise": "plant-b", "round": i}),
            ]
        )
    yield runtime, tokens
    runtime.close()


def _page(runtime: Runtime, token: str, **params: Any) -> dict[str, Any]:
    with ExchangeClient.local(runtime, token=token) as client:
        body: dict[str, Any] = client.get("/v1/ledger/entries", **params)
    return body


def _listed(page: dict[str, Any]) -> list[tuple[str, str]]:
    return [(item["entry"]["type"], item["entry"]["actor"]) for item in page["entries"]]


def test_type_actor_and_prefix_filter_the_scanned_range(
    world: tuple[Runtime, dict[str, str]],
) -> None:
    runtime, tokens = world
    size = runtime.ledger.size()
    everything = _page(runtime, tokens["aud"], start=0, limit=1000)
    typed = _page(runtime, tokens["aud"], start=0, limit=1000, type="demo.reading")
    assert _listed(typed) == [e for e in _listed(everything) if e[0] == "demo.reading"]
    assert len(typed["entries"]) == 8
    both = _page(runtime, tokens["aud"], start=0, limit=1000, type="demo.reading", actor="plant-b")
    assert _listed(both) == [("demo.reading", "plant-b")] * 4
    prefix = _page(runtime, tokens["aud"], start=0, limit=1000, type="demo.")
    assert len(prefix["entries"]) == 12
    assert _page(runtime, tokens["aud"], start=0, limit=1000, type="demo")["entries"] == []
    # next is the scan's, not the filter's
    small = _page(runtime, tokens["aud"], start=0, limit=3, type="demo.reading")
    assert small["next"] == 3
    assert small["entries"] == []
    assert everything["next"] is None
    assert size == len(everything["entries"])


def test_time_bounds_are_inclusive_then_exclusive(world: tuple[Runtime, dict[str, str]]) -> None:
    runtime, tokens = world
    entries = _page(runtime, tokens["aud"], start=0, limit=1000)["entries"]
    times = [item["entry"]["time"] for item in entries]
    middle = times[len(times) // 2]
    after = _page(runtime, tokens["aud"], start=0, limit=1000, since=middle)["entries"]
    before = _page(runtime, tokens["aud"], start=0, limit=1000, until=middle)["entries"]
    assert all(item["entry"]["time"] >= middle for item in after)
    assert all(item["entry"]["time"] < middle for item in before)
    assert len(after) + len(before) == len(entries)
    later = format_rfc3339(utcnow() + timedelta(days=1))
    assert _page(runtime, tokens["aud"], start=0, limit=1000, since=later)["entries"] == []
    naive = (utcnow() + timedelta(days=1)).replace(tzinfo=None).isoformat()
    assert len(_page(runtime, tokens["aud"], start=0, limit=1000, until=naive)["entries"]) == len(
        entries
    )


def test_a_filter_never_widens_an_enterprises_scope(
    world: tuple[Runtime, dict[str, str]],
) -> None:
    runtime, tokens = world
    page = _page(runtime, tokens["plant-a"], start=0, limit=1000, actor="plant-b")
    assert page["scope"] == "own"
    assert page["entries"] == []
    mine = _page(runtime, tokens["plant-a"], start=0, limit=1000, type="demo.reading")
    assert _listed(mine) == [("demo.reading", "plant-a")] * 4


def test_a_malformed_time_is_refused(world: tuple[Runtime, dict[str, str]]) -> None:
    runtime, tokens = world
    with pytest.raises(RemoteRefusalError) as refused:
        _page(runtime, tokens["aud"], start=0, since="yesterday")
    assert refused.value.status == 400
    # a day alone is midnight UTC
    assert len(_page(runtime, tokens["aud"], start=0, since="2000-01-01")["entries"]) > 0


def test_the_openapi_document_names_the_filters(world: tuple[Runtime, dict[str, str]]) -> None:
    runtime, _ = world
    with ExchangeClient.local(runtime, token=None) as client:
        document = client.get("/openapi.json")
    names = {p["name"] for p in document["paths"]["/v1/ledger/entries"]["get"]["parameters"]}
    assert {"start", "limit", "type", "actor", "since", "until"} <= names
