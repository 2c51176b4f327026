"""The embedded block store: SQLite (WAL, ``synchronous=FULL``) for metadata, files for blocks.

What providers read and nothing else: sealed blocks (ciphertext, one file each), their key
rings, anchors and challenge nonces.  Plaintext messages and readings live in the gateway's
journal (:mod:`vitalchain.store.journal`) and never here.  Every file and directory is created
0600 / 0700 (:mod:`vitalchain.store.files`).  The queries are the SQL core's
(:mod:`vitalchain.store.sql`); this module says only where a block's bytes live.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitalchain.store.files import private_database, private_dir, write_private
from vitalchain.store.sql import (
    SqlBlockStore,
    block_schema,
    outside_transaction,
    sqlite_engine,
)
from vitalchain.wire.block import Block

__all__ = ["SqliteStore"]


class SqliteStore(SqlBlockStore):
    """SQLite for metadata, one file per sealed block (``blocks/<group>/<leaf>-<hash>.vcb``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.block_dir = path.parent / "blocks"
        private_database(path)  # 0600 before SQLite opens it: new -wal, -shm inherit it
        super().__init__(sqlite_engine(path), block_schema("file"))

    def _keep_body(self, block: Block) -> str:
        private_dir(self.block_dir)
        folder = private_dir(self.block_dir / str(block.group_id))
        # Named by leaf and hash: a refused block can never overwrite one that was kept.
        final = folder / f"{block.leaf_index}-{block.hash.hex()[:16]}.vcb"
        write_private(final, block.encode())
        return str(final.relative_to(self.path.parent))

    def _drop_body(self, body: str | bytes) -> None:
        (self.path.parent / str(body)).unlink(missing_ok=True)

    def _load_body(self, body: Any) -> bytes:
        return (self.path.parent / str(body)).read_bytes()

    def drop_legacy_plaintext(self) -> None:
        """Drop the legacy plaintext tables and rewrite the file without their pages."""
        super().drop_legacy_plaintext()
        outside_transaction(self._engine, "VACUUM")
        outside_transaction(self._engine, "PRAGMA wal_checkpoint(TRUNCATE)")
