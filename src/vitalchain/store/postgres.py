"""The PostgreSQL store: the same semantics as :class:`~vitalchain.store.sqlite.SqliteStore`.

``append`` returns only after the transaction holding the message has committed with
``synchronous_commit`` on (the WAL is flushed), so an acknowledged reading survives a crash.
As in the SQLite backend, one writer thread drains a queue and commits whatever has arrived as
one transaction, so concurrent callers share one WAL flush.  Being the only inserter of
messages also means row ids commit in increasing order, so paging by ``after_id`` never skips
a row that commits late.  Sealed blocks live in a ``bytea`` column, not in files.

Connections are kept per role, as in the SQLite backend: the writer thread's own, one for
reads and one for the rarer writes (blocks, anchors, nonces), each behind a lock.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from vitalchain.crypto.envelope import Stanza
from vitalchain.store.base import AnchorRecord, PendingPatient
from vitalchain.store.blocks import Block
from vitalchain.store.errors import DuplicateReading, StoreError
from vitalchain.store.model import Message, Reading, StoredMessage
from vitalchain.vitals import Vital

__all__ = ["PostgresStore"]

# One statement per object, each idempotent; run in one transaction under an advisory lock
# so that two processes starting on an empty database do not race on CREATE.
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS blocks (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    group_id    BIGINT NOT NULL,
    patient     TEXT NOT NULL,
    number      BIGINT NOT NULL,
    leaf_index  BIGINT NOT NULL,
    block_hash  BYTEA NOT NULL UNIQUE,
    leaf        BYTEA NOT NULL,
    data        BYTEA NOT NULL,
    UNIQUE (group_id, patient, number),
    UNIQUE (group_id, leaf_index)
)""",
    """CREATE TABLE IF NOT EXISTS messages (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  BYTEA NOT NULL UNIQUE,
    device      TEXT NOT NULL,
    group_id    BIGINT NOT NULL,
    patient     TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    payload     BYTEA NOT NULL,
    signature   BYTEA NOT NULL,
    block_id    BIGINT REFERENCES blocks(id)
)""",
    """CREATE TABLE IF NOT EXISTS readings (
    device  TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    message BIGINT NOT NULL REFERENCES messages(id),
    patient TEXT NOT NULL,
    vital   BIGINT NOT NULL,
    value   DOUBLE PRECISION NOT NULL,
    t       BIGINT NOT NULL,
    PRIMARY KEY (device, seq)
)""",
    "CREATE INDEX IF NOT EXISTS readings_by_patient ON readings (patient, t)",
    "CREATE INDEX IF NOT EXISTS readings_by_message ON readings (message)",
    "CREATE INDEX IF NOT EXISTS messages_by_device ON messages (device, id)",
    "CREATE INDEX IF NOT EXISTS messages_unsealed ON messages (group_id, patient, id) WHERE block_id IS NULL",
    """CREATE TABLE IF NOT EXISTS key_ring (
    block_id  BIGINT NOT NULL REFERENCES blocks(id),
    recipient BYTEA NOT NULL,
    stanza    BYTEA NOT NULL,
    PRIMARY KEY (block_id, recipient)
)""",
    """CREATE TABLE IF NOT EXISTS anchors (
    group_id    BIGINT NOT NULL,
    tree_size   BIGINT NOT NULL,
    root        BYTEA NOT NULL,
    tx_hash     BYTEA NOT NULL,
    anchored_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, tree_size)
)""",
    """CREATE TABLE IF NOT EXISTS nonces (
    nonce      BYTEA PRIMARY KEY,
    subject    TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
)""",
)
_SCHEMA_LOCK = 0x7663_5F73_746F_7265  # "vc_store": pg_advisory_xact_lock key

_BATCH = 256
_Job = tuple[Message, "Future[int]"]

_INSERT_MESSAGES = (
    "INSERT INTO messages (message_id, device, group_id, patient, received_at, payload, signature) "
    "SELECT m, d, g, p, r, pl, s FROM unnest(%s::bytea[], %s::text[], %s::bigint[], %s::text[], "
    "%s::bigint[], %s::bytea[], %s::bytea[]) WITH ORDINALITY AS x(m, d, g, p, r, pl, s, n) "
    "ORDER BY n RETURNING id, message_id"
)
_INSERT_READINGS = (
    "INSERT INTO readings (device, seq, message, patient, vital, value, t) "
    "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::text[], %s::bigint[], "
    "%s::float8[], %s::bigint[])"
)


class _Role:
    """One connection and the lock that serialises its users; reopened if it broke."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._lock = threading.Lock()
        self._conn = self._open()

    def _open(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self._dsn, autocommit=True)
        # Durability is the point of the store: never run with a server default of "off".
        # ("local", "remote_write", "remote_apply" all flush locally, so they are kept.)
        if conn.execute("SHOW synchronous_commit").fetchone() == ("off",):
            conn.execute("SET synchronous_commit TO on")
        return conn

    @contextmanager
    def __call__(self) -> Iterator[psycopg.Connection[Any]]:
        with self._lock:
            if self._conn.closed:  # a lost server connection: the next caller reconnects
                self._conn = self._open()
            yield self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresStore:
    """PostgreSQL for metadata, readings and sealed blocks (``bytea``)."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._admin = _Role(dsn)
        with self._admin() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                conn.execute(statement)
        self._writer = _Role(dsn)
        self._reader = _Role(dsn)
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
        """One transaction and one WAL flush for the batch.

        Conflicts are rare (ingest refuses replays before they get here), so the batch is
        inserted whole in two statements; only if it hits one is it redone with a savepoint
        per message, so that the conflicting message alone is refused.
        """
        try:
            with self._writer() as conn:
                try:
                    outcomes: list[int | BaseException] = self._write_batch(conn, jobs)
                except psycopg.IntegrityError:
                    outcomes = self._write_each(conn, jobs)
        except BaseException as exc:  # the whole batch failed: fail every caller
            for _, done in jobs:
                done.set_exception(StoreError(f"store write failed: {exc}"))
            return
        for (_, done), outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)

    @staticmethod
    def _write_batch(conn: psycopg.Connection[Any], jobs: list[_Job]) -> list[int | BaseException]:
        messages = [m for m, _ in jobs]
        with conn.transaction(), conn.cursor() as cur:
            ids = PostgresStore._insert(cur, messages)
        return [ids[m.message_id] for m in messages]

    @staticmethod
    def _write_each(conn: psycopg.Connection[Any], jobs: list[_Job]) -> list[int | BaseException]:
        outcomes: list[int | BaseException] = []
        with conn.transaction(), conn.cursor() as cur:
            for message, _ in jobs:
                try:
                    with conn.transaction():  # a savepoint: a refusal undoes this message only
                        outcomes.append(PostgresStore._insert(cur, [message])[message.message_id])
                except pgerrors.UniqueViolation:
                    outcomes.append(DuplicateReading("reading or message already stored"))
                except psycopg.IntegrityError as exc:
                    outcomes.append(StoreError(f"message refused: {exc}"))
        return outcomes

    @staticmethod
    def _insert(cur: psycopg.Cursor[Any], messages: Sequence[Message]) -> dict[bytes, int]:
        """Insert messages (ids in list order) and their readings; message id → row id."""
        cur.execute(
            _INSERT_MESSAGES,
            (
                [m.message_id for m in messages],
                [m.device for m in messages],
                [m.group_id for m in messages],
                [m.patient for m in messages],
                [m.received_at_ms for m in messages],
                [m.payload for m in messages],
                [m.signature for m in messages],
            ),
        )
        ids = {bytes(mid): int(row_id) for row_id, mid in cur.fetchall()}
        rows = [(m, ids[m.message_id], r) for m in messages for r in m.readings]
        if rows:
            cur.execute(
                _INSERT_READINGS,
                (
                    [m.device for m, _, _ in rows],
                    [r.seq for _, _, r in rows],
                    [i for _, i, _ in rows],
                    [m.patient for m, _, _ in rows],
                    [int(r.vital) for _, _, r in rows],
                    [float(r.value) for _, _, r in rows],
                    [r.t_ms for _, _, r in rows],
                ),
            )
        return ids

    def close(self) -> None:
        """Stop the writer (after it commits what is queued) and close every connection."""
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
        with self._reader() as conn:
            rows = conn.execute("SELECT device, MAX(seq) FROM readings GROUP BY device").fetchall()
        return {device: int(seq) for device, seq in rows}

    def count_readings(self) -> int:
        with self._reader() as conn:
            row = conn.execute("SELECT COUNT(*) FROM readings").fetchone()
        assert row is not None
        return int(row[0])

    def messages(
        self, *, device: str | None = None, after_id: int = 0, limit: int = 1000
    ) -> list[StoredMessage]:
        if device is None:
            return self._messages(
                "SELECT id, message_id, device, group_id, patient, received_at, payload, signature "
                "FROM messages WHERE id > %s ORDER BY id LIMIT %s",
                (after_id, limit),
            )
        return self._messages(
            "SELECT id, message_id, device, group_id, patient, received_at, payload, signature "
            "FROM messages WHERE id > %s AND device = %s "
            "ORDER BY id LIMIT %s",
            (after_id, device, limit),
        )

    def _messages(self, query: str, args: tuple[object, ...]) -> list[StoredMessage]:
        """Messages chosen by ``query`` (the columns of a Message, in order), with their readings.

        Two statements, not one join, so each message's columns are sent once.  Readings commit
        with their message and never change, so the second sees all of the first's.
        """
        with self._reader() as conn:
            rows = conn.execute(query, args).fetchall()
            readings: dict[int, list[Reading]] = {int(r[0]): [] for r in rows}
            if rows:
                for message, seq, vital, value, t in conn.execute(
                    "SELECT message, seq, vital, value, t FROM readings WHERE message = ANY(%s) "
                    "ORDER BY message, seq",
                    (list(readings),),
                ):
                    readings[int(message)].append(
                        Reading(int(seq), Vital(vital), float(value), int(t))
                    )
        return [
            StoredMessage(
                int(r[0]),
                Message(bytes(r[1]), r[2], int(r[3]), r[4], int(r[5]), bytes(r[6]), bytes(r[7]),
                        tuple(readings[int(r[0])])),
            )
            for r in rows
        ]  # fmt: skip

    # -- sealing ------------------------------------------------------------------------------

    def pending_patients(self) -> list[PendingPatient]:
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT m.group_id, m.patient, COUNT(r.seq), MIN(m.received_at) FROM messages m "
                "JOIN readings r ON r.message = m.id WHERE m.block_id IS NULL "
                "GROUP BY m.group_id, m.patient"
            ).fetchall()
        return [PendingPatient(int(g), p, int(n), int(t)) for g, p, n, t in rows]

    def unsealed(
        self, group_id: int, patient: str, max_readings: int = 10_000
    ) -> list[StoredMessage]:
        # Counting readings in SQL keeps a long backlog from being decoded on every seal.
        return self._messages(
            "SELECT id, message_id, device, group_id, patient, received_at, payload, signature "
            "FROM messages WHERE id IN ("
            "SELECT id FROM (SELECT id, SUM(n) OVER (ORDER BY id) - n AS before FROM ("
            "SELECT m.id, (SELECT COUNT(*) FROM readings r WHERE r.message = m.id) AS n "
            "FROM messages m WHERE m.group_id = %s AND m.patient = %s AND m.block_id IS NULL "
            "ORDER BY m.id LIMIT %s) AS oldest) AS counted WHERE before < %s) ORDER BY id",
            (group_id, patient, max_readings, max_readings),
        )

    def last_block(self, group_id: int, patient: str) -> Block | None:
        return self._one_block(
            "SELECT data FROM blocks WHERE group_id = %s AND patient = %s ORDER BY number DESC LIMIT 1",
            (group_id, patient),
        )

    def next_leaf_index(self, group_id: int) -> int:
        with self._reader() as conn:
            row = conn.execute(
                "SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM blocks WHERE group_id = %s",
                (group_id,),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def add_block(self, block: Block, stanzas: tuple[Stanza, ...], message_ids: list[int]) -> None:
        with self._admin() as conn:
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.execute(
                        "INSERT INTO blocks (group_id, patient, number, leaf_index, block_hash, leaf, data) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
                        (block.group_id, block.patient, block.number, block.leaf_index, block.hash,
                         block.leaf, block.to_bytes()),
                    )  # fmt: skip
                    row = cur.fetchone()
                    assert row is not None
                    block_id = int(row[0])
                    cur.executemany(
                        "INSERT INTO key_ring (block_id, recipient, stanza) VALUES (%s, %s, %s)",
                        [(block_id, st.recipient, st.encode()) for st in stanzas],
                    )
                    # A repeated id matches once, so it is refused like an already sealed one.
                    cur.execute(
                        "UPDATE messages SET block_id = %s WHERE id = ANY(%s) AND block_id IS NULL",
                        (block_id, list(message_ids)),
                    )
                    if cur.rowcount != len(message_ids):
                        raise StoreError(
                            "a message is unknown or already sealed", code="block_conflict"
                        )
            except psycopg.IntegrityError:
                raise StoreError(
                    "block number or log position already taken", code="block_conflict"
                ) from None

    # -- blocks and key rings -----------------------------------------------------------------

    def _one_block(self, query: str, args: tuple[object, ...]) -> Block | None:
        with self._reader() as conn:
            row = conn.execute(query, args).fetchone()
        return None if row is None else Block.from_bytes(bytes(row[0]))

    def block(self, group_id: int, leaf_index: int) -> Block | None:
        return self._one_block(
            "SELECT data FROM blocks WHERE group_id = %s AND leaf_index = %s",
            (group_id, leaf_index),
        )

    def patient_block(self, group_id: int, patient: str, number: int) -> Block | None:
        return self._one_block(
            "SELECT data FROM blocks WHERE group_id = %s AND patient = %s AND number = %s",
            (group_id, patient, number),
        )

    def blocks(
        self, group_id: int, patient: str, after_number: int = 0, limit: int = 1000
    ) -> list[Block]:
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT data FROM blocks WHERE group_id = %s AND patient = %s AND number > %s "
                "ORDER BY number LIMIT %s",
                (group_id, patient, after_number, limit),
            ).fetchall()
        return [Block.from_bytes(bytes(data)) for (data,) in rows]

    def block_numbers(self, group_id: int, patient: str) -> list[int]:
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT number FROM blocks WHERE group_id = %s AND patient = %s ORDER BY number",
                (group_id, patient),
            ).fetchall()
        return [int(n) for (n,) in rows]

    def leaf_hashes(self, group_id: int) -> list[bytes]:
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT leaf FROM blocks WHERE group_id = %s ORDER BY leaf_index", (group_id,)
            ).fetchall()
        return [bytes(leaf) for (leaf,) in rows]

    def stanzas(self, group_id: int, leaf_index: int) -> tuple[Stanza, ...]:
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT k.stanza FROM key_ring k JOIN blocks b ON b.id = k.block_id "
                "WHERE b.group_id = %s AND b.leaf_index = %s ORDER BY k.recipient",
                (group_id, leaf_index),
            ).fetchall()
        return tuple(Stanza.decode(bytes(r[0])) for r in rows)

    def add_stanza(self, group_id: int, leaf_index: int, stanza: Stanza) -> None:
        """Add (or replace) one reader's stanza; one statement, so no block can vanish between."""
        with self._admin() as conn:
            cur = conn.execute(
                "INSERT INTO key_ring (block_id, recipient, stanza) "
                "SELECT id, %s, %s FROM blocks WHERE group_id = %s AND leaf_index = %s "
                "ON CONFLICT (block_id, recipient) DO UPDATE SET stanza = EXCLUDED.stanza",
                (stanza.recipient, stanza.encode(), group_id, leaf_index),
            )
            if cur.rowcount == 0:
                raise StoreError("no such block", code="unknown_block")

    # -- anchors ------------------------------------------------------------------------------

    def record_anchor(self, record: AnchorRecord) -> None:
        with self._admin() as conn:
            conn.execute(
                "INSERT INTO anchors (group_id, tree_size, root, tx_hash, anchored_at) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (group_id, tree_size) DO NOTHING",
                (
                    record.group_id,
                    record.tree_size,
                    record.root,
                    record.tx_hash,
                    record.anchored_at_ms,
                ),
            )

    def anchors(self, group_id: int) -> list[AnchorRecord]:
        with self._reader() as conn:
            rows = conn.execute(
                "SELECT tree_size, root, tx_hash, anchored_at FROM anchors WHERE group_id = %s "
                "ORDER BY tree_size",
                (group_id,),
            ).fetchall()
        return [AnchorRecord(group_id, int(n), bytes(r), bytes(t), int(a)) for n, r, t, a in rows]

    # -- one-time challenges ------------------------------------------------------------------

    def add_nonce(self, nonce: bytes, subject: str, expires_at_ms: int) -> None:
        try:
            with self._admin() as conn:
                conn.execute(
                    "INSERT INTO nonces (nonce, subject, expires_at) VALUES (%s, %s, %s)",
                    (nonce, subject, expires_at_ms),
                )
        except pgerrors.UniqueViolation:
            raise StoreError("nonce already issued", code="nonce_taken") from None

    def consume_nonce(self, nonce: bytes, subject: str, now_ms: int) -> bool:
        """One conditional UPDATE: of two concurrent consumers (any process) only one wins."""
        with self._admin() as conn:
            cur = conn.execute(
                "UPDATE nonces SET used_at = %s WHERE nonce = %s AND subject = %s "
                "AND used_at IS NULL AND expires_at > %s",
                (now_ms, nonce, subject, now_ms),
            )
            return cur.rowcount == 1
