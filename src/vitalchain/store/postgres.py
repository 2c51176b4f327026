"""The PostgreSQL block store: the same semantics as :class:`~vitalchain.store.sqlite.SqliteStore`.

A shared database that providers read (through the access API) and its operator can see, so
it holds only what may be shared: ciphertext blocks (a ``bytea`` column), key stanzas, anchors
and challenge nonces.  Plaintext messages and readings stay in the gateway's local journal
(:mod:`vitalchain.store.journal`); they are never sent here.  Writes commit with
``synchronous_commit`` on (the WAL is flushed).

Connections are kept per role: one for reads and one for writes, each behind a lock.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from vitalchain.crypto.envelope import Stanza
from vitalchain.store.base import AnchorRecord
from vitalchain.store.blocks import Block
from vitalchain.store.errors import StoreError, StoreUnavailable
from vitalchain.store.model import Message, Reading
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
            try:
                if self._conn.closed:  # a lost server connection: the next caller reconnects
                    self._conn = self._open()
                yield self._conn
            except psycopg.OperationalError as exc:  # server gone or connection lost
                raise StoreUnavailable("the database is unavailable") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class PostgresStore:
    """PostgreSQL for sealed blocks (``bytea``), key rings, anchors and nonces."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._admin = _Role(dsn)
        with self._admin() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            for statement in _SCHEMA:
                conn.execute(statement)
        self._reader = _Role(dsn)
        self._closed = False

    def legacy_plaintext(self) -> tuple[list[Message], dict[str, list[int]]] | None:
        """A database from before the journal kept messages and readings here, readable by
        its operator: its unsealed messages, and every stored seq per device (None: none)."""
        with self._reader() as conn:
            tables = {
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = current_schema()"
                )
            }
            if not {"messages", "readings"} <= tables:
                return None
            rows = conn.execute(
                "SELECT id, message_id, device, group_id, patient, received_at, payload, "
                "signature FROM messages WHERE block_id IS NULL ORDER BY id"
            ).fetchall()
            readings: dict[int, list[Reading]] = {int(r[0]): [] for r in rows}
            seqs: dict[str, list[int]] = {}
            for device, seq, message, vital, value, t in conn.execute(
                "SELECT device, seq, message, vital, value, t FROM readings ORDER BY device, seq"
            ):
                seqs.setdefault(device, []).append(int(seq))
                if int(message) in readings:
                    readings[int(message)].append(
                        Reading(int(seq), Vital(vital), float(value), int(t))
                    )
        unsealed = [
            Message(bytes(r[1]), r[2], int(r[3]), r[4], int(r[5]), bytes(r[6]), bytes(r[7]),
                    tuple(readings[int(r[0])]))
            for r in rows
            if readings[int(r[0])]
        ]  # fmt: skip
        return unsealed, seqs

    def drop_legacy_plaintext(self) -> None:
        """Drop the legacy plaintext tables: PostgreSQL unlinks their files at commit (old
        WAL segments still hold them until they are recycled)."""
        with self._admin() as conn, conn.transaction():
            conn.execute("DROP TABLE IF EXISTS readings")
            conn.execute("DROP TABLE IF EXISTS messages")

    def close(self) -> None:
        """Close every connection."""
        if self._closed:
            return
        self._closed = True
        self._reader.close()
        self._admin.close()

    # -- sealing ------------------------------------------------------------------------------

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

    def add_block(
        self, block: Block, stanzas: tuple[Stanza, ...], message_ids: Sequence[int] = ()
    ) -> None:
        if message_ids:
            raise StoreError(
                "a block store keeps no messages: seal through the gateway's Store",
                code="block_conflict",
            )
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

    def purge_nonces(self, now_ms: int) -> int:
        with self._admin() as conn:
            cur = conn.execute("DELETE FROM nonces WHERE expires_at <= %s", (now_ms,))
            return cur.rowcount
