"""The one place the CLI renders data: JSON, a Rich table on a terminal, plain lines otherwise.

Every command that prints data takes :data:`JSON_OPTION` (``--json``) and then
prints one JSON document on stdout (:func:`emit_json`) with stable snake_case
field names. Without it, a listing is a :class:`Table`: on a terminal it is
drawn with headers by Rich (imported only then, so start-up stays fast); when
stdout is a pipe or a file it is printed as the plain lines scripts have
always read (tab-separated cells unless the command keeps another line form),
byte for byte.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from core.canonical import JsonValue

__all__ = [
    "JSON_OPTION",
    "Record",
    "Table",
    "emit_json",
    "emit_records",
    "emit_table",
    "stdout_is_terminal",
]

logger = logging.getLogger(__name__)

JSON_OPTION = typer.Option(
    False,
    "--json",
    help="print one JSON document with stable field names (see docs/cli.md, Output)",
)
"""The ``--json`` option, shared by every command that prints data."""


class Record(Protocol):
    """A per-command output record: a frozen dataclass with stable JSON fields."""

    def to_dict(self) -> Mapping[str, JsonValue]:
        """The record's JSON object (stable snake_case field names)."""
        ...


@dataclass(frozen=True)
class Table:
    """A listing: headers, one row of cells per item, and the plain line form of each row.

    ``plain`` holds the line printed for each row when stdout is not a terminal
    (what scripts parse); when empty, the cells joined by tabs are used.
    """

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    plain: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.headers:
            raise ValueError("a table needs at least one header")
        for row in self.rows:
            if len(row) != len(self.headers):
                raise ValueError(
                    f"a row has {len(row)} cells for {len(self.headers)} headers: {row!r}"
                )
        if self.plain and len(self.plain) != len(self.rows):
            raise ValueError(f"{len(self.plain)} plain lines for {len(self.rows)} rows")

    @classmethod
    def build(
        cls,
        headers: Sequence[str],
        rows: Iterable[Sequence[str]],
        plain: Iterable[str] | None = None,
    ) -> Table:
        """A table from any sequences (rows and plain lines in the same order).

        Raises:
            ValueError: a row with the wrong number of cells, or plain lines
                that do not match the rows one for one.
        """
        return cls(
            tuple(headers),
            tuple(tuple(row) for row in rows),
            tuple(plain) if plain is not None else (),
        )

    def plain_lines(self) -> tuple[str, ...]:
        """The lines printed when stdout is not a terminal."""
        return self.plain or tuple("\t".join(row) for row in self.rows)


def stdout_is_terminal() -> bool:
    """Whether standard output is a terminal (a person reads it, not a script)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


def emit_json(
    document: Mapping[str, object] | Sequence[Mapping[str, object]], *, compact: bool = False
) -> None:
    """Print one JSON document (indented, or on one line if ``compact``) on stdout.

    Raises:
        TypeError: a value that JSON cannot represent (a bug in a record's to_dict).
    """
    typer.echo(json.dumps(document, indent=None if compact else 2, ensure_ascii=False))


def emit_records(records: Iterable[Record]) -> None:
    """Print a listing as one JSON array of the records' objects.

    Raises:
        TypeError: as :func:`emit_json`.
    """
    typer.echo(json.dumps([dict(r.to_dict()) for r in records], indent=2, ensure_ascii=False))


def emit_table(table: Table, *, console: Console | None = None) -> None:
    """Print a listing: a Rich table with headers on a terminal, plain lines otherwise.

    ``console`` replaces standard output (tests pass one with ``force_terminal``);
    its ``is_terminal`` decides the form.

    Raises:
        OSError: standard output cannot be written.
    """
    terminal = console.is_terminal if console is not None else stdout_is_terminal()
    if not terminal:
        lines = table.plain_lines()
        if console is None:
            for line in lines:
                typer.echo(line)
        else:
            console.file.write("".join(line + "\n" for line in lines))
        return
    from rich import box
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    drawn = RichTable(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header in table.headers:
        drawn.add_column(header, overflow="fold")
    for row in table.rows:
        drawn.add_row(*(Text(cell) for cell in row))  # cells are data, never markup
    (console or Console(highlight=False)).print(drawn)
