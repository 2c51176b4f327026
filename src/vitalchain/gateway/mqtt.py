"""The MQTT ingress: telemetry from the broker into the same ingest core as HTTP.

The gateway subscribes to its group's telemetry topics as the group's gateway client.  paho
delivers messages on its network thread; verification and the durable write happen on a
small worker pool (coincurve and SQLite release the GIL, so two cores are both used), and
the acknowledgement goes to the device's ack topic only after the store committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from vitalchain.errors import VitalchainError
from vitalchain.gateway.broker import BrokerEndpoint, ack_topic, parse_telemetry_topic
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.service import Gateway

__all__ = ["MqttBridge"]

log = logging.getLogger(__name__)


class MqttBridge:
    def __init__(
        self,
        gateway: Gateway,
        endpoint: BrokerEndpoint,
        username: str,
        password: str,
        *,
        workers: int = 4,
    ) -> None:
        self._gateway = gateway
        self._endpoint = endpoint
        self._topic = f"vitalchain/v1/{gateway.group_id}/+/telemetry"
        # One queue per worker and each device always on the same one: messages of a device
        # stay in the order the broker delivered them, and devices still run in parallel.
        self._queues: list[queue.Queue[tuple[str, bytes] | None]] = [
            queue.Queue(maxsize=10_000) for _ in range(workers)
        ]
        self._workers = [
            threading.Thread(target=self._work, args=(q,), name=f"mqtt-ingest-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        self._subscribed = threading.Event()
        self.received = 0
        self.acknowledged = 0
        self.refused = 0
        self._counter_lock = threading.Lock()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=username,  # the broker binds each client ID to its username
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._client.max_inflight_messages_set(1000)

    def start(self, timeout: float = 10) -> None:
        for worker in self._workers:
            worker.start()
        self._client.connect(self._endpoint.host, self._endpoint.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            raise GatewayError(
                503, "broker_unavailable", "could not subscribe to the telemetry topics"
            )

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        for q in self._queues:
            q.put(None)
        for worker in self._workers:
            worker.join(timeout=10)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("gateway could not connect to the broker: %s", reason)
            return
        client.subscribe(self._topic, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        props: Properties | None,
    ) -> None:
        if all(not r.is_failure for r in reasons):
            self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._counter_lock:
            self.received += 1
        topic = message.topic
        self._queues[hash(topic) % len(self._queues)].put((topic, bytes(message.payload)))

    def _work(self, inbox: queue.Queue[tuple[str, bytes] | None]) -> None:
        while True:
            item = inbox.get()
            if item is None:
                return
            topic, payload = item
            try:
                group_id, device = parse_telemetry_topic(topic)
            except ValueError:
                continue  # the broker ACL makes this unreachable; never trust it blindly
            try:
                ack = self._gateway.ingest(payload, topic_device=device).to_json()
                counter = "acknowledged"
            except VitalchainError as exc:
                ack = {
                    "v": 1,
                    "error": {"code": exc.code, "message": exc.message},
                    "message_id": hashlib.sha256(payload).hexdigest(),
                }
                counter = "refused"
            except Exception:
                log.exception("unexpected error while ingesting an MQTT message")
                ack = {
                    "v": 1,
                    "error": {"code": "internal_error", "message": "internal error"},
                    "message_id": hashlib.sha256(payload).hexdigest(),
                }
                counter = "refused"
            with self._counter_lock:
                setattr(self, counter, getattr(self, counter) + 1)
            self._client.publish(ack_topic(group_id, device), json.dumps(ack), qos=1)
