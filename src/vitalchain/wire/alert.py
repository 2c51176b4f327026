"""Alerts (docs/spec/alert.md): the contexts of the alert's three signatures, the versions of
the alert object, its body and the notification, the bytes of a signed action, and the strict
reading of the decrypted body (:func:`parse_body`).

The alert object itself carries a ring proof (a crypto object) and is still built, signed and
read in :mod:`vitalchain.sdk.alert` (raised in :mod:`vitalchain.alerts.service`); what both
ends must agree on byte for byte is here.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from vitalchain.errors import DecodeError
from vitalchain.wire._json import Strict, WireObject, load_value

__all__ = [
    "ACTION_CONTEXT",
    "ALERT_CONTEXT",
    "ALERT_VERSION",
    "BODY_VERSIONS",
    "KINDS",
    "KINDS_BY_VERSION",
    "RELAY_CONTEXT",
    "V1_BODY_PRIORITY",
    "AlertBody",
    "AlertObject",
    "DeviceStaleBody",
    "Notification",
    "OutageBody",
    "StaleBodyV1",
    "ThresholdBody",
    "ThresholdBodyV1",
    "UndeliverableBody",
    "action_message",
    "alert_context",
    "parse_body",
    "read_notification",
    "signed_bytes",
]

ALERT_CONTEXT = b"vitalchain/v1/alert"  # the ring's key-image scope, ‖ u64 group ‖ digest
RELAY_CONTEXT = b"vitalchain/v1/alert-relay"  # the gateway's signature over the alert object
ACTION_CONTEXT = b"vitalchain/v1/alert-action"  # a recipient's signed action (ack, snooze …)
# Kinds by version of the public object; a kind's index is part of what the gateway signs.
KINDS_BY_VERSION: Mapping[int, tuple[str, ...]] = {
    1: ("threshold", "stale"),
    2: ("threshold", "stale", "technical"),
}
ALERT_VERSION = 2
KINDS = KINDS_BY_VERSION[ALERT_VERSION]
BODY_VERSIONS = (1, 2)  # of the encrypted body: v1 has no priority
PriorityName = Literal["high", "medium", "low"]  # IEC 60601-1-8 (alerts.rules.Priority)
V1_BODY_PRIORITY: PriorityName = "medium"  # how a v1 body is read (alerts.rules.Priority.MEDIUM)
SIGNED_TAG = b"VCA"  # the first bytes of what the relay signature covers
_HEX = r"^[0-9a-fA-F]*$"


def alert_context(group_id: int, digest: bytes) -> bytes:
    """The key-image context of an alert raised from the device payload hashing to ``digest``.

    Scoped to one payload: a replayed alert repeats its image, while two alerts of one device
    share nothing that links them.  Device and gateway both need it, hence here.
    """
    return ALERT_CONTEXT + group_id.to_bytes(8, "big") + digest


def action_message(action: str, nonce: bytes, *fields: str) -> bytes:
    """What a recipient signs for one action: the fields joined by newlines (alert.md)."""
    return "\n".join([action, nonce.hex(), *fields]).encode()


def signed_bytes(
    version: int,
    alert_id: bytes,
    group_id: int,
    kind: str,
    raised_at_ms: int,
    received_at_ms: int,
    digest: bytes,
    envelope: bytes,
    ring: bytes,
) -> bytes:
    """What the gateway's relay signature covers (``ring``: the proof's bytes, or empty)."""
    return b"".join(
        [
            SIGNED_TAG,
            version.to_bytes(1, "big"),
            alert_id,
            group_id.to_bytes(8, "big"),
            KINDS_BY_VERSION[version].index(kind).to_bytes(1, "big"),
            raised_at_ms.to_bytes(8, "big"),
            received_at_ms.to_bytes(8, "big"),
            digest,
            hashlib.sha256(envelope).digest(),
            hashlib.sha256(ring).digest(),
        ]
    )


class AlertObject(WireObject):
    """The public alert object's JSON (v1 or v2), fields still hex; ``check`` judges the
    version, the kind and the sizes.  The ring proof inside is read by the crypto layer."""

    _what = "alert"
    v: int
    alert_id: str = Field(pattern=_HEX)
    group_id: int
    kind: str
    raised_at: int
    received_at: int
    envelope: str = Field(pattern=_HEX)
    digest: str = Field(pattern=_HEX)
    ring: str | None = Field(pattern=_HEX)
    gateway: str
    signature: str = Field(pattern=_HEX)

    def check(self) -> AlertObject:
        kinds = KINDS_BY_VERSION.get(self.v)
        if kinds is None or self.kind not in kinds:
            raise DecodeError("alert: unknown version or kind")
        if len(self.alert_id) != 32 or len(self.digest) != 64 or len(self.signature) != 130:
            raise DecodeError("alert: a field has the wrong size")
        return self


class Notification(WireObject):
    """Notification v2: one delivery of an alert to one recipient (WebSocket, MQTT, list)."""

    _what = "notification"
    v: Literal[2] = 2
    type: Literal["alert"] = "alert"
    alert_id: str
    recipient: str
    tier: int
    priority: str
    repeat: int
    received_at: int  # the triggering reading's arrival, Unix ms
    notified_at: int  # when this delivery was made, Unix ms
    alert: dict[str, Any]  # the public alert object (AlertObject's JSON)


class _NotificationV1(WireObject):
    _what = "notification"
    v: Literal[1]
    type: Literal["alert"]
    recipient: str
    tier: int
    received_at: int
    notified_at: int
    alert: dict[str, Any]


def read_notification(frame: Any) -> dict[str, Any]:
    """A notification of version 1 or 2 in the v2 shape (v1 has no id field, no priority and
    no repeat: the id is the alert's, the priority ``None``, the repeat 0).

    Raises ``DecodeError`` for anything else, so a client never mistakes a frame for an alert.
    """
    version = frame.get("v") if isinstance(frame, dict) else None
    if version == 2 and not isinstance(version, bool):
        return Notification.parse_value(frame).to_json()
    if version == 1 and not isinstance(version, bool):
        old = _NotificationV1.parse_value(frame)
        alert_id = old.alert.get("alert_id")
        if not isinstance(alert_id, str):
            raise DecodeError("notification: malformed")
        return {**old.to_json(), "alert_id": alert_id, "priority": None, "repeat": 0}
    raise DecodeError("notification: unknown version or type")


# -- the encrypted body ------------------------------------------------------------------------


def _base64(value: str) -> str:
    # Checked here so a recipient decoding the payload meets no binascii.Error later.
    try:
        base64.b64decode(value, validate=True)
    except ValueError:  # binascii.Error, or a character outside ASCII
        raise ValueError("not base64") from None
    return value


_Base64 = Annotated[str, AfterValidator(_base64)]
_Signature = Annotated[str, Field(pattern=_HEX, min_length=130, max_length=130)]


class AlertBody(WireObject):
    """What an alert's envelope holds (UTF-8 JSON), every version and kind.

    A v1 body states no priority and is read as :data:`V1_BODY_PRIORITY`; a v2 body must
    state one.  :func:`parse_body` picks the subclass by version, kind and condition.
    """

    _what = "alert body"
    v: Literal[1, 2]
    kind: str
    priority: PriorityName

    @model_validator(mode="after")
    def _v1_states_no_priority(self) -> Self:
        if self.v == 1 and "priority" in self.model_fields_set:
            raise ValueError("priority: a v1 body has none")
        return self


class _Threshold(AlertBody):
    """What both versions of the threshold body hold."""

    kind: Literal["threshold"] = "threshold"
    patient: str
    device: str
    vital: str
    unit: str
    direction: Literal[-1, 1]
    value: float
    low: float
    high: float
    first_out_at: float
    at: float
    readings_out: int
    payload: _Base64  # base64 of the device's signed payload
    signature: _Signature  # the device's, 65 bytes hex

    @property
    def payload_bytes(self) -> bytes:
        return base64.b64decode(self.payload)

    @property
    def signature_bytes(self) -> bytes:
        return bytes.fromhex(self.signature)


class ThresholdBodyV1(_Threshold):
    """The threshold body before issue 13: no priority, no ``upgraded``."""

    v: Literal[1] = 1
    priority: PriorityName = V1_BODY_PRIORITY


class ThresholdBody(_Threshold):
    v: Literal[2] = 2
    upgraded: bool  # the HIGH alert that supersedes its episode's open one


class StaleBodyV1(AlertBody):
    """The stale alarm before issue 13 (an object of kind ``stale``)."""

    v: Literal[1] = 1
    kind: Literal["stale"] = "stale"
    priority: PriorityName = V1_BODY_PRIORITY
    patient: str
    device: str
    last_seen: float
    at: float


class _Technical(AlertBody):
    """A technical alarm's body (v2 only), by ``condition``."""

    v: Literal[2] = 2
    kind: Literal["technical"] = "technical"
    condition: str
    at: float


class DeviceStaleBody(_Technical):
    condition: Literal["device_stale"] = "device_stale"
    level: Literal["warning", "urgent"]
    patient: str
    device: str
    last_seen: float


class UndeliverableBody(_Technical):
    condition: Literal["undeliverable"] = "undeliverable"
    patient: str
    alert_id: str = Field(pattern=_HEX, min_length=32, max_length=32)  # nobody receipted it
    vital: str | None


class OutageBody(_Technical):
    condition: Literal["chain_unreachable", "store_unreachable"]
    component: Literal["chain", "store"]
    down_since: float
    gateway: str


# (version, kind, condition) -> its body; a v1 body had no technical kind.
_BODIES: Mapping[tuple[int, str, str | None], type[AlertBody]] = {
    (1, "threshold", None): ThresholdBodyV1,
    (2, "threshold", None): ThresholdBody,
    (1, "stale", None): StaleBodyV1,
    (2, "technical", "device_stale"): DeviceStaleBody,
    (2, "technical", "undeliverable"): UndeliverableBody,
    (2, "technical", "chain_unreachable"): OutageBody,
    (2, "technical", "store_unreachable"): OutageBody,
}


class _BodyHead(Strict):
    """Just enough of a body to know which one it is."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)
    v: int
    kind: str
    condition: str | None = None


def parse_body(data: bytes | str) -> AlertBody:
    """The decrypted body, strictly: its version (``BODY_VERSIONS``), kind and every field.

    Raises ``DecodeError`` for anything malformed, so a recipient never meets a ``KeyError``
    or a ``binascii.Error`` from a body a gateway got wrong.
    """
    try:
        value = json.loads(data)
    except ValueError:
        raise DecodeError("alert body: not UTF-8 JSON") from None
    head = load_value(_BodyHead, value, what="alert body")
    if head.v not in BODY_VERSIONS:
        raise DecodeError(f"alert body: unknown version {head.v!r}")
    model = _BODIES.get((head.v, head.kind, head.condition))
    if model is None:
        raise DecodeError("alert body: unknown kind or condition")
    return model.parse_value(value)
