"""An MQTT v5 probe client and the reason codes of the broker tests (tests/integration/test_broker*.py):
what the broker itself answers, never a mock."""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from vitalchain.services.mosquitto import BrokerEndpoint
from vitalchain.wire.address import to_checksum_address

WAIT = 5.0
SUCCESS = 0x00
NOT_AUTHORIZED = 0x87
ADMINISTRATIVE_ACTION = 0x98
PACKET_TOO_LARGE = 0x95
RETAIN_NOT_SUPPORTED = 0x9A

GROUPS = itertools.count(100)


def new_device() -> str:
    return to_checksum_address(os.urandom(20))


class Probe:
    """A paho MQTT v5 client whose every call waits for the broker's answer and returns it."""

    def __init__(
        self, endpoint: BrokerEndpoint, username: str | None, password: str | None, client_id: str
    ) -> None:
        self.endpoint = endpoint
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.disconnect_reason: ReasonCode | None = None
        self.disconnected = threading.Event()
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self._answers: dict[int, ReasonCode] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)

    def connect(self) -> ReasonCode:
        self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
        self.client.loop_start()
        with self._cond:
            assert self._cond.wait_for(lambda: self._connack is not None, WAIT), "no CONNACK"
            assert self._connack is not None
            return self._connack

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> ReasonCode:
        return self._await(self.client.publish(topic, payload, qos=qos, retain=retain).mid)

    def subscribe(self, topic: str) -> ReasonCode:
        result, mid = self.client.subscribe(topic, qos=1)
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None
        return self._await(mid)

    def expect(self, topic: str) -> bytes:
        """The payload of the next message, which must be on ``topic``."""
        message = self.messages.get(timeout=WAIT)
        assert message.topic == topic
        return bytes(message.payload)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _await(self, mid: int) -> ReasonCode:
        with self._cond:
            assert self._cond.wait_for(lambda: mid in self._answers, WAIT), "no answer"
            return self._answers.pop(mid)

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        with self._cond:
            self._connack = reason
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.disconnect_reason = reason
        self.disconnected.set()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        with self._cond:
            self._answers[mid] = reason
            self._cond.notify_all()

    def _on_subscribe(
        self, _c: Any, _u: Any, mid: int, reasons: list[ReasonCode], _p: Properties | None
    ) -> None:
        with self._cond:
            self._answers[mid] = reasons[0]
            self._cond.notify_all()


Connect = Callable[..., Probe]


def brokers_of(data_dir: Path) -> list[int]:
    """Live mosquitto processes started on ``data_dir`` (found by their config path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (
            state != "Z"
            and argv
            and argv[0].endswith(b"mosquitto")
            and any(str(data_dir).encode() in arg for arg in argv)
        ):
            found.append(int(entry.name))
    return found
