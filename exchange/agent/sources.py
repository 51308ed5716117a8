"""Where an agent's data lives: a CSV file, an SQL table, or the enterprise's edge readings.

A source is opened only when a verified task needs it, and asked only for the
columns of the task's fields (:class:`FieldReader`). A dataset's registered
field reads the column of the same name unless ``--column field=col`` says
otherwise. Anything a source cannot give — the file or database does not
open, a column is missing, a value is not a number where one is needed — is
a :class:`SourceError`, which the agent sends back as a signed refusal; it
never stops the agent.

Values never appear in an error message or a log line: only column names,
row numbers and the source's description (an SQL URL without its password).
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from exchange.agent.errors import SourceError

if TYPE_CHECKING:
    from cryptography import x509

    from exchange.client import ExchangeClient

__all__ = [
    "EDGE_SOURCE",
    "ColumnMap",
    "Columns",
    "CsvSource",
    "EdgeSource",
    "FieldReader",
    "Source",
    "SqlSource",
    "open_source",
    "parse_column_options",
]

EDGE_SOURCE = ("edge", "edge:")
"""``--source`` values that mean: the sealed edge readings uploaded for the enterprise."""


@dataclass(frozen=True)
class Columns:
    """Raw values of some columns, each the same number of rows, in the source's order."""

    values: Mapping[str, tuple[object, ...]]
    rows: int


class Source(Protocol):
    """Something an agent reads columns from."""

    @property
    def description(self) -> str:
        """What the source is, for messages (never a secret)."""
        ...

    def read(self, columns: Sequence[str]) -> Columns:
        """The values of ``columns``.

        Raises:
            SourceError: the source cannot be opened, or a column is missing.
        """
        ...


def _missing(columns: Sequence[str], have: Iterable[str], where: str) -> None:
    present = set(have)
    absent = [c for c in columns if c not in present]
    if absent:
        raise SourceError(
            f"column {', '.join(absent)} is missing from {where} "
            f"(it has {', '.join(sorted(present))})"
        )


@dataclass(frozen=True)
class CsvSource:
    """A CSV file whose header row names the columns."""

    path: Path

    @property
    def description(self) -> str:
        """The file's path."""
        return str(self.path)

    def read(self, columns: Sequence[str]) -> Columns:
        """See :class:`Source`.

        Raises:
            SourceError: unreadable, not CSV, no header, a missing column or a short row.
        """
        try:
            with self.path.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                if header is None:
                    raise SourceError(f"{self.path} is empty (no header row)")
                _missing(columns, header, str(self.path))
                where = [header.index(c) for c in columns]
                out: list[list[object]] = [[] for _ in columns]
                for line, row in enumerate(reader, start=2):
                    if not row:
                        continue
                    if len(row) < len(header):
                        raise SourceError(
                            f"{self.path} line {line} has fewer cells than the header"
                        )
                    for slot, position in zip(out, where, strict=True):
                        slot.append(row[position])
        except OSError as exc:
            raise SourceError(f"cannot open {self.path}: {exc.strerror or exc}") from exc
        except (UnicodeDecodeError, csv.Error) as exc:
            raise SourceError(f"{self.path} is not UTF-8 CSV: {type(exc).__name__}") from exc
        return Columns({c: tuple(v) for c, v in zip(columns, out, strict=True)}, len(out[0]))


@dataclass(frozen=True)
class SqlSource:
    """A table behind an SQLAlchemy URL (``sqlite:///path``, ``postgresql://...``)."""

    url: str = field(repr=False)
    table: str

    @property
    def description(self) -> str:
        """The URL without its password, and the table."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            shown = make_url(self.url).render_as_string(hide_password=True)
        except ArgumentError:
            shown = "an SQL URL"
        return f"{shown} table {self.table}"

    def read(self, columns: Sequence[str]) -> Columns:
        """See :class:`Source`; the rows come in the table's natural order.

        Raises:
            SourceError: the database does not open, the table or a column is missing.
        """
        from sqlalchemy import column, create_engine, inspect, select, table
        from sqlalchemy.exc import (
            ArgumentError,
            NoSuchModuleError,
            NoSuchTableError,
            SQLAlchemyError,
        )

        try:
            engine = create_engine(self.url)
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise SourceError(f"cannot use the SQL URL ({type(exc).__name__})") from exc
        try:
            try:
                present = [c["name"] for c in inspect(engine).get_columns(self.table)]
            except NoSuchTableError as exc:
                raise SourceError(
                    f"table {self.table} does not exist in {self.description}"
                ) from exc
            _missing(columns, present, f"table {self.table}")
            query: Any = select(*(column(c) for c in columns)).select_from(table(self.table))
            with engine.connect() as connection:
                rows = connection.execute(query).all()
        except SQLAlchemyError as exc:
            raise SourceError(f"cannot read {self.description}: {type(exc).__name__}") from exc
        finally:
            engine.dispose()
        values = {c: tuple(row[i] for row in rows) for i, c in enumerate(columns)}
        return Columns(values, len(rows))


Skipped = Callable[[int, str], None]
"""Told of an edge batch the agent does not use: its id and why."""


@dataclass
class EdgeSource:
    """The sealed reading batches edge devices uploaded for the enterprise.

    Each batch is opened with the enterprise's own key and its device
    signature checked against ``trust``, the CA bundle the agent pinned
    (never one the exchange hands it) and the exchange's CRL, which must
    verify under that bundle (:class:`edge_tls.BatchOpener`). A batch that
    does not open or verify, or lacks a needed column, is skipped and named
    through ``skipped``; the rows of the others are read in batch order.
    """

    client: ExchangeClient = field(repr=False)
    enterprise: str
    seed: bytes = field(repr=False)
    trust: list[x509.Certificate] = field(repr=False)
    skipped: Skipped = field(default=lambda _id, _why: None, repr=False)
    page: int = 500

    @property
    def description(self) -> str:
        """``edge readings of <enterprise>``."""
        return f"edge readings of {self.enterprise}"

    def read(self, columns: Sequence[str]) -> Columns:
        """See :class:`Source`.

        Raises:
            SourceError: the pinned bundle or the CRL cannot be used, the exchange
                lists something that is not a batch, or no batch holds the columns.
        """
        from core.clock import parse_rfc3339
        from edge_tls import BatchOpener, ReadingBatch, ReadingsError
        from exchange.error_table import RemoteRefusalError

        try:
            crl = self.client.call("GET", "/v1/pki/crl").content
            opener = BatchOpener(self.enterprise, self.seed, trust=self.trust, crl=crl)
        except ReadingsError as exc:
            raise SourceError(f"edge readings: {exc}") from exc
        except RemoteRefusalError as exc:
            raise SourceError(f"edge readings: the exchange refused the CRL: {exc}") from exc
        out: list[list[object]] = [[] for _ in columns]
        used = 0
        try:
            items = list(self.client.pages("/v1/edge/readings", after=0, limit=self.page))
        except RemoteRefusalError as exc:
            raise SourceError(f"edge readings: the exchange refused the list: {exc}") from exc
        for item in items:
            try:
                batch = ReadingBatch(
                    id=int(item["id"]),
                    enterprise=self.enterprise,
                    device=str(item["device"]),
                    sha256=str(item["sha256"]),
                    ciphertext=base64.b64decode(item["ciphertext"], validate=True),
                    received_at=parse_rfc3339(str(item["received_at"])),
                )
            except (KeyError, TypeError, ValueError, binascii.Error) as exc:
                raise SourceError(f"the exchange listed a malformed edge batch: {exc}") from exc
            try:
                rows = list(csv.reader(io.StringIO(opener.open(batch).readings.decode("utf-8"))))
            except ReadingsError as exc:
                self.skipped(batch.id, str(exc))
                continue
            except (UnicodeDecodeError, csv.Error):
                self.skipped(batch.id, "not UTF-8 CSV")
                continue
            if not rows:
                continue
            header, body = rows[0], rows[1:]
            absent = [c for c in columns if c not in header]
            if absent:
                self.skipped(batch.id, f"no column {', '.join(absent)}")
                continue
            where = [header.index(c) for c in columns]
            for row in body:
                if len(row) < len(header):
                    self.skipped(batch.id, "a row shorter than its header")
                    break
            else:
                for row in body:
                    for slot, position in zip(out, where, strict=True):
                        slot.append(row[position])
                used += 1
        if not used:
            raise SourceError(
                f"no edge batch of {self.enterprise} holds column(s) {', '.join(columns)}"
            )
        return Columns({c: tuple(v) for c, v in zip(columns, out, strict=True)}, len(out[0]))


@dataclass(frozen=True)
class ColumnMap:
    """Dataset field → source column; a field not named here reads its namesake."""

    overrides: Mapping[str, str] = field(default_factory=dict)

    def column(self, field_name: str) -> str:
        """The column that holds ``field_name``."""
        return self.overrides.get(field_name, field_name)


def parse_column_options(options: Sequence[str]) -> ColumnMap:
    """``["field=col", ...]`` as a :class:`ColumnMap`.

    Raises:
        ValueError: an option that is not ``field=column`` or a field given twice.
    """
    mapping: dict[str, str] = {}
    for option in options:
        name, sep, column = option.partition("=")
        if not sep or not name.strip() or not column.strip():
            raise ValueError(f"--column {option!r}: expected FIELD=COLUMN")
        if name.strip() in mapping:
            raise ValueError(f"--column: field {name.strip()} is mapped twice")
        mapping[name.strip()] = column.strip()
    return ColumnMap(mapping)


@dataclass(frozen=True)
class FieldReader:
    """Reads a task's fields from a source through the column map."""

    source: Source
    columns: ColumnMap = field(default_factory=ColumnMap)

    def _read(self, fields: Sequence[str]) -> Columns:
        return self.source.read([self.columns.column(f) for f in fields])

    def numbers(self, field_name: str) -> tuple[float, ...]:
        """Every value of ``field_name``, each a finite number.

        Raises:
            SourceError: as :meth:`Source.read`, or a value that is no finite number.
        """
        column = self.columns.column(field_name)
        data = self._read([field_name])
        return tuple(_number(v, column, row) for row, v in enumerate(data.values[column], start=1))

    def rows(self, fields: Sequence[str]) -> tuple[tuple[float, ...], ...]:
        """Rows of ``fields`` (in that order), each value a finite number.

        Raises:
            SourceError: as :meth:`numbers`.
        """
        names = [self.columns.column(f) for f in fields]
        data = self._read(fields)
        return tuple(
            tuple(_number(data.values[c][i], c, i + 1) for c in names) for i in range(data.rows)
        )

    def texts(self, field_name: str) -> tuple[str, ...]:
        """Every non-empty value of ``field_name`` as text (surrounding space stripped).

        Raises:
            SourceError: as :meth:`Source.read`.
        """
        column = self.columns.column(field_name)
        data = self._read([field_name])
        out = tuple(str(v).strip() for v in data.values[column] if v is not None)
        return tuple(v for v in out if v)


def _number(value: object, column: str, row: int) -> float:
    """A finite float, or a :class:`SourceError` naming the column and row (never the value)."""
    number: float
    if isinstance(value, bool) or value is None:
        raise SourceError(f"column {column} row {row} is not a number")
    if isinstance(value, int | float | Decimal):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise SourceError(f"column {column} row {row} is not a number") from None
    else:
        raise SourceError(f"column {column} row {row} is not a number")
    if not math.isfinite(number):
        raise SourceError(f"column {column} row {row} is not a finite number")
    return number


def open_source(
    spec: str,
    *,
    table: str | None = None,
    edge: Callable[[], Source] | None = None,
) -> Source:
    """The source ``--source`` names: ``edge``/``edge:``, an SQLAlchemy URL (with
    ``table``) or a CSV file path. Nothing is opened yet.

    Raises:
        ValueError: an SQL URL without ``--table``, a table with a CSV file, or
            ``edge`` where edge readings cannot be used.
    """
    if spec in EDGE_SOURCE:
        if edge is None:
            raise ValueError("--source edge needs the exchange and the enterprise key")
        if table is not None:
            raise ValueError("--table goes with an SQL URL, not with --source edge")
        return edge()
    if "://" in spec:
        if not table:
            raise ValueError("an SQL source needs --table TABLE")
        return SqlSource(spec, table)
    if table is not None:
        raise ValueError("--table goes with an SQL URL, not with a CSV file")
    return CsvSource(Path(spec))
