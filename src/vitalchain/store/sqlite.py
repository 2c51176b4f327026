"""The embedded store: SQLite in WAL mode with group commit.

``append`` returns only after the message is committed with ``synchronous=FULL`` (the WAL is
fsynced), so an acknowledged reading survives a crash of the process or the machine.  One
writer thread drains a queue and commits whatever has arrived as one transaction, so many
concurrent callers share one fsync; each caller still waits for its own commit.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path

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
"""

_BATCH = 256
_Job = tuple[Message, "Future[int]"]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(path)
        self._writer.executescript(_SCHEMA)
        self._reader = _connect(path)
        self._read_lock = threading.Lock()
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
        query = (
            "SELECT id, message_id, device, group_id, patient, received_at, payload, signature "
            "FROM messages WHERE id > ?"
        )
        args: list[object] = [after_id]
        if device is not None:
            query += " AND device = ?"
            args.append(device)
        query += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._read_lock:
            rows = self._reader.execute(query, args).fetchall()
            out = []
            for row in rows:
                readings = tuple(
                    Reading(int(seq), Vital(vital), float(value), int(t))
                    for seq, vital, value, t in self._reader.execute(
                        "SELECT seq, vital, value, t FROM readings WHERE message = ? ORDER BY seq",
                        (row[0],),
                    )
                )
                out.append(
                    StoredMessage(
                        int(row[0]),
                        Message(
                            bytes(row[1]),
                            row[2],
                            int(row[3]),
                            row[4],
                            int(row[5]),
                            bytes(row[6]),
                            bytes(row[7]),
                            readings,
                        ),
                    )
                )
            return out
