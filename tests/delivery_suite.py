"""Alert delivery, backend-neutral: notification v2, receipts, re-send on subscribe, catch-up.

``DeliverySuite`` runs on the embedded chain (tests/unit/alerts/test_delivery.py) and on a real
anvil node (tests/integration/test_alerts_anvil.py); each subclass provides ``world``.  The
node's HTTP surface is served for real (uvicorn on a fixed loopback port, :class:`Edge`), so
it can be stopped and started again under a connected subscriber: a gateway restart as its
clients see it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.alert_suite import signed_post, wait_for
from tests.node_fixtures import World
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.sdk.alert import Alert
from vitalchain.sdk.subscriber import (
    AlertClient,
    AlertSubscriber,
    Backoff,
    GatewayRefusal,
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


class DeliverySuite:
    def test_a_subscriber_offline_during_three_alerts_gets_each_once_on_reconnect(
        self, world: World
    ) -> None:
        """Issue 13's test: three alerts raised while the subscriber cannot connect (the
        gateway's HTTP edge is down) all arrive when it is back, each exactly once."""
        team = care_team(world, patients=3)
        doctor, devices = team.doctor, team.devices
        with edge_of(world) as edge, subscribe(edge, doctor) as subscriber:
            edge.stop()  # the subscriber is offline from here
            raised = {raise_low(world, d).alert_id.hex() for d in devices}
            assert len(raised) == 3
            edge.start()
            got = [subscriber.receive(timeout=30) for _ in range(3)]
            assert sorted(n["alert_id"] for n in got) == sorted(raised)
            with pytest.raises(TimeoutError):
                subscriber.receive(timeout=0.5)  # nothing more: no duplicate returned
            # Listed (the catch-up) and re-sent (no receipt yet): each came twice.
            assert subscriber.duplicates >= 3
            assert subscriber.reconnects >= 1
            # Receipts went back over the stream: nothing is left to re-send.
            service = world.running.alerts
            wait_for(lambda: not service.pending_for(doctor.address) or None)

    def test_notification_v2_carries_id_priority_and_repeat(self, world: World) -> None:
        team = care_team(world)
        doctor, (device,) = team.doctor, team.devices
        with world.client.websocket_connect("/v1/alerts/ws") as ws:
            _ws_hello(ws, doctor)
            alert = raise_low(world, device)
            notice = ws.receive_json()
        assert (notice["v"], notice["type"]) == (2, "alert")
        assert notice["alert_id"] == alert.alert_id.hex() == notice["alert"]["alert_id"]
        assert notice["priority"] in ("high", "medium", "low")
        assert notice["repeat"] == 0
        assert notice["recipient"] == doctor.address
        assert notice["notified_at"] >= notice["received_at"] > 0

    def test_unreceipted_alerts_are_sent_again_on_every_subscribe_until_receipted(
        self, world: World
    ) -> None:
        team = care_team(world, patients=2)
        doctor, devices = team.doctor, team.devices
        first, second = (raise_low(world, d).alert_id.hex() for d in devices)
        for _ in range(2):  # no receipt: the same two, oldest first, on each subscribe
            with world.client.websocket_connect("/v1/alerts/ws") as ws:
                _ws_hello(ws, doctor)
                assert [ws.receive_json()["alert_id"] for _ in range(2)] == [first, second]
        with world.client.websocket_connect("/v1/alerts/ws") as ws:
            _ws_hello(ws, doctor)
            assert ws.receive_json()["alert_id"] == first
            ws.send_json({"v": 1, "type": "receipt", "alert_id": first})
            assert ws.receive_json()["alert_id"] == second
            answer = ws.receive_json()
            assert answer == {"v": 1, "type": "receipted", "alert_id": first, "first": True}
            ws.send_json({"v": 1, "type": "receipt", "alert_id": first})
            assert ws.receive_json()["first"] is False  # idempotent
            ws.send_json({"v": 1, "type": "receipt", "alert_id": "zz"})
            assert ws.receive_json()["error"]["code"] == "invalid_request"
            ws.send_json({"v": 1, "type": "receipt", "alert_id": "00" * 16})
            assert ws.receive_json()["error"]["code"] == "unknown_alert"
        with world.client.websocket_connect("/v1/alerts/ws") as ws:
            _ws_hello(ws, doctor)
            assert ws.receive_json()["alert_id"] == second  # only the unreceipted one
        # The receipt is not the clinician's acknowledgement.
        assert world.running.alerts.escalator.state(first).acknowledged_by is None

    def test_list_since_returns_what_was_delivered_and_refuses_clearly(self, world: World) -> None:
        team = care_team(world)
        doctor, (device,) = team.doctor, team.devices
        start_ms = int(time.time() * 1000) - 1
        alert = raise_low(world, device)
        r, _ = _list(world, doctor, start_ms)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["v"] == 1
        assert [n["alert_id"] for n in body["alerts"]] == [alert.alert_id.hex()]
        assert body["alerts"][0]["v"] == 2
        r, _ = _list(world, doctor, int(time.time() * 1000) + 60_000)
        assert r.json()["alerts"] == []  # nothing delivered after that
        # refusals: another's signature, a reused challenge, a bad since (each stores nothing)
        r, _ = _list(world, doctor, start_ms, signer=PrivateKey.generate())
        assert _error(r) == (401, "invalid_signature")
        r, nonce = _list(world, doctor, start_ms)
        r, _ = _list(world, doctor, start_ms, nonce=nonce)
        assert _error(r) == (401, "challenge_invalid")
        for since in (-1, "yesterday", 2**63):
            r, _ = _list(world, doctor, since)
            assert _error(r) == (422, "invalid_request"), since
        stranger = world.provider()
        r, _ = _list(world, stranger, start_ms)
        assert r.json()["alerts"] == []  # not a recipient: nothing of anyone else's

    def test_receipts_over_http_for_mqtt_and_list_users(self, world: World) -> None:
        team = care_team(world)
        doctor, (device,) = team.doctor, team.devices
        alert_id = raise_low(world, device).alert_id.hex()
        client = AlertClient(doctor, world.client)
        unknown = "00" * 16
        results = client.receipts([alert_id, unknown])
        assert results[0] == {"alert_id": alert_id, "first": True}
        assert results[1]["error"]["code"] == "unknown_alert"
        assert client.receipts([alert_id]) == [{"alert_id": alert_id, "first": False}]
        stranger = AlertClient(world.provider(), world.client)
        assert stranger.receipts([alert_id])[0]["error"]["code"] == "not_a_recipient"
        assert not world.running.alerts.pending_for(doctor.address)
        body = {"alert_ids": [alert_id]}
        r = signed_post(world, doctor, "/v1/alerts/receipts", "receipt", alert_id, body=body,
                        signer=PrivateKey.generate())  # fmt: skip
        assert _error(r) == (401, "invalid_signature")
        r = signed_post(world, doctor, "/v1/alerts/receipts", "receipt", body={"alert_ids": []})
        assert _error(r) == (422, "invalid_request")

    def test_a_snooze_takes_only_the_offered_durations(self, world: World) -> None:
        team = care_team(world)
        doctor, body_patient = team.doctor, team.patients[0].address
        choices = world.running.alerts.snooze_choices(body_patient, Vital.SPO2)
        assert choices
        body = {"patient": body_patient, "vital": "spo2"}
        for odd in (max(choices) + 1.0, 7.0 * 86400):  # a high alarm: never past its maximum
            fields = (body_patient, "spo2", repr(odd))
            r = signed_post(world, doctor, "/v1/alerts/snoozes", "snooze", *fields,
                            body={**body, "duration_s": odd})  # fmt: skip
            assert _error(r) == (422, "invalid_snooze")
            assert r.json()["error"]["choices_s"] == list(choices)
        for junk in (0.0, -300.0, "300"):
            r = signed_post(world, doctor, "/v1/alerts/snoozes", "snooze", body_patient, "spo2",
                            repr(junk), body={**body, "duration_s": junk})  # fmt: skip
            assert _error(r) == (422, "invalid_request"), junk
        assert not world.running.alerts.escalator.is_snoozed(doctor.address, body_patient,
                                                             Vital.SPO2)  # fmt: skip
        odd = max(choices) + 1.0
        ok = choices[0]
        fields = (body_patient, "spo2", repr(ok))
        r = signed_post(world, doctor, "/v1/alerts/snoozes", "snooze", *fields,
                        body={**body, "duration_s": ok})  # fmt: skip
        assert r.status_code == 200, r.text
        # The SDK's refusal carries the choices too.
        client = AlertClient(doctor, world.client)
        with pytest.raises(GatewayRefusal) as refused:
            client.snooze(body_patient, Vital.SPO2, odd)
        assert (refused.value.code, refused.value.choices) == ("invalid_snooze", tuple(choices))
