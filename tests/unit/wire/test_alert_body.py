"""The decrypted alert body (docs/spec/alert.md): every version, kind and condition the
gateway writes parses back to itself; anything else is a DecodeError."""

from __future__ import annotations

import json
from typing import Any

import pytest

from vitalchain.errors import DecodeError
from vitalchain.wire.alert import (
    DeviceStaleBody,
    OutageBody,
    StaleBodyV1,
    ThresholdBody,
    ThresholdBodyV1,
    UndeliverableBody,
    parse_body,
)

THRESHOLD: dict[str, Any] = {
    "v": 2, "kind": "threshold", "priority": "medium", "patient": "0xP", "device": "0xD",
    "vital": "spo2", "unit": "%", "direction": -1, "value": 88.0, "low": 92.0, "high": 100.0,
    "first_out_at": 1.0, "at": 2.0, "readings_out": 3, "upgraded": False,
    "payload": "eyJ2IjoxfQ==", "signature": "ab" * 65,
}  # fmt: skip
THRESHOLD_V1 = {k: v for k, v in THRESHOLD.items() if k not in ("priority", "upgraded")}
THRESHOLD_V1["v"] = 1
STALE_V1 = {"v": 1, "kind": "stale", "patient": "0xP", "device": "0xD", "last_seen": 1.0,
            "at": 2.0}  # fmt: skip
DEVICE_STALE = {"v": 2, "kind": "technical", "condition": "device_stale", "priority": "low",
                "level": "warning", "patient": "0xP", "device": "0xD", "last_seen": 1.0,
                "at": 2.0}  # fmt: skip
UNDELIVERABLE = {"v": 2, "kind": "technical", "condition": "undeliverable", "priority": "high",
                 "patient": "0xP", "alert_id": "00" * 16, "vital": None, "at": 2.0}  # fmt: skip
OUTAGE = {"v": 2, "kind": "technical", "condition": "store_unreachable", "priority": "medium",
          "component": "store", "down_since": 1.0, "gateway": "0xG", "at": 2.0}  # fmt: skip


@pytest.mark.parametrize(
    ("body", "model"),
    [
        (THRESHOLD, ThresholdBody),
        (THRESHOLD_V1, ThresholdBodyV1),
        (STALE_V1, StaleBodyV1),
        (DEVICE_STALE, DeviceStaleBody),
        (UNDELIVERABLE, UndeliverableBody),
        (OUTAGE, OutageBody),
    ],
)
def test_every_body_parses_back_to_itself(body: dict[str, Any], model: type) -> None:
    parsed = parse_body(json.dumps(body).encode())
    assert type(parsed) is model
    expected = {**body, "priority": "medium"} if body["v"] == 1 else body  # v1: read as medium
    assert parsed.to_json() == expected


def test_the_threshold_body_decodes_its_payload_and_signature() -> None:
    parsed = parse_body(json.dumps(THRESHOLD))
    assert isinstance(parsed, ThresholdBody)
    assert (parsed.payload_bytes, parsed.signature_bytes) == (b'{"v":1}', b"\xab" * 65)


@pytest.mark.parametrize(
    "body",
    [
        {**THRESHOLD, "v": 3},
        {**THRESHOLD, "v": True},
        {**THRESHOLD, "extra": 1},
        {k: v for k, v in THRESHOLD.items() if k != "priority"},  # v2 states it
        {**THRESHOLD_V1, "priority": "high"},  # v1 has none
        {**THRESHOLD_V1, "upgraded": True},
        {**THRESHOLD, "priority": "urgent"},
        {**THRESHOLD, "direction": 0},
        {**THRESHOLD, "value": "88"},
        {**THRESHOLD, "readings_out": 3.0},
        {**THRESHOLD, "payload": "****"},
        {**THRESHOLD, "payload": "é"},
        {**THRESHOLD, "signature": "ab" * 64},
        {**THRESHOLD, "condition": "device_stale"},
        {**STALE_V1, "v": 2},  # v2 raises the stale alarm as a technical one
        {**DEVICE_STALE, "v": 1},
        {**DEVICE_STALE, "condition": "lost"},
        {**DEVICE_STALE, "level": "loud"},
        {**UNDELIVERABLE, "alert_id": "00"},
        {**OUTAGE, "component": "disk"},
        ["not", "an", "object"],
    ],
)
def test_anything_else_is_a_decode_error(body: object) -> None:
    with pytest.raises(DecodeError) as err:
        parse_body(json.dumps(body))
    assert err.value.code == "decode_error"


def test_a_body_that_is_not_json_is_a_decode_error() -> None:
    for data in (b"\xff", b"{", b""):
        with pytest.raises(DecodeError):
            parse_body(data)
