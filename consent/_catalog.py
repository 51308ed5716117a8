"""The dataset catalog: which enterprise owns which dataset, its fields and classification.

Metadata only — the data stays on the enterprise's data agent. A consent may
name only datasets its signer owns, so the catalog lives with consent (see
``docs/adr/0003-consent-receipts.md``). Registrations are recorded on the ledger.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, column, func, select
from sqlalchemy.orm import Session

from consent._tables import DatasetRow
from consent._vocab import Classification
from consent.entries import DatasetRegisterEntry
from consent.errors import DatasetExistsError, InvalidConsentError, UnknownDatasetError
from core.canonical import JsonValue
from core.clock import format_rfc3339, parse_rfc3339, require_aware
from core.db import Database
from core.events import Event, EventRecorder

__all__ = ["Dataset", "DatasetCatalog"]

logger = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_SEARCH_BATCH = 200
"""Rows fetched at a time while a text search filters them in Python."""


@dataclass(frozen=True)
class Dataset:
    """A registered dataset (metadata only)."""

    dataset_id: str
    owner: str
    fields: tuple[str, ...]
    classification: Classification
    created_at: datetime
    description: str | None = None

    def __post_init__(self) -> None:
        if not _ID.fullmatch(self.dataset_id):
            raise InvalidConsentError(
                f"dataset id {self.dataset_id!r} must be 1-128 letters, digits or . _ @ -"
            )
        if not self.fields or len(set(self.fields)) != len(self.fields):
            raise InvalidConsentError("a dataset needs at least one field, each named once")
        for name in self.fields:
            if not _FIELD.fullmatch(name):
                raise InvalidConsentError(f"field {name!r} must be an identifier")
        object.__setattr__(self, "fields", tuple(sorted(self.fields)))
        try:
            object.__setattr__(self, "created_at", require_aware(self.created_at))
        except ValueError as exc:
            raise InvalidConsentError(str(exc)) from exc

    def to_dict(self) -> dict[str, JsonValue]:
        """The dataset as recorded on the ledger and printed by the CLI."""
        return {
            "dataset_id": self.dataset_id,
            "owner": self.owner,
            "fields": list(self.fields),
            "classification": self.classification.value,
            "description": self.description,
            "created_at": format_rfc3339(self.created_at),
        }


def _to_dataset(row: DatasetRow | Row[Any]) -> Dataset:
    columns = (
        row.dataset_id,
        row.owner,
        row.fields,
        row.classification,
        row.created_at,
        row.description,
    )
    return _dataset_of(columns)


_Columns = tuple[str, str, str, str, str, str | None]


@functools.lru_cache(maxsize=4096)
def _dataset_of(columns: _Columns) -> Dataset:
    """The dataset of one row's columns, parsed and checked once per distinct row (a row
    that changes is another key), so a page of a search costs a lookup per row."""
    dataset_id, owner, fields, classification, created_at, description = columns
    return Dataset(
        dataset_id=dataset_id,
        owner=owner,
        fields=tuple(json.loads(fields)),
        classification=Classification(classification),
        created_at=parse_rfc3339(created_at),
        description=description,
    )


_MANY = select(DatasetRow.__table__).where(
    DatasetRow.__table__.c.dataset_id.in_(bindparam("ids", expanding=True))
)
"""Several datasets by id, as one Core statement (a compute request's selection)."""


class DatasetCatalog:
    """Register and look up datasets; registrations go on the ledger."""

    def __init__(self, db: Database, recorder: EventRecorder) -> None:
        self._db = db
        self._recorder = recorder
        self._queries: dict[tuple[frozenset[str], bool], Select[Any]] = {}

    def register(
        self,
        dataset_id: str,
        *,
        owner: str,
        fields: Sequence[str],
        classification: Classification,
        now: datetime,
        description: str | None = None,
    ) -> Dataset:
        """Register ``dataset_id`` as owned by the enterprise ``owner``.

        Raises:
            InvalidConsentError: a malformed id or field list, or a naive ``now``.
            DatasetExistsError: the id is taken.
            ledger.LedgerError: the registration could not be recorded (nothing was stored).
        """
        dataset = Dataset(dataset_id, owner, tuple(fields), classification, now, description)
        with self._db.write() as session:
            if session.get(DatasetRow, dataset_id) is not None:
                raise DatasetExistsError(f"dataset {dataset_id!r} is already registered")
            session.add(
                DatasetRow(
                    dataset_id=dataset.dataset_id,
                    owner=dataset.owner,
                    fields=json.dumps(list(dataset.fields)),
                    classification=dataset.classification.value,
                    description=dataset.description,
                    created_at=format_rfc3339(dataset.created_at),
                )
            )
            session.flush()
            entry = DatasetRegisterEntry(
                dataset_id=dataset.dataset_id,
                owner=dataset.owner,
                fields=list(dataset.fields),
                classification=dataset.classification,
                description=dataset.description,
                created_at=format_rfc3339(dataset.created_at),
            )
            self._recorder.record(
                Event(
                    DatasetRegisterEntry.TYPE,
                    owner,
                    entry.model_dump(mode="json"),
                    subjects=(dataset.dataset_id, dataset.owner),
                ),
                session=session,
            )
        logger.info("registered dataset %s of %s", dataset_id, owner)
        return dataset

    def get(self, dataset_id: str) -> Dataset:
        """The dataset ``dataset_id``.

        Raises:
            UnknownDatasetError: not registered.
        """
        with self._db.read() as session:
            return self.get_in(session, dataset_id)

    @staticmethod
    def get_in(session: Session, dataset_id: str) -> Dataset:
        """As :meth:`get`, inside the caller's session.

        Raises:
            UnknownDatasetError: not registered.
        """
        row = session.get(DatasetRow, dataset_id)
        if row is None:
            raise UnknownDatasetError(dataset_id)
        return _to_dataset(row)

    def many(self, dataset_ids: Iterable[str]) -> dict[str, Dataset]:
        """As :meth:`many_in`, in one statement of its own (no transaction around it).

        Raises:
            UnknownDatasetError: one of them is not registered.
        """
        wanted = sorted(set(dataset_ids))
        rows = self._db.fetch(_MANY, {"ids": wanted}) if wanted else []
        found = {row.dataset_id: _to_dataset(row) for row in rows}
        for dataset_id in wanted:
            if dataset_id not in found:
                raise UnknownDatasetError(dataset_id)
        return found

    @staticmethod
    def many_in(session: Session, dataset_ids: Iterable[str]) -> dict[str, Dataset]:
        """Every dataset in ``dataset_ids``, by id, in one indexed query.

        Raises:
            UnknownDatasetError: one of them is not registered.
        """
        wanted = sorted(set(dataset_ids))
        rows = session.execute(select(DatasetRow).where(DatasetRow.dataset_id.in_(wanted)))
        found = {row.dataset_id: _to_dataset(row) for row in rows.scalars()}
        for dataset_id in wanted:
            if dataset_id not in found:
                raise UnknownDatasetError(dataset_id)
        return found

    def list(self, *, owner: str | None = None) -> list[Dataset]:
        """Every dataset (of ``owner`` when given), by id."""
        with self._db.read() as session:
            query = select(DatasetRow).order_by(DatasetRow.dataset_id)
            if owner is not None:
                query = query.where(DatasetRow.owner == owner)
            return [_to_dataset(row) for row in session.execute(query).scalars()]

    def search(
        self,
        *,
        limit: int,
        after: str | None = None,
        owner: str | None = None,
        owners: Collection[str] | None = None,
        field: str | None = None,
        classification: Classification | None = None,
        text: str | None = None,
    ) -> tuple[Dataset, ...]:
        """Up to ``limit`` datasets with ids after ``after``, by id (code point order),
        matching every filter given.

        ``owner``: registered by it; ``owners``: by one of these (empty: none
        match); ``field``: has this field; ``classification``; ``text``: a
        substring of the id or description, in any case (``str.casefold``).

        The database filters and pages (keyset on the id), so a page costs what
        it holds, not the size of the catalog; only ``text`` is matched here, on
        rows streamed in id order until the page is full, because databases fold
        case differently from Python.
        """
        if limit <= 0 or (owners is not None and not owners):
            return ()
        params: dict[str, object] = {"after": after or "", "limit": limit}  # ids are non-empty
        if owner is not None:
            params["owner"] = owner
        if owners is not None:
            chosen = sorted(set(owners))
            params["owners"] = json.dumps(chosen) if self._db.is_sqlite else chosen
        if field is not None:
            # fields are a sorted JSON list of identifiers: '"name"' occurs exactly when the
            # field does (a case-sensitive substring test with no wildcards)
            params["field"] = json.dumps(field)
        if classification is not None:
            params["classification"] = classification.value
        query = self._search_query(frozenset(params), limited=text is None)
        if text is None:  # one statement: its own snapshot
            return tuple(_to_dataset(row) for row in self._db.fetch(query, params))
        needle = text.casefold()
        found: list[Dataset] = []
        with self._db.lookups() as connection:
            rows = connection.execution_options(yield_per=_SEARCH_BATCH).execute(query, params)
            for row in rows:
                if (
                    needle in row.dataset_id.casefold()
                    or needle in (row.description or "").casefold()
                ):
                    found.append(_to_dataset(row))
                    if len(found) == limit:
                        break
            rows.close()
        return tuple(found)

    def _search_query(self, filters: frozenset[str], *, limited: bool) -> Select[Any]:
        """The statement for one combination of filters, built once (bound parameters
        only: :meth:`core.db.Database.fetch` compiles it once for every search of that shape).
        """
        key = (filters, limited)
        cached = self._queries.get(key)
        if cached is not None:
            return cached
        table = DatasetRow.__table__
        # code point order whatever the database's default collation: SQLite's BINARY
        # compares UTF-8 bytes, PostgreSQL's "C" likewise
        dataset_id = table.c.dataset_id.collate("BINARY" if self._db.is_sqlite else "C")
        query = select(table).where(dataset_id > bindparam("after")).order_by(dataset_id)
        if "owner" in filters:
            query = query.where(table.c.owner == bindparam("owner"))
        if "owners" in filters and self._db.is_sqlite:  # a JSON list: one compiled statement
            listed: Select[Any] = select(column("value")).select_from(
                func.json_each(bindparam("owners"))
            )
            query = query.where(table.c.owner.in_(listed))
        elif "owners" in filters:
            query = query.where(table.c.owner.in_(bindparam("owners", expanding=True)))
        if "classification" in filters:
            query = query.where(table.c.classification == bindparam("classification"))
        if "field" in filters:
            position = (
                func.instr(table.c.fields, bindparam("field"))
                if self._db.is_sqlite
                else func.strpos(table.c.fields, bindparam("field"))
            )
            query = query.where(position > 0)
        if limited:
            query = query.limit(bindparam("limit"))
        self._queries[key] = query
        return query
