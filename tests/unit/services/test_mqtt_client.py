"""The first connection of an MQTT client (services.mqtt_client), against real sockets: a
port nobody listens on, and one that accepts the TCP connection but never sends a CONNACK.
Both failures are the caller's error, raised only after the caller's cleanup."""

from __future__ import annotations

import socket
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from vitalchain.errors import VitalchainError
from vitalchain.services.mqtt_client import connect_and_wait
from vitalchain.services.ports import LOOPBACK


class _Unavailable(VitalchainError):
    code = "broker_unavailable"


def _client() -> mqtt.Client:
    return mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)


def test_an_unreachable_broker_is_the_callers_error_after_its_cleanup() -> None:
    client, cleaned = _client(), threading.Event()
    with socket.socket() as bound:
        bound.bind((LOOPBACK, 0))  # bound, not listening: the connection is refused
        port = bound.getsockname()[1]
        with pytest.raises(_Unavailable, match="cannot reach the test broker: ") as err:
            connect_and_wait(
                client, LOOPBACK, port, ready=lambda: None, unreachable="the test broker",
                fail=_Unavailable, cleanup=cleaned.set,
            )  # fmt: skip
    assert isinstance(err.value.__cause__, OSError)
    assert cleaned.is_set()


def test_a_client_that_never_gets_ready_is_stopped_and_refused() -> None:
    client = _client()
    stopped: list[bool] = []

    def cleanup() -> None:
        client.disconnect()
        client.loop_stop()
        stopped.append(True)

    with socket.create_server((LOOPBACK, 0)) as silent:  # accepts, never answers CONNACK
        port = silent.getsockname()[1]
        with pytest.raises(_Unavailable, match=r"^no CONNACK$"):
            connect_and_wait(
                client, LOOPBACK, port, ready=lambda: "no CONNACK", unreachable="the test broker",
                fail=_Unavailable, cleanup=cleanup,
            )  # fmt: skip
    assert stopped == [True]
    assert client._thread is None  # paho's network thread is gone


def test_a_ready_client_is_left_running() -> None:
    client = _client()
    with socket.create_server((LOOPBACK, 0)) as server:
        try:
            connect_and_wait(
                client, LOOPBACK, server.getsockname()[1], ready=lambda: None,
                unreachable="the test broker", fail=_Unavailable,
                cleanup=lambda: pytest.fail("a ready client was cleaned up"),
            )  # fmt: skip
            assert client._thread is not None
            assert client._thread.is_alive()
        finally:
            client.disconnect()
            client.loop_stop()
