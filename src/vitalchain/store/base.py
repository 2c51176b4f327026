"""The store's port: what every backend (SQLite + files, PostgreSQL) provides.

The backend-neutral suite (tests/store_suite.py) runs against each implementation; code above
the store depends on this protocol, never on a backend.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from vitalchain.crypto.envelope import Stanza
from vitalchain.store.blocks import Block
from vitalchain.store.model import Message, StoredMessage

__all__ = ["AnchorRecord", "PendingPatient", "Store"]


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


class Store(Protocol):
    # -- verified messages (ingest) ---------------------------------------------------------------
    def submit(self, message: Message) -> Future[int]: ...
    def append(self, message: Message) -> int: ...
    def last_seqs(self) -> dict[str, int]: ...
    def count_readings(self) -> int: ...
    def messages(
        self, *, device: str | None = None, after_id: int = 0, limit: int = 1000
    ) -> list[StoredMessage]: ...

    # -- sealing ----------------------------------------------------------------------------------
    def pending_patients(self) -> list[PendingPatient]: ...
    def unsealed(
        self, group_id: int, patient: str, max_readings: int = 10_000
    ) -> list[StoredMessage]:
        """The oldest unsealed messages, in order, up to the one that reaches ``max_readings``."""
        ...

    def last_block(self, group_id: int, patient: str) -> Block | None: ...
    def next_leaf_index(self, group_id: int) -> int: ...
    def add_block(self, block: Block, stanzas: tuple[Stanza, ...], message_ids: list[int]) -> None:
        """Atomically: keep the block and its key ring, and mark its messages sealed."""
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
    def stanzas(self, group_id: int, leaf_index: int) -> tuple[Stanza, ...]: ...
    def add_stanza(self, group_id: int, leaf_index: int, stanza: Stanza) -> None: ...

    # -- anchors ----------------------------------------------------------------------------------
    def record_anchor(self, record: AnchorRecord) -> None: ...
    def anchors(self, group_id: int) -> list[AnchorRecord]: ...

    # -- one-time challenges ----------------------------------------------------------------------
    def add_nonce(self, nonce: bytes, subject: str, expires_at_ms: int) -> None: ...
    def consume_nonce(self, nonce: bytes, subject: str, now_ms: int) -> bool:
        """True once for an issued, unexpired nonce of ``subject``; False ever after."""
        ...

    def close(self) -> None: ...
