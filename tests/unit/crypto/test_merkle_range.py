"""Compact ranges: the same roots as the full tree for every size, and merging agrees with
appending (transparency-dev/merkle's compact/range_test.go, as properties)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.vectors import load_vectors
from vitalchain.crypto.merkle import EMPTY_ROOT, CompactRange, MerkleTree, leaf_hash

REF = load_vectors("rfc9162_merkle.json")
N = 300
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(N)]


def test_reference_roots() -> None:
    leaves = [leaf_hash(bytes.fromhex(leaf)) for leaf in REF["leaves"]]
    assert [CompactRange.of(leaves[:n]).root().hex() for n in range(9)] == REF["roots"]
    assert CompactRange().root() == EMPTY_ROOT


def test_root_equals_the_full_tree_for_every_size() -> None:
    tree = MerkleTree()
    compact = CompactRange()
    for n, leaf in enumerate(LEAVES, start=1):
        tree.append_hash(leaf)
        compact = compact.append(leaf)
        assert (len(compact), compact.root()) == (n, tree.root())
        # O(log n): one hash per one bit of the size, never more than log2(n) + 1
        assert len(compact.hashes) == n.bit_count() <= n.bit_length()
    assert CompactRange.of(LEAVES) == compact


def test_thousands_of_leaves_are_a_handful_of_hashes() -> None:
    many = CompactRange.of(leaf_hash(i.to_bytes(4, "big")) for i in range(10_000))
    assert len(many) == 10_000
    assert len(many.hashes) == 5  # 10000 = 0b10011100010000


@given(cuts=st.lists(st.integers(0, N), min_size=1, max_size=6))
def test_merging_ranges_agrees_with_appending(cuts: list[int]) -> None:
    """Any split of [a, b) into adjacent ranges, merged left to right, is the range of [a, b)
    built leaf by leaf, whatever a is (compact.Range.AppendRange)."""
    points = sorted(cuts)
    merged = CompactRange.of(LEAVES[points[0] : points[0]], begin=points[0])
    for lo, hi in itertools.pairwise(points):
        merged = merged.extend(CompactRange.of(LEAVES[lo:hi], begin=lo))
    assert merged == CompactRange.of(LEAVES[points[0] : points[-1]], begin=points[0])
    if points[0] == 0:
        assert merged.root() == MerkleTree(LEAVES[: points[-1]]).root()


@given(begin=st.integers(0, N), size=st.integers(0, 40))
def test_a_range_from_anywhere_takes_the_fewest_hashes(begin: int, size: int) -> None:
    one_by_one = CompactRange(begin, begin)
    for leaf in LEAVES[:size]:
        one_by_one = one_by_one.append(leaf)
    assert one_by_one == CompactRange.of(LEAVES[:size], begin=begin)
    # each hash roots the largest perfect subtree aligned at its first leaf, left to right
    expected, at, end = [], begin, begin + size
    while at < end:
        width = at & -at if at else 1 << end.bit_length()
        while at + width > end:
            width //= 2
        expected.append(MerkleTree(LEAVES[at - begin : at - begin + width]).root())
        at += width
    assert list(one_by_one.hashes) == expected


def test_refusals() -> None:
    two = CompactRange.of(LEAVES[:2])
    with pytest.raises(ValueError, match="takes 2 hashes, not 1"):
        CompactRange(0, 3, two.hashes)
    with pytest.raises(ValueError, match="invalid range"):
        CompactRange(3, 2)
    with pytest.raises(ValueError, match="32 bytes"):
        two.append(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange(0, 1, (b"short",))
    with pytest.raises(ValueError, match="disjoint"):
        two.extend(CompactRange.of(LEAVES[3:5], begin=3))
    with pytest.raises(ValueError, match="from leaf 0"):
        CompactRange.of(LEAVES[3:5], begin=3).root()
    assert two.extend(CompactRange(2, 2)) is two
