"""The store's ports: what every backend provides.

The store is split in two, because the two halves have different readers and different lives
(docs/threat-model.md):

- :class:`Journal`: the gateway's plaintext working copy of verified messages and their
  readings.  It never leaves the gateway's own disk (one SQLite file, ``journal.db``, in its
  data directory), is never read by providers, and forgets a message once the block holding
  it is sealed *and* anchored.  What replay protection needs after that (the sequence numbers
  stored per device, no health data) stays.
- :class:`BlockStore`: what providers read, locally (SQLite + files) or shared (PostgreSQL):
  ciphertext blocks, their key rings (one entry per reader), anchors and challenge nonces only.

:class:`Store` is both at once, as the gateway sees them (``vitalchain.store.composite``):
sealing writes a block to the block store and marks its messages in the journal, recording an
anchor prunes the journal.  The backend-neutral suite (tests/unit/store/test_store.py) runs
against each block store backend; code above the store depends on these protocols, never on a
backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from vitalchain.store.model import Message, StoredMessage
from vitalchain.wire.block import Block, KeyEntry

__all__ = ["AnchorRecord", "BlockStore", "Journal", "PendingPatient", "SealedLeaf", "Store"]


@dataclass(frozen=True, slots=True)
class PendingPatient:
    """A patient with stored messages not yet sealed into a block."""

    group_id: int
    patient: str
    readings: int
    oldest_received_ms: int


@dataclass(frozen=True, slots=True)
class AnchorRecord:
    group_id: int
    tree_size: int
    root: bytes
    tx_hash: bytes
    anchored_at_ms: int


@dataclass(frozen=True, slots=True)
class SealedLeaf:
    """A block the journal believes holds some of its messages (sealed, not yet pruned)."""

    group_id: int
    leaf_index: int
    leaf: bytes
    messages: int


class Journal(Protocol):
    """The gateway-local plaintext working copy (messages + readings), pruned once anchored."""

    # -- verified messages (ingest) ---------------------------------------------------------------
    def submit(self, message: Message) -> Future[int]:
        """Queue ``message``; the future resolves once it is committed durably (or refused:
        :class:`~vitalchain.store.errors.DuplicateReading` for a stored seq or message id)."""
        ...

    def append(self, message: Message) -> int: ...
    def last_seqs(self) -> dict[str, int]:
        """Highest stored seq per device; survives pruning."""
        ...

    def stored_ranges(self) -> dict[str, list[tuple[int, int]]]:
        """Per device, the stored seqs as sorted, disjoint, inclusive ranges; survives pruning."""
        ...

    def count_readings(self) -> int:
        """Readings ever stored (pruned ones included)."""
        ...

    def messages(
        self, *, device: str | None = None, after_id: int = 0, limit: int = 1000
    ) -> list[StoredMessage]:
        """Messages still in the journal (not pruned), in arrival order."""
        ...

    # -- sealing ----------------------------------------------------------------------------------
    def pending_patients(self) -> list[PendingPatient]: ...
    def unsealed(
        self, group_id: int, patient: str, max_readings: int = 10_000
    ) -> list[StoredMessage]:
        """The oldest unsealed messages, in order, up to the one that reaches ``max_readings``."""
        ...

    def mark_sealed(
        self, group_id: int, leaf_index: int, leaf: bytes, message_ids: Sequence[int]
    ) -> None:
        """Atomically mark these unsealed messages as sealed into the block at ``leaf_index``;
        an unknown or already sealed one refuses them all (``block_conflict``)."""
        ...

    def unmark(self, group_id: int, leaf_index: int) -> None:
        """Undo :meth:`mark_sealed` for a block that was not kept: its messages are pending."""
        ...

    def sealed_leaves(self) -> list[SealedLeaf]: ...
    def prune(self, group_id: int, tree_size: int) -> int:
        """Delete the messages and readings sealed into leaves below ``tree_size`` (anchored);
        returns how many messages went."""
        ...

    def close(self) -> None: ...


class BlockStore(Protocol):
    """What providers read: ciphertext blocks, key stanzas, anchors, challenge nonces."""

    def last_block(self, group_id: int, patient: str) -> Block | None: ...
    def next_leaf_index(self, group_id: int) -> int: ...
    def add_block(
        self, block: Block, stanzas: tuple[KeyEntry, ...], message_ids: Sequence[int] = ()
    ) -> None:
        """Atomically keep the block and its key ring (``message_ids`` is for a :class:`Store`,
        which also marks them sealed in its journal; a bare block store refuses any)."""
        ...

    # -- blocks and key rings ---------------------------------------------------------------------
    def block(self, group_id: int, leaf_index: int) -> Block | None: ...
    def patient_block(self, group_id: int, patient: str, number: int) -> Block | None: ...
    def blocks(
        self, group_id: int, patient: str, after_number: int = 0, limit: int = 1000
    ) -> list[Block]: ...
    def block_numbers(self, group_id: int, patient: str) -> list[int]:
        """The patient's block numbers in order, without reading the blocks (for gap checks)."""
        ...

    def leaf_hashes(self, group_id: int) -> list[bytes]: ...
    def stanzas(self, group_id: int, leaf_index: int) -> tuple[KeyEntry, ...]: ...
    def add_stanza(self, group_id: int, leaf_index: int, stanza: KeyEntry) -> None: ...

    # -- anchors ----------------------------------------------------------------------------------
    def record_anchor(self, record: AnchorRecord) -> None: ...
    def anchors(self, group_id: int) -> list[AnchorRecord]: ...

    # -- one-time challenges ----------------------------------------------------------------------
    def add_nonce(self, nonce: bytes, subject: str, expires_at_ms: int) -> None: ...
    def consume_nonce(self, nonce: bytes, subject: str, now_ms: int) -> bool:
        """True once for an issued, unexpired nonce of ``subject``; False ever after."""
        ...

    def purge_nonces(self, now_ms: int) -> int:
        """Delete challenges expired by ``now_ms`` (used or not; an expired one is refused
        anyway), so unauthenticated requests cannot grow the table; returns how many."""
        ...

    def close(self) -> None: ...


class Store(Journal, BlockStore, Protocol):
    """The gateway's view: a journal and a block store (``composite.GatewayStore``).

    ``add_block(block, stanzas, message_ids)`` marks the messages sealed in the journal and
    keeps the block; ``record_anchor`` prunes the journal below the anchored size.
    """

    @property
    def journal(self) -> Journal: ...
    @property
    def block_store(self) -> BlockStore: ...
