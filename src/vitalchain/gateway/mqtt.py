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
from concurrent.futures import Future
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from vitalchain.errors import VitalchainError
from vitalchain.gateway.broker import BrokerEndpoint, ack_topic, parse_telemetry_topic
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.ingest import Ack
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
        # QoS 0 on the broker-to-gateway hop, on purpose: a device counts a message delivered
        # only when the application ack arrives, sent after the durable commit, and resends
        # otherwise (the end-to-end argument).  Per-hop PUBACKs would add work, not safety.
        client.subscribe(self._topic, qos=0)

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

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish on the gateway's connection (alert deliveries), QoS 1."""
        self._client.publish(topic, payload, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._counter_lock:
            self.received += 1
        topic = message.topic
        self._queues[hash(topic) % len(self._queues)].put((topic, bytes(message.payload)))

    def _work(self, inbox: queue.Queue[tuple[str, bytes] | None]) -> None:
        """Check each message and hand it to the store without waiting for the commit: the
        acknowledgement is published from the store's completion, so a device's messages
        pipeline through one fsync after another instead of one each."""
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
                pending = self._gateway.ingest_core.submit(payload, topic_device=device)
            except VitalchainError as exc:
                self._reply(group_id, device, payload, error=exc)
            except Exception as exc:
                log.exception("unexpected error while ingesting an MQTT message")
                self._reply(group_id, device, payload, error=exc)
            else:
                pending.add_done_callback(partial(self._settled, group_id, device, payload))

    def _settled(self, group_id: int, device: str, payload: bytes, done: Future[Ack]) -> None:
        error = done.exception()
        if error is None:
            self._reply(group_id, device, payload, ack=done.result())
        else:
            self._reply(group_id, device, payload, error=error)

    def _reply(
        self,
        group_id: int,
        device: str,
        payload: bytes,
        *,
        ack: Ack | None = None,
        error: BaseException | None = None,
    ) -> None:
        if ack is not None:
            body = ack.to_json()
            counter = "acknowledged"
        else:
            code, text = "internal_error", "internal error"
            if isinstance(error, VitalchainError):
                code, text = error.code, error.message
            body = {
                "v": 1,
                "error": {"code": code, "message": text},
                "message_id": hashlib.sha256(payload).hexdigest(),
            }
            counter = "refused"
        with self._counter_lock:
            setattr(self, counter, getattr(self, counter) + 1)
        self._client.publish(ack_topic(group_id, device), json.dumps(body), qos=0)
