"""The gateway with real parts: MQTT through mosquitto, and onboarding on a real anvil node."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.gateway import (
    ADMIN_TOKEN,
    Harness,
    error_code,
    make_harness,
    next_id,
    settings_for,
)
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.device.mqtt import MqttPublisher
from vitalchain.device.simulator import enrol
from vitalchain.gateway.app import create_app
from vitalchain.gateway.errors import GatewayError
from vitalchain.ledger import ANVIL_DEV_KEY, DeviceStatus, EmbeddedBackend, Ledger, RpcBackend
from vitalchain.node import RunningGateway, running_gateway
from vitalchain.services.ports import free_port
from vitalchain.vitals import Vital


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, TestClient]]:
    settings = settings_for(
        tmp_path_factory.mktemp("live"),
        mqtt=True,
    )
    ledger = Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())
    with (
        running_gateway(settings, ledger=ledger) as running,
        TestClient(create_app(running.gateway)) as client,
    ):
        assert running.bridge is not None, "mosquitto must be installed (make setup installs it)"
        yield running, client


def onboard(client: TestClient) -> DeviceClient:
    device = DeviceClient(PrivateKey.generate(), next_id(), http=client)
    device.onboard(enrol(client, ADMIN_TOKEN, PrivateKey.generate().address))
    return device


def test_telemetry_over_mqtt(live: tuple[RunningGateway, TestClient]) -> None:
    running, client = live
    device = onboard(client)
    assert device.session is not None
    creds = device.session.mqtt
    assert creds is not None
    assert creds.username == device.address
    before = running.gateway.store.count_readings()
    with MqttPublisher(creds) as mqtt:
        acks = mqtt.publish_many(
            [device.prepare([(Vital.SPO2, 97), (Vital.HEART_RATE, 70)]) for _ in range(20)]
        )
        assert [a["accepted"] for a in acks] == [2] * 20
        # a refusal comes back on the ack topic too, and stores nothing
        replay = device.prepare([(Vital.SPO2, 96)])
        mqtt.publish(replay)
        with pytest.raises(DeviceError) as err:
            mqtt.publish(replay)
        assert err.value.code == "replayed"
    assert running.gateway.store.count_readings() == before + 41


def test_mqtt_topic_must_match_the_session(live: tuple[RunningGateway, TestClient]) -> None:
    """Belt and braces behind the broker ACL: the ingest core checks the topic's device."""
    running, client = live
    device, other = onboard(client), onboard(client)
    with pytest.raises(GatewayError) as err:
        running.gateway.ingest(device.prepare([(Vital.SPO2, 97)]), topic_device=other.address)
    assert err.value.code == "wrong_device"


def test_revoked_device_loses_its_mqtt_credentials(live: tuple[RunningGateway, TestClient]) -> None:
    running, client = live
    device = onboard(client)
    assert device.session is not None
    assert device.session.mqtt is not None
    running.gateway.revoke(device.address)
    with pytest.raises(DeviceError) as err, MqttPublisher(device.session.mqtt, timeout=3) as mqtt:
        mqtt.publish(device.prepare([(Vital.SPO2, 97)]))
    assert err.value.code in ("broker_unavailable", "ack_timeout")


# --- the same onboarding and telemetry against a real anvil node --------------------------------


@pytest.fixture(scope="module")
def anvil_harness(anvil_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    ledger = Ledger.deploy(
        RpcBackend(anvil_url, funder=PrivateKey(ANVIL_DEV_KEY)), PrivateKey.generate()
    )
    yield from make_harness(
        ledger, tmp_path_factory.mktemp("anvil-gw"), next_id(), revocation_poll_s=0.05
    )


def test_onboarding_and_telemetry_on_anvil(anvil_harness: Harness) -> None:
    device = anvil_harness.onboarded()
    assert anvil_harness.ledger.device(device.address).status is DeviceStatus.ACTIVE
    ack = device.send(device.prepare([(Vital.BODY_TEMPERATURE, 36.8)]))
    assert ack["accepted"] == 1


def test_revocation_within_one_block_on_anvil(anvil_harness: Harness) -> None:
    device = anvil_harness.onboarded()
    device.send(device.prepare([(Vital.GLUCOSE, 100)]))
    gw = anvil_harness.gateway
    revoked_in = anvil_harness.ledger.revoke_device(
        gw.master, gw.group_id, device.address
    ).block_number
    anvil_harness.ledger.fund(PrivateKey.generate().address)  # one more block
    assert anvil_harness.ledger.block_number() == revoked_in + 1
    time.sleep(0.2)  # the watcher polls every 50 ms
    with pytest.raises(DeviceError) as err:
        device.send(device.prepare([(Vital.GLUCOSE, 100)]))
    assert err.value.code == "device_revoked"


def test_chain_refusal_on_anvil(anvil_harness: Harness, tmp_path: Path) -> None:
    r = anvil_harness.client.post(
        "/v1/sessions", json={"v": 1, "device_key": "02" + "11" * 32, "object_id": 1}
    )
    assert error_code(r) in ("invalid_key", "object_id_taken")


def test_device_mqtt_credentials_survive_a_gateway_restart(tmp_path: Path) -> None:
    settings = settings_for(
        tmp_path / "gw",
        mqtt=True,
        mqtt_port=free_port(),  # deployments pin the broker's port
    )
    ledger = Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())
    with (
        running_gateway(settings, ledger=ledger) as running,
        TestClient(create_app(running.gateway)) as client,
    ):
        device = onboard(client)
        assert device.session is not None
        creds = device.session.mqtt
        assert creds is not None
    # gateway and broker are gone; start them again on the same data directory
    with running_gateway(settings, ledger=ledger) as running:
        assert running.broker is not None
        assert running.broker.endpoint.port == creds.port
        with MqttPublisher(creds) as mqtt:  # the very credentials issued before the restart
            assert mqtt.publish(device.prepare([(Vital.SPO2, 97)]))["accepted"] == 1
