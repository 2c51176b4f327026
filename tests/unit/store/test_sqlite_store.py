"""The backend-neutral store suite on the embedded backend (SQLite + block files)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.store_suite import StoreSuite
from vitalchain.store import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "store.db")
    yield s
    s.close()


class TestSqliteStore(StoreSuite):
    def test_blocks_are_files_beside_the_database(self, store: SqliteStore) -> None:
        from tests.store_suite import block
        from vitalchain.crypto import PrivateKey

        p = PrivateKey.generate()
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, [])
        (path,) = (store.block_dir / "1").glob("0-*.vcb")
        assert path.read_bytes() == blk.to_bytes()
