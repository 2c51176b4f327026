"""The embedded store: SQLite in WAL mode with group commit.

``append`` returns only after the message is committed with ``synchronous=FULL`` (the WAL is
fsynced), so an acknowledged reading survives a crash of the process or the machine.  One
writer thread drains a queue and commits whatever has arrived as one transaction, so many
concurrent callers share one fsync; each caller still waits for its own commit.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path

from vitalchain.crypto.envelope import Stanza
from vitalchain.store.base import AnchorRecord, PendingPatient
from vitalchain.store.blocks import Block
from vitalchain.store.errors import DuplicateReading, StoreError
from vitalchain.store.model import Message, Reading, StoredMessage
from vitalchain.vitals import Vital

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id          INTEGER PRIMARY KEY,
    message_id  BLOB NOT NULL UNIQUE,
    device      TEXT NOT NULL,
    group_id    INTEGER NOT NULL,
    patient     TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    signature   BLOB NOT NULL,
    block_id    INTEGER
);
CREATE TABLE IF NOT EXISTS readings (
    device  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    message INTEGER NOT NULL REFERENCES messages(id),
    patient TEXT NOT NULL,
    vital   INTEGER NOT NULL,
    value   REAL NOT NULL,
    t       INTEGER NOT NULL,
    PRIMARY KEY (device, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS readings_by_patient ON readings (patient, t);
CREATE INDEX IF NOT EXISTS messages_by_device ON messages (device, id);
CREATE INDEX IF NOT EXISTS readings_by_message ON readings (message);
CREATE INDEX IF NOT EXISTS messages_unsealed ON messages (group_id, patient, id) WHERE block_id IS NULL;
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

_BATCH = 256
_Job = tuple[Message, "Future[int]"]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def _fits(*numbers: int) -> bool:
    """Positions past SQL's BIGINT cannot exist: asking for one is a miss, not a crash."""
    return all(0 <= n < 2**63 for n in numbers)


# Oldest unsealed messages (each has >= 1 reading, so at most max_readings of them) while the
# readings before each one are fewer than max_readings.
_UNSEALED = (
    "SELECT id FROM (SELECT id, SUM(n) OVER (ORDER BY id) - n AS before FROM ("
    "SELECT m.id, (SELECT COUNT(*) FROM readings r WHERE r.message = m.id) AS n FROM messages m "
    "WHERE m.group_id = ? AND m.patient = ? AND m.block_id IS NULL ORDER BY m.id LIMIT ?"
    ") AS oldest) AS counted WHERE before < ? ORDER BY id"
)


class SqliteStore:
    """SQLite for metadata and readings, one file per sealed block (``blocks/<group>/<leaf>``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.block_dir = path.parent / "blocks"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(path)
        self._writer.executescript(_SCHEMA)
        self._reader = _connect(path)
        self._read_lock = threading.Lock()
        # Writes other than ingest (blocks, anchors, nonces) are rare; they take their own
        # connection and SQLite serialises them with the ingest writer.
        self._admin = _connect(path)
        self._admin_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    # -- writing --------------------------------------------------------------------------------

    def append(self, message: Message) -> int:
        """Store ``message`` durably; returns its row id.  A stored (device, seq) raises."""
        return self.submit(message).result()

    def submit(self, message: Message) -> Future[int]:
        """Queue ``message``; the future resolves once it is committed (or refused)."""
        if self._closed:
            raise StoreError("store is closed")
        done: Future[int] = Future()
        self._queue.put((message, done))
        return done

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            while len(jobs) < _BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._commit(jobs)
                    return
                jobs.append(nxt)
            self._commit(jobs)

    def _commit(self, jobs: list[_Job]) -> None:
        """One transaction and one fsync for the batch.

        Conflicts are rare (ingest refuses replays before they get here), so the batch is tried
        whole; only if it hits one is it redone with a savepoint per message, so that the
        conflicting message alone is refused.
        """
        try:
            try:
                outcomes: list[int | BaseException] = self._write(jobs, isolate=False)
            except sqlite3.IntegrityError:
                outcomes = self._write(jobs, isolate=True)
        except BaseException as exc:  # the whole batch failed: fail every caller
            for _, done in jobs:
                done.set_exception(StoreError(f"store write failed: {exc}"))
            return
        for (_, done), outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)

    def _write(self, jobs: list[_Job], *, isolate: bool) -> list[int | BaseException]:
        cur = self._writer.cursor()
        outcomes: list[int | BaseException] = []
        cur.execute("BEGIN IMMEDIATE")
        try:
            for message, _ in jobs:
                if not isolate:
                    outcomes.append(self._insert(cur, message))
                    continue
                cur.execute("SAVEPOINT m")
                try:
                    outcomes.append(self._insert(cur, message))
                except sqlite3.IntegrityError:
                    cur.execute("ROLLBACK TO m")
                    outcomes.append(DuplicateReading("reading or message already stored"))
                cur.execute("RELEASE m")
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return outcomes

    @staticmethod
    def _insert(cur: sqlite3.Cursor, m: Message) -> int:
        cur.execute(
            "INSERT INTO messages (message_id, device, group_id, patient, received_at, payload, "
            "signature) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                m.message_id,
                m.device,
                m.group_id,
                m.patient,
                m.received_at_ms,
                m.payload,
                m.signature,
            ),
        )
        row_id = int(cur.lastrowid or 0)
        cur.executemany(
            "INSERT INTO readings (device, seq, message, patient, vital, value, t) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (m.device, r.seq, row_id, m.patient, int(r.vital), r.value, r.t_ms)
                for r in m.readings
            ],
        )
        return row_id

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._writer.close()
        self._reader.close()
        self._admin.close()

    # -- reading --------------------------------------------------------------------------------

    def last_seqs(self) -> dict[str, int]:
        """Highest stored seq per device: what replay protection resumes from after a restart."""
        with self._read_lock:
            rows = self._reader.execute("SELECT device, MAX(seq) FROM readings GROUP BY device")
            return {device: int(seq) for device, seq in rows}

    def count_readings(self) -> int:
        with self._read_lock:
            return int(self._reader.execute("SELECT COUNT(*) FROM readings").fetchone()[0])

    def messages(
        self, *, device: str | None = None, after_id: int = 0, limit: int = 1000
    ) -> list[StoredMessage]:
        query = "SELECT id FROM messages WHERE id > ?"
        args: list[object] = [after_id]
        if device is not None:
            query += " AND device = ?"
            args.append(device)
        with self._read_lock:
            ids = [
                int(i)
                for (i,) in self._reader.execute(query + " ORDER BY id LIMIT ?", [*args, limit])
            ]
        return self._messages_by_id(ids)

    # -- sealing ------------------------------------------------------------------------------

    def pending_patients(self) -> list[PendingPatient]:
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT m.group_id, m.patient, COUNT(r.seq), MIN(m.received_at) FROM messages m "
                "JOIN readings r ON r.message = m.id WHERE m.block_id IS NULL "
                "GROUP BY m.group_id, m.patient"
            ).fetchall()
        return [PendingPatient(int(g), p, int(n), int(t)) for g, p, n, t in rows]

    def unsealed(
        self, group_id: int, patient: str, max_readings: int = 10_000
    ) -> list[StoredMessage]:
        # Counting readings in SQL keeps a long backlog from being decoded on every seal.
        with self._read_lock:
            ids = [
                int(i)
                for (i,) in self._reader.execute(
                    _UNSEALED, (group_id, patient, max_readings, max_readings)
                )
            ]
        return self._messages_by_id(ids)

    def _messages_by_id(self, ids: list[int]) -> list[StoredMessage]:
        out = []
        with self._read_lock:
            for message_id in ids:
                row = self._reader.execute(
                    "SELECT id, message_id, device, group_id, patient, received_at, payload, signature "
                    "FROM messages WHERE id = ?",
                    (message_id,),
                ).fetchone()
                readings = tuple(
                    Reading(int(seq), Vital(vital), float(value), int(t))
                    for seq, vital, value, t in self._reader.execute(
                        "SELECT seq, vital, value, t FROM readings WHERE message = ? ORDER BY seq",
                        (message_id,),
                    )
                )
                out.append(
                    StoredMessage(
                        int(row[0]),
                        Message(bytes(row[1]), row[2], int(row[3]), row[4], int(row[5]), bytes(row[6]),
                                bytes(row[7]), readings),
                    )
                )  # fmt: skip
        return out

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

    def add_block(self, block: Block, stanzas: tuple[Stanza, ...], message_ids: list[int]) -> None:
        data = block.to_bytes()
        folder = self.block_dir / str(block.group_id)
        folder.mkdir(parents=True, exist_ok=True)
        # Named by leaf and hash: a refused block can never overwrite one that was kept.
        final = folder / f"{block.leaf_index}-{block.hash.hex()[:16]}.vcb"
        temp = final.with_suffix(".tmp")
        with open(temp, "wb") as f:  # the file first, fsynced: a row never points at nothing
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, final)
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
                cur.executemany(
                    "UPDATE messages SET block_id = ? WHERE id = ? AND block_id IS NULL",
                    [(block_id, i) for i in message_ids],
                )
                if cur.rowcount != len(message_ids):  # executemany counts every row
                    raise StoreError(
                        "a message is unknown or already sealed", code="block_conflict"
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
