"""The gateway's store: its local journal and a block store, kept consistent.

The two live in different databases (the journal always in the gateway's data directory, the
block store there too or in a shared PostgreSQL), so no transaction spans them.  Sealing is
therefore done in an order a crash cannot break:

1. the journal marks the block's messages with the block's log position and leaf hash;
2. the block store keeps the block and its key ring;
3. if 2 fails, the marks are undone at once; if the process dies between 1 and 2, the marks
   of any block the block store does not hold are undone when the store is next opened.

Neither order loses a reading (a mark without a block is undone, never pruned), and a block is
never sealed twice from the same messages.  Pruning waits for the anchor: when an anchor
covering a block's leaf is recorded, the journal forgets the block's messages, so plaintext
lives only until its block is sealed *and* anchored.  On open, anchors recorded before a crash
are applied again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from vitalchain.store.base import (
    AnchorRecord,
    BlockStore,
    Journal,
    PendingPatient,
    SealedLeaf,
    Store,
)
from vitalchain.store.errors import DuplicateReading
from vitalchain.store.files import private_dir
from vitalchain.store.journal import SqliteJournal
from vitalchain.store.model import Message, StoredMessage
from vitalchain.store.sql import SqlBlockStore
from vitalchain.store.sqlite import SqliteStore
from vitalchain.wire.block import Block, KeyEntry

__all__ = ["JOURNAL_FILE", "STORE_FILE", "GatewayStore", "open_store"]

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.db"
STORE_FILE = "store.db"


class GatewayStore:
    """A :class:`~vitalchain.store.base.Store`: journal calls go to the journal, block calls to
    the block store, and the two that touch both (``add_block``, ``record_anchor``) keep them
    consistent (see the module docstring)."""

    def __init__(self, journal: Journal, block_store: BlockStore) -> None:
        self._journal = journal
        self._blocks = block_store
        self.recover()

    @property
    def journal(self) -> Journal:
        return self._journal

    @property
    def block_store(self) -> BlockStore:
        return self._blocks

    def recover(self) -> None:
        """Undo marks of blocks the block store does not hold; prune what is anchored."""
        leaves: dict[int, list[bytes]] = {}
        groups: set[int] = set()
        for sealed in self._journal.sealed_leaves():
            groups.add(sealed.group_id)
            if sealed.group_id not in leaves:
                leaves[sealed.group_id] = self._blocks.leaf_hashes(sealed.group_id)
            kept = leaves[sealed.group_id]
            if sealed.leaf_index >= len(kept) or kept[sealed.leaf_index] != sealed.leaf:
                log.warning(
                    "a block of group %s at leaf %s was not kept: its messages are pending again",
                    sealed.group_id,
                    sealed.leaf_index,
                )
                self._journal.unmark(sealed.group_id, sealed.leaf_index)
        for group_id in groups:
            anchors = self._blocks.anchors(group_id)
            if anchors:
                self._journal.prune(group_id, anchors[-1].tree_size)

    # -- both -------------------------------------------------------------------------------------

    def add_block(
        self, block: Block, stanzas: tuple[KeyEntry, ...], message_ids: Sequence[int] = ()
    ) -> None:
        """Mark ``message_ids`` sealed into ``block`` and keep the block; all or nothing."""
        if message_ids:
            self._journal.mark_sealed(block.group_id, block.leaf_index, block.leaf, message_ids)
        try:
            self._blocks.add_block(block, stanzas)
        except Exception:
            if self._holds(block):  # kept after all: a success whose answer was lost
                log.warning("a block write raised but the block was kept; carrying on")
                return
            if message_ids:
                self._journal.unmark(block.group_id, block.leaf_index)
            raise
        except BaseException:
            if message_ids:
                self._journal.unmark(block.group_id, block.leaf_index)
            raise

    def _holds(self, block: Block) -> bool:
        """Whether a block whose write raised was kept all the same (a commit whose answer
        was lost): then its marks must stay, or its messages would be sealed twice."""
        try:
            kept = self._blocks.block(block.group_id, block.leaf_index)
        except Exception:  # the block store is away: the marks go, the messages stay pending
            return False
        return kept is not None and kept.hash == block.hash

    def record_anchor(self, record: AnchorRecord) -> None:
        """Keep the anchor, then forget the plaintext of every block it covers."""
        self._blocks.record_anchor(record)
        gone = self._journal.prune(record.group_id, record.tree_size)
        if gone:
            log.debug("pruned %d anchored messages of group %s", gone, record.group_id)

    def close(self) -> None:
        try:
            self._journal.close()
        finally:
            self._blocks.close()

    # -- the journal ------------------------------------------------------------------------------

    def submit(self, message: Message) -> Future[int]:
        return self._journal.submit(message)

    def append(self, message: Message) -> int:
        return self._journal.append(message)

    def last_seqs(self) -> dict[str, int]:
        return self._journal.last_seqs()

    def stored_ranges(self) -> dict[str, list[tuple[int, int]]]:
        return self._journal.stored_ranges()

    def count_readings(self) -> int:
        return self._journal.count_readings()

    def messages(
        self, *, device: str | None = None, after_id: int = 0, limit: int = 1000
    ) -> list[StoredMessage]:
        return self._journal.messages(device=device, after_id=after_id, limit=limit)

    def pending_patients(self) -> list[PendingPatient]:
        return self._journal.pending_patients()

    def unsealed(
        self, group_id: int, patient: str, max_readings: int = 10_000
    ) -> list[StoredMessage]:
        return self._journal.unsealed(group_id, patient, max_readings)

    def mark_sealed(
        self, group_id: int, leaf_index: int, leaf: bytes, message_ids: Sequence[int]
    ) -> None:
        self._journal.mark_sealed(group_id, leaf_index, leaf, message_ids)

    def unmark(self, group_id: int, leaf_index: int) -> None:
        self._journal.unmark(group_id, leaf_index)

    def sealed_leaves(self) -> list[SealedLeaf]:
        return self._journal.sealed_leaves()

    def prune(self, group_id: int, tree_size: int) -> int:
        return self._journal.prune(group_id, tree_size)

    # -- the block store --------------------------------------------------------------------------

    def last_block(self, group_id: int, patient: str) -> Block | None:
        return self._blocks.last_block(group_id, patient)

    def next_leaf_index(self, group_id: int) -> int:
        return self._blocks.next_leaf_index(group_id)

    def block(self, group_id: int, leaf_index: int) -> Block | None:
        return self._blocks.block(group_id, leaf_index)

    def patient_block(self, group_id: int, patient: str, number: int) -> Block | None:
        return self._blocks.patient_block(group_id, patient, number)

    def blocks(
        self, group_id: int, patient: str, after_number: int = 0, limit: int = 1000
    ) -> list[Block]:
        return self._blocks.blocks(group_id, patient, after_number, limit)

    def block_numbers(self, group_id: int, patient: str) -> list[int]:
        return self._blocks.block_numbers(group_id, patient)

    def leaf_hashes(self, group_id: int) -> list[bytes]:
        return self._blocks.leaf_hashes(group_id)

    def stanzas(self, group_id: int, leaf_index: int) -> tuple[KeyEntry, ...]:
        return self._blocks.stanzas(group_id, leaf_index)

    def add_stanza(self, group_id: int, leaf_index: int, stanza: KeyEntry) -> None:
        self._blocks.add_stanza(group_id, leaf_index, stanza)

    def anchors(self, group_id: int) -> list[AnchorRecord]:
        return self._blocks.anchors(group_id)

    def add_nonce(self, nonce: bytes, subject: str, expires_at_ms: int) -> None:
        self._blocks.add_nonce(nonce, subject, expires_at_ms)

    def consume_nonce(self, nonce: bytes, subject: str, now_ms: int) -> bool:
        return self._blocks.consume_nonce(nonce, subject, now_ms)

    def purge_nonces(self, now_ms: int) -> int:
        return self._blocks.purge_nonces(now_ms)


def open_store(data_dir: Path, dsn: str | None = None) -> Store:
    """The gateway's store: ``journal.db`` in ``data_dir`` always; blocks in ``store.db`` and
    ``blocks/`` there too, or in the PostgreSQL database at ``dsn``."""
    private_dir(data_dir, tighten=False)
    journal = SqliteJournal(data_dir / JOURNAL_FILE)
    try:
        blocks: SqlBlockStore
        if dsn:
            from vitalchain.store.postgres import PostgresStore  # its driver only when asked for

            blocks = PostgresStore(dsn)
        else:
            blocks = SqliteStore(data_dir / STORE_FILE)
    except BaseException:
        journal.close()
        raise
    try:
        _move_legacy_plaintext(journal, blocks)
        return GatewayStore(journal, blocks)
    except BaseException:
        journal.close()
        blocks.close()
        raise


def _move_legacy_plaintext(journal: SqliteJournal, blocks: SqlBlockStore) -> None:
    """Before the journal, a block store kept messages and readings beside the blocks (so a
    PostgreSQL operator could read every vital).  Move the unsealed ones to the journal,
    remember every stored seq (replay protection), then drop the tables."""
    found = blocks.legacy_plaintext()
    if found is None:
        return
    unsealed, seqs = found
    for message in unsealed:
        with contextlib.suppress(DuplicateReading):  # moved by an earlier, interrupted open
            journal.append(message)
    for device, numbers in seqs.items():
        journal.remember_seqs(device, numbers)
    blocks.drop_legacy_plaintext()
    log.warning(
        "moved %d unsealed messages from the block store to the journal and dropped its "
        "plaintext tables",
        len(unsealed),
    )
