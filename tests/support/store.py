"""Helpers of the store tests: messages and blocks to store, the schema of version 0 (to test
upgrades), and a fresh :class:`~vitalchain.store.GatewayStore` (the gateway's local journal and
a block store) on each backend: SQLite with block files, or a PostgreSQL database of its own.
The backend-neutral suite is tests/unit/store/test_store.py."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from vitalchain.crypto import PrivateKey
from vitalchain.crypto.block import SectionPlan, seal_block
from vitalchain.services.postgres import LocalPostgres
from vitalchain.store import (
    GatewayStore,
    Message,
    Reading,
    SqliteJournal,
    open_store,
)
from vitalchain.store.base import Store
from vitalchain.store.postgres import PostgresStore
from vitalchain.vitals import Vital
from vitalchain.wire.block import Block, BlockEntry
from vitalchain.wire.envelope import Stanza

GATEWAY = PrivateKey.generate()
STORES = ("sqlite", "postgres")
_seq = itertools.count(1)
_databases = itertools.count()


@contextmanager
def sqlite_store(tmp_path: Path) -> Iterator[GatewayStore]:
    """The embedded backend: SQLite journal and block store, block files beside them."""
    s = open_store(tmp_path / "data")
    assert isinstance(s, GatewayStore)
    try:
        yield s
    finally:
        s.close()


@contextmanager
def postgres_store(postgres: LocalPostgres, tmp_path: Path) -> Iterator[GatewayStore]:
    """A fresh, empty PostgreSQL database of the test's own (CREATE DATABASE, dropped
    afterwards) as the block store, so the schema's creation runs every time; the local
    SQLite journal beside it."""
    name = f"store_test_{next(_databases)}"
    with psycopg.connect(postgres.admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        s = GatewayStore(
            SqliteJournal(tmp_path / "journal.db"), PostgresStore(postgres.dsn_for(name))
        )
        try:
            yield s
        finally:
            s.close()
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


# -- version 0: the schema as the code before schema versions made it (exact DDL, copied) --

# A database made by that code has these tables and no alembic_version; the upgrade tests
# build one from this text, put rows in, and open it with today's code.
STORE_V0 = """
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
JOURNAL_V0 = """
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
POSTGRES_V0 = (
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


def message(
    device: str = "0xDevice",
    patient: str = "0xPatient",
    group: int = 1,
    n: int = 1,
    t: int = 0,
    seqs: list[int] | None = None,
) -> Message:
    seqs = seqs or [next(_seq) for _ in range(n)]
    readings = tuple(Reading(s, Vital.SPO2, 97.0 + i, t + i) for i, s in enumerate(seqs))
    payload = f'{{"seqs": {seqs}}}'.encode()
    return Message(
        hashlib.sha256(payload + os.urandom(8)).digest(),
        device,
        group,
        patient,
        t,
        payload,
        b"\x01" * 65,
        readings,
    )


def block(
    store: Store, patient: str, recipients: list[PrivateKey], group: int = 1, entries: int = 2
) -> tuple[Block, tuple[Stanza, ...]]:
    previous = store.last_block(group, patient)
    return seal_block(
        GATEWAY,
        group_id=group,
        patient=patient,
        number=1 if previous is None else previous.number + 1,
        previous=bytes(32) if previous is None else previous.hash,
        leaf_index=store.next_leaf_index(group),
        sealed_at_ms=1_000,
        sections=[
            SectionPlan(
                Vital.SPO2.bit,
                entries,
                [BlockEntry("0xDevice", b"payload %d" % i, b"\x02" * 65) for i in range(entries)],
                [r.public_key for r in recipients],
            )
        ],
    )
