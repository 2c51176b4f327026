"""Alerts delivered over MQTT through a real mosquitto: each recipient reads only its own topic,
and confirms receipt over HTTP (``POST /v1/alerts/receipts``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.alerts import alert_world, low_spo2, signed_post, ward
from tests.support.broker import NOT_AUTHORIZED, Probe
from tests.support.node import World
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import EmbeddedBackend, Ledger
from vitalchain.sdk.subscriber import AlertClient
from vitalchain.services.mosquitto import BrokerEndpoint


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    admin = PrivateKey.generate()
    ledger = Ledger.deploy(EmbeddedBackend(), admin)
    yield from alert_world((ledger, admin), tmp_path / "node", escalating=False, mqtt=True)


def subscriber(world: World, key: PrivateKey) -> tuple[Probe, dict[str, Any]]:
    r = signed_post(world, key, "/v1/alerts/mqtt-credentials", "mqtt", body={})
    assert r.status_code == 201, r.text
    creds = r.json()
    endpoint = BrokerEndpoint(creds["host"], creds["port"])
    probe = Probe(endpoint, creds["username"], creds["password"], creds["client_id"])
    assert probe.connect() == 0
    return probe, creds


def test_alerts_reach_the_recipients_topic_and_no_one_else(world: World) -> None:
    w = ward(world)
    doctor, doctor_creds = subscriber(world, w.doctor)
    stranger, stranger_creds = subscriber(world, w.stranger)
    try:
        assert doctor_creds["topic"].endswith(f"/alerts/{w.doctor.address}")
        assert doctor.subscribe(doctor_creds["topic"]) in (0, 1)
        assert stranger.subscribe(stranger_creds["topic"]) in (0, 1)
        # The ACL: nobody may read another recipient's alerts.
        assert stranger.subscribe(doctor_creds["topic"]) == NOT_AUTHORIZED
        alert = low_spo2(world, w)
        notice = json.loads(doctor.expect(doctor_creds["topic"]))
        assert notice["alert"]["alert_id"] == alert.alert_id.hex()
        assert notice["notified_at"] >= notice["received_at"]
        # Notification v2, as on the WebSocket: its id, priority and repeat number.
        assert (notice["v"], notice["alert_id"], notice["repeat"]) == (2, alert.alert_id.hex(), 0)
        assert notice["priority"] in ("high", "medium", "low")
        assert stranger.messages.empty()
        # An MQTT reader confirms receipt over HTTP; then nothing is left to re-send to it.
        pending = world.running.alerts.pending_for
        assert [n.alert.alert_id for n in pending(w.doctor.address)] == [alert.alert_id]
        receipts = AlertClient(w.doctor, world.client).receipts([alert.alert_id.hex()])
        assert receipts == [{"alert_id": alert.alert_id.hex(), "first": True}]
        assert pending(w.doctor.address) == []
    finally:
        doctor.close()
        stranger.close()


def test_credentials_need_a_signed_challenge(world: World) -> None:
    w = ward(world, ring=False)
    r = signed_post(world, w.doctor, "/v1/alerts/mqtt-credentials", "mqtt", body={},
                    signer=w.stranger)  # fmt: skip
    assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_signature")
