"""The compact range (right frontier) agrees with the recursive RFC 9162 reference."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger._compact import CompactRange
from ledger._merkle import EMPTY_ROOT, frontier, root_from_nodes
from tests.ledger import reference

_LEAVES = st.lists(st.binary(max_size=8), max_size=80)


@given(_LEAVES, st.data())
def test_appending_in_any_split_gives_the_reference_root(
    leaves: list[bytes], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(leaves)))
    whole = CompactRange.empty().append(leaves)
    split = CompactRange.empty().append(leaves[:cut]).append(leaves[cut:])
    assert whole == split
    assert whole.root() == reference.mth(leaves)
    assert whole.size == len(leaves)


@given(_LEAVES)
def test_the_hashes_are_the_stored_frontier_nodes(leaves: list[bytes]) -> None:
    compact = CompactRange.empty().append(leaves)
    keys = frontier(len(leaves))
    assert len(keys) == len(compact.hashes)
    assert (
        root_from_nodes(len(leaves), dict(zip(keys, compact.hashes, strict=True))) == compact.root()
    )


def test_the_empty_range_has_the_empty_root() -> None:
    assert CompactRange.empty().root() == EMPTY_ROOT


@pytest.mark.parametrize(("size", "count"), [(1, 0), (3, 1), (4, 2), (-1, 0)])
def test_a_range_whose_hash_count_does_not_match_its_size_is_refused(size: int, count: int) -> None:
    with pytest.raises(ValueError, match="compact range"):
        CompactRange(size, tuple(bytes(32) for _ in range(count)))
