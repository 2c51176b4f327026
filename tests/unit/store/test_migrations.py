"""Schema versions (store/migrations): a data directory made before them is upgraded in place.

Version 0 is the schema as the code before Alembic made it (tests/support/store.py keeps its
exact DDL); its databases have no ``alembic_version``.  Opening one must keep every row, stamp
the first revision and reach the head, never recreate a table.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from tests.support.store import GATEWAY, JOURNAL_V0, STORE_V0
from vitalchain.crypto import PrivateKey
from vitalchain.crypto.block import SectionPlan, seal_block
from vitalchain.store import Message, Reading, migrations, open_store
from vitalchain.vitals import Vital
from vitalchain.wire.block import BlockEntry


def _version(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path)) as db:
        (row,) = db.execute("SELECT version_num FROM alembic_version").fetchall()
    return str(row[0])


def test_a_version_0_data_directory_is_upgraded_with_its_rows(tmp_path: Path) -> None:
    patient = PrivateKey.generate()
    blk, ring = seal_block(
        GATEWAY, group_id=1, patient=patient.address, number=1, previous=bytes(32),
        leaf_index=0, sealed_at_ms=1_000, sections=[SectionPlan(Vital.SPO2.bit, 1, [BlockEntry("0xD", b"payload", b"\x02" * 65)], [patient.public_key])],
    )  # fmt: skip
    data = tmp_path / "data"
    (data / "blocks" / "1").mkdir(parents=True)
    (data / "blocks" / "1" / "0-old.vcb").write_bytes(blk.encode())
    with contextlib.closing(sqlite3.connect(data / "store.db")) as db:
        db.executescript(STORE_V0)
        db.execute(
            "INSERT INTO blocks VALUES (1, 1, ?, 1, 0, ?, ?, 'blocks/1/0-old.vcb')",
            (patient.address, blk.hash, blk.leaf),
        )
        db.executemany(
            "INSERT INTO key_ring VALUES (1, ?, ?)", [(s.recipient, s.encode()) for s in ring]
        )
        db.execute("INSERT INTO anchors VALUES (1, 1, x'01', x'02', 5)")
        db.execute("INSERT INTO nonces VALUES (x'aa', '0xProvider', 9000, NULL)")
        db.commit()
    with contextlib.closing(sqlite3.connect(data / "journal.db")) as db:
        db.executescript(JOURNAL_V0)
        db.execute("INSERT INTO messages VALUES (1, x'01', '0xD', 1, '0xP', 5, x'7b7d', x'02', "
                   "NULL, NULL)")  # fmt: skip
        db.execute("INSERT INTO readings VALUES ('0xD', 7, 1, 1, 97.5, 5)")
        db.execute("INSERT INTO seq_ranges VALUES ('0xD', 3, 7)")
        db.commit()

    store = open_store(data)
    try:
        (kept,) = store.messages()
        assert kept.id == 1
        assert [(r.seq, r.value) for r in kept.message.readings] == [(7, 97.5)]
        assert store.stored_ranges() == {"0xD": [(3, 7)]}
        assert store.block(1, 0) == blk
        assert store.stanzas(1, 0) == ring
        assert [a.tree_size for a in store.anchors(1)] == [1]
        assert store.consume_nonce(b"\xaa", "0xProvider", now_ms=1_000)
        assert store.next_leaf_index(1) == 1
        new = Message(b"\x09" * 32, "0xD", 1, "0xP", 6, b"{}", b"\x02" * 65,
                      (Reading(8, Vital.SPO2, 96.0, 6),))  # fmt: skip
        store.append(new)
        assert store.last_seqs() == {"0xD": 8}
        assert [m.message for m in store.messages()] == [kept.message, new]
    finally:
        store.close()
    assert _version(data / "store.db") == migrations.head("blocks")
    assert _version(data / "journal.db") == migrations.head("journal")
    again = open_store(data)  # at the head: nothing to do, nothing lost
    try:
        assert len(again.messages()) == 2
        assert again.block(1, 0) == blk
    finally:
        again.close()


def test_a_new_data_directory_records_the_head(tmp_path: Path) -> None:
    open_store(tmp_path).close()
    assert _version(tmp_path / "store.db") == migrations.head("blocks")
    assert _version(tmp_path / "journal.db") == migrations.head("journal")
