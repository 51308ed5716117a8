"""Stored-node proofs agree with the recursive RFC 9162 reference, and verify."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import _merkle as m
from ledger.errors import ConsistencyProofError, InclusionProofError, TreeSizeError
from tests.ledger import reference


def _leaves(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


@cache
def _tree(n: int) -> dict[m.NodeKey, bytes]:
    """All perfect nodes of a tree of n leaves, built by appending in uneven batches."""
    nodes: dict[m.NodeKey, bytes] = {}
    size, step = 0, 1
    leaves = _leaves(n)
    while size < n:
        batch = leaves[size : size + step]
        nodes.update(m.append_nodes(size, [m.leaf_hash(x) for x in batch], nodes))
        size += len(batch)
        step = step % 7 + 1
    return nodes


def _inclusion(index: int, n: int) -> list[bytes]:
    nodes = _tree(n)
    return [m.hash_range(a, b, nodes) for a, b in m.inclusion_ranges(index, n)]


def _consistency(first: int, second: int) -> list[bytes]:
    nodes = _tree(second)
    return [m.hash_range(a, b, nodes) for a, b in m.consistency_ranges(first, second)]


def _check_size(n: int) -> None:
    leaves = _leaves(n)
    root = reference.mth(leaves)
    assert m.root_from_nodes(n, _tree(n)) == root
    for i in range(n):
        got = _inclusion(i, n)
        assert got == reference.path(i, leaves), (i, n)
        m.verify_inclusion(i, n, m.leaf_hash(leaves[i]), got, root)


def test_empty_tree_root_is_hash_of_nothing() -> None:
    assert m.root_from_nodes(0, {}) == reference.mth([]) == m.EMPTY_ROOT


@pytest.mark.parametrize("n", range(1, 65))
def test_every_inclusion_proof_up_to_64(n: int) -> None:
    _check_size(n)


@pytest.mark.parametrize("second", range(1, 65))
def test_every_consistency_proof_up_to_64(second: int) -> None:
    leaves = _leaves(second)
    root2 = reference.mth(leaves)
    for first in range(1, second + 1):
        got = _consistency(first, second)
        assert got == reference.proof(first, leaves), (first, second)
        m.verify_consistency(first, second, reference.mth(leaves[:first]), root2, got)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), n=st.integers(min_value=1, max_value=10_000))
def test_random_sizes_up_to_10000(data: st.DataObject, n: int) -> None:
    leaves = _leaves(n)
    index = data.draw(st.integers(0, n - 1))
    first = data.draw(st.integers(1, n))
    root = m.root_from_nodes(n, _tree(n))
    assert root == reference.mth(leaves)
    proof = _inclusion(index, n)
    assert proof == reference.path(index, leaves)
    m.verify_inclusion(index, n, m.leaf_hash(leaves[index]), proof, root)
    cons = _consistency(first, n)
    assert cons == reference.proof(first, leaves)
    m.verify_consistency(first, n, m.root_from_nodes(first, _tree(n)), root, cons)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 200), data=st.data())
def test_any_flipped_bit_breaks_an_inclusion_proof(n: int, data: st.DataObject) -> None:
    leaves = _leaves(n)
    index = data.draw(st.integers(0, n - 1))
    proof = _inclusion(index, n)
    root = reference.mth(leaves)
    if not proof:
        return
    which = data.draw(st.integers(0, len(proof) - 1))
    bit = data.draw(st.integers(0, 255))
    bad = bytearray(proof[which])
    bad[bit // 8] ^= 1 << (bit % 8)
    forged = [*proof[:which], bytes(bad), *proof[which + 1 :]]
    with pytest.raises(InclusionProofError):
        m.verify_inclusion(index, n, m.leaf_hash(leaves[index]), forged, root)


@settings(max_examples=60, deadline=None)
@given(second=st.integers(2, 200), data=st.data())
def test_a_changed_prefix_breaks_consistency(second: int, data: st.DataObject) -> None:
    leaves = _leaves(second)
    first = data.draw(st.integers(1, second - 1))
    changed = data.draw(st.integers(0, first - 1))
    forked = [*leaves[:changed], b"forged", *leaves[changed + 1 :]]
    proof = reference.proof(first, forked)
    with pytest.raises(ConsistencyProofError):
        m.verify_consistency(
            first, second, reference.mth(leaves[:first]), reference.mth(forked), proof
        )


@pytest.mark.parametrize(
    ("index", "size"),
    [(0, 0), (-1, 5), (5, 5), (9, 3)],
    ids=["empty", "negative", "at-size", "beyond"],
)
def test_inclusion_ranges_refuse_out_of_range(index: int, size: int) -> None:
    with pytest.raises(TreeSizeError):
        m.inclusion_ranges(index, size)


@pytest.mark.parametrize(
    ("first", "second"), [(0, 5), (6, 5), (-1, 3)], ids=["from-empty", "shrinking", "negative"]
)
def test_consistency_ranges_refuse_bad_sizes(first: int, second: int) -> None:
    with pytest.raises(TreeSizeError):
        m.consistency_ranges(first, second)


def test_proof_costs_logarithmic_node_reads() -> None:
    size = (1 << 40) + 12345
    for index in (0, size // 3, size - 1):
        assert len(m.nodes_for_ranges(m.inclusion_ranges(index, size))) <= 2 * 41
    assert len(m.nodes_for_ranges(m.consistency_ranges(size // 2 + 7, size))) <= 2 * 41
