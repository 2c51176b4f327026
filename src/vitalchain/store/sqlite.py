"""The embedded block store: SQLite (WAL, ``synchronous=FULL``) for metadata, files for blocks.

What providers read and nothing else: sealed blocks (ciphertext, one file each), their key
rings, anchors and challenge nonces.  Plaintext messages and readings live in the gateway's
journal (:mod:`vitalchain.store.journal`) and never here.  Every file and directory is created
0600 / 0700 (:mod:`vitalchain.store.files`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from vitalchain.crypto.envelope import Stanza
from vitalchain.store.base import AnchorRecord
from vitalchain.store.blocks import Block
from vitalchain.store.errors import StoreError
from vitalchain.store.files import private_database, private_dir, write_private
from vitalchain.store.model import Message, Reading
from vitalchain.vitals import Vital

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blocks (
    id          INTEGER PRIMARY KEY,
    group_id    INTEGER NOT NULL,
    patient     TEXT NOT NULL,
    number      INTEGER NOT NULL,
    leaf_index  INTEGER NOT NULL,
    block_hash  BLOB NOT NULL UNIQUE,
    leaf        BLOB NOT NULL,
    file        TEXT NOT NULL,
    UNIQUE (group_id, patient, number),
    UNIQUE (group_id, leaf_index)
);
CREATE TABLE IF NOT EXISTS key_ring (
    block_id  INTEGER NOT NULL REFERENCES blocks(id),
    recipient BLOB NOT NULL,
    stanza    BLOB NOT NULL,
    PRIMARY KEY (block_id, recipient)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS anchors (
    group_id    INTEGER NOT NULL,
    tree_size   INTEGER NOT NULL,
    root        BLOB NOT NULL,
    tx_hash     BLOB NOT NULL,
    anchored_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, tree_size)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nonces (
    nonce      BLOB PRIMARY KEY,
    subject    TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) WITHOUT ROWID;
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _fits(*numbers: int) -> bool:
    """Positions past SQL's BIGINT cannot exist: asking for one is a miss, not a crash."""
    return all(0 <= n < 2**63 for n in numbers)


class SqliteStore:
    """SQLite for metadata, one file per sealed block (``blocks/<group>/<leaf>-<hash>.vcb``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.block_dir = path.parent / "blocks"
        private_database(path)  # 0600 before SQLite opens it: new -wal, -shm inherit it
        self._admin = _connect(path)
        self._admin.executescript(_SCHEMA)
        self._admin_lock = threading.Lock()
        self._reader = _connect(path)
        self._read_lock = threading.Lock()
        self._closed = False

    def legacy_plaintext(self) -> tuple[list[Message], dict[str, list[int]]] | None:
        """A store.db from before the journal kept messages and readings here: its unsealed
        messages, and every stored seq per device (None: no such tables)."""
        with self._read_lock:
            tables = {r[0] for r in self._reader.execute("SELECT name FROM sqlite_master")}
            if not {"messages", "readings"} <= tables:
                return None
            rows = self._reader.execute(
                "SELECT id, message_id, device, group_id, patient, received_at, payload, "
                "signature FROM messages WHERE block_id IS NULL ORDER BY id"
            ).fetchall()
            readings: dict[int, list[Reading]] = {int(r[0]): [] for r in rows}
            seqs: dict[str, list[int]] = {}
            for device, seq, message, vital, value, t in self._reader.execute(
                "SELECT device, seq, message, vital, value, t FROM readings ORDER BY device, seq"
            ):
                seqs.setdefault(device, []).append(int(seq))
                if int(message) in readings:
                    readings[int(message)].append(Reading(int(seq), Vital(vital), value, int(t)))
        unsealed = [
            Message(bytes(r[1]), r[2], int(r[3]), r[4], int(r[5]), bytes(r[6]), bytes(r[7]),
                    tuple(readings[int(r[0])]))
            for r in rows
            if readings[int(r[0])]
        ]  # fmt: skip
        return unsealed, seqs

    def drop_legacy_plaintext(self) -> None:
        """Drop the legacy plaintext tables and rewrite the file without their pages."""
        with self._admin_lock:
            self._admin.execute("DROP TABLE IF EXISTS readings")
            self._admin.execute("DROP TABLE IF EXISTS messages")
            self._admin.execute("VACUUM")
            self._admin.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reader.close()
        self._admin.close()

    # -- sealing ------------------------------------------------------------------------------

    def last_block(self, group_id: int, patient: str) -> Block | None:
        return self._one_block(
            "SELECT file FROM blocks WHERE group_id = ? AND patient = ? ORDER BY number DESC LIMIT 1",
            (group_id, patient),
        )

    def next_leaf_index(self, group_id: int) -> int:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM blocks WHERE group_id = ?",
                (group_id,),
            ).fetchone()
        return int(row[0])

    def add_block(
        self, block: Block, stanzas: tuple[Stanza, ...], message_ids: Sequence[int] = ()
    ) -> None:
        if message_ids:
            raise StoreError(
                "a block store keeps no messages: seal through the gateway's Store",
                code="block_conflict",
            )
        private_dir(self.block_dir)
        folder = private_dir(self.block_dir / str(block.group_id))
        # Named by leaf and hash: a refused block can never overwrite one that was kept.
        final = folder / f"{block.leaf_index}-{block.hash.hex()[:16]}.vcb"
        write_private(final, block.to_bytes())  # the file first: a row never points at nothing
        with self._admin_lock:
            cur = self._admin.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute(
                    "INSERT INTO blocks (group_id, patient, number, leaf_index, block_hash, leaf, file) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (block.group_id, block.patient, block.number, block.leaf_index, block.hash,
                     block.leaf, str(final.relative_to(self.path.parent))),
                )  # fmt: skip
                block_id = int(cur.lastrowid or 0)
                cur.executemany(
                    "INSERT INTO key_ring (block_id, recipient, stanza) VALUES (?, ?, ?)",
                    [(block_id, st.recipient, st.encode()) for st in stanzas],
                )
                cur.execute("COMMIT")
            except sqlite3.IntegrityError:
                cur.execute("ROLLBACK")
                final.unlink(missing_ok=True)
                raise StoreError(
                    "block number or log position already taken", code="block_conflict"
                ) from None
            except BaseException:
                cur.execute("ROLLBACK")
                final.unlink(missing_ok=True)
                raise

    # -- blocks and key rings -----------------------------------------------------------------

    def _one_block(self, query: str, args: tuple[object, ...]) -> Block | None:
        if not _fits(*(a for a in args if isinstance(a, int))):
            return None
        with self._read_lock:
            row = self._reader.execute(query, args).fetchone()
        return None if row is None else Block.from_bytes((self.path.parent / row[0]).read_bytes())

    def block(self, group_id: int, leaf_index: int) -> Block | None:
        return self._one_block(
            "SELECT file FROM blocks WHERE group_id = ? AND leaf_index = ?", (group_id, leaf_index)
        )

    def patient_block(self, group_id: int, patient: str, number: int) -> Block | None:
        return self._one_block(
            "SELECT file FROM blocks WHERE group_id = ? AND patient = ? AND number = ?",
            (group_id, patient, number),
        )

    def blocks(
        self, group_id: int, patient: str, after_number: int = 0, limit: int = 1000
    ) -> list[Block]:
        with self._read_lock:
            files = [
                f
                for (f,) in self._reader.execute(
                    "SELECT file FROM blocks WHERE group_id = ? AND patient = ? AND number > ? "
                    "ORDER BY number LIMIT ?",
                    (group_id, patient, after_number, limit),
                )
            ]
        return [Block.from_bytes((self.path.parent / f).read_bytes()) for f in files]

    def block_numbers(self, group_id: int, patient: str) -> list[int]:
        with self._read_lock:
            return [
                int(n)
                for (n,) in self._reader.execute(
                    "SELECT number FROM blocks WHERE group_id = ? AND patient = ? ORDER BY number",
                    (group_id, patient),
                )
            ]

    def leaf_hashes(self, group_id: int) -> list[bytes]:
        with self._read_lock:
            return [
                bytes(leaf)
                for (leaf,) in self._reader.execute(
                    "SELECT leaf FROM blocks WHERE group_id = ? ORDER BY leaf_index", (group_id,)
                )
            ]

    def stanzas(self, group_id: int, leaf_index: int) -> tuple[Stanza, ...]:
        if not _fits(group_id, leaf_index):
            return ()
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT k.stanza FROM key_ring k JOIN blocks b ON b.id = k.block_id "
                "WHERE b.group_id = ? AND b.leaf_index = ? ORDER BY k.recipient",
                (group_id, leaf_index),
            ).fetchall()
        return tuple(Stanza.decode(bytes(r[0])) for r in rows)

    def add_stanza(self, group_id: int, leaf_index: int, stanza: Stanza) -> None:
        with self._admin_lock:
            row = self._admin.execute(
                "SELECT id FROM blocks WHERE group_id = ? AND leaf_index = ?",
                (group_id, leaf_index),
            ).fetchone()
            if row is None:
                raise StoreError("no such block", code="unknown_block")
            self._admin.execute(
                "INSERT OR REPLACE INTO key_ring (block_id, recipient, stanza) VALUES (?, ?, ?)",
                (row[0], stanza.recipient, stanza.encode()),
            )

    # -- anchors ------------------------------------------------------------------------------

    def record_anchor(self, record: AnchorRecord) -> None:
        with self._admin_lock:
            self._admin.execute(
                "INSERT OR IGNORE INTO anchors (group_id, tree_size, root, tx_hash, anchored_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    record.group_id,
                    record.tree_size,
                    record.root,
                    record.tx_hash,
                    record.anchored_at_ms,
                ),
            )

    def anchors(self, group_id: int) -> list[AnchorRecord]:
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT tree_size, root, tx_hash, anchored_at FROM anchors WHERE group_id = ? "
                "ORDER BY tree_size",
                (group_id,),
            ).fetchall()
        return [AnchorRecord(group_id, int(n), bytes(r), bytes(t), int(a)) for n, r, t, a in rows]

    # -- one-time challenges ------------------------------------------------------------------

    def add_nonce(self, nonce: bytes, subject: str, expires_at_ms: int) -> None:
        with self._admin_lock:
            try:
                self._admin.execute(
                    "INSERT INTO nonces (nonce, subject, expires_at) VALUES (?, ?, ?)",
                    (nonce, subject, expires_at_ms),
                )
            except sqlite3.IntegrityError:
                raise StoreError("nonce already issued", code="nonce_taken") from None

    def consume_nonce(self, nonce: bytes, subject: str, now_ms: int) -> bool:
        with self._admin_lock:
            cur = self._admin.execute(
                "UPDATE nonces SET used_at = ? WHERE nonce = ? AND subject = ? "
                "AND used_at IS NULL AND expires_at > ?",
                (now_ms, nonce, subject, now_ms),
            )
            return cur.rowcount == 1

    def purge_nonces(self, now_ms: int) -> int:
        with self._admin_lock:
            cur = self._admin.execute("DELETE FROM nonces WHERE expires_at <= ?", (now_ms,))
            return cur.rowcount
