"""A device's MQTT telemetry: publish data messages, wait for the gateway's acknowledgements.

Acknowledgements come back on the device's own ack topic and are matched to messages by
``message_id`` (the SHA-256 of the data message), so many messages can be in flight at once.
Given the device's :class:`~vitalchain.device.client.ReceiptBook` (``receipts=client.receipts``),
each acknowledgement's receipt (docs/spec/receipt.md) is verified as it arrives: one that does
not verify is answered as the refusal ``invalid_receipt`` instead, so a message counts as
delivered only with a verified receipt, and a later, valid answer to it still wins.

The publisher asks for cumulative acknowledgements (``cumulative``, the MQTT v5 user property
``vitalchain-ack: 2`` on each telemetry publish, docs/spec/mqtt.md): the gateway then answers
the messages it stored together with one ``"v": 2`` ack and one receipt covering them all,
which :meth:`ReceiptBook.check_cumulative` verifies before any of them counts as delivered.
A gateway of an earlier release ignores the property and answers each message with a v1 ack;
both forms are read.

A gateway restart (which restarts its broker) must not strand a device: the client
reconnects by itself with backoff (paho's reconnect, ``reconnect_delay``), resubscribes, and
sends again what the broker had not acknowledged; its session persists for
``session_expiry_s``, so acks published while it was away are queued for it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from vitalchain.device.client import DeviceError, ReceiptBook
from vitalchain.errors import DecodeError
from vitalchain.services.mqtt_client import connect_and_wait, make_client
from vitalchain.wire.mqtt import ACK_PROPERTY, CUMULATIVE_ACK
from vitalchain.wire.onboarding import MqttGrant
from vitalchain.wire.telemetry import CumulativeAck

__all__ = ["MqttPublisher"]

# CONNACK reasons that mean these credentials will never work (MQTT v5 and 3.1.1 codes).
_REFUSED: Final = frozenset({0x04, 0x05, 0x86, 0x87, 0x8C})
SESSION_EXPIRY_S: Final = 3600  # how long the broker queues this device's acks while it is away


class MqttPublisher:
    def __init__(
        self,
        credentials: MqttGrant,
        *,
        timeout: float = 10,
        reconnect_delay: tuple[int, int] = (1, 10),
        session_expiry_s: int = SESSION_EXPIRY_S,
        receipts: ReceiptBook | None = None,
        cumulative: bool = True,
        on_ack: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        """``timeout`` bounds the first connection and each wait for an acknowledgement;
        ``reconnect_delay`` is the first and the longest wait between reconnection attempts
        (seconds, doubling).  ``receipts``: the device's book, which checks and keeps every
        acknowledgement's receipt (without it, acknowledgements are taken unchecked, as an
        earlier release did).  ``cumulative``: ask for cumulative acknowledgements (one
        receipt for the messages the gateway stored together); False asks for one ack per
        message, as an earlier release did.  ``on_ack``: given each acknowledgement (each
        entry of a cumulative one) that delivered a message, e.g. ``DeviceClient.note_ack``,
        which learns the bands again when the gateway says they changed."""
        self._creds = credentials
        self._receipts = receipts
        self._on_ack = on_ack
        self._timeout = timeout
        self._session_expiry_s = session_expiry_s
        self._pending: dict[str, threading.Event] = {}
        self._acks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._connected = False
        self._refused: str | None = None  # why the broker refused us; then we stop retrying
        self._client = make_client(
            credentials.username,  # the broker binds each client ID to its username
            credentials.username,
            credentials.password,
            self,
        )
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)  # unsent messages wait for the reconnect
        self._client.reconnect_delay_set(*reconnect_delay)
        self._publish_properties: Properties | None = None
        if cumulative:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.UserProperty = [(ACK_PROPERTY, str(CUMULATIVE_ACK))]
            self._publish_properties = props

    @property
    def connected(self) -> bool:
        with self._lock:
            return self._connected

    def connect(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry_s
        connect_and_wait(
            self._client,
            self._creds.host,
            self._creds.port,
            ready=self._wait_ready,
            unreachable=f"the MQTT broker at {self._creds.host}:{self._creds.port}",
            fail=lambda why: DeviceError(why, code="broker_unavailable"),
            cleanup=self.close,
            clean_start=False,
            properties=props,
        )

    def _wait_ready(self) -> str | None:
        """None once connected and subscribed to the ack topic, else why not."""
        if self._ready.wait(self._timeout) and self._refused is None:
            return None
        if self._refused is not None:
            return f"the broker refused the credentials ({self._refused})"
        return "could not connect and subscribe to the ack topic"

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_connect(self, reason: ReasonCode, session_present: bool) -> None:
        if reason.is_failure:
            if reason.value in _REFUSED:  # revoked or rotated: retrying cannot help
                with self._lock:
                    self._refused = str(reason)
                self._client.disconnect()
                self._ready.set()
            return
        with self._lock:
            self._connected = True
        # Every time: a broker that lost its persistence file lost the subscription too.
        # paho sends this before the publishes it resends, so no ack can miss it.
        self._client.subscribe(self._creds.ack_topic, qos=1)

    def _on_disconnect(self, reason: ReasonCode) -> None:
        with self._lock:
            self._connected = False

    def _on_subscribe(self, mid: int, reasons: list[ReasonCode]) -> None:
        if all(not r.is_failure for r in reasons):
            self._ready.set()

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        try:
            ack = json.loads(message.payload)
            if isinstance(ack, dict) and ack.get("v") == 2 and "acks" in ack:
                self._on_cumulative(ack, bytes(message.payload))
                return
            message_id = str(ack["message_id"])
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            if message_id not in self._pending:
                return  # not awaited (a late second answer, or queued from an earlier run)
        if self._receipts is not None and isinstance(ack, dict) and "error" not in ack:
            ack = self._checked(ack, message_id)
        if self._on_ack is not None and isinstance(ack, dict) and "error" not in ack:
            self._on_ack(ack)
        with self._lock:
            event = self._pending.get(message_id)
            if event is None:
                return
            # A message delivered twice (after a gateway restart) is answered twice: the
            # second answer, "replayed", must not hide the first, which says what was stored.
            earlier = self._acks.get(message_id)
            if earlier is None or ("error" in earlier and "error" not in ack):
                self._acks[message_id] = ack
        event.set()

    def _on_cumulative(self, ack: dict[str, Any], payload: bytes) -> None:
        """A cumulative acknowledgement: every message it names is answered by it, each with
        its own entry and the shared receipt, once the receipt verified against what this
        device is waiting for; if it does not, each of them it is waiting for is answered
        ``invalid_receipt`` (a later valid answer still wins).  One naming nothing awaited is
        dropped, as a v1 ack is (late, or queued from an earlier run)."""
        try:
            CumulativeAck.parse(payload)  # the shape of telemetry.md, or dropped
        except DecodeError:
            return
        ids = [str(entry["message_id"]) for entry in ack["acks"]]
        with self._lock:
            if not any(m in self._pending for m in ids):
                return
            # Of what it names, what this device sent and has no verified answer for yet.
            waiting = {m for m in ids if m in self._pending and not self._delivered(m)}
        answers: dict[str, dict[str, Any]] = {
            str(e["message_id"]): {"v": 2, **e, "receipt": ack.get("receipt")} for e in ack["acks"]
        }
        if self._receipts is not None:
            try:
                self._receipts.check_cumulative(ack, {bytes.fromhex(m) for m in waiting})
            except DeviceError as exc:
                error = {"code": exc.code, "message": exc.message}
                answers = {m: {"v": 1, "error": error, "message_id": m} for m in ids}
        if self._on_ack is not None:
            for answer in answers.values():
                if "error" not in answer:
                    self._on_ack(answer)
        self._record(answers)

    def _delivered(self, message_id: str) -> bool:
        """Has ``message_id`` a verified acknowledgement already (lock held)?"""
        answer = self._acks.get(message_id)
        return answer is not None and "error" not in answer

    def _record(self, answers: dict[str, dict[str, Any]]) -> None:
        """Keep each awaited message's answer (a success replaces an earlier refusal, never
        the reverse) and wake whoever waits for it."""
        events = []
        with self._lock:
            for message_id, answer in answers.items():
                event = self._pending.get(message_id)
                if event is None:
                    continue
                earlier = self._acks.get(message_id)
                if earlier is None or ("error" in earlier and "error" not in answer):
                    self._acks[message_id] = answer
                events.append(event)
        for event in events:
            event.set()

    def _checked(self, ack: dict[str, Any], message_id: str) -> dict[str, Any]:
        """``ack`` if its receipt verifies (and is kept), else the refusal ``invalid_receipt``.
        ``message_id`` is the hash this device computed over what it published."""
        assert self._receipts is not None
        try:
            self._receipts.check(ack, bytes.fromhex(message_id))
        except DeviceError as exc:
            return {
                "v": 1,
                "error": {"code": exc.code, "message": exc.message},
                "message_id": message_id,
            }
        return ack

    def publish_many(self, messages: Sequence[bytes], *, window: int = 64) -> list[dict[str, Any]]:
        """Publish at QoS 1 with at most ``window`` awaiting acknowledgement, in order.

        The window is back-pressure: a device never runs further ahead of the gateway than
        that, however fast it produces.  Refusals come back as acknowledgements too.  While
        the broker is unreachable, messages wait in the client and go out on reconnection.
        """
        if self._refused is not None:
            raise DeviceError(
                f"the broker refused the credentials ({self._refused})", code="broker_unavailable"
            )
        ids = [hashlib.sha256(m).hexdigest() for m in messages]
        events: list[threading.Event] = []
        with self._lock:
            for message_id in ids:
                events.append(self._pending.setdefault(message_id, threading.Event()))
        for i, message in enumerate(messages):
            if i >= window and not events[i - window].wait(self._timeout):
                raise DeviceError("no acknowledgement from the gateway", code="ack_timeout")
            info = self._client.publish(
                self._creds.telemetry_topic, message, qos=1, properties=self._publish_properties
            )
            # NO_CONN: disconnected, the message is kept and sent after the reconnect.
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                raise DeviceError(
                    f"publish failed ({mqtt.error_string(info.rc)})", code="publish_failed"
                )
        for event in events:
            if not event.wait(self._timeout):
                raise DeviceError("no acknowledgement from the gateway", code="ack_timeout")
        with self._lock:
            for message_id in ids:
                self._pending.pop(message_id, None)
            return [self._acks.pop(message_id) for message_id in ids]

    def publish(self, message: bytes) -> dict[str, Any]:
        """Publish one message; return its ack, or raise DeviceError with the gateway's code."""
        ack = self.publish_many([message])[0]
        if "error" in ack:
            raise DeviceError(ack["error"].get("message", "refused"), code=ack["error"].get("code"))
        return ack
