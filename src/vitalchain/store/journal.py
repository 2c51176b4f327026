# ruff: noqa: E501  (SQL reads better on one line)
"""The gateway's journal: verified messages in clear, on its own disk, until they are anchored.

``append`` returns only after the message is committed with ``synchronous=FULL`` (the WAL is
fsynced), so an acknowledged reading survives a crash of the process or the machine.  One
writer thread drains a queue and commits whatever has arrived as one transaction, so many
concurrent callers share one fsync; each caller still waits for its own commit.

The journal is the only place readings exist in clear, so it is always a local SQLite file
(0600, in the gateway's 0700 data directory), never a shared database, and it forgets a
message once the block holding it is sealed and anchored (:meth:`SqliteJournal.prune`), with
``secure_delete`` on and the WAL truncated so the bytes go too.  Replay protection must outlive
that: ``seq_ranges`` keeps, per device, the stored sequence numbers as disjoint ranges (no
health data), checked inside the writer's transaction, so a replay of a pruned message is
refused like any other.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from itertools import pairwise
from pathlib import Path

from vitalchain.store.base import PendingPatient, SealedLeaf
from vitalchain.store.errors import DuplicateReading, StoreError
from vitalchain.store.files import private_database
from vitalchain.store.model import Message, Reading, StoredMessage
from vitalchain.vitals import Vital

__all__ = ["SqliteJournal", "seq_runs"]

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
    leaf_index  INTEGER,
    leaf        BLOB
);
CREATE TABLE IF NOT EXISTS readings (
    device  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    message INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    vital   INTEGER NOT NULL,
    value   REAL NOT NULL,
    t       INTEGER NOT NULL,
    PRIMARY KEY (device, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seq_ranges (
    device    TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    PRIMARY KEY (device, first_seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seq_ranges_by_last ON seq_ranges (device, last_seq);
CREATE INDEX IF NOT EXISTS messages_by_device ON messages (device, id);
CREATE INDEX IF NOT EXISTS readings_by_message ON readings (message);
CREATE INDEX IF NOT EXISTS messages_unsealed ON messages (group_id, patient, id) WHERE leaf_index IS NULL;
CREATE INDEX IF NOT EXISTS messages_sealed ON messages (group_id, leaf_index) WHERE leaf_index IS NOT NULL;
"""

_BATCH = 256
_Job = tuple[Message, "Future[int]"]

# Oldest unsealed messages (each has >= 1 reading, so at most max_readings of them) while the
# readings before each one are fewer than max_readings.
_UNSEALED = (
    "SELECT id FROM (SELECT id, SUM(n) OVER (ORDER BY id) - n AS before FROM ("
    "SELECT m.id, (SELECT COUNT(*) FROM readings r WHERE r.message = m.id) AS n FROM messages m "
    "WHERE m.group_id = ? AND m.patient = ? AND m.leaf_index IS NULL ORDER BY m.id LIMIT ?"
    ") AS oldest) AS counted WHERE before < ? ORDER BY id"
)


class _Replayed(sqlite3.IntegrityError):
    """A seq already in ``seq_ranges``: raised inside the transaction like a key conflict."""


def seq_runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Strictly increasing ``seqs`` as maximal runs of consecutive numbers, inclusive."""
    runs: list[tuple[int, int]] = []
    start = prev = seqs[0]
    for a, b in pairwise(seqs):
        if b != a + 1:
            runs.append((start, a))
            start = b
        prev = b
    runs.append((start, prev))
    return runs


def _subtract(first: int, last: int, known: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``first..last`` outside the sorted, disjoint ranges ``known``."""
    out = []
    for a, b in known:
        if b < first or a > last:
            continue
        if a > first:
            out.append((first, a - 1))
        first = b + 1
        if first > last:
            return out
    out.append((first, last))
    return out


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA secure_delete=ON")  # pruned readings are overwritten, not left free
    return conn


class SqliteJournal:
    """Messages, readings and per-device stored seq ranges in one local SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_database(path)  # 0600 before SQLite opens it: new -wal, -shm inherit it
        self._writer = _connect(path)
        self._writer.executescript(_SCHEMA)
        self._reader = _connect(path)
        self._read_lock = threading.Lock()
        # Sealing marks and pruning are rare; they take their own connection and SQLite
        # serialises them with the ingest writer.
        self._admin = _connect(path)
        self._admin_lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
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
        for first, last in seq_runs([r.seq for r in m.readings]):
            SqliteJournal._add_range(cur, m.device, first, last)
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
            "INSERT INTO readings (device, seq, message, vital, value, t) VALUES (?, ?, ?, ?, ?, ?)",
            [(m.device, r.seq, row_id, int(r.vital), r.value, r.t_ms) for r in m.readings],
        )
        return row_id

    @staticmethod
    def _add_range(cur: sqlite3.Cursor, device: str, first: int, last: int) -> None:
        """Record seqs ``first..last`` as stored, merging with touching ranges; a seq already
        stored (even of a pruned message) raises, so the message is refused as a replay."""
        row = cur.execute(
            "SELECT last_seq FROM seq_ranges WHERE device = ? AND first_seq <= ? "
            "ORDER BY first_seq DESC LIMIT 1",
            (device, last),
        ).fetchone()
        if row is not None and int(row[0]) >= first:
            raise _Replayed("sequence number already stored")
        left = cur.execute(
            "SELECT first_seq FROM seq_ranges WHERE device = ? AND last_seq = ?",
            (device, first - 1),
        ).fetchone()
        right = cur.execute(
            "SELECT last_seq FROM seq_ranges WHERE device = ? AND first_seq = ?",
            (device, last + 1),
        ).fetchone()
        if right is not None:
            cur.execute(
                "DELETE FROM seq_ranges WHERE device = ? AND first_seq = ?", (device, last + 1)
            )
            last = int(right[0])
        if left is not None:
            cur.execute(
                "UPDATE seq_ranges SET last_seq = ? WHERE device = ? AND first_seq = ?",
                (last, device, int(left[0])),
            )
        else:
            cur.execute(
                "INSERT INTO seq_ranges (device, first_seq, last_seq) VALUES (?, ?, ?)",
                (device, first, last),
            )

    def remember_seqs(self, device: str, seqs: Sequence[int]) -> None:
        """Record ``seqs`` of ``device`` as stored without their messages (moving a legacy
        store whose sealed messages are gone); seqs already recorded are skipped."""
        if not seqs:
            return
        known = self.stored_ranges().get(device, [])
        new = [
            run
            for first, last in seq_runs(sorted(set(seqs)))
            for run in _subtract(first, last, known)
        ]
        with self._admin_lock:
            cur = self._admin.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for first, last in new:
                    self._add_range(cur, device, first, last)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

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
            rows = self._reader.execute(
                "SELECT device, MAX(last_seq) FROM seq_ranges GROUP BY device"
            )
            return {device: int(seq) for device, seq in rows}

    def stored_ranges(self) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = {}
        with self._read_lock:
            for device, first, last in self._reader.execute(
                "SELECT device, first_seq, last_seq FROM seq_ranges ORDER BY device, first_seq"
            ):
                out.setdefault(device, []).append((int(first), int(last)))
        return out

    def count_readings(self) -> int:
        with self._read_lock:
            row = self._reader.execute(
                "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM seq_ranges"
            ).fetchone()
        return int(row[0])

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
                "JOIN readings r ON r.message = m.id WHERE m.leaf_index IS NULL "
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
                if row is None:  # pruned meanwhile
                    continue
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

    def mark_sealed(
        self, group_id: int, leaf_index: int, leaf: bytes, message_ids: Sequence[int]
    ) -> None:
        with self._admin_lock:
            cur = self._admin.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.executemany(
                    "UPDATE messages SET leaf_index = ?, leaf = ? "
                    "WHERE id = ? AND group_id = ? AND leaf_index IS NULL",
                    [(leaf_index, leaf, i, group_id) for i in message_ids],
                )
                if cur.rowcount != len(message_ids):  # executemany counts every row
                    raise StoreError(
                        "a message is unknown or already sealed", code="block_conflict"
                    )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def unmark(self, group_id: int, leaf_index: int) -> None:
        with self._admin_lock:
            self._admin.execute(
                "UPDATE messages SET leaf_index = NULL, leaf = NULL "
                "WHERE group_id = ? AND leaf_index = ?",
                (group_id, leaf_index),
            )

    def sealed_leaves(self) -> list[SealedLeaf]:
        with self._read_lock:
            rows = self._reader.execute(
                "SELECT group_id, leaf_index, leaf, COUNT(*) FROM messages "
                "WHERE leaf_index IS NOT NULL GROUP BY group_id, leaf_index, leaf "
                "ORDER BY group_id, leaf_index"
            ).fetchall()
        return [SealedLeaf(int(g), int(i), bytes(leaf), int(n)) for g, i, leaf, n in rows]

    def prune(self, group_id: int, tree_size: int) -> int:
        """Forget what is sealed below an anchored ``tree_size``: rows, freed pages and WAL."""
        with self._admin_lock:
            cur = self._admin.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute(
                    "DELETE FROM readings WHERE message IN (SELECT id FROM messages "
                    "WHERE group_id = ? AND leaf_index IS NOT NULL AND leaf_index < ?)",
                    (group_id, tree_size),
                )
                cur.execute(
                    "DELETE FROM messages WHERE group_id = ? AND leaf_index IS NOT NULL "
                    "AND leaf_index < ?",
                    (group_id, tree_size),
                )
                gone = cur.rowcount
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            if gone:
                # The WAL still holds the deleted pages' old images: copy the zeroed pages back
                # and empty it (a reader mid-query makes this a partial checkpoint; the next
                # prune finishes it).
                self._admin.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return gone
