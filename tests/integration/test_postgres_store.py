"""What only PostgreSQL as the block store can show (a real server: the ``postgres`` fixture):
blocks as rows, no plaintext table, upgrades of its old schemas.  Each test gets a fresh, empty
database of its own.  The backend-neutral suite, PostgreSQL included, is
tests/unit/store/test_store.py."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.support.store import GATEWAY, POSTGRES_V0, block, message, postgres_store
from vitalchain.crypto import PrivateKey
from vitalchain.crypto.block import SectionPlan, seal_block
from vitalchain.services.postgres import LocalPostgres
from vitalchain.store import GatewayStore, SqliteJournal, migrations
from vitalchain.store.postgres import PostgresStore
from vitalchain.vitals import Vital
from vitalchain.wire.block import BlockEntry

_names = itertools.count()
_VERSIONS = {"alembic_version"}  # the schema's revision (store/migrations): no health data


@pytest.fixture
def store(postgres: LocalPostgres, tmp_path: Path) -> Iterator[GatewayStore]:
    with postgres_store(postgres, tmp_path) as s:
        yield s


def _dsn(store: GatewayStore) -> str:
    blocks = store.block_store
    assert isinstance(blocks, PostgresStore)
    return blocks.dsn


def _tables(dsn: str) -> set[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


class TestPostgresStore:
    def test_blocks_are_rows(self, store: GatewayStore) -> None:
        p = PrivateKey.generate()
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, [])
        with psycopg.connect(_dsn(store)) as conn:
            row = conn.execute("SELECT data FROM blocks WHERE leaf_index = 0").fetchone()
        assert row is not None
        assert bytes(row[0]) == blk.encode()

    def test_messages_never_reach_the_shared_database(self, store: GatewayStore) -> None:
        """Issue 12 item 11: the database providers read (and its operator sees) has no table
        for messages or readings; they are in the gateway's local journal."""
        p = PrivateKey.generate()
        ids = [store.append(message(patient=p.address, n=2)) for _ in range(2)]
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, ids)
        assert _tables(_dsn(store)) == {"blocks", "key_ring", "anchors", "nonces", *_VERSIONS}

    def test_a_legacy_database_with_plaintext_tables_is_emptied(
        self, store: GatewayStore, tmp_path: Path
    ) -> None:
        """A database from before issue 12 kept every message and reading, readable by its
        operator: on open the unsealed ones move to the local journal, every stored seq is
        remembered, and the tables are dropped."""
        from vitalchain.store import open_store

        dsn = _dsn(store)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE messages (id BIGINT PRIMARY KEY, message_id BYTEA NOT NULL, "
                "device TEXT NOT NULL, group_id BIGINT NOT NULL, patient TEXT NOT NULL, "
                "received_at BIGINT NOT NULL, payload BYTEA NOT NULL, signature BYTEA NOT NULL, "
                "block_id BIGINT)"
            )
            conn.execute(
                "CREATE TABLE readings (device TEXT NOT NULL, seq BIGINT NOT NULL, message BIGINT "
                "NOT NULL, patient TEXT NOT NULL, vital BIGINT NOT NULL, value DOUBLE PRECISION "
                "NOT NULL, t BIGINT NOT NULL, PRIMARY KEY (device, seq))"
            )
            conn.execute(
                "INSERT INTO messages VALUES (1, '\\x01', '0xD', 1, '0xP', 5, '{}', '\\x02', NULL),"
                " (2, '\\x03', '0xD', 1, '0xP', 6, '{}', '\\x02', 9)"
            )
            conn.execute(
                "INSERT INTO readings VALUES ('0xD', 7, 1, '0xP', 1, 97.5, 5), "
                "('0xD', 8, 2, '0xP', 1, 96.5, 6)"
            )
        moved = open_store(tmp_path / "gw", dsn)
        try:
            (kept,) = moved.messages()
            assert [r.value for r in kept.message.readings] == [97.5]
            assert moved.last_seqs() == {"0xD": 8}
            assert _tables(dsn) == {"blocks", "key_ring", "anchors", "nonces", *_VERSIONS}
        finally:
            moved.close()

    def test_reopening_keeps_everything(self, store: GatewayStore, tmp_path: Path) -> None:
        m = message(n=2)
        row_id = store.append(m)
        p = PrivateKey.generate()
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, [])
        store.journal.close()
        again = GatewayStore(SqliteJournal(tmp_path / "journal.db"), PostgresStore(_dsn(store)))
        try:  # the schema statements are idempotent
            assert [s.id for s in again.messages()] == [row_id]
            assert again.last_seqs() == {m.device: m.readings[-1].seq}
            assert again.block(1, blk.leaf_index) == blk
        finally:
            again.close()

    def test_close_commits_what_is_queued(self, store: GatewayStore, tmp_path: Path) -> None:
        futures = [store.submit(message(device="0xQueued")) for _ in range(50)]
        store.close()
        assert all(f.result(timeout=0) > 0 for f in futures)
        reopened = SqliteJournal(tmp_path / "journal.db")
        try:
            assert reopened.count_readings() == 50
        finally:
            reopened.close()

    def test_server_listens_on_loopback_only(self, postgres: LocalPostgres) -> None:
        with psycopg.connect(postgres.dsn) as conn:
            row = conn.execute("SHOW listen_addresses").fetchone()
            assert row == ("127.0.0.1",)
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)


def test_a_version_0_database_is_upgraded_with_its_rows(postgres: LocalPostgres) -> None:
    """A database made before schema versions (tests/support/store.py keeps its exact DDL) keeps
    its rows, is stamped with the first revision and reaches the head."""
    name = "store_v0"
    p = PrivateKey.generate()
    blk, ring = seal_block(
        GATEWAY, group_id=1, patient=p.address, number=1, previous=bytes(32), leaf_index=0,
        sealed_at_ms=1_000, sections=[SectionPlan(Vital.SPO2.bit, 1, [BlockEntry("0xD", b"payload", b"\x02" * 65)], [p.public_key])],
    )  # fmt: skip
    with psycopg.connect(postgres.admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            dsn = postgres.dsn_for(name)
            with psycopg.connect(dsn, autocommit=True) as conn:
                for statement in POSTGRES_V0:
                    conn.execute(statement)
                (block_id,) = conn.execute(
                    "INSERT INTO blocks (group_id, patient, number, leaf_index, block_hash, leaf, "
                    "data) VALUES (1, %s, 1, 0, %s, %s, %s) RETURNING id",
                    (p.address, blk.hash, blk.leaf, blk.encode()),
                ).fetchone() or (None,)
                for s in ring:
                    conn.execute(
                        "INSERT INTO key_ring VALUES (%s, %s, %s)",
                        (block_id, s.recipient, s.encode()),
                    )
                conn.execute("INSERT INTO anchors VALUES (1, 1, '\\x01', '\\x02', 5)")
                conn.execute("INSERT INTO nonces VALUES ('\\xaa', '0xProvider', 9000, NULL)")
            store = PostgresStore(dsn)
            try:
                assert store.block(1, 0) == blk
                assert store.stanzas(1, 0) == ring
                assert [a.tree_size for a in store.anchors(1)] == [1]
                assert store.consume_nonce(b"\xaa", "0xProvider", now_ms=1_000)
                assert store.next_leaf_index(1) == 1
            finally:
                store.close()
            with psycopg.connect(dsn) as conn:
                rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
            assert rows == [(migrations.head("blocks"),)]
            PostgresStore(dsn).close()  # at the head: nothing to do
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
