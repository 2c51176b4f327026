"""Opening an alert as a recipient: a body the gateway got wrong is a DecodeError, never a
KeyError or a binascii.Error from deep inside the check (the body is read by wire.alert)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from vitalchain.crypto.envelope import seal_for
from vitalchain.crypto.keys import PrivateKey
from vitalchain.errors import DecodeError
from vitalchain.sdk.alert import Alert, open_alert
from vitalchain.wire.telemetry import READING_CONTEXT

RECIPIENT = PrivateKey(bytes(31) + b"\x07")
DEVICE = PrivateKey(bytes(31) + b"\x09")
PAYLOAD = b'{"v":1,"readings":[]}'
ALERT_ID = bytes(range(16))


def _body(version: int = 2) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": version, "kind": "threshold", "priority": "high", "patient": RECIPIENT.address,
        "device": DEVICE.address, "vital": "spo2", "unit": "%", "direction": -1, "value": 88.0,
        "low": 92.0, "high": 100.0, "first_out_at": 1.0, "at": 2.0, "readings_out": 3,
        "upgraded": False, "payload": base64.b64encode(PAYLOAD).decode(),
        "signature": DEVICE.sign(PAYLOAD, READING_CONTEXT).to_rsv().hex(),
    }  # fmt: skip
    if version == 1:
        del body["priority"], body["upgraded"]
    return body


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in _body().items() if k != key}


def _alert(plaintext: bytes, kind: str = "threshold") -> Alert:
    envelope = seal_for([RECIPIENT.public_key], plaintext, ALERT_ID).to_bytes()
    digest = hashlib.sha256(PAYLOAD).digest() if kind == "threshold" else bytes(32)
    return Alert(ALERT_ID, 7, kind, 2000, 2000, envelope, digest, None, DEVICE.address,
                 bytes(65))  # fmt: skip


@pytest.mark.parametrize("version", [1, 2])
def test_a_sound_threshold_body_opens_as_it_was_written(version: int) -> None:
    body = _body(version)
    opened = open_alert(_alert(json.dumps(body).encode()), RECIPIENT)
    expected = {**body, "priority": "medium"} if version == 1 else body  # v1: read as medium
    assert opened == expected


# A technical alarm's body, sealed in a threshold object.
TECHNICAL = {"v": 2, "kind": "technical", "condition": "device_stale", "priority": "low",
             "level": "warning", "patient": "0x", "device": "0x", "last_seen": 1.0,
             "at": 2.0}  # fmt: skip


@pytest.mark.parametrize(
    "plaintext",
    [
        pytest.param(json.dumps(_without("payload")), id="no-payload"),  # was KeyError
        pytest.param(json.dumps(_without("signature")), id="no-signature"),  # was KeyError
        pytest.param(json.dumps(_body() | {"payload": "not base64!"}), id="payload"),  # binascii
        pytest.param(json.dumps(_body() | {"signature": "zz" * 65}), id="signature"),  # ValueError
        pytest.param(json.dumps(_body() | {"device": None}), id="device"),  # InvalidSignature
        pytest.param(json.dumps([1, 2]), id="list"),  # was AttributeError
        pytest.param(json.dumps(_body() | {"v": 3}), id="v3"),
        pytest.param("not json", id="text"),  # was json.JSONDecodeError
        pytest.param(json.dumps(TECHNICAL), id="technical-body"),  # was KeyError
    ],
)
def test_a_malformed_body_is_a_decode_error(plaintext: str) -> None:
    with pytest.raises(DecodeError):
        open_alert(_alert(plaintext.encode()), RECIPIENT)


def test_a_technical_body_with_a_missing_field_is_a_decode_error() -> None:
    body = {"v": 2, "kind": "technical", "condition": "chain_unreachable", "priority": "low",
            "component": "chain", "gateway": "0x", "at": 2.0}  # fmt: skip
    with pytest.raises(DecodeError):
        open_alert(_alert(json.dumps(body).encode(), "technical"), RECIPIENT)
    opened = open_alert(_alert(json.dumps({**body, "down_since": 1.0}).encode(), "technical"),
                        RECIPIENT)  # fmt: skip
    assert opened == {**body, "down_since": 1.0}
