"""The catalog search the database runs (filters and keyset pages) gives exactly what the
whole catalog filtered in Python gives: the same datasets, in code point order, page by page.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger
from consent import Classification, Dataset
from consent._catalog import DatasetCatalog
from core.db import Database, migrate
from core.keys import Ed25519Signer
from exchange.runtime import MIGRATION_BRANCHES

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
OWNERS = ("ent-a", "ent-b", "Ent-c", "ent-d")
FIELDS = ("energy_kwh", "energyXkwh", "Energy_kwh", "water_m3", "output_units", "kwh")
# ids that sort differently by code point than by a locale or case-insensitively
IDS = (
    "A.line", "a.line", "a-line", "a_line", "a@line", "B.9", "b.10", "b.9", "Z", "z", "0x",
    "9z", "line.a", "line-a", "LINE.A", "line_a", "ent-a.x", "ent-b.x", "Ent-c.x", "e.1",
)  # fmt: skip
# descriptions where str.casefold and a database's lower() disagree
DESCRIPTIONS = (None, "Straße", "STRASSE", "Énergie", "énergie", "İstanbul", "锂电池产线", "kWh")


@dataclass(frozen=True)
class Catalog:
    catalog: DatasetCatalog
    datasets: tuple[Dataset, ...]


def _register(db: Database) -> Catalog:
    migrate(db, MIGRATION_BRANCHES)
    log = ledger.Ledger(
        ledger.SqlLedgerBackend(db),
        Ed25519Signer.generate("ledger"),
        ledger.LedgerConfig(origin="test.ibx.localhost/ledger"),
    )
    catalog = DatasetCatalog(db, log)
    datasets = []
    for n, dataset_id in enumerate(IDS):
        datasets.append(
            catalog.register(
                dataset_id,
                owner=OWNERS[n % len(OWNERS)],
                fields=sorted({FIELDS[n % len(FIELDS)], FIELDS[(n * 2 + 1) % len(FIELDS)]}),
                classification=list(Classification)[n % len(Classification)],
                description=DESCRIPTIONS[n % len(DESCRIPTIONS)],
                now=T0,
            )
        )
    return Catalog(catalog, tuple(datasets))


@pytest.fixture(scope="module")
def sqlite_catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Catalog]:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'c.db'}")
    yield _register(db)
    db.dispose()


@pytest.fixture(scope="module")
def postgres_catalog(postgres_server: str) -> Iterator[Catalog]:
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    host, port = postgres_server.split(":")
    with psycopg.connect(
        f"host={host} port={port} user=ibx dbname=postgres", autocommit=True
    ) as con:
        try:  # a collation that orders unlike code points (ICU's en-US), where the server has ICU
            con.execute(
                f'CREATE DATABASE "{name}" TEMPLATE template0 LOCALE_PROVIDER icu '
                "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            )
        except psycopg.Error:
            con.execute(f'CREATE DATABASE "{name}"')
    db = Database(f"postgresql+psycopg://ibx@{postgres_server}/{name}")
    yield _register(db)
    db.dispose()


@dataclass(frozen=True)
class Query:
    owner: str | None
    owners: frozenset[str] | None
    field: str | None
    classification: Classification | None
    text: str | None
    limit: int


QUERIES = st.builds(
    Query,
    owner=st.none() | st.sampled_from(OWNERS),
    owners=st.none() | st.frozensets(st.sampled_from(OWNERS)),
    field=st.none() | st.sampled_from(FIELDS),
    classification=st.none() | st.sampled_from(list(Classification)),
    text=st.none()
    | st.sampled_from(("line", "LINE", "a.", "_", "%", "strasse", "ÉNERGIE", "i̇stanbul", "锂电"))
    | st.text(min_size=1, max_size=3),
    limit=st.integers(min_value=1, max_value=7),
)


def _expected(datasets: tuple[Dataset, ...], query: Query) -> list[str]:
    """What the route computed before the database did it: everything, filtered in Python."""
    chosen = sorted(datasets, key=lambda d: d.dataset_id)
    if query.owner is not None:
        chosen = [d for d in chosen if d.owner == query.owner]
    if query.owners is not None:
        chosen = [d for d in chosen if d.owner in query.owners]
    if query.field is not None:
        chosen = [d for d in chosen if query.field in d.fields]
    if query.classification is not None:
        chosen = [d for d in chosen if d.classification is query.classification]
    if query.text is not None:
        needle = query.text.casefold()
        chosen = [
            d
            for d in chosen
            if needle in d.dataset_id.casefold() or needle in (d.description or "").casefold()
        ]
    return [d.dataset_id for d in chosen]


def _walk(catalog: DatasetCatalog, query: Query) -> list[str]:
    """Every page, each asked after the last id of the one before, as the route does."""
    seen: list[str] = []
    after = None
    while True:
        page = catalog.search(
            limit=query.limit,
            after=after,
            owner=query.owner,
            owners=query.owners,
            field=query.field,
            classification=query.classification,
            text=query.text,
        )
        assert len(page) <= query.limit
        seen += [d.dataset_id for d in page]
        if len(page) < query.limit:
            return seen
        after = page[-1].dataset_id


def _check(catalog: Catalog, query: Query) -> None:
    found = _walk(catalog.catalog, query)
    assert found == _expected(catalog.datasets, query)
    by_id = {d.dataset_id: d for d in catalog.datasets}
    page = catalog.catalog.search(limit=len(IDS))
    assert [by_id[d.dataset_id] for d in page] == list(page)  # whole records, not ids only


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=QUERIES)
def test_the_database_search_equals_the_python_filter_on_sqlite(
    sqlite_catalog: Catalog, query: Query
) -> None:
    _check(sqlite_catalog, query)


@pytest.mark.postgres
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=QUERIES)
def test_the_database_search_equals_the_python_filter_on_postgresql(
    postgres_catalog: Catalog, query: Query
) -> None:
    _check(postgres_catalog, query)


def test_a_page_starts_strictly_after_a_cursor_that_is_no_id(sqlite_catalog: Catalog) -> None:
    ordered = sorted(IDS)
    for after in ("", "a", "b.1", "line", "\U0010ffff", "é"):
        page = sqlite_catalog.catalog.search(limit=len(IDS), after=after)
        assert [d.dataset_id for d in page] == [i for i in ordered if i > after]


def test_no_owner_matches_an_empty_owner_set(sqlite_catalog: Catalog, tmp_path: Path) -> None:
    assert sqlite_catalog.catalog.search(limit=10, owners=()) == ()
    assert sqlite_catalog.catalog.search(limit=0) == ()
