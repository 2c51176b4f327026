"""Sealed blocks, version 2 (one section per consent scope) and version 1 (the vector).

The version-1 vector was sealed by the last v1 sealer (commit 6446071): tests/vectors/
PROVENANCE.md.  Reading it with today's code is the "old version stays readable" promise.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from vitalchain.crypto.block import (
    SectionPlan,
    open_payload,
    open_sections,
    read_block,
    seal_block,
    share_block,
    verify_block_signature,
)
from vitalchain.crypto.keys import PrivateKey
from vitalchain.errors import DecodeError, DecryptionError, InvalidSignature
from vitalchain.sdk.verify import read_messages
from vitalchain.vitals import Vital, scope_of
from vitalchain.wire.block import BlockEntry, KeyEntry
from vitalchain.wire.telemetry import READING_CONTEXT, Payload, ReadingItem

VECTOR = json.loads((Path(__file__).parents[2] / "vectors" / "block_v1.json").read_text())
BP = scope_of(Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP)


def _key(label: str) -> PrivateKey:
    return PrivateKey(hashlib.sha256(label.encode()).digest())


def _entry(device: PrivateKey, *readings: tuple[Vital, float]) -> BlockEntry:
    items = tuple(ReadingItem(i, v, x, v.info.unit, 5) for i, (v, x) in enumerate(readings))
    payload = Payload(1, device.address, 5, items).encode()
    return BlockEntry(device.address, payload, device.sign(payload, READING_CONTEXT).to_rsv())


def _two_sections() -> tuple[PrivateKey, PrivateKey, PrivateKey, bytes, tuple[KeyEntry, ...]]:
    gateway, patient, nurse, device = (PrivateKey.generate() for _ in range(4))
    block, ring = seal_block(
        gateway, group_id=1, patient=patient.address, number=1, previous=bytes(32),
        leaf_index=0, sealed_at_ms=5,
        sections=[
            SectionPlan(BP, 2, [_entry(device, (Vital.SYSTOLIC_BP, 120), (Vital.DIASTOLIC_BP, 80))],
                        [patient.public_key]),
            SectionPlan(Vital.SPO2.bit, 1, [_entry(device, (Vital.SPO2, 97))],
                        [patient.public_key, nurse.public_key]),
        ],
    )  # fmt: skip
    return gateway, patient, nurse, block.encode(), ring


def test_each_reader_opens_exactly_the_sections_wrapped_for_it() -> None:
    _, patient, nurse, data, ring = _two_sections()
    block = read_block(data)
    assert block.version == 2
    verify_block_signature(block)
    assert sorted(open_sections(block, ring, patient)) == [0, 1]
    assert sorted(open_sections(block, ring, nurse)) == [1]
    (only,) = read_messages(open_payload(block, ring, nurse))
    assert [r.vital for r in only.payload.readings] == [Vital.SPO2]
    with pytest.raises(DecryptionError):
        open_sections(block, ring, PrivateKey.generate())


def test_a_withheld_section_keeps_the_signature_and_a_changed_one_breaks_it() -> None:
    _, _, nurse, data, ring = _two_sections()
    block = read_block(data)
    shown = read_block(block.redacted([1]).encode())
    verify_block_signature(shown)  # the signature covers digests, not ciphertext
    assert shown.hash == block.hash
    assert sorted(open_sections(shown, ring, nurse)) == [1]
    payload = block.sections[1].payload
    assert payload is not None
    flipped = bytes([payload[0] ^ 1]) + payload[1:]
    forged = replace(
        block, sections=(block.sections[0], replace(block.sections[1], payload=flipped))
    )
    with pytest.raises(InvalidSignature):
        verify_block_signature(forged)


def test_a_section_cannot_be_moved_or_relabelled() -> None:
    """Each section's AAD names its index and scope: swapping heads breaks decryption."""
    _, patient, _, data, ring = _two_sections()
    block = read_block(data)
    relabelled = replace(
        block,
        sections=(
            replace(block.sections[0], scope=block.sections[0].scope | Vital.GLUCOSE.bit),
            block.sections[1],
        ),
        vitals=block.vitals | Vital.GLUCOSE.bit,
    )
    with pytest.raises(DecryptionError):
        open_sections(read_block(relabelled.encode()), ring, patient)


def test_sharing_an_old_block_wraps_only_the_sections_inside_the_scope() -> None:
    _, patient, _, data, ring = _two_sections()
    block = read_block(data)
    doctor = PrivateKey.generate()
    entry = share_block(block, ring, patient, doctor.public_key, Vital.SPO2.bit)
    assert entry.sections == [1]
    assert sorted(open_sections(block, (*ring, entry), doctor)) == [1]
    with pytest.raises(DecryptionError):  # nothing of the patient's is inside glucose
        share_block(block, ring, patient, doctor.public_key, Vital.GLUCOSE.bit)


def test_sealing_refuses_no_sections() -> None:
    with pytest.raises(ValueError, match="sections"):
        seal_block(PrivateKey.generate(), group_id=1, patient=_key("p").address, number=1,
                   previous=bytes(32), leaf_index=0, sealed_at_ms=5, sections=[])  # fmt: skip


def test_a_version_1_block_from_the_old_sealer_still_reads_verifies_and_opens() -> None:
    data = bytes.fromhex(VECTOR["block"])
    block = read_block(data)
    assert block.version == 1
    assert block.encode() == data
    assert block.hash.hex() == VECTOR["block_hash"]
    assert block.leaf.hex() == VECTOR["leaf"]
    assert block.gateway == _key("gateway").address
    verify_block_signature(block)
    ring = tuple(KeyEntry.parse(bytes.fromhex(h)) for h in VECTOR["stanzas"].values())
    for reader in ("patient", "doctor"):
        messages = read_messages(open_payload(block, ring, _key(reader)))
        assert [m.entry.payload.decode() for m in messages] == [
            m["payload"] for m in VECTOR["messages"]
        ]
        assert {r.vital for m in messages for r in m.payload.readings} == {
            Vital.SPO2, Vital.HEART_RATE, Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP,
        }  # fmt: skip
    with pytest.raises(ValueError, match="version-1"):
        block.redacted([])
    tampered = data[:-70] + bytes([data[-70] ^ 1]) + data[-69:]  # a gateway address byte
    with pytest.raises(InvalidSignature):
        verify_block_signature(read_block(tampered))
    with pytest.raises(DecodeError):
        read_block(data[:-1])
