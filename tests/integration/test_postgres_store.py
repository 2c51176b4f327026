"""The backend-neutral store suite on PostgreSQL (a real server: the ``postgres`` fixture).

Each test gets a fresh, empty database of its own (CREATE DATABASE, dropped afterwards), so the
store's idempotent schema creation runs every time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from tests.store_suite import StoreSuite, block, message
from vitalchain.crypto import PrivateKey
from vitalchain.store.pgserver import LocalPostgres
from vitalchain.store.postgres import PostgresStore

_names = itertools.count()


@pytest.fixture
def store(postgres: LocalPostgres) -> Iterator[PostgresStore]:
    name = f"store_test_{next(_names)}"
    with psycopg.connect(postgres.admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        s = PostgresStore(postgres.dsn_for(name))
        try:
            yield s
        finally:
            s.close()
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


class TestPostgresStore(StoreSuite):
    def test_blocks_are_rows(self, store: PostgresStore) -> None:
        p = PrivateKey.generate()
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, [])
        with psycopg.connect(store.dsn) as conn:
            row = conn.execute("SELECT data FROM blocks WHERE leaf_index = 0").fetchone()
        assert row is not None
        assert bytes(row[0]) == blk.to_bytes()

    def test_reopening_keeps_everything(self, store: PostgresStore) -> None:
        m = message(n=2)
        row_id = store.append(m)
        again = PostgresStore(store.dsn)  # the schema statements are idempotent
        try:
            assert [s.id for s in again.messages()] == [row_id]
            assert again.last_seqs() == store.last_seqs()
        finally:
            again.close()

    def test_close_commits_what_is_queued(self, store: PostgresStore) -> None:
        futures = [store.submit(message(device="0xQueued")) for _ in range(50)]
        store.close()
        assert all(f.result(timeout=0) > 0 for f in futures)
        reopened = PostgresStore(store.dsn)
        try:
            assert reopened.count_readings() == 50
        finally:
            reopened.close()

    def test_server_listens_on_loopback_only(self, postgres: LocalPostgres) -> None:
        with psycopg.connect(postgres.dsn) as conn:
            row = conn.execute("SHOW listen_addresses").fetchone()
            assert row == ("127.0.0.1",)
            assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
