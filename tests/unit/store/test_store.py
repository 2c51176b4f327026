"""The backend-neutral store suite, on each block store backend: SQLite with block files, and a
real PostgreSQL (the ``postgres`` fixture) with the local SQLite journal beside it.  What only
one backend can show is in test_sqlite_store.py and tests/integration/test_postgres_store.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.store import GATEWAY, STORES, block, message, postgres_store, sqlite_store
from tests.support.threads import run_together
from vitalchain.crypto import PrivateKey
from vitalchain.crypto.block import SectionPlan, open_payload, seal_block, share_block
from vitalchain.store import (
    DuplicateReading,
    GatewayStore,
    Message,
    StoreError,
)
from vitalchain.store.base import AnchorRecord, Store
from vitalchain.vitals import Vital


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GatewayStore]:
    if request.param == "sqlite":
        with sqlite_store(tmp_path) as s:
            yield s
    else:
        with postgres_store(request.getfixturevalue("postgres"), tmp_path) as s:
            yield s


class TestStore:
    # -- messages -------------------------------------------------------------------------------

    def test_append_and_read_back(self, store: Store) -> None:
        m = message(n=3)
        row = store.append(m)
        assert row > 0
        stored = store.messages(device="0xDevice")
        assert [s.message for s in stored] == [m]
        assert store.count_readings() == 3
        assert store.last_seqs() == {"0xDevice": m.readings[-1].seq}

    def test_replayed_reading_is_refused_and_nothing_is_kept(self, store: Store) -> None:
        m = message()
        store.append(m)
        replay = Message(
            b"\x09" * 32, m.device, m.group_id, m.patient, 0, m.payload, m.signature, m.readings
        )
        with pytest.raises(DuplicateReading):
            store.append(replay)
        with pytest.raises(DuplicateReading):
            store.append(m)  # the same message id
        assert store.count_readings() == 1

    def test_concurrent_appends_each_commit(self, store: Store) -> None:
        def run(device: str) -> None:
            for _ in range(25):
                store.append(message(device=device))

        run_together(run, [(f"0xD{i}",) for i in range(6)])
        assert store.count_readings() == 150
        assert len(store.last_seqs()) == 6

    def test_one_conflict_in_a_batch_refuses_only_that_message(self, store: Store) -> None:
        first = message()
        store.append(first)
        clash = Message(
            b"\x07" * 32, first.device, 1, first.patient, 0, b"x", b"y" * 65, first.readings
        )
        futures = [store.submit(message(device="0xOther")) for _ in range(5)]
        bad = store.submit(clash)
        futures += [store.submit(message(device="0xOther")) for _ in range(5)]
        assert all(f.result() > 0 for f in futures)
        with pytest.raises(DuplicateReading):
            bad.result()
        assert store.count_readings() == 11

    # -- sealing --------------------------------------------------------------------------------

    def test_pending_patients_and_unsealed_messages(self, store: Store) -> None:
        a = [store.append(message(patient="0xA", n=2, t=100)) for _ in range(2)]
        store.append(message(patient="0xB", n=1, t=50))
        pending = {p.patient: p for p in store.pending_patients()}
        assert pending["0xA"].readings == 4
        assert pending["0xA"].oldest_received_ms == 100
        assert pending["0xB"].readings == 1
        assert [m.id for m in store.unsealed(1, "0xA")] == a
        assert store.unsealed(2, "0xA") == []

    def test_unsealed_stops_at_the_message_that_reaches_max_readings(self, store: Store) -> None:
        ids = [store.append(message(patient="0xA", n=3)) for _ in range(4)]
        assert [m.id for m in store.unsealed(1, "0xA", max_readings=1)] == ids[:1]
        assert [m.id for m in store.unsealed(1, "0xA", max_readings=3)] == ids[:1]
        assert [m.id for m in store.unsealed(1, "0xA", max_readings=4)] == ids[:2]
        assert [m.id for m in store.unsealed(1, "0xA", max_readings=12)] == ids
        assert [len(m.message.readings) for m in store.unsealed(1, "0xA", 7)] == [3, 3, 3]

    def test_add_block_seals_messages_and_keeps_the_key_ring(self, store: Store) -> None:
        patient, doctor = PrivateKey.generate(), PrivateKey.generate()
        ids = [store.append(message(patient=patient.address)) for _ in range(3)]
        blk, ring = block(store, patient.address, [patient, doctor])
        store.add_block(blk, ring, ids)
        assert store.unsealed(1, patient.address) == []
        assert patient.address not in {p.patient for p in store.pending_patients()}
        got = store.block(1, blk.leaf_index)
        assert got == blk
        assert store.patient_block(1, patient.address, 1) == blk
        assert store.last_block(1, patient.address) == blk
        assert store.leaf_hashes(1) == [blk.leaf]
        stanzas = store.stanzas(1, blk.leaf_index)
        assert {s.recipient for s in stanzas} == {
            patient.public_key.address_bytes,
            doctor.public_key.address_bytes,
        }
        assert [e.payload for e in open_payload(got, stanzas, doctor)] == [
            b"payload 0",
            b"payload 1",
        ]

    def test_blocks_chain_per_patient_and_share_the_group_log(self, store: Store) -> None:
        p, q = PrivateKey.generate(), PrivateKey.generate()
        made = []
        for owner in (p, q, p, p):
            blk, ring = block(store, owner.address, [owner])
            store.add_block(blk, ring, [])
            made.append(blk)
        assert [b.leaf_index for b in made] == [0, 1, 2, 3]
        assert [b.number for b in store.blocks(1, p.address)] == [1, 2, 3]
        assert [b.number for b in store.blocks(1, p.address, after_number=1)] == [2, 3]
        assert store.blocks(1, p.address)[1].previous == made[0].hash
        assert store.block_numbers(1, p.address) == [1, 2, 3]
        assert store.block_numbers(1, q.address) == [1]
        assert store.block_numbers(2, p.address) == []
        assert store.leaf_hashes(1) == [b.leaf for b in made]
        assert store.next_leaf_index(1) == 4
        assert store.next_leaf_index(2) == 0

    def test_block_conflicts_are_refused(self, store: Store) -> None:
        p = PrivateKey.generate()
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, [])
        again, ring2 = block(store, p.address, [p])
        clash = seal_block(
            GATEWAY, group_id=1, patient=p.address, number=2, previous=blk.hash,
            leaf_index=blk.leaf_index, sealed_at_ms=2, sections=[SectionPlan(Vital.SPO2.bit, 0, [], [p.public_key])],
        )[0]  # fmt: skip
        with pytest.raises(StoreError) as err:
            store.add_block(clash, ring2, [])
        assert err.value.code == "block_conflict"
        assert store.block(1, blk.leaf_index) == blk  # the kept block is untouched
        store.add_block(again, ring2, [])  # the right next position is still free

    def test_a_message_cannot_be_sealed_twice(self, store: Store) -> None:
        p = PrivateKey.generate()
        mid = store.append(message(patient=p.address))
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, [mid])
        second, ring2 = block(store, p.address, [p])
        with pytest.raises(StoreError):
            store.add_block(second, ring2, [mid])
        assert store.last_block(1, p.address) == blk

    def test_stanzas_can_be_added_later_without_touching_the_block(self, store: Store) -> None:
        p, nurse = PrivateKey.generate(), PrivateKey.generate()
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, [])
        entry = share_block(blk, store.stanzas(1, blk.leaf_index), p, nurse.public_key, ~0)
        store.add_stanza(1, blk.leaf_index, entry)
        assert store.block(1, blk.leaf_index) == blk  # same bytes, same hash, same proof
        assert open_payload(blk, store.stanzas(1, blk.leaf_index), nurse)
        with pytest.raises(StoreError) as err:
            store.add_stanza(1, 999, entry)
        assert err.value.code == "unknown_block"

    def test_unknown_blocks_are_none(self, store: Store) -> None:
        assert store.block(1, 12345) is None
        assert store.patient_block(1, "0xNobody", 1) is None
        assert store.last_block(1, "0xNobody") is None
        assert store.stanzas(1, 12345) == ()

    # -- anchors and nonces ---------------------------------------------------------------------

    def test_anchors_in_size_order(self, store: Store) -> None:
        records = [AnchorRecord(1, n, bytes([n]) * 32, b"\x01" * 32, 1000 + n) for n in (5, 2, 9)]
        for r in records:
            store.record_anchor(r)
        store.record_anchor(records[0])  # idempotent
        assert [a.tree_size for a in store.anchors(1)] == [2, 5, 9]
        assert store.anchors(2) == []

    def test_nonces_are_single_use_and_expire(self, store: Store) -> None:
        store.add_nonce(b"n1", "0xProvider", expires_at_ms=2_000)
        store.add_nonce(b"n2", "0xProvider", expires_at_ms=2_000)
        assert not store.consume_nonce(b"n1", "0xOther", now_ms=1_000)  # someone else's
        assert store.consume_nonce(b"n1", "0xProvider", now_ms=1_000)
        assert not store.consume_nonce(b"n1", "0xProvider", now_ms=1_000)  # replayed
        assert not store.consume_nonce(b"n2", "0xProvider", now_ms=2_000)  # expired
        assert not store.consume_nonce(b"unknown", "0xProvider", now_ms=1_000)
        with pytest.raises(StoreError) as err:
            store.add_nonce(b"n1", "0xProvider", expires_at_ms=9_000)
        assert err.value.code == "nonce_taken"

    # -- the journal: pruning, replay protection that outlives it, crash recovery ---------------

    def test_an_anchor_prunes_the_plaintext_it_covers_and_only_that(self, store: Store) -> None:
        """Issue 12 item 11: a message is forgotten once its block is sealed and anchored."""
        p = PrivateKey.generate()
        first = [store.append(message(patient=p.address)) for _ in range(2)]
        blk1, ring1 = block(store, p.address, [p])
        store.add_block(blk1, ring1, first)
        second = [store.append(message(patient=p.address))]
        blk2, ring2 = block(store, p.address, [p])
        store.add_block(blk2, ring2, second)
        waiting = store.append(message(patient=p.address))  # not sealed yet
        counted = store.count_readings()
        assert {sealed.leaf_index for sealed in store.sealed_leaves()} == {0, 1}
        store.record_anchor(AnchorRecord(1, 1, b"\x01" * 32, b"\x02" * 32, 1))  # covers leaf 0
        assert [m.id for m in store.messages()] == [*second, waiting]
        store.record_anchor(AnchorRecord(1, 2, b"\x03" * 32, b"\x04" * 32, 2))
        assert [m.id for m in store.messages()] == [waiting]
        assert store.sealed_leaves() == []
        assert store.count_readings() == counted  # readings ever stored, pruned ones too
        assert [b.number for b in store.blocks(1, p.address)] == [1, 2]  # the blocks stay
        assert [m.id for m in store.unsealed(1, p.address)] == [waiting]

    def test_a_replay_of_a_pruned_message_is_still_refused(self, store: Store) -> None:
        p = PrivateKey.generate()
        m = message(patient=p.address, n=3)
        ids = [store.append(m)]
        blk, ring = block(store, p.address, [p])
        store.add_block(blk, ring, ids)
        store.record_anchor(AnchorRecord(1, 1, b"\x01" * 32, b"\x02" * 32, 1))
        assert store.messages() == []
        with pytest.raises(DuplicateReading):
            store.append(m)  # the same bytes (message id and seqs)
        overlap = message(patient=p.address, seqs=[m.readings[-1].seq, m.readings[-1].seq + 1])
        with pytest.raises(DuplicateReading):
            store.append(overlap)  # one seq stored before
        assert store.last_seqs() == {m.device: m.readings[-1].seq}

    def test_stored_seqs_are_kept_as_ranges(self, store: Store) -> None:
        for seqs in ([10, 11], [14], [12, 13], [20, 22, 23], [16]):
            store.append(message(device="0xR", seqs=seqs))
        assert store.stored_ranges()["0xR"] == [(10, 14), (16, 16), (20, 20), (22, 23)]
        assert store.last_seqs()["0xR"] == 23
        with pytest.raises(DuplicateReading):
            store.append(message(device="0xR", seqs=[15, 16]))
        store.append(message(device="0xR", seqs=[15, 21]))  # gaps filled: merged
        assert store.stored_ranges()["0xR"] == [(10, 16), (20, 23)]
        assert store.count_readings() == 11

    def test_a_block_the_block_store_refuses_leaves_its_messages_pending(
        self, store: Store
    ) -> None:
        p = PrivateKey.generate()
        kept, ring = block(store, p.address, [p])
        store.add_block(kept, ring, [])
        ids = [store.append(message(patient=p.address))]
        clash = seal_block(
            GATEWAY, group_id=1, patient=p.address, number=2, previous=kept.hash,
            leaf_index=kept.leaf_index, sealed_at_ms=2, sections=[SectionPlan(Vital.SPO2.bit, 1, [], [p.public_key])],
        )[0]  # fmt: skip
        with pytest.raises(StoreError) as err:
            store.add_block(clash, ring, ids)
        assert err.value.code == "block_conflict"
        assert [m.id for m in store.unsealed(1, p.address)] == ids  # not lost, not marked
        assert store.sealed_leaves() == []

    def test_reopening_undoes_the_marks_of_a_block_that_was_never_kept(
        self, store: GatewayStore
    ) -> None:
        """A crash between marking the messages and keeping the block: on open, the marks of
        any block the block store does not hold are undone, so the messages seal again."""
        p = PrivateKey.generate()
        ids = [store.append(message(patient=p.address)) for _ in range(2)]
        blk, _ = block(store, p.address, [p])
        store.journal.mark_sealed(1, blk.leaf_index, blk.leaf, ids)  # ... and then the crash
        assert store.unsealed(1, p.address) == []
        again = GatewayStore(store.journal, store.block_store)  # what open_store does
        assert [m.id for m in again.unsealed(1, p.address)] == ids
        # a kept block's marks survive the same check; an anchor recorded before a crash prunes
        blk, ring = block(again, p.address, [p])
        again.add_block(blk, ring, ids)
        again.block_store.record_anchor(AnchorRecord(1, 1, blk.leaf, b"\x02" * 32, 1))
        assert len(again.messages()) == 2
        GatewayStore(store.journal, store.block_store)
        assert again.messages() == []

    def test_a_bare_block_store_keeps_no_messages(self, store: GatewayStore) -> None:
        p = PrivateKey.generate()
        blk, ring = block(store, p.address, [p])
        with pytest.raises(StoreError) as err:
            store.block_store.add_block(blk, ring, [1])
        assert err.value.code == "block_conflict"
        assert store.block(1, blk.leaf_index) is None
