"""RFC 9162 Merkle log: reference vectors, every size 1..300 and index, and mutated proofs."""

from __future__ import annotations

import pytest

from tests.support.vectors import load_vectors
from vitalchain.crypto.merkle import (
    EMPTY_ROOT,
    ConsistencyProof,
    InclusionProof,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from vitalchain.errors import DecodeError, InvalidProof

REF = load_vectors("rfc9162_merkle.json")
N = 300


@pytest.fixture(scope="module")
def reference() -> MerkleTree:
    tree = MerkleTree()
    for leaf in REF["leaves"]:
        tree.append(bytes.fromhex(leaf))
    return tree


@pytest.fixture(scope="module")
def big() -> tuple[MerkleTree, list[bytes]]:
    tree = MerkleTree([leaf_hash(i.to_bytes(4, "big")) for i in range(N)])
    return tree, [tree.root(n) for n in range(N + 1)]


def test_reference_roots(reference: MerkleTree) -> None:
    assert [reference.root(n).hex() for n in range(9)] == REF["roots"]
    assert (
        reference.root(8).hex()
        == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )
    assert MerkleTree().root() == EMPTY_ROOT


@pytest.mark.parametrize("v", REF["inclusion"], ids=lambda v: f"{v['leaf_index']}@{v['tree_size']}")
def test_reference_inclusion(reference: MerkleTree, v: dict[str, object]) -> None:
    proof = reference.inclusion_proof(int(str(v["leaf_index"])), int(str(v["tree_size"])))
    assert [h.hex() for h in proof.path] == v["proof"]
    verify_inclusion(reference.leaf(proof.leaf_index), proof, reference.root(proof.tree_size))


@pytest.mark.parametrize("v", REF["consistency"], ids=lambda v: f"{v['size1']}->{v['size2']}")
def test_reference_consistency(reference: MerkleTree, v: dict[str, object]) -> None:
    proof = reference.consistency_proof(int(str(v["size1"])), int(str(v["size2"])))
    assert [h.hex() for h in proof.path] == v["proof"]
    verify_consistency(proof, reference.root(proof.size1), reference.root(proof.size2))


def _flip(h: bytes, bit: int) -> bytes:
    b = bytearray(h)
    b[bit // 8 % 32] ^= 1 << (bit % 8)
    return bytes(b)


def _inclusion_mutants(p: InclusionProof) -> list[tuple[str, InclusionProof]]:
    out = [
        ("index+1", InclusionProof(p.leaf_index + 1, p.tree_size, p.path)),
        # Not size+1: RFC 9162 binds the size only through the root, so a proof for leaf i
        # in a tree of n can also fit n+1 (transparency-dev mutates by *2 and /2 instead).
        ("size*2", InclusionProof(p.leaf_index, p.tree_size * 2, p.path)),
        ("size/2", InclusionProof(p.leaf_index, p.tree_size // 2, p.path)),
        (
            "extended",
            InclusionProof(
                p.leaf_index, p.tree_size, (*p.path, p.path[-1] if p.path else EMPTY_ROOT)
            ),
        ),
        ("prepended", InclusionProof(p.leaf_index, p.tree_size, (EMPTY_ROOT, *p.path))),
    ]
    if p.leaf_index > 0:
        out.append(("index-1", InclusionProof(p.leaf_index - 1, p.tree_size, p.path)))
    if p.path:
        out.append(("truncated", InclusionProof(p.leaf_index, p.tree_size, p.path[:-1])))
        for i in range(len(p.path)):
            out.append(
                (
                    f"bit flip in {i}",
                    InclusionProof(
                        p.leaf_index, p.tree_size, _replace(p.path, i, _flip(p.path[i], i * 37))
                    ),
                )
            )
    if len(p.path) > 1 and p.path[0] != p.path[1]:
        out.append(
            (
                "swapped",
                InclusionProof(p.leaf_index, p.tree_size, (p.path[1], p.path[0], *p.path[2:])),
            )
        )
    return out


def _replace(path: tuple[bytes, ...], i: int, h: bytes) -> tuple[bytes, ...]:
    return (*path[:i], h, *path[i + 1 :])


def _refused(check: object, *args: object) -> bool:
    """True iff ``check`` raises InvalidProof (a plain try: pytest.raises is slow in loops)."""
    try:
        check(*args)  # type: ignore[operator]
    except InvalidProof:
        return True
    return False


@pytest.mark.slow
def test_every_inclusion_proof_and_its_mutants(big: tuple[MerkleTree, list[bytes]]) -> None:
    tree, roots = big
    checked = rejected = 0
    for n in range(1, N + 1):
        for i in range(n):
            proof = tree.inclusion_proof(i, n)
            leaf = tree.leaf(i)
            verify_inclusion(leaf, proof, roots[n])
            assert InclusionProof.from_bytes(proof.to_bytes()) == proof
            checked += 1
            assert _refused(verify_inclusion, _flip(leaf, i), proof, roots[n])
            for desc, bad in _inclusion_mutants(proof):
                assert _refused(verify_inclusion, leaf, bad, roots[n]), (n, i, desc)
                rejected += 1
    assert checked == N * (N + 1) // 2
    assert rejected > 8 * checked


@pytest.mark.slow
def test_every_consistency_proof_and_its_mutants(big: tuple[MerkleTree, list[bytes]]) -> None:
    tree, roots = big
    checked = rejected = 0
    for n in range(1, N + 1):
        for m in range(1, n + 1):
            proof = tree.consistency_proof(m, n)
            verify_consistency(proof, roots[m], roots[n])
            assert ConsistencyProof.from_bytes(proof.to_bytes()) == proof
            checked += 1
            if not proof.path:
                continue
            mutants = [
                ConsistencyProof(m, n, proof.path[:-1]),
                ConsistencyProof(m, n, (*proof.path, proof.path[-1])),
                ConsistencyProof(m, n, (EMPTY_ROOT, *proof.path)),
                ConsistencyProof(m + 1, n, proof.path),
                ConsistencyProof(m - 1, n, proof.path)
                if m > 1
                else ConsistencyProof(m, n + 1, proof.path),
                *(
                    ConsistencyProof(m, n, _replace(proof.path, i, _flip(h, i)))
                    for i, h in enumerate(proof.path)
                ),
            ]
            if len(proof.path) > 1 and proof.path[0] != proof.path[1]:
                mutants.append(
                    ConsistencyProof(m, n, (proof.path[1], proof.path[0], *proof.path[2:]))
                )
            for bad in mutants:
                r1 = roots[bad.size1] if bad.size1 <= N else EMPTY_ROOT
                r2 = roots[bad.size2] if bad.size2 <= N else EMPTY_ROOT
                assert _refused(verify_consistency, bad, r1, r2), (m, n, bad)
                rejected += 1
            assert _refused(verify_consistency, proof, _flip(roots[m], 3), roots[n])
            assert _refused(verify_consistency, proof, roots[m], _flip(roots[n], 3))
    assert checked == sum(n for n in range(1, N + 1))
    assert rejected > 4 * checked


def test_consistency_from_the_empty_tree_is_refused(big: tuple[MerkleTree, list[bytes]]) -> None:
    """transparency-dev/merkle refuses size1 = 0: such a proof fits any second root at all."""
    tree, roots = big
    for n in (1, 2, 7, 8, N):
        for root2 in (roots[n], _flip(roots[n], 5), EMPTY_ROOT):
            with pytest.raises(InvalidProof, match="empty tree"):
                verify_consistency(ConsistencyProof(0, n, ()), EMPTY_ROOT, root2)
        with pytest.raises(ValueError, match="0 < size1"):
            tree.consistency_proof(0, n)
    with pytest.raises(ValueError, match="0 < size1"):
        MerkleTree().consistency_proof(0, 0)
    verify_consistency(ConsistencyProof(0, 0, ()), EMPTY_ROOT, EMPTY_ROOT)  # equal sizes, roots
    with pytest.raises(InvalidProof):
        verify_consistency(ConsistencyProof(0, 0, ()), EMPTY_ROOT, roots[1])


def test_edge_cases(big: tuple[MerkleTree, list[bytes]]) -> None:
    tree, roots = big
    with pytest.raises(InvalidProof):
        verify_inclusion(tree.leaf(0), InclusionProof(5, 5, ()), roots[5])
    with pytest.raises(InvalidProof):
        verify_inclusion(tree.leaf(0), InclusionProof(0, 0, ()), EMPTY_ROOT)
    with pytest.raises(InvalidProof):
        verify_consistency(ConsistencyProof(5, 4, ()), roots[5], roots[4])
    with pytest.raises(InvalidProof):
        verify_consistency(ConsistencyProof(4, 4, ()), roots[4], roots[5])
    with pytest.raises(InvalidProof):
        verify_consistency(ConsistencyProof(0, 4, (EMPTY_ROOT,)), EMPTY_ROOT, roots[4])
    with pytest.raises(InvalidProof):
        verify_consistency(ConsistencyProof(3, 4, ()), roots[3], roots[4])
    with pytest.raises(ValueError, match="below the tree size"):
        tree.inclusion_proof(N, N)
    with pytest.raises(ValueError, match="leaves"):
        tree.root(N + 1)


def test_leaf_and_node_are_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(a, b) != leaf_hash(a + b)
    two = MerkleTree()
    two.append(b"a")
    two.append(b"b")
    one = MerkleTree()
    one.append(a + b)
    assert one.root() != two.root()


def test_proof_decoding_refusals(big: tuple[MerkleTree, list[bytes]]) -> None:
    tree, _ = big
    inc = tree.inclusion_proof(3, 10).to_bytes()
    con = tree.consistency_proof(3, 10).to_bytes()
    for blob, cls in ((inc, InclusionProof), (con, ConsistencyProof)):
        for bad in (
            blob + b"\x00",
            blob[:-1],
            blob[:3] + b"\x02" + blob[4:],
            b"VCs" + blob[3:],
            blob[:20] + b"\xff",
        ):
            with pytest.raises(DecodeError):
                cls.from_bytes(bad)
