"""The first connection of one of our MQTT clients to a broker, done one way.

The device's publisher, the gateway's telemetry bridge and the dynsec admin all start alike:
the TCP connect (an ``OSError`` means the broker cannot be reached), paho's network thread,
then a wait for the CONNACK and whatever the client needs after it (a SUBACK).  Either
failure becomes the caller's own ``broker_unavailable`` error, raised after the caller's
cleanup, so a half-started client (its network thread, its workers) never lingers.  Later
reconnections are paho's (``reconnect_delay_set``), not this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties

__all__ = ["KEEPALIVE_S", "connect_and_wait"]

KEEPALIVE_S: Final = 30  # a dead broker is noticed within 1.5 times this


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
