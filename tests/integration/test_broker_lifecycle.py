"""The managed broker across restarts and crashes (issue 12, A.1-A.3), on real processes.

- The broker dies with its gateway, whatever ends the gateway (SIGTERM, kill -9), and the
  gateway restarts a broker that died on its own, reporting it in ``Mosquitto.status()``.
- The MQTT port is chosen once per data directory, so devices enrolled before a restart
  reconnect by themselves and are stored.
- Telemetry sent while the gateway is away is queued by the broker (QoS 1, persistent
  session, persistence on disk) and ingested when the gateway is back, with no device resend.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.support.broker import SUCCESS, Probe, brokers_of
from tests.support.gateway import ADMIN_TOKEN, next_id
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.device.mqtt import MqttPublisher
from vitalchain.device.simulator import enrol
from vitalchain.gateway.dynsec import BrokerAdmin
from vitalchain.gateway.mqtt import MqttBridge, MqttProbe
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import EmbeddedBackend, Ledger
from vitalchain.node import RunningGateway, running_gateway
from vitalchain.services.mosquitto import BrokerEndpoint, BrokerError, Mosquitto
from vitalchain.services.ports import accepts, free_port
from vitalchain.vitals import Vital
from vitalchain.wire.onboarding import MqttGrant

WAIT = 20.0


@pytest.fixture
def ledger() -> Ledger:
    return Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())


def settings_for(data_dir: Path, **overrides: object) -> GatewaySettings:
    fields: dict[str, object] = {
        "data_dir": data_dir,
        "group_id": next_id(),
        "master_object_id": next_id(),
        "admin_token": SecretStr(ADMIN_TOKEN),
        "mqtt": True,
        **overrides,
    }
    return GatewaySettings(**fields)  # type: ignore[arg-type]


@contextlib.contextmanager
def gateway(
    settings: GatewaySettings, ledger: Ledger
) -> Iterator[tuple[RunningGateway, TestClient]]:
    with running_gateway(settings, ledger=ledger) as running, TestClient(running.app()) as client:
        assert running.broker is not None
        assert running.bridge is not None
        yield running, client


def onboard(client: TestClient) -> tuple[DeviceClient, MqttGrant]:
    device = DeviceClient(PrivateKey.generate(), next_id(), http=client)
    device.onboard(enrol(client, ADMIN_TOKEN, PrivateKey.generate().address))
    assert device.session is not None
    assert device.session.mqtt is not None
    return device, device.session.mqtt


def reading(device: DeviceClient) -> bytes:
    return device.prepare([(Vital.SPO2, 97)])


# --- A.1: the broker dies with its gateway, and is supervised while the gateway lives ----------


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_broker_dies_with_its_gateway_process(tmp_path: Path, how: signal.Signals) -> None:
    """uvicorn re-raises SIGTERM after its shutdown, so no cleanup code of ours runs, and
    kill -9 runs none by definition: the broker must go anyway (PR_SET_PDEATHSIG)."""
    data_dir, port = tmp_path / "gw", free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitalchain", "gateway", "run",
         "--data-dir", str(data_dir), "--port", str(port)],
        env=os.environ | {"VITALCHAIN_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for(lambda: accepts(port) or proc.poll() is not None, "the gateway", 120)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        brokers = brokers_of(data_dir)
        assert len(brokers) == 1
        proc.send_signal(how)
        proc.wait(timeout=30)
        wait_for(lambda: not brokers_of(data_dir), "the broker to exit", 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        for pid in brokers_of(data_dir):  # never leave one behind, even when failing
            os.kill(pid, signal.SIGKILL)


def test_a_killed_broker_is_restarted_and_ingest_resumes(tmp_path: Path, ledger: Ledger) -> None:
    with gateway(settings_for(tmp_path / "gw"), ledger) as (running, client):
        broker = running.broker
        assert broker is not None
        first = broker.status()
        assert first.up
        assert first.restarts == 0
        assert first.pid is not None
        assert first.last_ok is not None
        assert first.last_error is None
        device, creds = onboard(client)
        with MqttPublisher(creds, reconnect_delay=(1, 2)) as mqtt:
            assert mqtt.publish(reading(device))["accepted"] == 1
            os.kill(first.pid, signal.SIGKILL)
            wait_for(lambda: broker.status().restarts == 1 and broker.status().up, "a restart")
            second = broker.status()
            assert second.port == first.port
            assert second.pid not in (None, first.pid)
            assert brokers_of(broker.data_dir) == [second.pid]
            bridge = running.bridge
            assert bridge is not None
            wait_for(lambda: bridge.connected, "the gateway to reconnect")
            probe = MqttProbe(bridge, broker)
            probe.check()  # what health reads: broker up, gateway connected
            before = running.gateway.store.count_readings()
            assert mqtt.publish(reading(device))["accepted"] == 1  # the device reconnected
            assert running.gateway.store.count_readings() == before + 1
    assert broker.status().state == "stopped"
    assert brokers_of(broker.data_dir) == []
    with pytest.raises(BrokerError, match="broker is stopped") as info:
        probe.check()
    assert info.value.code == "broker_unavailable"


def test_status_reports_a_broker_that_cannot_come_back(tmp_path: Path) -> None:
    """While its port is taken, a dead broker is reported down, with the reason."""
    ticks = iter(range(1_000_000))
    with Mosquitto(tmp_path / "mqtt", clock=lambda: float(next(ticks))) as broker:
        up = broker.status()
        assert up.state == "up"
        assert up.last_ok is not None
        pid = up.pid
        assert pid is not None
        squatter = socket.socket()
        try:
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not brokers_of(broker.data_dir), "the kill")
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", up.port))
            squatter.listen()
            wait_for(lambda: broker.status().last_error is not None, "the failure")
            wait_for(lambda: "in use" in (broker.status().last_error or ""), "a failed restart")
            down = broker.status()
            assert down.state == "down"
            assert down.pid is None
            assert down.restarts == 0
            assert down.last_ok is not None
            assert down.last_ok <= float(next(ticks))
        finally:
            squatter.close()
        wait_for(lambda: broker.status().up, "the restart once the port is free")
        assert broker.status().restarts == 1
        assert broker.status().last_error is None
    assert broker.status().state == "stopped"


# --- A.2: one MQTT port per data directory ----------------------------------------------------


def test_the_port_is_kept_and_an_explicit_one_wins(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "mqtt") as first:
        port = first.endpoint.port
    assert first.port_path.read_text().strip() == str(port)
    modes = {p.name: p.stat().st_mode & 0o777 for p in first.data_dir.rglob("*")}
    assert modes.pop("persistence") == 0o700
    assert set(modes.values()) == {0o600}, modes  # port, conf, log, dynsec, secret, db
    assert {"port", "mosquitto.db"} <= set(modes)
    with Mosquitto(tmp_path / "mqtt") as again:
        assert again.endpoint.port == port
    other = free_port()
    with Mosquitto(tmp_path / "mqtt", port=other) as pinned:
        assert pinned.endpoint.port == other
    with Mosquitto(tmp_path / "mqtt") as after:
        assert after.endpoint.port == other  # the devices were last given this one


def test_a_garbled_port_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "mqtt").mkdir()
    (tmp_path / "mqtt" / "port").write_text("not a port\n")
    with pytest.raises(BrokerError, match="does not hold a port") as info:
        Mosquitto(tmp_path / "mqtt")
    assert info.value.code == "broker_start_failed"


def test_devices_from_before_a_restart_reconnect_and_are_stored(
    tmp_path: Path, ledger: Ledger
) -> None:
    """No mqtt_port set: the port must not move, and the device's own client, connected
    before the restart, must find the broker again by itself."""
    settings = settings_for(tmp_path / "gw")
    assert settings.mqtt_port is None
    with gateway(settings, ledger) as (running, client):
        device, creds = onboard(client)
        mqtt = MqttPublisher(creds, reconnect_delay=(1, 2))
        mqtt.connect()
        assert mqtt.publish(reading(device))["accepted"] == 1
        assert running.broker is not None
        port = running.broker.endpoint.port
    try:
        wait_for(lambda: not mqtt.connected, "the device to notice")
        with gateway(settings, ledger) as (running, _):
            assert running.broker is not None
            assert running.broker.endpoint.port == port
            before = running.gateway.store.count_readings()
            acks = mqtt.publish_many([reading(device) for _ in range(5)])
            assert [a["accepted"] for a in acks] == [1] * 5
            assert running.gateway.store.count_readings() == before + 5
    finally:
        mqtt.close()


# --- A.3: the broker queues telemetry while the gateway is away --------------------------------


def test_telemetry_sent_while_the_gateway_is_away_is_ingested(
    tmp_path: Path, ledger: Ledger
) -> None:
    """The device here never resends: a bare MQTT client publishes each message once."""
    settings = settings_for(tmp_path / "gw")
    with gateway(settings, ledger) as (running, client):
        device, creds = onboard(client)
        before = running.gateway.store.count_readings()
        assert running.bridge is not None
        running.bridge.stop()  # the gateway's connection goes; its session stays
        probe = Probe(BrokerEndpoint(creds.host, creds.port), creds.username, creds.password,
                      creds.username)  # fmt: skip
        try:
            assert probe.connect() == SUCCESS
            for _ in range(3):  # 0x00, not 0x10: the offline session is a subscriber
                assert probe.publish(creds.telemetry_topic, reading(device)) == SUCCESS
        finally:
            probe.close()
        assert running.gateway.store.count_readings() == before
    # The whole gateway and its broker restart in between: the queue is on disk.
    with gateway(settings, ledger) as (running, client):
        assert running.broker is not None
        persisted = running.broker.persistence_dir
        assert persisted.stat().st_mode & 0o777 == 0o700
        wait_for(lambda: running.gateway.store.count_readings() == before + 3, "the backlog")
        probe = Probe(BrokerEndpoint(creds.host, creds.port), creds.username, creds.password,
                      creds.username)  # fmt: skip
        try:
            assert probe.connect() == SUCCESS
            for _ in range(2):  # and while connected, as before
                assert probe.publish(creds.telemetry_topic, reading(device)) == SUCCESS
        finally:
            probe.close()
        wait_for(lambda: running.gateway.store.count_readings() == before + 5, "live telemetry")


def test_a_delivery_is_acknowledged_to_the_broker_only_once_stored(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A gateway that received a message but stopped before storing it gets it again."""
    with gateway(settings_for(tmp_path / "gw"), ledger) as (running, client):
        bridge, broker = running.bridge, running.broker
        assert bridge is not None
        assert broker is not None
        device, creds = onboard(client)
        core = running.gateway.ingest_core
        real_submit = core.submit
        held: list[object] = []

        def hold(payload: bytes, **kwargs: object) -> object:
            from concurrent.futures import Future

            held.append(payload)
            return Future()  # never settles: the store "never commits"

        core.submit = hold  # type: ignore[method-assign,assignment]
        probe = Probe(BrokerEndpoint(creds.host, creds.port), creds.username, creds.password,
                      creds.username)  # fmt: skip
        try:
            assert probe.connect() == SUCCESS
            message = reading(device)
            assert probe.publish(creds.telemetry_topic, message) == SUCCESS
            wait_for(lambda: held == [message], "the delivery")
            bridge.stop(timeout=0.5)  # gives up on the unsettled message, without a PUBACK
        finally:
            probe.close()
            core.submit = real_submit  # type: ignore[method-assign]
        before = running.gateway.store.count_readings()
        group = running.gateway.group_id
        username, password = f"gateway-{group}", "a-new-password-for-the-second-bridge"
        with BrokerAdmin(broker.endpoint, *broker.admin) as admin:
            admin.ensure_gateway(group, username, password)
        second = MqttBridge(running.gateway, broker.endpoint, username, password)
        second.start()
        try:
            wait_for(lambda: running.gateway.store.count_readings() == before + 1, "redelivery")
        finally:
            second.stop()


def test_a_refused_device_stops_retrying(tmp_path: Path, ledger: Ledger) -> None:
    """Reconnecting forever is for outages: revoked credentials are final, said at once."""
    with gateway(settings_for(tmp_path / "gw"), ledger) as (running, client):
        device, creds = onboard(client)
        running.gateway.revoke(device.address)
        mqtt = MqttPublisher(creds, timeout=WAIT)
        began = time.monotonic()
        with pytest.raises(DeviceError, match="refused the credentials") as info:
            mqtt.connect()
        assert info.value.code == "broker_unavailable"
        assert time.monotonic() - began < WAIT / 2
        with pytest.raises(DeviceError, match="refused"):
            mqtt.publish(reading(device))
