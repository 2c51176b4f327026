"""Signed receipts (issue 17, docs/spec/receipt.md) on a real gateway and the embedded chain:
every acknowledgement carries the master's receipt over HTTP and MQTT (a real mosquitto),
the device SDK verifies it against the group's masters as the chain knows them, and refuses
a forged one, another group's master's and a tampered one with ``invalid_receipt``; after a
master rotation on TrustGroups, what the old master signed before still verifies.  Over MQTT,
a device that asks for cumulative acks has the messages stored together answered with one
v2 receipt; one that does not (an earlier release) gets one v1 ack and receipt per message."""

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
from vitalchain.wire.receipt import RECEIPT_CONTEXT, Covered, Receipt

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
    assert receipt.version == 1  # HTTP answers one message: v1, as every release reads
    assert receipt.only.message_hash == hashlib.sha256(message).digest()
    assert receipt.only.message_hash.hex() == ack["message_id"]
    assert (receipt.only.first_seq, receipt.only.last_seq) == (1, 2)
    assert (receipt.group_id, receipt.device) == (harness.gateway.group_id, device.address)
    assert receipt.gateway == harness.gateway.master.address
    assert before <= receipt.stored_at_ms <= after
    assert device.receipts is not None
    assert device.receipts.receipts[-1] == receipt
    assert len(device.receipts) == 2
    assert device.receipts.verify(receipt) == harness.gateway.master.address


def test_forged_foreign_and_tampered_receipts_are_refused(chain_harness: Harness) -> None:
    """On the embedded chain and on anvil (``chain_harness``)."""
    harness = chain_harness
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
    assert [r.only.message_hash for r in kept] == [hashlib.sha256(m).digest() for m in sent[2:]]


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


def mqtt_device(client: TestClient, ledger: Ledger) -> DeviceClient:
    device = DeviceClient(PrivateKey.generate(), next_id(), http=client, chain=ledger)
    device.onboard(enrol(client, ADMIN_TOKEN, PrivateKey.generate().address))
    assert device.session is not None
    assert device.session.mqtt is not None
    assert device.receipts is not None
    return device


def test_mqtt_acks_carry_one_receipt_per_range(
    live: tuple[RunningGateway, TestClient], ledger: Ledger
) -> None:
    """A device that does not ask for cumulative acks (an earlier release) is answered as
    before: a message of five readings is acknowledged with one v1 receipt over seqs 0..4
    (one signature for the range); the publisher verifies and keeps each, and answers a
    receipt the gateway's connection forged with ``invalid_receipt``."""
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
    with MqttPublisher(device.session.mqtt, receipts=device.receipts, cumulative=False) as mqtt:
        answers = mqtt.publish_many([batch, *singles])
        assert all("error" not in a for a in answers), answers
        receipts = [Receipt.from_hex(a["receipt"]) for a in answers]
        assert {r.version for r in receipts} == {1}
        assert [a["v"] for a in answers] == [1] * 4
        spans = [(r.only.first_seq, r.only.last_seq) for r in receipts]
        assert spans == [(0, 4), (5, 5), (6, 6), (7, 7)]
        assert [r.only.message_hash for r in receipts] == [
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


@contextlib.contextmanager
def held_receipts(running: RunningGateway) -> Iterator[threading.Event]:
    """Hold the bridge's first cumulative receipt until the event is set: what the store
    commits meanwhile is ready together when it is released, as under load."""
    core = running.gateway.ingest_core
    sign = core.receipt_for
    release = threading.Event()
    sizes: list[int] = []

    def held(group_id: int, device: str, acks: Any) -> bytes | None:
        sizes.append(len(acks))
        if len(sizes) == 1:
            release.wait(15)
        return sign(group_id, device, acks)

    core.receipt_for = held  # type: ignore[method-assign]
    try:
        yield release
    finally:
        release.set()
        core.receipt_for = sign  # type: ignore[method-assign]


def test_a_cumulative_ack_covers_every_message_stored_together(
    live: tuple[RunningGateway, TestClient], ledger: Ledger
) -> None:
    """Twenty messages stored while the bridge answers the first: the rest go out in one
    ack under one v2 receipt, which the device verifies, keeps once, and which marks each
    of the messages it covers delivered with its own entry."""
    running, client = live
    device = mqtt_device(client, ledger)
    assert device.session is not None
    assert device.session.mqtt is not None
    assert device.receipts is not None
    bridge = running.bridge
    assert bridge is not None
    sent = [device.prepare([(Vital.HEART_RATE, 60 + i)] * (1 + i % 2)) for i in range(20)]
    store = running.gateway.store
    with (
        MqttPublisher(device.session.mqtt, receipts=device.receipts) as mqtt,
        held_receipts(running) as release,
    ):
        results: list[list[dict[str, Any]]] = []
        worker = threading.Thread(target=lambda: results.append(mqtt.publish_many(sent)))
        worker.start()
        wait_for(
            lambda: len(store.messages(device=device.address)) == 20, "all twenty to be stored"
        )
        release.set()
        worker.join(timeout=15)
    [answers] = results
    assert all("error" not in a for a in answers), answers
    assert [a["message_id"] for a in answers] == [hashlib.sha256(m).hexdigest() for m in sent]
    assert {a["v"] for a in answers} == {2}
    receipts = [Receipt.from_hex(a["receipt"]) for a in answers]
    distinct = list(dict.fromkeys(receipts))
    assert len(distinct) == 2, [len(r.entries) for r in distinct]  # the first, then the rest
    assert device.receipts.receipts == distinct  # verified once each, kept once each
    for answer, receipt in zip(answers, receipts, strict=True):
        assert receipt.version == 2
        assert (receipt.group_id, receipt.device) == (running.gateway.group_id, device.address)
        assert receipt.gateway == running.gateway.master.address
        [entry] = [e for e in receipt.entries if e.message_hash.hex() == answer["message_id"]]
        assert entry.last_seq == answer["last_seq"]
    spans = [(e.first_seq, e.last_seq) for r in distinct for e in r.entries]
    assert spans == [(3 * i // 2, 3 * i // 2 + i % 2) for i in range(20)]
    assert bridge.receipts == 2
    assert bridge.status().acknowledged == 20


def test_at_low_load_each_message_has_its_own_cumulative_receipt(
    live: tuple[RunningGateway, TestClient], ledger: Ledger
) -> None:
    """One message at a time: nothing is held back to wait for company."""
    _, client = live
    device = mqtt_device(client, ledger)
    assert device.session is not None
    assert device.session.mqtt is not None
    with MqttPublisher(device.session.mqtt, receipts=device.receipts) as mqtt:
        for i in range(3):
            answer = mqtt.publish(device.prepare([(Vital.SPO2, 95 + i)]))
            receipt = Receipt.from_hex(answer["receipt"])
            assert (receipt.version, receipt.only.first_seq) == (2, i)
    assert device.receipts is not None
    assert len(device.receipts) == 3


def forged_cumulative(
    running: RunningGateway, device: DeviceClient, messages: list[bytes], *, key: PrivateKey
) -> dict[str, Any]:
    """A ``"v": 2`` ack over ``messages`` (their hashes, seqs 0.., one reading each), its
    receipt signed by ``key`` and naming it as the gateway."""
    receipt = sign(
        Receipt(
            running.gateway.group_id,
            device.address,
            tuple(Covered(hashlib.sha256(m).digest(), seq, seq) for seq, m in enumerate(messages)),
            int(time.time() * 1000),
            key.address,
        ),
        key,
    )
    return {
        "v": 2,
        "acks": [
            {"message_id": e.message_hash.hex(), "accepted": 1, "last_seq": e.last_seq}
            for e in receipt.entries
        ],
        "receipt": receipt.hex(),
    }


@pytest.mark.parametrize("case", ["names_a_message_not_sent", "forged", "foreign_master"])
def test_a_bad_cumulative_ack_is_refused_invalid_receipt(
    live: tuple[RunningGateway, TestClient], ledger: Ledger, case: str
) -> None:
    """The gateway's connection sends the device a cumulative ack before the true answer:
    one whose genuine master receipt also covers a message the device never sent, one signed
    by a key of nobody's, one by another group's real master.  Each is refused
    ``invalid_receipt`` for the message the device waits for (the true answer, ``replayed``
    for a resent message, does not replace it), and nothing of it is kept."""
    running, client = live
    device = mqtt_device(client, ledger)
    assert device.session is not None
    assert device.session.mqtt is not None
    assert device.receipts is not None
    bridge = running.bridge
    assert bridge is not None
    first = device.prepare([(Vital.SPO2, 97)])  # seq 0
    never_sent = device.prepare([(Vital.SPO2, 98)])  # seq 1, never published
    if case == "names_a_message_not_sent":
        key = running.gateway.master
        fake = forged_cumulative(running, device, [first, never_sent], key=key)
    elif case == "forged":
        fake = forged_cumulative(running, device, [first], key=PrivateKey.generate())
    else:
        other = PrivateKey.generate()
        ledger.fund(other.address)
        ledger.create_group(other, next_id(), next_id())
        fake = forged_cumulative(running, device, [first], key=other)
    with MqttPublisher(device.session.mqtt, receipts=device.receipts) as mqtt:
        assert "error" not in mqtt.publish(first)
        kept = len(device.receipts)
        lock = running.gateway.ingest_core._lock_for(device.address)
        results: list[dict[str, Any]] = []
        received = bridge.status().received
        with lock:  # hold the resent copy's answer ("replayed") until the fake is in
            worker = threading.Thread(target=lambda: results.append(mqtt.publish_many([first])[0]))
            worker.start()
            wait_for(lambda: bridge.status().received > received, "the gateway to receive it")
            topic = ack_topic(running.gateway.group_id, device.address)
            bridge.publish(topic, json.dumps(fake).encode())
            wait_for(lambda: not worker.is_alive() or mqtt._acks, "the fake to arrive")
        worker.join(timeout=15)
    assert len(results) == 1
    assert results[0]["error"]["code"] == "invalid_receipt", results
    assert len(device.receipts) == kept  # the bad receipt was not kept
