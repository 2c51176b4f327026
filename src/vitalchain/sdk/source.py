"""Where a verifier or a provider gets blocks and proofs from.

:class:`StoreSource` answers from a local store (this is also what the store's API serves);
:class:`HttpSource` asks a store over HTTP.  Neither is trusted by the verifier.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import httpx

from vitalchain.crypto.merkle import ConsistencyProof, InclusionProof, MerkleTree
from vitalchain.edge.client import raise_for_refusal
from vitalchain.edge.codes import Refused
from vitalchain.errors import VitalchainError
from vitalchain.store.base import BlockStore
from vitalchain.wire.block import Block, KeyEntry

__all__ = ["HttpSource", "StoreSource"]


class StoreSource:
    """Blocks and proofs from a local store.

    Proofs need subtree hashes from all over the log, so this is where a process holds a
    group's full :class:`MerkleTree` (the sealer holds only a compact range).  Rebuilding it
    from the store's leaves for each proof would cost O(n) hashes per proof, and verify asks
    one per block.  It is built on the first proof asked, and read from the store again only
    when a proof asks for a size beyond it.
    """

    def __init__(self, store: BlockStore) -> None:
        self.store = store
        self._trees: dict[int, MerkleTree] = {}
        self._lock = threading.Lock()

    def _tree(self, group_id: int, size: int) -> MerkleTree:
        """The group's log, extended with the leaves sealed since, if ``size`` is beyond it."""
        with self._lock:
            tree = self._trees.setdefault(group_id, MerkleTree())
            if size > len(tree):
                for leaf in self.store.leaf_hashes(group_id)[len(tree) :]:
                    tree.append_hash(leaf)
            return tree

    def block_bytes(self, group_id: int, patient: str, number: int) -> bytes | None:
        block = self.store.patient_block(group_id, patient, number)
        return None if block is None else block.encode()

    def patient_numbers(self, group_id: int, patient: str) -> list[int]:
        return self.store.block_numbers(group_id, patient)

    def inclusion_proof(self, group_id: int, leaf_index: int, tree_size: int) -> InclusionProof:
        tree = self._tree(group_id, tree_size)
        if not 0 <= leaf_index < tree_size <= len(tree):
            raise VitalchainError("no such leaf or tree size in this log", code="unknown_block")
        return tree.inclusion_proof(leaf_index, tree_size)

    def consistency_proof(self, group_id: int, size1: int, size2: int) -> ConsistencyProof:
        tree = self._tree(group_id, size2)
        if not 0 < size1 <= size2 <= len(tree):  # size1 = 0: a proof from empty proves nothing
            raise VitalchainError("no such tree sizes in this log", code="unknown_block")
        return tree.consistency_proof(size1, size2)

    def stanzas(self, group_id: int, leaf_index: int) -> Sequence[KeyEntry]:
        return self.store.stanzas(group_id, leaf_index)


class HttpSource:
    """The store's public proof endpoints (docs/spec/access.md); blocks need an access grant."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self._blocks: dict[tuple[int, str, int], bytes] = {}
        self._stanzas: dict[tuple[int, int], KeyEntry] = {}
        self.numbers: dict[tuple[int, str], list[int]] = {}  # from the last authorised fetch

    def remember(
        self, group_id: int, leaf_index: int, block: Block, data: bytes, stanza: KeyEntry | None
    ) -> None:
        """Blocks a provider fetched (with consent) can then be verified from memory;
        ``block`` is ``data`` as the provider already parsed it (parsed once)."""
        self._blocks[(group_id, block.patient, block.number)] = data
        if stanza is not None:
            self._stanzas[(group_id, leaf_index)] = stanza

    def _get(self, path: str) -> Any:
        return raise_for_refusal(self.http.get(path), Refused)

    def block_bytes(self, group_id: int, patient: str, number: int) -> bytes | None:
        return self._blocks.get((group_id, patient, number))

    def patient_numbers(self, group_id: int, patient: str) -> list[int]:
        return self.numbers.get((group_id, patient), [])

    def inclusion_proof(self, group_id: int, leaf_index: int, tree_size: int) -> InclusionProof:
        body = self._get(
            f"/v1/store/groups/{group_id}/proofs/inclusion?leaf_index={leaf_index}&tree_size={tree_size}"
        )
        return InclusionProof.from_bytes(bytes.fromhex(body["proof"]))

    def consistency_proof(self, group_id: int, size1: int, size2: int) -> ConsistencyProof:
        body = self._get(
            f"/v1/store/groups/{group_id}/proofs/consistency?size1={size1}&size2={size2}"
        )
        return ConsistencyProof.from_bytes(bytes.fromhex(body["proof"]))

    def stanzas(self, group_id: int, leaf_index: int) -> Sequence[KeyEntry]:
        found = self._stanzas.get((group_id, leaf_index))
        return () if found is None else (found,)
