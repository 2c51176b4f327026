"""HTTP telemetry: accepted readings are stored; every refusal is coded and stores nothing."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.support.gateway import Harness, error_code
from vitalchain.crypto import Aead, PrivateKey, Suite
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.vitals import Vital
from vitalchain.wire.telemetry import READING_CONTEXT


def craft(
    device: DeviceClient,
    *,
    edit: Callable[[dict[str, Any]], None] | None = None,
    signer: PrivateKey | None = None,
    raw_payload: bytes | None = None,
) -> bytes:
    """A data message built by hand, so tests can break exactly one thing."""
    now = int(time.time() * 1000)
    body: dict[str, Any] = {
        "v": 1,
        "group": device.session.group_id if device.session else 0,
        "device": device.address,
        "sent_at": now,
        "readings": [
            {"seq": device.next_seq(), "vital": "spo2", "value": 97, "unit": "%", "t": now}
        ],
    }
    if edit:
        edit(body)
    payload = raw_payload if raw_payload is not None else json.dumps(body).encode()
    sig = (signer or device.key).sign(payload, READING_CONTEXT).to_rsv()
    header = device._header
    assert device._aead is not None
    return header + device._aead.seal(payload + sig, header)


def post(h: Harness, message: bytes) -> Any:
    return h.client.post(
        "/v1/telemetry", content=message, headers={"content-type": "application/octet-stream"}
    )


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.name)
def test_readings_are_stored_and_acknowledged(harness: Harness, suite: Suite) -> None:
    device = harness.onboarded(suite=suite)
    before = harness.gateway.store.count_readings()
    message = device.prepare(
        [(Vital.SYSTOLIC_BP, 128), (Vital.DIASTOLIC_BP, 84), (Vital.HEART_RATE, 71)]
    )
    ack = device.send(message)
    receipt = ack.pop("receipt")  # checked by the SDK's send; see test_receipts.py
    assert ack == {
        "v": 1,
        "accepted": 3,
        "last_seq": 2,
        "message_id": hashlib.sha256(message).hexdigest(),
    }
    assert device.receipts is not None
    assert device.receipts.receipts[-1].hex() == receipt
    assert harness.gateway.store.count_readings() == before + 3
    stored = harness.gateway.store.messages(device=device.address)[-1].message
    assert [r.vital for r in stored.readings] == [
        Vital.SYSTOLIC_BP,
        Vital.DIASTOLIC_BP,
        Vital.HEART_RATE,
    ]
    # the device's signature is kept with the payload, and still verifies
    from vitalchain.crypto.keys import Signature

    device.key.public_key.verify(
        Signature.from_rsv(stored.signature), stored.payload, READING_CONTEXT
    )


def test_every_refusal_is_coded_and_stores_nothing(harness: Harness) -> None:
    device = harness.onboarded()
    device.send(device.prepare([(Vital.SPO2, 97)]))
    stranger = PrivateKey.generate()
    now = int(time.time() * 1000)

    def reading(**kw: Any) -> Callable[[dict[str, Any]], None]:
        return lambda b: b["readings"][0].update(kw)

    good = craft(device)
    cases: list[tuple[str, bytes, int, str]] = [
        ("not a data message", b"hello", 400, "malformed_message"),
        ("wrong version", b"VCm\x03" + good[4:], 400, "malformed_message"),
        ("empty", b"", 400, "malformed_message"),
        ("too large", b"VCm\x01" + bytes(70_000), 413, "message_too_large"),
        ("unknown session", b"VCm\x01" + bytes(16) + good[20:], 401, "unknown_session"),
        ("tampered ciphertext", good[:-1] + bytes([good[-1] ^ 1]), 400, "decryption_failed"),
        ("signed by another key", craft(device, signer=stranger), 401, "invalid_signature"),
        (
            "for another group",
            craft(device, edit=lambda b: b.update(group=b["group"] + 1)),
            401,
            "wrong_group",
        ),
        (
            "names another device",
            craft(device, edit=lambda b: b.update(device=stranger.address)),
            401,
            "wrong_device",
        ),
        ("payload not JSON", craft(device, raw_payload=b"\xff\xfe"), 422, "invalid_payload"),
        ("extra field", craft(device, edit=lambda b: b.update(extra=1)), 422, "invalid_payload"),
        (
            "no readings",
            craft(device, edit=lambda b: b.update(readings=[])),
            422,
            "invalid_payload",
        ),
        ("unknown vital", craft(device, edit=reading(vital="mood")), 422, "invalid_payload"),
        ("string value", craft(device, edit=reading(value="97")), 422, "invalid_payload"),
        ("bool seq", craft(device, edit=reading(seq=True)), 422, "invalid_payload"),
        ("replayed seq", craft(device, edit=reading(seq=0)), 409, "replayed"),
        ("clock far ahead", craft(device, edit=reading(t=now + 3_600_000)), 422, "clock_skew"),
        (
            "sent long ago",
            craft(device, edit=lambda b: b.update(sent_at=now - 3_600_000)),
            422,
            "clock_skew",
        ),
        ("implausible", craft(device, edit=reading(value=140)), 422, "implausible_value"),
        ("wrong unit", craft(device, edit=reading(unit="ratio")), 422, "wrong_unit"),
    ]
    before = harness.gateway.store.count_readings()
    for desc, message, status, code in cases:
        r = post(harness, message)
        assert (r.status_code, error_code(r)) == (status, code), desc
    assert harness.gateway.store.count_readings() == before
    # and the device still works afterwards
    assert device.send(device.prepare([(Vital.SPO2, 96)]))["accepted"] == 1


def test_exact_replay_of_an_accepted_message(harness: Harness) -> None:
    device = harness.onboarded()
    message = device.prepare([(Vital.GLUCOSE, 110)])
    device.send(message)
    r = post(harness, message)
    assert (r.status_code, error_code(r)) == (409, "replayed")


def test_seqs_inside_a_message_must_increase(harness: Harness) -> None:
    """A message repeating a seq is malformed, not a replay: nothing of it was stored."""
    device = harness.onboarded()

    def dup(b: dict[str, Any]) -> None:
        b["readings"] = [b["readings"][0], dict(b["readings"][0])]

    r = post(harness, craft(device, edit=dup))
    assert (r.status_code, error_code(r)) == (422, "invalid_payload")


def test_one_bad_reading_refuses_the_whole_message(harness: Harness) -> None:
    device = harness.onboarded()
    before = harness.gateway.store.count_readings()
    now = int(time.time() * 1000)

    def add_bad(b: dict[str, Any]) -> None:
        b["readings"].append(
            {"seq": 10**6, "vital": "temperature", "value": 99.0, "unit": "Cel", "t": now}
        )

    assert error_code(post(harness, craft(device, edit=add_bad))) == "implausible_value"
    assert harness.gateway.store.count_readings() == before


def test_rate_limit(fresh_harness: Harness) -> None:
    h = fresh_harness
    h.gateway.ingest_core._rate._burst = 3.0
    h.gateway.ingest_core._rate._rate = 0.001
    device = h.onboarded()
    codes = []
    for _ in range(5):
        try:
            device.send(device.prepare([(Vital.HEART_RATE, 70)]))
            codes.append("ok")
        except DeviceError as exc:
            codes.append(str(exc.code))
    assert codes == ["ok", "ok", "ok", "rate_limited", "rate_limited"]


def test_revocation_takes_effect_within_one_block(harness: Harness) -> None:
    device = harness.onboarded()
    device.send(device.prepare([(Vital.HEART_RATE, 70)]))
    # revoked by the master elsewhere (e.g. an operator's CLI), not through this gateway's API
    harness.ledger.revoke_device(harness.gateway.master, harness.gateway.group_id, device.address)
    harness.ledger.fund(PrivateKey.generate().address)  # the next block
    deadline = time.time() + 5
    code = None
    while time.time() < deadline:
        try:
            device.send(device.prepare([(Vital.HEART_RATE, 70)]))
        except DeviceError as exc:
            code = exc.code
            break
        time.sleep(0.05)
    assert code == "device_revoked"


def test_revocation_through_the_admin_api(harness: Harness) -> None:
    device = harness.onboarded()
    r = harness.client.post(f"/v1/devices/{device.address}/revocation")
    assert error_code(r) == "unauthorized"
    from tests.support.gateway import ADMIN_TOKEN

    r = harness.client.post(
        f"/v1/devices/{device.address}/revocation",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 200, r.text
    with pytest.raises(DeviceError) as err:
        device.send(device.prepare([(Vital.HEART_RATE, 70)]))
    assert err.value.code == "device_revoked"
    r = harness.client.post(
        f"/v1/devices/{device.address}/revocation",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert error_code(r) == "trust_groups.device_already_revoked"


def test_session_of_another_suite_cannot_be_opened(harness: Harness) -> None:
    """A message sealed with the right key under another suite is refused as undecryptable."""
    device = harness.onboarded(suite=Suite.CHACHA20_POLY1305)
    message = device.prepare([(Vital.SPO2, 97)])
    assert device._aead is not None
    key = device._aead._primitive
    assert key is not None
    header = message[:20]
    payload_and_sig = device._aead.open(message[20:], header)
    session_key = harness.gateway.state.session(header[4:20]).key  # type: ignore[union-attr]
    other = Aead(session_key, Suite.AES_256_GCM).seal(payload_and_sig, header)
    assert error_code(post(harness, header + other)) == "decryption_failed"
