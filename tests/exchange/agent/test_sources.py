"""Sources: CSV and SQLite through SQLAlchemy, the column map, and every refusal a source gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from exchange.agent import (
    CsvSource,
    FieldReader,
    SourceError,
    SqlSource,
    open_source,
    parse_column_options,
)


def _csv(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def _sqlite(path: Path) -> str:
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    with engine.begin() as db:
        db.execute(text("CREATE TABLE energy (kwh REAL, units INTEGER, site TEXT, note TEXT)"))
        db.execute(
            text(
                "INSERT INTO energy VALUES "
                "(1.5, 10, 'a', 'x'), (2.5, 20, 'b', NULL), (4, 30, 'a', 'z')"
            )
        )
    engine.dispose()
    return url


def test_csv_columns_by_header(tmp_path: Path) -> None:
    source = CsvSource(_csv(tmp_path / "d.csv", "site,energy_kwh,units\na,1.5,10\nb, 2.5 ,20\n"))
    reader = FieldReader(source)
    assert reader.numbers("energy_kwh") == (1.5, 2.5)
    assert reader.rows(("energy_kwh", "units")) == ((1.5, 10.0), (2.5, 20.0))
    assert reader.texts("site") == ("a", "b")


def test_sqlite_through_sqlalchemy(tmp_path: Path) -> None:
    reader = FieldReader(SqlSource(_sqlite(tmp_path / "d.db"), "energy"))
    assert reader.numbers("kwh") == (1.5, 2.5, 4.0)
    assert reader.rows(("units", "kwh")) == ((10.0, 1.5), (20.0, 2.5), (30.0, 4.0))
    assert reader.texts("site") == ("a", "b", "a")


def test_the_column_map_reads_a_field_from_another_column(tmp_path: Path) -> None:
    columns = parse_column_options(["energy_kwh=kwh", "output_units = units"])
    reader = FieldReader(SqlSource(_sqlite(tmp_path / "d.db"), "energy"), columns)
    assert reader.numbers("energy_kwh") == (1.5, 2.5, 4.0)
    assert reader.rows(("energy_kwh", "output_units"))[0] == (1.5, 10.0)
    with pytest.raises(ValueError, match="FIELD=COLUMN"):
        parse_column_options(["energy_kwh"])
    with pytest.raises(ValueError, match="twice"):
        parse_column_options(["a=b", "a=c"])


def test_a_missing_column_is_a_source_error_naming_it(tmp_path: Path) -> None:
    csv_reader = FieldReader(CsvSource(_csv(tmp_path / "d.csv", "site,kwh\na,1\n")))
    with pytest.raises(SourceError, match="column energy_kwh is missing"):
        csv_reader.numbers("energy_kwh")
    sql_reader = FieldReader(SqlSource(_sqlite(tmp_path / "d.db"), "energy"))
    with pytest.raises(SourceError, match="column energy_kwh is missing"):
        sql_reader.numbers("energy_kwh")


def test_a_non_numeric_value_is_refused_without_showing_it(tmp_path: Path) -> None:
    reader = FieldReader(CsvSource(_csv(tmp_path / "d.csv", "kwh\n1\nsecret-value\n")))
    with pytest.raises(SourceError, match="column kwh row 2 is not a number") as caught:
        reader.numbers("kwh")
    assert "secret-value" not in str(caught.value)
    for body in ("kwh\n1\n\n2\n,\n", "kwh\nnan\n", "kwh\ninf\n"):
        with pytest.raises(SourceError, match="column kwh row"):
            FieldReader(CsvSource(_csv(tmp_path / "e.csv", body))).numbers("kwh")
    sql = FieldReader(SqlSource(_sqlite(tmp_path / "d.db"), "energy"))
    with pytest.raises(SourceError, match="column site row 1 is not a number"):
        sql.numbers("site")
    with pytest.raises(SourceError, match="column note row 1 is not a number"):
        sql.rows(("kwh", "note"))


def test_a_source_that_cannot_be_opened_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot open"):
        FieldReader(CsvSource(tmp_path / "absent.csv")).numbers("kwh")
    with pytest.raises(SourceError, match="empty"):
        FieldReader(CsvSource(_csv(tmp_path / "empty.csv", ""))).numbers("kwh")
    with pytest.raises(SourceError, match="does not exist"):
        FieldReader(SqlSource(_sqlite(tmp_path / "d.db"), "absent")).numbers("kwh")
    with pytest.raises(SourceError):
        FieldReader(SqlSource("nosuchdialect://x", "t")).numbers("kwh")


def test_an_sql_description_hides_the_password() -> None:
    source = SqlSource("postgresql://agent:hunter2@db.example/energy", "readings")
    assert "hunter2" not in source.description
    assert "hunter2" not in repr(source)


def test_open_source_chooses_by_form(tmp_path: Path) -> None:
    assert isinstance(open_source(str(tmp_path / "d.csv")), CsvSource)
    assert isinstance(open_source("sqlite:///x.db", table="t"), SqlSource)
    with pytest.raises(ValueError, match="--table"):
        open_source("sqlite:///x.db")
    with pytest.raises(ValueError, match="--table goes with"):
        open_source("d.csv", table="t")
    with pytest.raises(ValueError, match="edge"):
        open_source("edge")
