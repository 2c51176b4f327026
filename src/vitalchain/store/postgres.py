"""The PostgreSQL block store: the same semantics as :class:`~vitalchain.store.sqlite.SqliteStore`.

A shared database that providers read (through the access API) and its operator can see, so
it holds only what may be shared: ciphertext blocks (a ``bytea`` column), key stanzas, anchors
and challenge nonces.  Plaintext messages and readings stay in the gateway's local journal
(:mod:`vitalchain.store.journal`); they are never sent here.  Writes commit with
``synchronous_commit`` on (the WAL is flushed).  The queries are the SQL core's
(:mod:`vitalchain.store.sql`); here a block's bytes are its row's ``data``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from vitalchain.store.sql import SqlBlockStore, block_schema, postgres_engine
from vitalchain.wire.block import Block

__all__ = ["PostgresStore"]

_SCHEMA_LOCK = 0x7663_5F73_746F_7265  # "vc_store": pg_advisory_xact_lock key


class PostgresStore(SqlBlockStore):
    """PostgreSQL for sealed blocks (``bytea``), key rings, anchors and nonces."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        super().__init__(postgres_engine(dsn), block_schema("data"))

    def _lock_schema(self, conn: Connection) -> None:
        """An advisory lock, so that two processes starting on an empty database do not race
        on CREATE (the lock goes with the transaction)."""
        conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))

    def _keep_body(self, block: Block) -> bytes:
        return block.encode()

    def _load_body(self, body: Any) -> bytes:
        return bytes(body)
