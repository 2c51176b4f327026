"""The device's reading of what arrives on its ack topic (docs/spec/mqtt.md, "Cumulative
acknowledgements"), fed straight to ``MqttPublisher._on_message`` with no broker (the broker
path is tests/unit/gateway/test_receipts.py): a device that asks for cumulative acks still
reads v1 ones; a malformed cumulative ack is dropped, one naming nothing awaited too; a bad
receipt is ``invalid_receipt`` for what it covers, and a later valid answer replaces it."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

import paho.mqtt.client as mqtt

from vitalchain.crypto.keys import PrivateKey
from vitalchain.device.client import ReceiptBook
from vitalchain.device.mqtt import MqttPublisher
from vitalchain.wire.onboarding import MqttGrant
from vitalchain.wire.receipt import RECEIPT_CONTEXT, Covered, Receipt

MASTER = PrivateKey(bytes(31) + b"\x07")
DEVICE = PrivateKey(bytes(31) + b"\x09").address
SENT = [b"message %d" % i for i in range(3)]
IDS = [hashlib.sha256(m).hexdigest() for m in SENT]


def publisher() -> tuple[MqttPublisher, ReceiptBook]:
    grant = MqttGrant(
        host="127.0.0.1", port=1, username=DEVICE, password="x",
        telemetry_topic="t", ack_topic="a",
    )  # fmt: skip
    book = ReceiptBook(7, DEVICE, master=MASTER.address)
    mine = MqttPublisher(grant, receipts=book)  # never connected
    for message_id in IDS:
        mine._pending[message_id] = threading.Event()
    return mine, book


def arrive(mine: MqttPublisher, body: dict[str, Any] | bytes) -> None:
    message = mqtt.MQTTMessage(topic=b"a")
    message.payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    mine._on_message(message)


def signed(receipt: Receipt, key: PrivateKey = MASTER) -> Receipt:
    return receipt.signed(key.sign(receipt.signed_part(), RECEIPT_CONTEXT).to_rsv())


def cumulative(indexes: list[int], key: PrivateKey = MASTER) -> dict[str, Any]:
    entries = tuple(Covered(bytes.fromhex(IDS[i]), i, i) for i in indexes)
    receipt = signed(Receipt(7, DEVICE, entries, 1_000, key.address), key)
    return {
        "v": 2,
        "acks": [{"message_id": IDS[i], "accepted": 1, "last_seq": i} for i in indexes],
        "receipt": receipt.hex(),
    }


def test_a_device_that_asks_for_cumulative_acks_reads_v1_ones() -> None:
    mine, book = publisher()
    receipt = signed(Receipt.single(7, DEVICE, bytes.fromhex(IDS[0]), 0, 0, 1_000, MASTER.address))
    ack = {"v": 1, "accepted": 1, "last_seq": 0, "message_id": IDS[0], "receipt": receipt.hex()}
    arrive(mine, ack)
    assert mine._acks[IDS[0]] == ack
    assert book.receipts == [receipt]


def test_a_cumulative_ack_answers_each_message_it_covers() -> None:
    mine, book = publisher()
    ack = cumulative([0, 2])
    arrive(mine, ack)
    assert set(mine._acks) == {IDS[0], IDS[2]}
    assert mine._pending[IDS[0]].is_set()
    assert not mine._pending[IDS[1]].is_set()
    assert mine._acks[IDS[2]] == {**ack["acks"][1], "v": 2, "receipt": ack["receipt"]}
    assert len(book) == 1


def test_malformed_or_unawaited_cumulative_acks_are_dropped() -> None:
    mine, book = publisher()
    arrive(mine, b"{not json")
    arrive(mine, {"v": 2, "acks": "no", "receipt": "00"})
    arrive(mine, {"v": 2, "acks": [{"message_id": IDS[0]}], "receipt": "00"})
    arrive(mine, {"v": 2, "acks": [], "receipt": "00"})
    del mine._pending[IDS[1]]
    arrive(mine, cumulative([1]))  # no longer awaited: late, or from an earlier run
    assert mine._acks == {}
    assert len(book) == 0


def test_a_bad_receipt_is_refused_and_a_later_valid_answer_wins() -> None:
    mine, book = publisher()
    arrive(mine, cumulative([0, 1], key=PrivateKey.generate()))  # forged
    assert {mine._acks[m]["error"]["code"] for m in IDS[:2]} == {"invalid_receipt"}
    assert len(book) == 0
    arrive(mine, cumulative([0, 1]))
    assert all("error" not in mine._acks[m] for m in IDS[:2])
    assert len(book) == 1
    arrive(mine, {"v": 1, "error": {"code": "replayed", "message": "m"}, "message_id": IDS[0]})
    assert "error" not in mine._acks[IDS[0]]  # a refusal never replaces a success


def test_each_delivering_ack_is_handed_to_on_ack() -> None:
    """So a device over MQTT hears ``prove`` (its bands changed) as one over HTTP does."""
    grant = MqttGrant(
        host="127.0.0.1", port=1, username=DEVICE, password="x",
        telemetry_topic="t", ack_topic="a",
    )  # fmt: skip
    heard: list[dict[str, Any]] = []
    mine = MqttPublisher(grant, on_ack=lambda ack: heard.append(dict(ack)))
    for message_id in IDS:
        mine._pending[message_id] = threading.Event()
    arrive(mine, {"v": 1, "accepted": 1, "last_seq": 0, "message_id": IDS[0], "prove": True})
    arrive(mine, {"v": 1, "error": {"code": "replayed", "message": "x"}, "message_id": IDS[1]})
    assert [a.get("prove") for a in heard] == [True]
    body = cumulative([1, 2])
    body["acks"][1]["prove"] = True
    arrive(mine, body)
    assert [a.get("prove") for a in heard] == [True, None, True]
