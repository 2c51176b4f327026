"""Helpers of the alert delivery suite (tests/unit/alerts/test_delivery.py).  The node's HTTP
surface is served for real (uvicorn on a fixed loopback port, :class:`Edge`), so it can be
stopped and started again under a connected subscriber: a gateway restart as its clients see it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.support.node import World
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.sdk.alert import Alert
from vitalchain.sdk.subscriber import (
    AlertSubscriber,
    Backoff,
    sign_action,
)
from vitalchain.services.ports import free_port
from vitalchain.vitals import Vital


class Edge:
    """A node's app on one loopback port, stoppable and restartable on the same port."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/v1/alerts/ws"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.world.running.app(), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_for(lambda: self._server.started or not self._thread.is_alive())
        assert self._server.started, "the HTTP edge did not start"

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=20)
            assert not self._thread.is_alive(), "the HTTP edge did not stop"
        self._server = self._thread = None


@contextlib.contextmanager
def edge_of(world: World) -> Iterator[Edge]:
    edge = Edge(world)
    edge.start()
    try:
        yield edge
    finally:
        edge.stop()


@dataclass
class Team:
    doctor: PrivateKey  # consented for SpO2 by every patient
    patients: list[PrivateKey]
    devices: list[DeviceClient]  # devices[i] is patients[i]'s


def care_team(world: World, patients: int = 1) -> Team:
    team = Team(world.provider(), [], [])
    for _ in range(patients):
        patient = world.patient()
        world.consent(patient, team.doctor, Vital.SPO2)
        team.patients.append(patient)
        team.devices.append(world.device(patient))
    return team


def raise_low(world: World, device: DeviceClient) -> Alert:
    """One sustained low-SpO2 episode on ``device``: one alert."""
    alerts = world.running.alerts
    before = alerts.raised_total
    device.send(device.prepare([(Vital.SPO2, 85.0)] * 3))
    wait_for(lambda: alerts.raised_total > before or None)
    return alerts.raised[-1]


def subscribe(edge: Edge, key: PrivateKey, **kwargs: Any) -> AlertSubscriber:
    kwargs.setdefault("backoff", Backoff(initial=0.05, cap=0.5))
    kwargs.setdefault("on_event", lambda name, d: print("EVENT", name, d))
    return AlertSubscriber(edge.ws_url, key, **kwargs)


def _ws_hello(ws: Any, key: PrivateKey) -> None:
    nonce = bytes.fromhex(ws.receive_json()["challenge"])
    ws.send_json(
        {"v": 1, "address": key.address, "signature": sign_action(key, "subscribe", nonce)}
    )
    assert ws.receive_json()["subscribed"] == key.address


def _list(world: World, key: PrivateKey, since: object, *, signer: PrivateKey | None = None,
          nonce: bytes | None = None) -> Any:  # fmt: skip
    if nonce is None:
        r = world.client.post("/v1/alerts/challenges", json={"v": 1, "address": key.address})
        nonce = bytes.fromhex(r.json()["nonce"])
    signature = sign_action(signer or key, "list", nonce, str(since))
    params = {"address": key.address, "since": str(since), "nonce": nonce.hex(),
              "signature": signature}  # fmt: skip
    return world.client.get("/v1/alerts", params=params), nonce


def _error(response: Any) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]
