"""Issue 14 item 9: a provider's fetch and verify parse and decrypt each block once."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from vitalchain.crypto.block import SectionPlan, open_sections, seal_block
from vitalchain.crypto.keys import PrivateKey
from vitalchain.sdk.provider import FetchedBlock
from vitalchain.sdk.verify import Opened
from vitalchain.vitals import Vital
from vitalchain.wire.block import Block, BlockEntry, KeyEntry
from vitalchain.wire.telemetry import READING_CONTEXT, Payload, ReadingItem


def _sealed(reader: PrivateKey) -> tuple[Block, tuple[KeyEntry, ...]]:
    device = PrivateKey.generate()
    payload = Payload(1, device.address, 5, (ReadingItem(1, Vital.SPO2, 97, "%", 5),)).encode()
    entry = BlockEntry(device.address, payload, device.sign(payload, READING_CONTEXT).to_rsv())
    return seal_block(
        PrivateKey.generate(), group_id=1, patient=reader.address, number=1,
        previous=bytes(32), leaf_index=0, sealed_at_ms=5, sections=[SectionPlan(Vital.SPO2.bit, 1, [entry], [reader.public_key])],
    )  # fmt: skip


def test_fetch_and_verify_share_one_decryption(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = PrivateKey.generate()
    block, ring = _sealed(reader)
    calls: list[int] = []

    def counting(
        b: Block, ring: Sequence[KeyEntry], key: PrivateKey
    ) -> dict[int, list[BlockEntry]]:
        calls.append(b.number)
        return open_sections(b, ring, key)

    monkeypatch.setattr("vitalchain.sdk.verify.open_sections", counting)
    opened = Opened()
    data = block.encode()
    assert opened.block(data) is opened.block(bytes(data))  # parsed once
    fetched = FetchedBlock(opened.block(data), ring[0], opened)
    ((device, reading),) = fetched.readings(reader)
    assert reading.vital is Vital.SPO2
    messages = opened.messages(opened.block(data), ring, reader)  # what verify asks for
    assert messages[0].entry.device == device
    assert calls == [1]  # decrypted once for both
