"""Signed receipts (issue 17, docs/spec/receipt.md) on a real gateway and the embedded chain:
every acknowledgement carries the master's receipt over HTTP and MQTT (a real mosquitto),
the device SDK verifies it against the group's masters as the chain knows them, and refuses
a forged one, another group's master's and a tampered one with ``invalid_receipt``; after a
master rotation on TrustGroups, what the old master signed before still verifies."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.gateway import ADMIN_TOKEN, Harness, make_harness, next_id, settings_for
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.device.mqtt import MqttPublisher
from vitalchain.device.simulator import enrol
from vitalchain.gateway.app import create_app
from vitalchain.ledger import Ledger
from vitalchain.ledger.events import MASTER_ROTATED
from vitalchain.node import RunningGateway, running_gateway
from vitalchain.vitals import Vital
from vitalchain.wire.mqtt import ack_topic
from vitalchain.wire.receipt import RECEIPT_CONTEXT, Receipt

BP = [(Vital.SYSTOLIC_BP, 128), (Vital.DIASTOLIC_BP, 84)]


def sign(receipt: Receipt, key: PrivateKey) -> Receipt:
    return receipt.signed(key.sign(receipt.signed_part(), RECEIPT_CONTEXT).to_rsv())


def refused(device: DeviceClient, ack: dict[str, Any], message: bytes) -> str:
    with pytest.raises(DeviceError) as err:
        device.check_receipt(ack, message)
    return err.value.code


def test_an_http_ack_carries_a_receipt_that_verifies(harness: Harness) -> None:
    device = harness.onboarded(chain=harness.ledger)
    device.send(device.prepare([(Vital.SPO2, 97)]))  # seq 0
    message = device.prepare(BP)  # seqs 1, 2
    before = int(time.time() * 1000)
    ack = device.send(message)  # verified by the SDK, or it raises
    after = int(time.time() * 1000)
    receipt = Receipt.from_hex(ack["receipt"])
    assert receipt.message_hash == hashlib.sha256(message).digest()
    assert receipt.message_hash.hex() == ack["message_id"]
    assert (receipt.first_seq, receipt.last_seq) == (1, 2)
    assert (receipt.group_id, receipt.device) == (harness.gateway.group_id, device.address)
    assert receipt.gateway == harness.gateway.master.address
    assert before <= receipt.stored_at_ms <= after
    assert device.receipts is not None
    assert device.receipts.receipts[-1] == receipt
    assert len(device.receipts) == 2
    assert device.receipts.verify(receipt) == harness.gateway.master.address


def test_forged_foreign_and_tampered_receipts_are_refused(harness: Harness) -> None:
    device = harness.onboarded(chain=harness.ledger)
    message = device.prepare([(Vital.SPO2, 97)])
    ack = device.send(message)
    good = Receipt.from_hex(ack["receipt"])
    kept = len(device.receipts or [])

    def with_receipt(receipt: Receipt | str | None) -> dict[str, Any]:
        text = receipt.hex() if isinstance(receipt, Receipt) else receipt
        return {**ack, "receipt": text}

    # forged: a key of nobody's, naming itself, or naming the real master
    forger = PrivateKey.generate()
    assert (
        refused(device, with_receipt(sign(replace(good, gateway=forger.address), forger)), message)
        == "invalid_receipt"
    )
    assert refused(device, with_receipt(sign(good, forger)), message) == "invalid_receipt"
    # another group's master, real on the same chain
    other = PrivateKey.generate()
    harness.ledger.fund(other.address)
    harness.ledger.create_group(other, next_id(), next_id())
    foreign = sign(replace(good, gateway=other.address), other)
    assert refused(device, with_receipt(foreign), message) == "invalid_receipt"
    other_group = sign(replace(good, group_id=good.group_id + 1), harness.gateway.master)
    assert refused(device, with_receipt(other_group), message) == "invalid_receipt"
    # a flipped bit in the signature, in the stored-at time, in the header
    raw = bytearray(good.encode())
    for bit in (8 * 120 + 3, 8 * 70, 8 * 3):
        flipped = bytearray(raw)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert refused(device, with_receipt(flipped.hex()), message) == "invalid_receipt"
    # the master's genuine receipt, for another message, or other seqs than the ack's
    assert refused(device, with_receipt(good), message + b"x") == "invalid_receipt"
    assert refused(device, {**ack, "last_seq": ack["last_seq"] + 1}, message) == "invalid_receipt"
    # none at all (a gateway of an earlier release): not delivered
    assert refused(device, with_receipt(None), message) == "invalid_receipt"
    assert len(device.receipts or []) == kept  # nothing refused was kept
    device.check_receipt(ack, message)  # the genuine one still passes


def test_the_book_is_bounded_and_rotates(harness: Harness) -> None:
    device = harness.onboarded(chain=harness.ledger, receipts_kept=3)
    sent = [device.prepare([(Vital.SPO2, 90 + i)]) for i in range(5)]
    for message in sent:
        device.send(message)
    assert device.receipts is not None
    kept = device.receipts.receipts
    assert [r.message_hash for r in kept] == [hashlib.sha256(m).digest() for m in sent[2:]]


@pytest.fixture
def chain_harness(any_chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[Harness]:
    """A gateway of its own on the embedded chain, then on anvil (its group is rotated)."""
    with contextlib.contextmanager(make_harness)(any_chain[0], tmp_path / "gw", next_id()) as h:
        yield h


def test_after_a_master_rotation_earlier_receipts_still_verify(chain_harness: Harness) -> None:
    """The gateway keeps signing with the old key after the chain rotated it out: what it
    stored before the rotation verifies, what it stores after is refused; the new master's
    receipts verify."""
    h = chain_harness
    device = h.onboarded(chain=h.ledger)
    assert device.receipts is not None
    assert device.receipts.masters is not None
    device.receipts.masters.max_age_s = 0  # read the chain for every receipt
    for value in (95, 96):
        device.send(device.prepare([(Vital.SPO2, value)]))
    before = device.receipts.receipts
    old, new = h.gateway.master, PrivateKey.generate()
    h.ledger.rotate_master(old, h.gateway.group_id, new)
    [rotation] = h.ledger.events.query(MASTER_ROTATED.name, groupId=h.gateway.group_id)
    rotated_at = h.ledger.timestamp(rotation.block_number)
    assert [device.receipts.verify(r) for r in before] == [old.address] * 2
    # the old key, still in the gateway, signs a receipt dated after its term ended
    later = max(time.time(), rotated_at + 2)
    h.gateway.clock = lambda: later
    with pytest.raises(DeviceError) as err:
        device.send(device.prepare([(Vital.SPO2, 97)], at_ms=int(later * 1000)))
    assert err.value.code == "invalid_receipt"
    assert len(device.receipts) == 2  # stored by the gateway, but not delivered
    # the same facts signed by the new master verify, and so do the old receipts
    after = replace(before[-1], gateway=new.address, stored_at_ms=int(later * 1000))
    assert device.receipts.verify(sign(after, new)) == new.address
    old_after = replace(before[-1], stored_at_ms=(rotated_at + 1) * 1000)
    with pytest.raises(DeviceError):
        device.receipts.verify(sign(old_after, old))
    assert device.receipts.verify(
        sign(replace(old_after, stored_at_ms=rotated_at * 1000 + 999), old)
    )


# --- MQTT ---------------------------------------------------------------------------------------


@pytest.fixture
def live(ledger: Ledger, tmp_path: Path) -> Iterator[tuple[RunningGateway, TestClient]]:
    settings = settings_for(tmp_path / "gateway", mqtt=True)
    with (
        running_gateway(settings, ledger=ledger) as running,
        TestClient(create_app(running.gateway)) as client,
    ):
        assert running.bridge is not None, "mosquitto must be installed (make setup installs it)"
        yield running, client


def test_mqtt_acks_carry_one_receipt_per_range(
    live: tuple[RunningGateway, TestClient], ledger: Ledger
) -> None:
    """A message of five readings is acknowledged with one receipt over seqs 0..4 (one
    signature for the range); the publisher verifies and keeps each, and answers a receipt
    the gateway's connection forged with ``invalid_receipt``."""
    running, client = live
    device = DeviceClient(PrivateKey.generate(), next_id(), http=client, chain=ledger)
    device.onboard(enrol(client, ADMIN_TOKEN, PrivateKey.generate().address))
    assert device.session is not None
    assert device.session.mqtt is not None
    bridge = running.bridge
    assert bridge is not None
    assert device.receipts is not None
    batch = device.prepare([(Vital.HEART_RATE, 60 + i) for i in range(5)])  # seqs 0..4
    singles = [device.prepare([(Vital.SPO2, 95 + i)]) for i in range(3)]  # seqs 5, 6, 7
    with MqttPublisher(device.session.mqtt, receipts=device.receipts) as mqtt:
        answers = mqtt.publish_many([batch, *singles])
        assert all("error" not in a for a in answers), answers
        receipts = [Receipt.from_hex(a["receipt"]) for a in answers]
        assert [(r.first_seq, r.last_seq) for r in receipts] == [(0, 4), (5, 5), (6, 6), (7, 7)]
        assert [r.message_hash for r in receipts] == [
            hashlib.sha256(m).digest() for m in [batch, *singles]
        ]
        assert device.receipts.receipts == receipts  # verified as they arrived, and kept
        assert {r.gateway for r in receipts} == {running.gateway.master.address}

        # A resent message is answered "replayed"; hold its device's ingest so that a forged
        # success reaches the device first, on the same topic from the same client (in order).
        forger = PrivateKey.generate()
        forged = sign(replace(receipts[1], gateway=forger.address), forger)
        fake = {**answers[1], "receipt": forged.hex()}
        lock = running.gateway.ingest_core._lock_for(device.address)
        results: list[Any] = []
        received = bridge.status().received
        with lock:
            worker = threading.Thread(
                target=lambda: results.append(mqtt.publish_many([singles[0]])[0])
            )
            worker.start()
            wait_for(lambda: bridge.status().received > received, "the gateway to receive it")
            topic = ack_topic(running.gateway.group_id, device.address)
            bridge.publish(topic, json.dumps(fake).encode())
        worker.join(timeout=15)
        assert len(results) == 1
        assert results[0]["error"]["code"] == "invalid_receipt", results
    assert len(device.receipts) == 4  # the forged one was not kept
