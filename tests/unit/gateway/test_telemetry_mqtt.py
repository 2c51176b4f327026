"""The telemetry answers of issue 12 over MQTT, through a real mosquitto: a message that
arrives after a later one is stored, and the refusal codes reach the device's ack topic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.gateway import ADMIN_TOKEN, next_id, settings_for
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.device.mqtt import MqttPublisher
from vitalchain.device.simulator import enrol
from vitalchain.gateway.app import create_app
from vitalchain.ledger import Ledger
from vitalchain.node import RunningGateway, running_gateway
from vitalchain.vitals import Vital


@pytest.fixture
def live(ledger: Ledger, tmp_path: Path) -> Iterator[tuple[RunningGateway, TestClient]]:
    settings = settings_for(
        tmp_path / "gateway",
        mqtt=True,
    )
    with (
        running_gateway(settings, ledger=ledger) as running,
        TestClient(create_app(running.gateway)) as client,
    ):
        assert running.bridge is not None, "mosquitto must be installed (make setup installs it)"
        yield running, client


def test_out_of_order_and_conflicts_over_mqtt(live: tuple[RunningGateway, TestClient]) -> None:
    running, client = live
    device = DeviceClient(PrivateKey.generate(), next_id(), http=client)
    device.onboard(enrol(client, ADMIN_TOKEN, PrivateKey.generate().address))
    assert device.session is not None
    assert device.session.mqtt is not None
    k = device.prepare([(Vital.SPO2, 97)])  # seq 0
    k1 = device.prepare([(Vital.SPO2, 96)])  # seq 1
    overlap = DeviceClient(device.key, device.object_id, first_seq=1)
    overlap.attach(device._header[4:], device.session_key or b"", device._group_id)
    conflicting = overlap.prepare([(Vital.SPO2, 95), (Vital.SPO2, 94)])  # seqs 1, 2
    with MqttPublisher(device.session.mqtt) as mqtt:
        answers = [mqtt.publish_many([m])[0] for m in (k1, k, k, conflicting)]
    assert [a.get("accepted") for a in answers[:2]] == [1, 1]
    assert [a["error"]["code"] for a in answers[2:]] == ["replayed", "seq_conflict"]
    stored = sorted(
        r.seq
        for m in running.gateway.store.messages(device=device.address)
        for r in m.message.readings
    )
    assert stored == [0, 1]
