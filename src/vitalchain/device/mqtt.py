"""A device's MQTT telemetry: publish data messages, wait for the gateway's acknowledgements.

Acknowledgements come back on the device's own ack topic and are matched to messages by
``message_id`` (the SHA-256 of the data message), so many messages can be in flight at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from vitalchain.device.client import DeviceError, MqttCredentials

__all__ = ["MqttPublisher"]


class MqttPublisher:
    def __init__(self, credentials: MqttCredentials, *, timeout: float = 10) -> None:
        self._creds = credentials
        self._timeout = timeout
        self._pending: dict[str, threading.Event] = {}
        self._acks: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=credentials.username,  # the broker binds each client ID to its username
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(credentials.username, credentials.password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)

    def connect(self) -> None:
        self._client.connect(self._creds.host, self._creds.port, keepalive=30)
        self._client.loop_start()
        if not self._ready.wait(self._timeout):
            self.close()
            raise DeviceError(
                "could not connect and subscribe to the ack topic", code="broker_unavailable"
            )

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttPublisher:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if not reason.is_failure:
            client.subscribe(self._creds.ack_topic, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        if all(not r.is_failure for r in reasons):
            self._ready.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            ack = json.loads(message.payload)
            message_id = str(ack["message_id"])
        except (ValueError, KeyError, TypeError):
            return
        with self._lock:
            self._acks[message_id] = ack
            event = self._pending.get(message_id)
        if event is not None:
            event.set()

    def publish_many(self, messages: Sequence[bytes], *, window: int = 64) -> list[dict[str, Any]]:
        """Publish at QoS 1 with at most ``window`` awaiting acknowledgement, in order.

        The window is back-pressure: a device never runs further ahead of the gateway than
        that, however fast it produces.  Refusals come back as acknowledgements too.
        """
        ids = [hashlib.sha256(m).hexdigest() for m in messages]
        events: list[threading.Event] = []
        with self._lock:
            for message_id in ids:
                events.append(self._pending.setdefault(message_id, threading.Event()))
        for i, message in enumerate(messages):
            if i >= window and not events[i - window].wait(self._timeout):
                raise DeviceError("no acknowledgement from the gateway", code="ack_timeout")
            info = self._client.publish(self._creds.telemetry_topic, message, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
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
