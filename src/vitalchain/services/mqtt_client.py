"""One of our MQTT clients, built and first connected to a broker one way.

The device's publisher, the gateway's telemetry bridge and the dynsec admin are all MQTT v5
clients that log in with a username and read little of what paho hands their callbacks
(``make_client`` adapts paho's signatures once).  They all start alike: the TCP connect (an
``OSError`` means the broker cannot be reached), paho's network thread, then a wait for the
CONNACK and whatever the client needs after it (a SUBACK).  Either failure becomes the
caller's own ``broker_unavailable`` error, raised after the caller's cleanup, so a
half-started client (its network thread, its workers) never lingers.  Later reconnections
are paho's (``reconnect_delay_set``), not this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["KEEPALIVE_S", "Callbacks", "connect_and_wait", "make_client"]

KEEPALIVE_S: Final = 30  # a dead broker is noticed within 1.5 times this


class Callbacks(Protocol):
    """What a client of ours does on paho's network thread, given only what it reads."""

    def _on_connect(self, reason: ReasonCode, session_present: bool) -> None: ...

    def _on_disconnect(self, reason: ReasonCode) -> None: ...

    def _on_subscribe(self, mid: int, reasons: list[ReasonCode]) -> None: ...

    def _on_message(self, message: mqtt.MQTTMessage) -> None: ...


def make_client(
    client_id: str,
    username: str,
    password: str,
    callbacks: Callbacks,
    *,
    on_publish: Callable[[int, ReasonCode], None] | None = None,
    manual_ack: bool = False,
) -> mqtt.Client:
    """An MQTT v5 client (paho's VERSION2 callbacks) that logs in as ``username``, its
    callbacks handed to ``callbacks`` (and the PUBACKs' to ``on_publish``, if given)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    client.username_pw_set(username, password)

    # paho's arguments are (client, userdata, ..., properties); ours never read those.
    client.on_connect = lambda _c, _u, flags, reason, _p: callbacks._on_connect(
        reason, flags.session_present
    )
    client.on_disconnect = lambda _c, _u, _f, reason, _p: callbacks._on_disconnect(reason)
    client.on_subscribe = lambda _c, _u, mid, reasons, _p: callbacks._on_subscribe(mid, reasons)
    client.on_message = lambda _c, _u, message: callbacks._on_message(message)
    if on_publish is not None:
        client.on_publish = lambda _c, _u, mid, reason, _p: on_publish(mid, reason)
    return client


def connect_and_wait(
    client: mqtt.Client,
    host: str,
    port: int,
    *,
    ready: Callable[[], str | None],
    unreachable: str,
    fail: Callable[[str], Exception],
    cleanup: Callable[[], object],
    clean_start: mqtt.CleanStartOption = mqtt.MQTT_CLEAN_START_FIRST_ONLY,
    properties: Properties | None = None,
) -> None:
    """Connect ``client``, start its network thread, and return once ``ready`` says so.

    ``ready`` waits (within the caller's timeout) and answers None when the client may be
    used, or why not; ``unreachable`` names the broker in the message of a failed TCP
    connect; ``fail`` builds the caller's error from a message; ``cleanup`` runs before it
    is raised.
    """
    try:
        client.connect(
            host, port, keepalive=KEEPALIVE_S, clean_start=clean_start, properties=properties
        )
    except OSError as exc:
        cleanup()
        raise fail(f"cannot reach {unreachable}: {exc}") from exc
    client.loop_start()
    why = ready()
    if why is not None:
        cleanup()
        raise fail(why)
