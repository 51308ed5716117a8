"""The ``ibx-ledger-export/v1`` file: written, read back, and malformed files named by line."""

from __future__ import annotations

from datetime import UTC, datetime
from io import BytesIO

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audit import ExportFormatError, ExportHeader, LedgerExport, export_lines, write_export

HEADER = ExportHeader(
    "ibx.test/ledger", "ibx.test/ledger+01020304+AQ==", 2, datetime(2026, 12, 2, tzinfo=UTC)
)


@given(
    leaves=st.lists(st.binary(max_size=64), max_size=8),
    notes=st.lists(st.text(min_size=1, max_size=40), max_size=3),
    state=st.none() | st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
)
def test_round_trip(leaves: list[bytes], notes: list[str], state: dict[str, int] | None) -> None:
    out = BytesIO()
    write_export(out, HEADER, enumerate(leaves), notes, state)
    back = LedgerExport.parse(out.getvalue().splitlines())
    assert back.header == HEADER
    assert [(e.index, e.leaf) for e in back.entries] == list(enumerate(leaves))
    assert list(back.checkpoints) == notes
    assert back.state == state


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty"),
        ([b'{"format": "other"}'], "not an ibx-ledger-export/v1 header"),
        ([b"not json"], "line 1 is not JSON"),
        ([*export_lines(HEADER, [], []), b'{"index": 0, "leaf": "%%%"}'], "line 2: the leaf"),
        ([*export_lines(HEADER, [], []), b'{"what": 1}'], "line 2 is not an entry"),
    ],
)
def test_malformed_exports_name_the_line(lines: list[bytes], message: str) -> None:
    with pytest.raises(ExportFormatError, match=message):
        LedgerExport.parse(lines)
