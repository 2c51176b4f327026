"""What only the embedded store backend (SQLite + block files) can show: file modes, and that
pruned plaintext leaves the files.  The backend-neutral suite is test_store.py."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.store import block, message, sqlite_store
from vitalchain.crypto import PrivateKey
from vitalchain.store import GatewayStore, SqliteStore, open_store
from vitalchain.store.base import AnchorRecord
from vitalchain.store.files import private_dir, private_file, write_private


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GatewayStore]:
    with sqlite_store(tmp_path) as s:
        yield s


def _block_dir(store: GatewayStore) -> Path:
    blocks = store.block_store
    assert isinstance(blocks, SqliteStore)
    return blocks.block_dir


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]
    }


class TestSqliteStore:
    def test_blocks_are_files_beside_the_database(self, store: GatewayStore) -> None:
        p = PrivateKey.generate()
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, [])
        (path,) = (_block_dir(store) / "1").glob("0-*.vcb")
        assert path.read_bytes() == blk.encode()

    def test_every_file_is_0600_and_every_folder_0700(
        self, store: GatewayStore, tmp_path: Path
    ) -> None:
        """Issue 12 item 11: store.db, journal.db (and their -wal/-shm), block files and
        folders are private to the gateway's user."""
        p = PrivateKey.generate()
        ids = [store.append(message(patient=p.address)) for _ in range(2)]
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, ids)
        store.record_anchor(AnchorRecord(1, 1, blk.leaf, b"\x01" * 32, 1))
        modes = _modes(tmp_path / "data")
        assert {"journal.db", "journal.db-wal", "store.db", "store.db-wal"} <= set(modes)
        assert any(name.startswith("blocks/1/") for name in modes)
        wrong = {
            name: oct(mode)
            for name, mode in modes.items()
            if mode != (0o700 if (tmp_path / "data" / name).is_dir() else 0o600)
        }
        assert wrong == {}

    def test_pruned_plaintext_is_gone_from_the_journal_files(
        self, store: GatewayStore, tmp_path: Path
    ) -> None:
        """Deleting rows is not enough: secure_delete zeroes their pages and the WAL, which
        still holds the old page images, is checkpointed and truncated."""
        p = PrivateKey.generate()
        secret = b'{"marker": "plaintext-vital-9173.37"}'
        m = message(patient=p.address)
        m = type(m)(m.message_id, m.device, 1, p.address, 0, secret, m.signature, m.readings)
        kept = message(patient=p.address)
        ids = [store.append(m)]
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, ids)
        store.append(kept)  # unsealed: stays
        files = [tmp_path / "data" / n for n in ("journal.db", "journal.db-wal")]
        assert any(secret in f.read_bytes() for f in files if f.exists())  # the control
        store.record_anchor(AnchorRecord(1, 1, blk.leaf, b"\x01" * 32, 1))
        assert not any(secret in f.read_bytes() for f in files if f.exists())
        assert [s.message for s in store.messages()] == [kept]

    def test_a_legacy_store_with_plaintext_tables_is_emptied(self, tmp_path: Path) -> None:
        """A store.db from before issue 12 kept messages and readings beside the blocks: on
        open their unsealed messages move to the journal and the tables are dropped."""
        import sqlite3

        legacy = tmp_path / "old"
        legacy.mkdir()
        db = sqlite3.connect(legacy / "store.db")
        db.executescript(
            "CREATE TABLE messages (id INTEGER PRIMARY KEY, message_id BLOB NOT NULL UNIQUE, "
            "device TEXT NOT NULL, group_id INTEGER NOT NULL, patient TEXT NOT NULL, "
            "received_at INTEGER NOT NULL, payload BLOB NOT NULL, signature BLOB NOT NULL, "
            "block_id INTEGER);"
            "CREATE TABLE readings (device TEXT NOT NULL, seq INTEGER NOT NULL, message INTEGER "
            "NOT NULL, patient TEXT NOT NULL, vital INTEGER NOT NULL, value REAL NOT NULL, "
            "t INTEGER NOT NULL, PRIMARY KEY (device, seq));"
        )
        db.execute(
            "INSERT INTO messages VALUES (1, x'01', '0xD', 1, '0xP', 5, x'7b7d', x'02', NULL)"
        )
        db.execute("INSERT INTO readings VALUES ('0xD', 7, 1, '0xP', 1, 97.5, 5)")
        db.execute("INSERT INTO messages VALUES (2, x'03', '0xD', 1, '0xP', 6, x'7b7d', x'02', 9)")
        db.execute("INSERT INTO readings VALUES ('0xD', 8, 2, '0xP', 1, 96.5, 6)")
        db.commit()
        db.close()
        s = open_store(legacy)
        try:
            (moved,) = s.messages()
            assert moved.message.readings[0].seq == 7
            assert s.last_seqs() == {"0xD": 8}  # the sealed one still counts as stored
            tables = sqlite3.connect(legacy / "store.db").execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
            assert {"messages", "readings"}.isdisjoint({r[0] for r in tables})
        finally:
            s.close()


def test_private_helpers_create_and_tighten(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    private_dir(loose, tighten=False)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o755  # an operator's folder is left alone
    private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    f = loose / "made"
    private_file(f)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    f.chmod(0o644)
    private_file(f)
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    write_private(tmp_path / "new" / "data.json", b"{}")
    assert stat.S_IMODE((tmp_path / "new" / "data.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_a_block_kept_despite_a_failed_answer_keeps_its_marks(tmp_path: Path) -> None:
    """A write whose commit happened but whose answer was lost (a dropped connection): the
    block is there, so its messages stay sealed instead of going into a second block."""
    from vitalchain.store import SqliteJournal, StoreUnavailable

    class LosesAnswers(SqliteStore):
        def add_block(self, *args: object, **kwargs: object) -> None:
            super().add_block(*args, **kwargs)  # type: ignore[arg-type]
            raise StoreUnavailable("connection lost after the commit")

    store = GatewayStore(SqliteJournal(tmp_path / "journal.db"), LosesAnswers(tmp_path / "s.db"))
    try:
        p = PrivateKey.generate()
        ids = [store.append(message(patient=p.address))]
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, ids)  # does not raise: the block was kept
        assert store.unsealed(1, p.address) == []
        assert store.block(1, blk.leaf_index) == blk
    finally:
        store.close()


def test_files_left_readable_by_an_older_version_are_tightened(tmp_path: Path) -> None:
    """A data folder from before issue 12: store.db and its WAL 0644, blocks/ 0755."""
    old = tmp_path / "old"
    s = open_store(old)
    s.close()
    (old / "store.db-wal").write_bytes(b"")
    for path in (old / "store.db", old / "store.db-wal", old / "journal.db"):
        path.chmod(0o644)
    (old / "blocks").mkdir(exist_ok=True)
    (old / "blocks").chmod(0o755)
    s = open_store(old)
    try:
        p = PrivateKey.generate()
        blk, ring = block(s, p.address, [p])
        s.add_block(blk, ring, [])
        for path in (old / "store.db", old / "store.db-wal", old / "journal.db"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert stat.S_IMODE((old / "blocks").stat().st_mode) == 0o700
    finally:
        s.close()


def test_only_a_stored_seq_or_message_id_is_a_replay(tmp_path: Path) -> None:
    """Any other refusal by the database (here a NOT NULL column) is a failed write, which
    ingest answers ``store_unavailable`` (send again), never ``replayed``."""
    from dataclasses import replace

    from vitalchain.store import DuplicateReading, StoreError

    store = open_store(tmp_path)
    try:
        m = message()
        with pytest.raises(StoreError) as err:
            store.append(replace(m, payload=None))  # type: ignore[arg-type]
        assert not isinstance(err.value, DuplicateReading)
        assert store.append(m) > 0  # nothing of the refused one was kept
        with pytest.raises(DuplicateReading):
            store.append(replace(m, message_id=b"\x05" * 32))  # its seqs again
    finally:
        store.close()
