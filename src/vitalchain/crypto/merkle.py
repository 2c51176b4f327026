"""Append-only Merkle log, RFC 9162 section 2.1: hashes, inclusion and consistency proofs.

Leaves hash as SHA-256(0x00 ‖ data) and nodes as SHA-256(0x01 ‖ left ‖ right), so a leaf can
never pose as a node.  Proof encodings: docs/spec/merkle-proof.md.

Two shapes of the same log:

- :class:`CompactRange` (transparency-dev/merkle's ``compact.Range``): only the roots of the
  perfect subtrees that cover the leaves, at most log2(n) + 1 hashes.  Enough to append and
  to compute the root, which is all a sealer needs to anchor.
- :class:`MerkleTree`: every complete subtree hash, so a root or a proof for any earlier size
  costs O(log n) hashes.  Only a process that serves proofs holds one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from vitalchain.errors import DecodeError, InvalidProof
from vitalchain.wire.framing import Kind, Reader, header

__all__ = [
    "EMPTY_ROOT",
    "CompactRange",
    "ConsistencyProof",
    "InclusionProof",
    "MerkleTree",
    "leaf_hash",
    "node_hash",
    "verify_consistency",
    "verify_inclusion",
]

VERSION = 1
MAX_PATH = 64
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _encode_path(hashes: tuple[bytes, ...]) -> bytes:
    return bytes([len(hashes)]) + b"".join(hashes)


def _decode_path(reader: Reader) -> tuple[bytes, ...]:
    count = reader.u8()
    if count > MAX_PATH:
        raise DecodeError("proof path too long")
    return tuple(reader.take(32) for _ in range(count))


@dataclass(frozen=True, slots=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    path: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        return (
            header(Kind.INCLUSION_PROOF, VERSION)
            + self.leaf_index.to_bytes(8, "big")
            + self.tree_size.to_bytes(8, "big")
            + _encode_path(self.path)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> InclusionProof:
        reader = Reader(data, Kind.INCLUSION_PROOF, frozenset({VERSION}))
        proof = cls(reader.u64(), reader.u64(), _decode_path(reader))
        reader.done()
        return proof


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    size1: int
    size2: int
    path: tuple[bytes, ...]

    def to_bytes(self) -> bytes:
        return (
            header(Kind.CONSISTENCY_PROOF, VERSION)
            + self.size1.to_bytes(8, "big")
            + self.size2.to_bytes(8, "big")
            + _encode_path(self.path)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ConsistencyProof:
        reader = Reader(data, Kind.CONSISTENCY_PROOF, frozenset({VERSION}))
        proof = cls(reader.u64(), reader.u64(), _decode_path(reader))
        reader.done()
        return proof


def _covering(begin: int, end: int) -> int:
    """How many perfect subtrees cover leaves [begin, end) at the fewest (compact.Decompose)."""
    if begin == 0:
        return end.bit_count()
    xbegin = begin - 1
    mask = (1 << ((xbegin ^ end).bit_length() - 1)) - 1  # below where the two paths part
    return (~xbegin & mask).bit_count() + (end & mask).bit_count()


def _merge(
    begin: int, mid: int, left: list[bytes], seed: bytes, rest: list[bytes], end: int
) -> None:
    """Merge the range [mid, end) (``seed`` then ``rest``) into ``left``, the range
    [begin, mid), in place: compact.Range.appendImpl.

    Bits [low, high) of ``mid`` are the merge path: a 1 merges the seed with the last hash
    of the left range, a 0 with the next hash of the right one.
    """
    if begin == mid:  # nothing on the left to merge with
        left.extend((seed, *rest))
        return
    low = (mid & -mid).bit_length() - 1
    high = ((mid - 1) ^ end).bit_length()
    if begin:
        high = min(high, (mid ^ (begin - 1)).bit_length())
    steps = max(high - 1 - low, 0)
    index = mid >> low
    ones = (index & ((1 << steps) - 1)).bit_count()
    if ones > len(left) or steps - ones > len(rest):
        raise ValueError("corrupted compact range: too few hashes for its size")
    taken = 0
    for _ in range(steps):
        if index & 1:
            seed = node_hash(left.pop(), seed)
        else:
            seed = node_hash(seed, rest[taken])
            taken += 1
        index >>= 1
    left.append(seed)
    left.extend(rest[taken:])


@dataclass(frozen=True, slots=True)
class CompactRange:
    """Leaves [begin, end) as the roots of the fewest perfect subtrees covering them, left to
    right: transparency-dev/merkle's ``compact.Range``, with RFC 9162 hashing.

    A log of n leaves is ``n.bit_count()`` hashes, so a sealer that only appends and anchors
    roots holds O(log n) hashes, not every leaf (the store keeps those).  It cannot give a
    proof or the root of an earlier size: those need the leaves (:class:`MerkleTree`).

    Immutable: :meth:`append` and :meth:`extend` return a new range.  A reader that took the
    range once holds a size and hashes that agree, however another thread appends meanwhile.
    """

    begin: int = 0
    end: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if not 0 <= self.begin <= self.end:
            raise ValueError(f"invalid range: [{self.begin}, {self.end})")
        if len(self.hashes) != _covering(self.begin, self.end):
            raise ValueError(
                f"[{self.begin}, {self.end}) takes {_covering(self.begin, self.end)} hashes,"
                f" not {len(self.hashes)}"
            )
        if any(len(h) != 32 for h in self.hashes):
            raise ValueError("subtree hashes are 32 bytes")

    @classmethod
    def of(cls, leaf_hashes: Iterable[bytes], begin: int = 0) -> CompactRange:
        """The range of these leaf hashes, the first at index ``begin``: one pass, O(log n)
        memory, so a sealer can start from the store's leaves without holding them."""
        hashes: list[bytes] = []
        end = begin
        for digest in leaf_hashes:
            if len(digest) != 32:
                raise ValueError("leaf hashes are 32 bytes")
            _merge(begin, end, hashes, digest, [], end + 1)
            end += 1
        return cls(begin, end, tuple(hashes))

    def __len__(self) -> int:
        """How many leaves the range covers."""
        return self.end - self.begin

    def append(self, leaf_hash: bytes) -> CompactRange:
        """This range with one more leaf hash on the right."""
        if len(leaf_hash) != 32:
            raise ValueError("leaf hashes are 32 bytes")
        hashes = list(self.hashes)
        _merge(self.begin, self.end, hashes, leaf_hash, [], self.end + 1)
        return CompactRange(self.begin, self.end + 1, tuple(hashes))

    def extend(self, other: CompactRange) -> CompactRange:
        """This range merged with ``other``, which must start where this one ends
        (compact.Range.AppendRange): how ranges built apart, e.g. in parallel, join."""
        if other.begin != self.end:
            raise ValueError(f"ranges are disjoint: other begins at {other.begin}, not {self.end}")
        if not other.hashes:
            return self
        hashes = list(self.hashes)
        _merge(self.begin, self.end, hashes, other.hashes[0], list(other.hashes[1:]), other.end)
        return CompactRange(self.begin, other.end, tuple(hashes))

    def root(self) -> bytes:
        """The RFC 9162 root of leaves [0, end): the subtree roots folded from the right."""
        if self.begin != 0:
            raise ValueError(f"only a range from leaf 0 has a root, not one from {self.begin}")
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            root = node_hash(h, root)
        return root


class MerkleTree:
    """In-memory log of leaf hashes; ``levels[h][i]`` is the complete subtree of 2**h leaves."""

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: list[bytes] | None = None) -> None:
        self._levels: list[list[bytes]] = [[]]
        for h in leaf_hashes or ():
            self.append_hash(h)

    def __len__(self) -> int:
        return len(self._levels[0])

    def append(self, data: bytes) -> int:
        return self.append_hash(leaf_hash(data))

    def append_hash(self, digest: bytes) -> int:
        """Append a leaf hash; returns its index."""
        if len(digest) != 32:
            raise ValueError("leaf hashes are 32 bytes")
        index = len(self._levels[0])
        self._levels[0].append(digest)
        level, i = 0, index
        while i % 2 == 1:
            parent = node_hash(self._levels[level][i - 1], self._levels[level][i])
            level += 1
            if len(self._levels) == level:
                self._levels.append([])
            self._levels[level].append(parent)
            i //= 2
        return index

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            return self._levels[n.bit_length() - 1][lo // n]
        k = _split(n)
        return node_hash(self._mth(lo, lo + k), self._mth(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        size = len(self) if size is None else size
        if not 0 <= size <= len(self):
            raise ValueError(f"tree has {len(self)} leaves, not {size}")
        return EMPTY_ROOT if size == 0 else self._mth(0, size)

    def inclusion_proof(self, leaf_index: int, size: int | None = None) -> InclusionProof:
        size = len(self) if size is None else size
        if not 0 <= leaf_index < size <= len(self):
            raise ValueError("leaf index must be below the tree size")
        path: list[bytes] = []
        lo, hi, m = 0, size, leaf_index
        while hi - lo > 1:  # RFC 9162 PATH(m, D[lo:hi]), unrolled from the top
            k = _split(hi - lo)
            if m < k:
                path.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._mth(lo, lo + k))
                lo, m = lo + k, m - k
        return InclusionProof(leaf_index, size, tuple(reversed(path)))

    def consistency_proof(self, size1: int, size2: int | None = None) -> ConsistencyProof:
        """RFC 9162 2.1.4.1 for ``0 < size1 <= size2``.

        ``size1 = 0`` is refused, as transparency-dev/merkle does: every tree extends the
        empty one, so such a proof proves nothing and a verifier refuses it anyway.
        """
        size2 = len(self) if size2 is None else size2
        if not 0 < size1 <= size2 <= len(self):
            raise ValueError("need 0 < size1 <= size2 <= tree size")
        if size1 == size2:
            return ConsistencyProof(size1, size2, ())
        path: list[bytes] = []
        lo, hi, m, whole = 0, size2, size1, True
        while m != hi - lo:  # RFC 9162 SUBPROOF(m, D[lo:hi], whole)
            k = _split(hi - lo)
            if m <= k:
                path.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._mth(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        if not whole:
            path.append(self._mth(lo, hi))
        return ConsistencyProof(size1, size2, tuple(reversed(path)))


def verify_inclusion(leaf: bytes, proof: InclusionProof, root: bytes) -> None:
    """RFC 9162 2.1.3.2; ``leaf`` is the leaf hash.  Raises InvalidProof."""
    fn, sn = proof.leaf_index, proof.tree_size - 1
    if not 0 <= fn <= sn or len(leaf) != 32:
        raise InvalidProof("inclusion proof: leaf index outside the tree")
    r = leaf
    for p in proof.path:
        if sn == 0 or len(p) != 32:
            raise InvalidProof("inclusion proof: path too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("inclusion proof: path too short")
    if r != root:
        raise InvalidProof("inclusion proof: root mismatch")


def verify_consistency(proof: ConsistencyProof, root1: bytes, root2: bytes) -> None:
    """RFC 9162 2.1.4.2: the ``size2`` tree extends the ``size1`` tree.  Raises InvalidProof.

    A proof from the empty tree (``size1 = 0 < size2``) is refused, as transparency-dev/merkle
    refuses it: it would "verify" against any ``root2`` at all, so a caller that took it as
    evidence of an append-only log would be checking nothing.
    """
    first, second, path = proof.size1, proof.size2, list(proof.path)
    if not 0 <= first <= second:
        raise InvalidProof("consistency proof: sizes go backwards")
    if first == second:
        if path or root1 != root2:
            raise InvalidProof("consistency proof: equal sizes need equal roots and no path")
        return
    if first == 0:
        raise InvalidProof("consistency proof: a proof from the empty tree proves nothing")
    if not path or any(len(p) != 32 for p in path):
        raise InvalidProof("consistency proof: malformed path")
    if first & (first - 1) == 0:
        path.insert(0, root1)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof("consistency proof: path too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof("consistency proof: path too short")
    if fr != root1 or sr != root2:
        raise InvalidProof("consistency proof: root mismatch")
