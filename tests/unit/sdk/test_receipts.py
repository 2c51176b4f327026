"""``check_receipts`` (issue 17, items 3 and 4) on a real node and the embedded chain: a
device's receipts verify against the group's masters and are found in sealed, anchored
blocks; a forged one, another group's master's and a flipped bit are each named
``receipt_signature``; a gateway that deletes a stored message before sealing it is caught
as ``receipt_not_sealed``, naming the device and the seq it dropped.  Cumulative (v2)
receipts are checked the same way, message by message, beside v1 ones."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.gateway import next_id
from tests.support.node import World
from tests.support.portal import seal_all
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.errors import DecodeError
from vitalchain.ledger.events import MASTER_ROTATED
from vitalchain.sdk.receipts import (
    SEAL_GRACE_S,
    ReceiptReport,
    check_receipts,
    read_receipts,
    receipts_json,
    write_receipts,
)
from vitalchain.sdk.verify import Outcome
from vitalchain.vitals import Vital
from vitalchain.wire.receipt import RECEIPT_CONTEXT, Receipt
from vitalchain.wire.telemetry import Ack

Drop = Callable[[Receipt | bytes], None]  # a v1 receipt's message, or a message hash


def sign(receipt: Receipt, key: PrivateKey) -> Receipt:
    return receipt.signed(key.sign(receipt.signed_part(), RECEIPT_CONTEXT).to_rsv())


def kept(device: DeviceClient) -> list[Receipt]:
    assert device.receipts is not None
    return device.receipts.receipts


def sending(world: World, messages: int = 3) -> tuple[PrivateKey, DeviceClient]:
    """A patient whose device sent ``messages`` messages (seqs 0, 1..2, 3, 4..5, ...)."""
    patient = world.patient()
    device = world.device(patient)
    for i in range(messages):
        readings = [(Vital.SPO2, 95 + i)] if i % 2 == 0 else [(Vital.HEART_RATE, 60 + i)] * 2
        device.send(device.prepare(readings))
    assert len(kept(device)) == messages
    return patient, device


def checked(
    world: World,
    patient: PrivateKey,
    receipts: list[Receipt],
    *,
    grace_s: float = SEAL_GRACE_S,
    now_ms: int | None = None,
) -> ReceiptReport:
    client = world.reader(patient)
    blocks = client.fetch(world.group_id, patient.address)
    return check_receipts(
        receipts,
        world.ledger,
        blocks=blocks,
        reader=patient,
        source=client.source,
        grace_s=grace_s,
        now_ms=now_ms,
    )


def named(report: ReceiptReport, outcome: Outcome) -> Counter[str]:
    return Counter(c.name for c in report.checks if c.outcome is outcome)


@pytest.fixture
def drop(world: World) -> Drop:
    """Tampering: the gateway deletes a message it stored (and receipted) from its journal,
    with SQL on its own database, before the sealer sees it."""
    journal = world.running.gateway.store.journal
    path = getattr(journal, "path")  # noqa: B009 - SqliteJournal's, not on the protocol

    def delete(receipt: Receipt | bytes) -> None:
        message_id = receipt if isinstance(receipt, bytes) else receipt.only.message_hash
        db = sqlite3.connect(path)
        try:
            db.execute("PRAGMA foreign_keys=ON")  # its readings go with it
            gone = db.execute("DELETE FROM messages WHERE message_id = ?", (message_id,))
            assert gone.rowcount == 1
            db.commit()
        finally:
            db.close()

    return delete


def test_receipts_of_sealed_anchored_readings_verify(world: World) -> None:
    patient, device = sending(world)
    receipts = kept(device)
    seal_all(world, patient, anchor=False)
    pending = checked(world, patient, receipts)
    assert pending.ok, pending.failures
    assert (pending.verified, pending.sealed, pending.anchored) == (3, 3, 0)
    assert named(pending, Outcome.PENDING)["receipt_sealed"] >= 1  # sealed, not anchored yet
    world.running.sealer.anchor()
    report = checked(world, patient, receipts + receipts[:1])  # a duplicate counts once
    assert report.ok, report.failures
    assert (report.collected, report.verified, report.sealed, report.anchored) == (3, 3, 3, 3)
    assert report.not_sealed == 0
    assert named(report, Outcome.OK)["receipt_signature"] == 1
    assert named(report, Outcome.OK)["inclusion"] >= 1  # verify_patient's checks are in it
    assert not named(report, Outcome.PENDING)
    # without a key to open the blocks, only the signatures are judged
    alone = check_receipts(receipts, world.ledger)
    assert alone.ok
    assert [(c.name, c.outcome) for c in alone.checks] == [
        ("receipt_signature", Outcome.OK),
        ("receipt_sealed", Outcome.SKIPPED),
    ]


def test_forged_foreign_and_flipped_receipts_are_named(world: World) -> None:
    _, device = sending(world, messages=1)
    good = kept(device)[0]
    forger = PrivateKey.generate()
    other = PrivateKey.generate()
    world.ledger.fund(other.address)
    world.ledger.create_group(other, next_id(), next_id())
    flipped = bytearray(good.encode())
    flipped[120] ^= 0x08  # a bit of the signature
    later = bytearray(good.encode())
    later[86] ^= 0x01  # a bit of stored_at_ms
    bad = [
        sign(replace(good, gateway=forger.address), forger),  # forged, naming itself
        sign(good, forger),  # forged, naming the real master
        sign(replace(good, gateway=other.address), other),  # another group's master
        Receipt.parse(bytes(flipped)),
        Receipt.parse(bytes(later)),
    ]
    report = check_receipts([good, *bad], world.ledger)
    assert not report.ok
    assert report.verified == 1
    failures = report.failures
    assert [c.name for c in failures] == ["receipt_signature"] * 5
    assert all(good.device in c.detail for c in failures)
    assert "not the group's master" in failures[2].detail
    assert "not signed by the gateway it names" in failures[1].detail


def test_a_dropped_message_is_named_by_device_and_seq(world: World, drop: Drop) -> None:
    patient, device = sending(world, messages=3)  # seqs 0 | 1, 2 | 3
    receipts = kept(device)
    assert (receipts[1].only.first_seq, receipts[1].only.last_seq) == (1, 2)
    drop(receipts[1])  # acknowledged, then deleted before sealing
    seal_all(world, patient)
    report = checked(world, patient, receipts)
    assert not report.ok
    [failure] = report.failures
    assert failure.name == "receipt_not_sealed"
    assert failure.outcome is Outcome.FAILED
    assert device.address in failure.detail
    assert "seqs 1..2" in failure.detail
    assert "a later reading of the device is sealed" in failure.detail
    assert (report.verified, report.sealed, report.anchored, report.not_sealed) == (3, 2, 2, 1)
    # everything verify_patient checks still passes: the blocks themselves are honest
    assert {c.name for c in report.checks if c.outcome is Outcome.OK} >= {
        "inclusion",
        "payload",
        "receipt_sealed",
        "receipt_signature",
    }


def test_the_newest_dropped_message_is_pending_until_the_grace_ends(
    world: World, drop: Drop
) -> None:
    patient, device = sending(world, messages=2)
    receipts = kept(device)
    drop(receipts[-1])
    seal_all(world, patient)
    report = checked(world, patient, receipts)
    assert report.ok  # nothing later sealed, and recent: it may be sealed yet
    [waiting] = [c for c in report.checks if c.name == "receipt_not_sealed"]
    assert waiting.outcome is Outcome.PENDING
    assert "seqs 1..2" in waiting.detail
    late = checked(world, patient, receipts, grace_s=0, now_ms=int(time.time() * 1000) + 1)
    assert [c.name for c in late.failures] == ["receipt_not_sealed"]
    assert "stored more than 0 s ago" in late.failures[0].detail


def test_receipts_from_before_a_master_rotation_still_verify(world: World) -> None:
    _, device = sending(world, messages=2)
    before = kept(device)
    old, new = world.running.gateway.master, PrivateKey.generate()
    world.ledger.rotate_master(old, world.group_id, new)
    [rotation] = world.ledger.events.query(MASTER_ROTATED.name, groupId=world.group_id)
    ended = world.ledger.timestamp(rotation.block_number)
    after_term = sign(replace(before[0], stored_at_ms=(ended + 1) * 1000), old)
    by_new = sign(replace(before[0], gateway=new.address, stored_at_ms=(ended + 1) * 1000), new)
    report = check_receipts([*before, after_term, by_new], world.ledger)
    assert report.verified == 3
    [failure] = report.failures
    assert failure.name == "receipt_signature"
    assert "not the group's master at that time" in failure.detail


def test_the_receipts_file_round_trips_private(world: World, tmp_path: Path) -> None:
    _, device = sending(world, messages=2)
    path = tmp_path / "out" / "receipts.json"
    write_receipts(path, kept(device))
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_receipts(path) == kept(device)
    assert receipts_json(kept(device)).startswith('{"v": 1, "receipts": ["5643740')


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (b"\xff\xfe", "bad_receipts", "not JSON"),
        (b"[]", "bad_receipts", "expected an object"),
        (b'{"v": 2, "receipts": []}', "unknown_version", "unknown version 2"),
        (b'{"v": true, "receipts": []}', "unknown_version", "unknown version"),
        (b'{"v": 1, "receipts": "00"}', "bad_receipts", "list of hex"),
        (b'{"v": 1, "receipts": ["zz"]}', "bad_receipts", "receipt 0: receipt: the receipt"),
        (b'{"v": 1, "receipts": ["5643740100"]}', "bad_receipts", "truncated"),
    ],
)
def test_a_bad_receipts_file_is_refused_by_code(
    tmp_path: Path, content: bytes, code: str, words: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(DecodeError) as err:
        read_receipts(path)
    assert err.value.code == code
    assert words in err.value.message


def test_readings_outside_a_providers_consent_are_skipped_not_failed(world: World) -> None:
    """A SpO2-only provider cannot see the BP readings: their receipts are not evidence of
    anything it can judge (skipped), while the SpO2 ones verify as sealed and anchored."""
    patient = world.patient()
    nurse = world.provider()
    world.consent(patient, nurse, Vital.SPO2)
    device = world.device(patient)
    device.send(device.prepare([(Vital.SPO2, 96)]))
    device.send(device.prepare([(Vital.SYSTOLIC_BP, 120), (Vital.DIASTOLIC_BP, 80)]))
    device.send(device.prepare([(Vital.SPO2, 97)]))
    seal_all(world, patient)
    client = world.reader(nurse)
    blocks = client.fetch(world.group_id, patient.address)
    report = check_receipts(
        kept(device), world.ledger, blocks=blocks, reader=nurse, source=client.source
    )
    assert report.ok, report.failures
    assert (report.verified, report.sealed, report.anchored, report.not_sealed) == (3, 2, 2, 0)
    [skipped] = [
        c for c in report.checks if c.name == "receipt_sealed" and c.outcome is Outcome.SKIPPED
    ]
    assert "1 receipted message(s) not found in what this key reads" in skipped.detail
    # the patient's own key reads everything: all three are found
    mine = checked(world, patient, kept(device))
    assert (mine.sealed, mine.anchored) == (3, 3)


def cumulative_of(world: World, device: DeviceClient, singles: list[Receipt]) -> Receipt:
    """The master's cumulative (v2) receipt over the messages of ``singles``, signed by the
    gateway's ingest core as its MQTT bridge has it sign one for messages settled together."""
    acks = [
        Ack(1, r.only.last_seq, r.only.message_hash, first_seq=r.only.first_seq) for r in singles
    ]
    raw = world.running.gateway.ingest_core.receipt_for(world.group_id, device.address, acks)
    assert raw is not None
    receipt = Receipt.parse(raw)
    assert (receipt.version, len(receipt.entries)) == (2, len(singles))
    return receipt


def test_cumulative_receipts_are_checked_message_by_message(world: World, drop: Drop) -> None:
    """A v2 receipt beside a v1 one: each message it covers is matched by device and seqs;
    the one the gateway dropped is named ``receipt_not_sealed`` with its seqs, the others
    count as sealed and anchored."""
    patient, device = sending(world, messages=5)  # seqs 0 | 1, 2 | 3 | 4, 5 | 6
    singles = kept(device)
    cumulative = cumulative_of(world, device, singles[1:4])  # seqs 1..2, 3, 4..5
    seal_all(world, patient)
    report = checked(world, patient, [singles[0], cumulative, singles[4]])
    assert report.ok, report.failures
    assert (report.collected, report.verified, report.messages) == (3, 3, 5)
    assert (report.sealed, report.anchored, report.not_sealed) == (3, 3, 0)  # receipts

    patient, device = sending(world, messages=4)  # another patient: seqs 0 | 1, 2 | 3 | 4, 5
    singles = kept(device)
    cumulative = cumulative_of(world, device, singles[:3])
    drop(singles[1].only.message_hash)  # acknowledged (in the cumulative one), then deleted
    seal_all(world, patient)
    report = checked(world, patient, [cumulative, singles[3]])
    assert not report.ok
    [failure] = report.failures
    assert failure.name == "receipt_not_sealed"
    assert failure.outcome is Outcome.FAILED
    assert device.address in failure.detail
    assert "seqs 1..2" in failure.detail
    assert "a later reading of the device is sealed" in failure.detail
    # the cumulative receipt is not sealed whole; the finding counts the one message
    assert (report.verified, report.messages, report.sealed, report.not_sealed) == (2, 4, 1, 1)


def test_a_bad_cumulative_receipt_is_named(world: World) -> None:
    _, device = sending(world, messages=3)
    good = cumulative_of(world, device, kept(device))
    forger = PrivateKey.generate()
    flipped = bytearray(good.encode())
    flipped[70] ^= 0x01  # a bit of the first message's hash
    bad = [sign(replace(good, gateway=forger.address), forger), Receipt.parse(bytes(flipped))]
    report = check_receipts([good, *bad], world.ledger)
    assert report.verified == 1
    assert [c.name for c in report.failures] == ["receipt_signature"] * 2
    assert "3 messages, seqs 0..3" in report.failures[0].detail


def test_the_receipts_file_holds_v1_and_v2_alike(world: World, tmp_path: Path) -> None:
    _, device = sending(world, messages=3)
    both = [*kept(device), cumulative_of(world, device, kept(device))]
    path = tmp_path / "receipts.json"
    write_receipts(path, both)
    assert read_receipts(path) == both
    assert receipts_json(both).startswith('{"v": 1, "receipts": ["5643740')
    assert '"5643740200' in receipts_json(both)
