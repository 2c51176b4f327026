"""Sealing: by size, by age, at once when abnormal; keys only for consented readers; anchors."""

from __future__ import annotations

import time

import pytest

from tests.support.node import World
from vitalchain.crypto.block import open_payload
from vitalchain.crypto.merkle import CompactRange, MerkleTree, verify_inclusion
from vitalchain.errors import DecryptionError
from vitalchain.sealing.sealer import SealingPolicy
from vitalchain.vitals import Vital


def test_sealed_by_size_with_keys_for_patient_and_consented_providers(world: World) -> None:
    patient = world.patient()
    cardio, stranger, narrow = world.provider(), world.provider(), world.provider()
    world.consent(patient, cardio)
    world.consent(patient, narrow, Vital.GLUCOSE)  # consent, but not for SpO2 or heart rate
    device = world.device(patient)
    for _ in range(2):
        device.send(device.prepare([(Vital.SPO2, 97), (Vital.HEART_RATE, 70)]))
    (block,) = world.running.sealer.seal_due()  # 4 readings: the size limit
    store = world.running.gateway.store
    readers = {s.recipient for s in store.stanzas(block.group_id, block.leaf_index)}
    assert readers == {patient.public_key.address_bytes, cardio.public_key.address_bytes}
    assert block.readings == 4
    assert block.vitals == Vital.SPO2.bit | Vital.HEART_RATE.bit
    assert block.patient == patient.address
    assert block.number == 1
    entries = open_payload(block, store.stanzas(block.group_id, block.leaf_index), cardio)
    assert [e.device for e in entries] == [device.address, device.address]
    for key in (stranger, narrow):
        with pytest.raises(DecryptionError):
            open_payload(block, store.stanzas(block.group_id, block.leaf_index), key)


def test_not_sealed_before_size_or_age_then_sealed_by_age(world: World) -> None:
    patient = world.patient()
    device = world.device(patient)
    device.send(device.prepare([(Vital.SPO2, 97)]))
    sealer = world.running.sealer
    assert sealer.seal_due() == []
    start = time.time()
    sealer.clock = lambda: start + 3601
    (block,) = sealer.seal_due()
    assert block.readings == 1


def test_blocks_are_numbered_and_chained_per_patient(world: World) -> None:
    patient = world.patient()
    device = world.device(patient)
    blocks = []
    for _ in range(3):
        device.send(device.prepare([(Vital.SPO2, 97)] * 4))
        blocks += world.running.sealer.seal_due()
    assert [b.number for b in blocks] == [1, 2, 3]
    assert blocks[1].previous == blocks[0].hash
    assert blocks[2].previous == blocks[1].hash
    assert blocks[0].previous == bytes(32)


def test_after_a_revoke_later_blocks_carry_no_key_for_the_provider(world: World) -> None:
    patient, doctor = world.patient(), world.provider()
    world.consent(patient, doctor)
    device = world.device(patient)
    device.send(device.prepare([(Vital.SPO2, 97)] * 4))
    (before,) = world.running.sealer.seal_due()
    world.ledger.revoke(patient, doctor.address)
    device.send(device.prepare([(Vital.SPO2, 96)] * 4))
    (after,) = world.running.sealer.seal_due()
    store = world.running.gateway.store
    assert doctor.public_key.address_bytes in {
        s.recipient for s in store.stanzas(world.group_id, before.leaf_index)
    }
    assert doctor.public_key.address_bytes not in {
        s.recipient for s in store.stanzas(world.group_id, after.leaf_index)
    }


def _readers(world: World, block_leaf: int) -> set[bytes]:
    return {s.recipient for s in world.running.gateway.store.stanzas(world.group_id, block_leaf)}


def test_a_grant_after_a_block_reaches_the_next_block(world: World) -> None:
    """The sealer keeps consents between blocks; the grant's event must refresh them."""
    patient, doctor = world.patient(), world.provider()
    device = world.device(patient)
    device.send(device.prepare([(Vital.SPO2, 97)] * 4))
    (before,) = world.running.sealer.seal_due()
    world.consent(patient, doctor)
    device.send(device.prepare([(Vital.SPO2, 96)] * 4))
    (after,) = world.running.sealer.seal_due()
    assert doctor.public_key.address_bytes not in _readers(world, before.leaf_index)
    assert doctor.public_key.address_bytes in _readers(world, after.leaf_index)


def test_an_expired_consent_is_judged_by_the_chain_clock(world: World) -> None:
    patient, doctor = world.patient(), world.provider()
    world.ledger.grant(patient, doctor.address, Vital.SPO2.bit, world.ledger.timestamp() + 600)
    device = world.device(patient)
    device.send(device.prepare([(Vital.SPO2, 97)] * 4))
    (before,) = world.running.sealer.seal_due()
    world.ledger.advance_time(700)  # the chain's clock passes the expiry; the gateway's does not
    device.send(device.prepare([(Vital.SPO2, 96)] * 4))
    (after,) = world.running.sealer.seal_due()
    assert doctor.public_key.address_bytes in _readers(world, before.leaf_index)
    assert doctor.public_key.address_bytes not in _readers(world, after.leaf_index)


def test_a_consent_about_to_expire_is_left_to_the_contract(world: World) -> None:
    patient, doctor = world.patient(), world.provider()
    world.ledger.grant(patient, doctor.address, Vital.SPO2.bit, world.ledger.timestamp() + 30)
    device = world.device(patient)
    device.send(device.prepare([(Vital.SPO2, 97)] * 4))
    (block,) = world.running.sealer.seal_due()  # inside the margin: hasAccess says yes
    assert doctor.public_key.address_bytes in _readers(world, block.leaf_index)


def test_an_emergency_access_reaches_the_next_block(world: World) -> None:
    patient, medic = world.patient(), world.provider()
    device = world.device(patient)
    world.ledger.break_glass(medic, patient.address, Vital.SPO2.bit, 1, b"collapsed in the ward")
    device.send(device.prepare([(Vital.SPO2, 97)] * 4))
    (block,) = world.running.sealer.seal_due()
    assert medic.public_key.address_bytes in _readers(world, block.leaf_index)


def test_one_anchor_transaction_per_batch(world: World) -> None:
    patient = world.patient()
    device = world.device(patient)
    for _ in range(5):
        device.send(device.prepare([(Vital.SPO2, 97)] * 4))
    sealer = world.running.sealer
    assert len(sealer.seal_due()) == 5
    record = sealer.anchor()
    assert record is not None
    assert record.tree_size == len(sealer.tree)
    assert sealer.anchor() is None  # nothing new: no transaction
    anchors = world.ledger.anchors(world.group_id)
    assert [a.tree_size for a in anchors] == [record.tree_size]
    assert world.ledger.root_at(world.group_id, record.tree_size) == record.root
    # every block is provably in the anchored root (the sealer holds only a compact range:
    # proofs come from the store's leaves)
    log = MerkleTree(world.running.gateway.store.leaf_hashes(world.group_id))
    for leaf in range(record.tree_size):
        verify_inclusion(log.leaf(leaf), log.inclusion_proof(leaf, record.tree_size), record.root)
    assert world.running.gateway.store.anchors(world.group_id)[-1] == record


def test_sealer_holds_the_log_as_a_compact_range(world: World) -> None:
    """O(log n) hashes, one per one bit of the size, whose root is the full tree's."""
    patient = world.patient()
    device = world.device(patient)
    sealer, store = world.running.sealer, world.running.gateway.store
    for n in range(1, 8):
        device.send(device.prepare([(Vital.SPO2, 97)] * 4))
        assert len(sealer.seal_due()) == 1
        assert len(sealer.tree) == n
        assert len(sealer.tree.hashes) == n.bit_count() <= n.bit_length()
        leaves = store.leaf_hashes(world.group_id)
        assert sealer.tree.root() == MerkleTree(leaves).root()
        assert sealer.tree == CompactRange.of(leaves)  # what a restarted sealer starts from


def test_no_readable_recipient_means_not_sealed_yet(world: World) -> None:
    """A patient who never published a key, with no consented provider: the readings stay stored."""
    from vitalchain.crypto import PrivateKey

    quiet = PrivateKey.generate()
    device = world.device(quiet)
    device.send(device.prepare([(Vital.SPO2, 97)] * 4))
    assert world.running.sealer.seal_due() == []
    assert world.running.gateway.store.unsealed(world.group_id, quiet.address)


# -- issue 12 item 12: one bad patient must not stop a group ----------------------------------

# Lowercase with letters, so not EIP-55; its leading zeros sort it before the good patient.
BAD_PATIENT = "0x00000000" + "abcdef" * 5 + "ab"


def _plant(world: World, patient: str, device: str, seq: int, at_ms: int) -> None:
    """A message straight into the journal, past every check of the API edge."""
    import hashlib

    from vitalchain.store import Message, Reading

    payload = b'{"planted": %d}' % seq
    world.running.gateway.store.append(
        Message(
            hashlib.sha256(payload + device.encode()).digest(), device, world.group_id,
            patient, at_ms, payload, b"\x01" * 65,
            (Reading(seq, Vital.SPO2, 97.0, at_ms), Reading(seq + 1, Vital.SPO2, 96.0, at_ms)),
        )
    )  # fmt: skip


def test_a_bad_patient_address_does_not_stop_sealing_or_anchoring_the_others(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A lowercase (non-EIP-55) patient address sorted before a good one: the chain refuses
    every call about it.  The good patient is sealed and anchored all the same, the bad one is
    logged once (by pseudonym) however many ticks run, and status() shows it."""
    import logging

    from vitalchain.logs import pseudonym

    good = world.patient()
    bad = BAD_PATIENT
    now_ms = int(time.time() * 1000)
    _plant(world, bad, "0xBadDevice", 1, now_ms)
    _plant(world, good.address, "0xGoodDevice", 1, now_ms)
    sealer = world.running.sealer
    sealer.policy = SealingPolicy(max_readings=2, max_age_s=3600, anchor_every_s=0)
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            sealer.tick()
    assert [
        b.patient for b in world.running.gateway.store.blocks(world.group_id, good.address)
    ] == [good.address]
    anchored = world.ledger.latest_anchor(world.group_id)
    assert anchored is not None
    assert anchored.tree_size == 1
    # the good patient's plaintext is gone (sealed and anchored); the bad one's waits
    assert [m.message.patient for m in world.running.gateway.store.messages()] == [bad]
    status = sealer.status()
    assert status["failing"] == {pseudonym(bad): "invalid_address"}
    assert status["errors"] == {}
    assert status["last_seal_at_ms"] is not None
    assert status["last_anchor_at_ms"] is not None
    about_bad = [r for r in caplog.records if pseudonym(bad) in r.getMessage()]
    assert len(about_bad) == 1, [r.getMessage() for r in about_bad]
    text = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert bad.lower() not in text.lower()
    assert good.address.lower() not in text.lower()
    assert not any(r.exc_info for r in caplog.records)


def test_a_bad_patient_address_does_not_make_the_alert_listener_raise(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The stored-message listeners (threshold check, alert rules) each log the bad patient
    once, by pseudonym, and return; the good patient's abnormal readings still raise alerts."""
    import hashlib
    import logging

    from vitalchain.logs import pseudonym
    from vitalchain.store import Message, Reading
    from vitalchain.vitals import NORMAL

    now_ms = int(time.time() * 1000)

    def low_spo2(patient: str, seq: int) -> Message:
        payload = b'{"n": %d}' % seq
        return Message(
            hashlib.sha256(payload + patient.encode()).digest(), "0xDevice", world.group_id,
            patient, now_ms, payload, b"\x01" * 65,
            tuple(Reading(seq + i, Vital.SPO2, 80.0, now_ms + i) for i in range(3)),
        )  # fmt: skip

    alerts, policy = world.running.alerts, world.running.policy
    with caplog.at_level(logging.DEBUG):
        for seq in range(0, 30, 3):
            message = low_spo2(BAD_PATIENT, seq)
            alerts.on_message(message)  # must not raise
            assert policy.evaluate(BAD_PATIENT, Vital.SPO2, 80.0) != NORMAL  # the defaults
    assert alerts.failing() == {pseudonym(BAD_PATIENT): "invalid_address"}
    assert policy.failing() == {pseudonym(BAD_PATIENT): "invalid_address"}
    about_bad = [r.getMessage() for r in caplog.records if pseudonym(BAD_PATIENT) in r.getMessage()]
    # once each: the alert rules, the threshold read, the recipients' warm-up
    assert len(about_bad) == 3, about_bad
    assert BAD_PATIENT not in caplog.text.lower()
    assert not any(r.exc_info for r in caplog.records)


def test_a_patient_without_a_key_is_logged_once_by_pseudonym(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 12 item 14: no warning per patient per second, and no address in it."""
    import logging

    from vitalchain.crypto import PrivateKey
    from vitalchain.logs import pseudonym

    quiet = PrivateKey.generate()
    world.ledger.fund(quiet.address)
    device = world.device(quiet)
    device.send(device.prepare([(Vital.SPO2, 97)] * 4))
    sealer = world.running.sealer
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            sealer.tick()
        assert sealer.status()["failing"] == {pseudonym(quiet.address): "no_reader_key"}
        world.ledger.publish_key(quiet)
        for _ in range(3):
            sealer.tick()
    assert sealer.status()["failing"] == {}
    assert world.running.gateway.store.blocks(world.group_id, quiet.address)
    tag = pseudonym(quiet.address)
    about = [(r.name, r.getMessage()) for r in caplog.records if tag in r.getMessage()]
    assert len(set(about)) == len(about), about  # each said once (the alerts' warm-up too)
    sealing = [text for name, text in about if name == "vitalchain.sealing.sealer"]
    assert len(sealing) == 2, sealing  # waiting, then sealed again
    assert "no published key" in sealing[0]
    assert "works again" in sealing[1]
    for address in (quiet.address, device.address):
        assert address.lower() not in caplog.text.lower()
