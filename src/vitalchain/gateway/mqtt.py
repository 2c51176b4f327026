"""The MQTT ingress: telemetry from the broker into the same ingest core as HTTP.

The gateway subscribes to its group's telemetry topics as the group's gateway client.  paho
delivers messages on its network thread; verification and the durable write happen on a
small worker pool (coincurve and SQLite release the GIL, so two cores are both used), and
the acknowledgement goes to the device's ack topic only after the store committed.

Nothing a device sent is lost while the gateway is away (docs/spec/mqtt.md, "QoS and
sessions"): the subscription is QoS 1 in a persistent session (MQTT v5, ``clean_start``
false, a session expiry interval, a stable client id), so the broker queues telemetry while
the gateway restarts; and each message's PUBACK to the broker goes out only after the store
committed it (manual acks), so a message received but not yet stored when the gateway dies
is delivered again.  A second copy is answered ``replayed``.

Receipts (docs/spec/receipt.md): a device that asks for cumulative acknowledgements (the
MQTT v5 user property :data:`ACK_PROPERTY` on its telemetry, docs/spec/mqtt.md) has its
messages that settle together, those of one store commit, or committed while the previous
ones were being answered, acknowledged in one ``"v": 2`` ack whose one v2 receipt covers them
all (at most 64): one signature for many messages under load, and no wait at low load, where
each message settles alone.  A device that does not ask (an earlier release) is answered as
before, one ack and one v1 receipt per message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Final, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from vitalchain.errors import VitalchainError
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.service import Gateway
from vitalchain.logs import safe_error
from vitalchain.services.mosquitto import BrokerEndpoint, BrokerError, Mosquitto
from vitalchain.services.mqtt_client import connect_and_wait, make_client
from vitalchain.wire.mqtt import (
    ACK_PROPERTY,
    CUMULATIVE_ACK,
    ack_topic,
    parse_telemetry_topic,
    telemetry_pattern,
)
from vitalchain.wire.receipt import MAX_COVERED
from vitalchain.wire.telemetry import Ack, CumulativeAck

__all__ = ["SESSION_EXPIRY_S", "BridgeStatus", "MqttBridge", "MqttProbe"]

log = logging.getLogger(__name__)

# How long the broker keeps the gateway's session, and queues its telemetry, while no gateway
# is connected.  The broker's own limit is max_queued_messages (services/mosquitto.py).
SESSION_EXPIRY_S: Final = 24 * 3600
# Unacknowledged deliveries the broker may have in flight to us (MQTT v5 Receive Maximum):
# with acks after the commit this is the back-pressure between the broker and the store.
RECEIVE_MAXIMUM: Final = 1000


def _ack_version(message: mqtt.MQTTMessage) -> int:
    """The acknowledgement version the sender of ``message`` asked for (1 if it did not)."""
    properties = getattr(message, "properties", None)
    pairs = getattr(properties, "UserProperty", None) or []
    for name, value in pairs:
        if name == ACK_PROPERTY:
            try:
                return CUMULATIVE_ACK if int(value) >= CUMULATIVE_ACK else 1
            except ValueError:
                return 1
    return 1


class _Delivery(NamedTuple):
    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection it came on: a PUBACK is only valid on that one
    ack_version: int = 1  # what its device reads: 2 for cumulative acks


class _Ready(NamedTuple):
    """A stored message of a device that reads cumulative acks, waiting to be answered."""

    group_id: int
    device: str
    item: _Delivery
    ack: Ack


@dataclass(frozen=True)
class BridgeStatus:
    """The gateway's MQTT connection, from its own bookkeeping (never asks the broker)."""

    connected: bool
    last_connected: float | None  # when the current (or last) connection was made
    connections: int  # connections made since start, the first included
    received: int
    acknowledged: int
    refused: int


class MqttBridge:
    def __init__(
        self,
        gateway: Gateway,
        endpoint: BrokerEndpoint,
        username: str,
        password: str,
        *,
        workers: int = 4,
        session_expiry_s: int = SESSION_EXPIRY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._gateway = gateway
        self._endpoint = endpoint
        self._clock = clock
        self._session_expiry_s = session_expiry_s
        self._topic = telemetry_pattern(gateway.group_id)
        # One queue per worker and each device always on the same one: messages of a device
        # stay in the order the broker delivered them, and devices still run in parallel.
        # Never a shared subscription: the broker would spread a device over several.
        self._queues: list[queue.Queue[_Delivery | None]] = [
            queue.Queue(maxsize=10_000) for _ in range(workers)
        ]
        self._workers = [
            threading.Thread(target=self._work, args=(q,), name=f"mqtt-ingest-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        # Stored messages to answer with cumulative acks; one thread drains whatever settled
        # together (a commit's worth, or more while it was busy signing) and signs once per
        # device for it.
        self._ready: queue.SimpleQueue[_Ready | None] = queue.SimpleQueue()
        self._answerer = threading.Thread(target=self._answer, name="mqtt-acks", daemon=True)
        self.receipts = 0  # receipts signed for cumulative acks (each covers 1..64 messages)
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._stopped = False
        self.received = 0
        self.acknowledged = 0
        self.refused = 0
        self._counter_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._connection = 0  # bumped on every CONNACK; guards manual PUBACKs
        self._connected = False
        self._last_connected: float | None = None
        self._unsettled = 0  # handed to the store, not yet answered
        self._settled = threading.Condition(self._counter_lock)
        self._client = make_client(
            username,  # the broker binds each client ID to its username; stable
            username,
            password,
            self,
            manual_ack=True,  # PUBACK after the commit, not on receipt
        )
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)  # acks wait in memory for a reconnect
        self._client.reconnect_delay_set(1, 10)

    @property
    def connected(self) -> bool:
        with self._state_lock:
            return self._connected

    def status(self) -> BridgeStatus:
        with self._state_lock:
            connected, last, connections = self._connected, self._last_connected, self._connection
        with self._counter_lock:
            return BridgeStatus(
                connected, last, connections, self.received, self.acknowledged, self.refused
            )

    def start(self, timeout: float = 10) -> None:
        for worker in self._workers:
            worker.start()
        self._answerer.start()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        connect_and_wait(
            self._client,
            self._endpoint.host,
            self._endpoint.port,
            ready=lambda: (
                None
                if self._subscribed.wait(timeout)
                else "could not subscribe to the telemetry topics"
            ),
            unreachable="the MQTT broker",
            fail=partial(GatewayError, "broker_unavailable"),
            cleanup=self.stop,
            clean_start=False,  # resume the session: what the broker queued is ours
            properties=props,
        )

    def stop(self, timeout: float = 10) -> None:
        """Finish what was received, answer it, then disconnect, keeping the session.

        The session (and so the subscription) stays on the broker for ``session_expiry_s``:
        telemetry sent while the gateway is away is queued for the next start.  Deliveries
        not yet handed to a worker are not acknowledged, and come again then.
        """
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        for q in self._queues:
            q.put(None)
        for worker in self._workers:
            if worker.is_alive():
                worker.join(timeout=timeout)
        with self._settled:
            self._settled.wait_for(lambda: self._unsettled == 0, timeout)
        self._ready.put(None)
        if self._answerer.is_alive():
            self._answerer.join(timeout=timeout)
        self._client.disconnect()  # after the acks and PUBACKs queued before it
        self._client.loop_stop()

    def _on_connect(self, reason: ReasonCode, session_present: bool) -> None:
        if reason.is_failure:
            log.error("gateway could not connect to the broker: %s", reason)
            return
        with self._state_lock:
            self._connection += 1
            self._connected = True
            self._last_connected = self._clock()
            again = self._connection > 1
        if again:
            log.info("gateway reconnected to the broker (session kept: %s)", session_present)
        # Always subscribe: a broker that lost its persistence file has no session for us.
        self._client.subscribe(self._topic, qos=1)

    def _on_disconnect(self, reason: ReasonCode) -> None:
        with self._state_lock:
            was, self._connected = self._connected, False
        if was and not self._stopping.is_set():
            log.warning("gateway lost the broker (%s); reconnecting", reason)

    def _on_subscribe(self, mid: int, reasons: list[ReasonCode]) -> None:
        if all(not r.is_failure for r in reasons):
            self._subscribed.set()
        else:
            log.error("the broker refused the telemetry subscription: %s", reasons[0])

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish on the gateway's connection (alert deliveries), QoS 1."""
        self._client.publish(topic, payload, qos=1)

    def _on_message(self, message: mqtt.MQTTMessage) -> None:
        if self._stopping.is_set():
            return  # not acknowledged: the broker delivers it again to the next gateway
        with self._counter_lock:
            self.received += 1
        with self._state_lock:
            connection = self._connection
        topic = message.topic
        delivery = _Delivery(
            topic,
            bytes(message.payload),
            message.mid,
            message.qos,
            connection,
            _ack_version(message),
        )
        self._queues[hash(topic) % len(self._queues)].put(delivery)

    def _work(self, inbox: queue.Queue[_Delivery | None]) -> None:
        """Check each message and hand it to the store without waiting for the commit: the
        acknowledgement is published from the store's completion, so a device's messages
        pipeline through one fsync after another instead of one each."""
        while True:
            item = inbox.get()
            if item is None:
                return
            try:
                group_id, device = parse_telemetry_topic(item.topic)
            except ValueError:
                self._puback(item)  # the broker ACL makes this unreachable; never trust it
                continue
            with self._counter_lock:
                self._unsettled += 1
            cumulative = item.ack_version >= CUMULATIVE_ACK
            try:
                pending = self._gateway.ingest_core.submit(
                    item.payload, topic_device=device, sign=not cumulative
                )
            except VitalchainError as exc:
                self._reply(group_id, device, item, error=exc)
            except Exception as exc:
                log.error("unexpected error while ingesting an MQTT message: %s", safe_error(exc))
                log.debug("its traceback", exc_info=True)
                self._reply(group_id, device, item, error=exc)
            else:
                pending.add_done_callback(partial(self._settle, group_id, device, item))

    def _settle(self, group_id: int, device: str, item: _Delivery, done: Future[Ack]) -> None:
        error = done.exception()
        if error is not None:
            self._reply(group_id, device, item, error=error)
        elif item.ack_version >= CUMULATIVE_ACK:
            # On the store's writer thread, in the loop over one commit: the answerer takes
            # this commit's messages together.
            self._ready.put(_Ready(group_id, device, item, done.result()))
        else:
            self._reply(group_id, device, item, ack=done.result())

    def _answer(self) -> None:
        """Answer stored messages of devices that read cumulative acks: take everything that
        is ready now (never wait for more: no latency is added), and send each device one ack
        per :data:`MAX_COVERED` of its messages, under one receipt."""
        while True:
            first = self._ready.get()
            if first is None:
                return
            ready, stop = [first], False
            while True:
                try:
                    nxt = self._ready.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                ready.append(nxt)
            by_device: dict[tuple[int, str], list[_Ready]] = {}
            for r in ready:
                by_device.setdefault((r.group_id, r.device), []).append(r)
            for (group_id, device), mine in by_device.items():
                for at in range(0, len(mine), MAX_COVERED):
                    self._answer_together(group_id, device, mine[at : at + MAX_COVERED])
            if stop:
                return

    def _answer_together(self, group_id: int, device: str, ready: list[_Ready]) -> None:
        """One cumulative ack for ``ready`` (1..64 stored messages of ``device``), then their
        PUBACKs.  Should the receipt fail to sign (it cannot, short of a bug), each message
        is answered ``internal_error`` instead, so the device resends rather than waits."""
        acks = tuple(r.ack for r in ready)
        try:
            receipt = self._gateway.ingest_core.receipt_for(group_id, device, acks)
            body = CumulativeAck(acks, receipt).encode()
        except Exception as exc:
            log.error("could not sign a cumulative receipt: %s", safe_error(exc))
            log.debug("its traceback", exc_info=True)
            for r in ready:
                self._reply(group_id, device, r.item, error=exc)
            return
        self._client.publish(ack_topic(group_id, device), body, qos=1)
        for r in ready:
            self._puback(r.item)
        with self._settled:
            self.acknowledged += len(ready)
            self.receipts += receipt is not None
            self._unsettled -= len(ready)
            self._settled.notify_all()

    def _reply(
        self,
        group_id: int,
        device: str,
        item: _Delivery,
        *,
        ack: Ack | None = None,
        error: BaseException | None = None,
    ) -> None:
        if ack is not None:
            # With its receipt (receipt.md): the ingest core signed it once, for the whole
            # range of seqs this ack covers; nothing is signed here.
            body = ack.to_json()
            counter = "acknowledged"
        else:
            code, text = "internal_error", "internal error"
            if isinstance(error, VitalchainError):
                code, text = error.code, error.message
            body = {
                "v": 1,
                "error": {"code": code, "message": text},
                "message_id": hashlib.sha256(item.payload).hexdigest(),
            }
            counter = "refused"
        # QoS 1: paho keeps it across a reconnect, and the device's session queues it.
        self._client.publish(ack_topic(group_id, device), json.dumps(body), qos=1)
        self._puback(item)
        with self._settled:
            setattr(self, counter, getattr(self, counter) + 1)
            self._unsettled -= 1
            self._settled.notify_all()

    def _puback(self, item: _Delivery) -> None:
        """Tell the broker it may forget ``item``: only once it is stored or refused, and only
        on the connection it came on (a packet id of an older connection may since name
        another message); otherwise the broker delivers it again and we answer ``replayed``."""
        if item.qos == 0:
            return
        with self._state_lock:  # held: a reconnect must not slip in between check and ack
            if self._connected and item.connection == self._connection:
                self._client.ack(item.mid, item.qos)


class MqttProbe:
    """A health probe (``check()`` returns or raises) for MQTT ingest as the gateway sees it:
    the managed broker is up (``Mosquitto.status()``) and the gateway's own connection to it
    is live.  Both are read from bookkeeping, so the check never blocks and never connects
    (a TCP probe would also add two lines to the broker's log each time).
    """

    def __init__(self, bridge: MqttBridge, broker: Mosquitto | None = None) -> None:
        self.bridge = bridge
        self.broker = broker

    def check(self) -> None:
        if self.broker is not None:
            status = self.broker.status()
            if not status.up:
                why = f": {status.last_error}" if status.last_error else ""
                raise BrokerError(
                    f"the MQTT broker is {status.state}{why}", code="broker_unavailable"
                )
        if not self.bridge.connected:
            raise BrokerError(
                "the gateway is not connected to the MQTT broker", code="broker_unavailable"
            )
