"""Ingest worker processes (gateway/workers.py, issue 16 item 3), on a real node with a real
mosquitto: the workers verify, the node keeps the state.  One device's messages keep their
order through them; every refusal comes back with its code; sessions added, re-keyed and
revoked after the workers started reach them; a worker killed with SIGKILL mid-load is started
again and asked again, so no message is lost or refused; stopping the node leaves no process."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from tests.support.gateway import ADMIN_TOKEN, next_id, settings_for
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.device.mqtt import MqttPublisher
from vitalchain.device.simulator import enrol
from vitalchain.edge.codes import status_for
from vitalchain.gateway.app import create_app
from vitalchain.gateway.startup import StartupError
from vitalchain.ledger import Ledger
from vitalchain.node import RunningGateway, running_gateway
from vitalchain.services.ports import free_port
from vitalchain.vitals import Vital

ONE = [(Vital.SPO2, 97.0)]


@pytest.fixture
def live(ledger: Ledger, tmp_path: Path) -> Iterator[tuple[RunningGateway, TestClient]]:
    settings = settings_for(
        tmp_path / "gateway", mqtt=True, ingest_workers=2, rate_burst=10_000, rate_per_s=10_000
    )
    with (
        running_gateway(settings, ledger=ledger) as running,
        TestClient(create_app(running.gateway)) as client,
    ):
        assert running.bridge is not None, "mosquitto must be installed (make setup installs it)"
        assert running.workers is not None
        yield running, client


def onboarded(client: TestClient) -> DeviceClient:
    device = DeviceClient(PrivateKey.generate(), next_id(), http=client, anonymity=False)
    device.onboard(enrol(client, ADMIN_TOKEN, PrivateKey.generate().address))
    return device


def telemetry_url(running: RunningGateway) -> str:
    """The workers' telemetry port, as the gateway tells devices."""
    assert running.workers is not None
    url = running.workers.telemetry_url
    assert url is not None
    return url


def stored_seqs(running: RunningGateway, device: DeviceClient) -> list[int]:
    return sorted(
        r.seq
        for m in running.gateway.store.messages(device=device.address)
        for r in m.message.readings
    )


def publish_all(
    devices: list[DeviceClient], count: int
) -> tuple[list[list[dict[str, object]]], list[threading.Thread]]:
    """Each device publishes ``count`` messages over MQTT on a thread of its own (started);
    the answers land in the list as each device finishes."""
    batches = [[d.prepare(ONE) for _ in range(count)] for d in devices]
    answers: list[list[dict[str, object]]] = [[] for _ in devices]

    def send(i: int) -> None:
        session = devices[i].session
        assert session is not None
        assert session.mqtt is not None
        with MqttPublisher(session.mqtt, receipts=devices[i].receipts, timeout=60) as mqtt:
            answers[i] = mqtt.publish_many(batches[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(devices))]
    for t in threads:
        t.start()
    return answers, threads


def test_the_workers_are_processes_of_their_own(live: tuple[RunningGateway, TestClient]) -> None:
    running, _ = live
    assert running.workers is not None
    pids = running.workers.pids()
    assert len(pids) == 2
    assert os.getpid() not in pids
    assert all(psutil.Process(pid).ppid() == os.getpid() for pid in pids)


def test_one_devices_messages_keep_their_order_over_mqtt(
    live: tuple[RunningGateway, TestClient],
) -> None:
    running, client = live
    device = onboarded(client)
    assert device.session is not None
    assert device.session.mqtt is not None
    messages = [device.prepare(ONE) for _ in range(200)]
    with MqttPublisher(device.session.mqtt, receipts=device.receipts) as mqtt:
        answers = mqtt.publish_many(messages)
    # Every message accepted: a message checked after a later one of its device would still
    # be stored (the seq ranges), but a copy in flight would be answered "replayed"; in order,
    # each is answered with its own seq.
    assert [a.get("last_seq", a) for a in answers] == list(range(200))
    assert stored_seqs(running, device) == list(range(200))
    assert running.workers is not None
    assert running.workers.answered >= 200


def test_refusals_come_back_with_their_codes(live: tuple[RunningGateway, TestClient]) -> None:
    running, client = live
    device = onboarded(client)
    good = device.prepare(ONE)
    assert device.send(good)["accepted"] == 1
    tampered = bytearray(device.prepare(ONE))
    tampered[-1] ^= 1
    unknown = bytearray(device.prepare(ONE))
    unknown[4:20] = bytes(16)
    headers = {"content-type": "application/octet-stream"}
    codes = []
    for body in (bytes(tampered), bytes(unknown), good, b"VCm\x01" + bytes(8)):
        r = client.post("/v1/telemetry", content=body, headers=headers)
        codes.append((r.status_code, r.json()["error"]["code"]))
    expected = ["decryption_failed", "unknown_session", "replayed", "malformed_message"]
    assert codes == [(status_for(code), code) for code in expected]
    assert stored_seqs(running, device) == [0]


def test_sessions_after_the_start_reach_the_workers(
    live: tuple[RunningGateway, TestClient],
) -> None:
    running, client = live
    device = onboarded(client)  # after the workers started
    assert device.send(device.prepare(ONE))["accepted"] == 1
    device.rekey()  # a new session key, pushed to the workers
    assert device.send(device.prepare(ONE))["accepted"] == 1
    running.gateway.revoke(device.address)  # check 3 is the node's, after the workers' 4
    with pytest.raises(DeviceError) as refused:
        device.send(device.prepare(ONE))
    assert refused.value.code == "device_revoked"
    assert stored_seqs(running, device) == [0, 1]


def test_a_worker_killed_mid_load_is_started_again_and_nothing_is_lost(
    live: tuple[RunningGateway, TestClient],
) -> None:
    running, client = live
    assert running.workers is not None
    devices = [onboarded(client) for _ in range(4)]
    answers, threads = publish_all(devices, 300)
    deadline = time.monotonic() + 30
    assert running.bridge is not None
    while running.bridge.acknowledged < 100:
        assert time.monotonic() < deadline, "no message was accepted"
        time.sleep(0.01)
    victim = running.workers.pids()[0]
    os.kill(victim, signal.SIGKILL)
    for t in threads:
        t.join(timeout=120)
    assert all("error" not in a for batch in answers for a in batch)
    assert [len(batch) for batch in answers] == [300] * 4
    for device in devices:
        assert stored_seqs(running, device) == list(range(300))
    assert running.workers.restarts == 1
    assert victim not in running.workers.pids()
    assert len(running.workers.pids()) == 2


def test_stopping_the_node_leaves_no_worker(ledger: Ledger, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "gateway", ingest_workers=2)
    with running_gateway(settings, ledger=ledger) as running:
        assert running.workers is not None
        pids = running.workers.pids()
        assert len(pids) == 2
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_http_telemetry_is_served_by_every_worker_on_one_port(
    live: tuple[RunningGateway, TestClient],
) -> None:
    running, client = live
    url = telemetry_url(running)
    assert running.workers is not None
    device = onboarded(client)
    assert device.session is not None
    assert device.session.telemetry_url == url  # told at association (v2)
    port = int(url.rsplit(":", 1)[1])
    for pid in running.workers.pids():  # each worker listens on it (SO_REUSEPORT)
        listening = [
            c.laddr.port for c in psutil.Process(pid).net_connections() if c.status == "LISTEN"
        ]
        assert port in listening
    before = running.workers.http_served()
    for _ in range(64):  # a connection each: the kernel spreads them by their source ports
        with httpx.Client(base_url=url) as fresh:
            device.http, device._telemetry_http = client, fresh
            assert device.send(device.prepare(ONE))["accepted"] == 1
    served = [a - b for a, b in zip(running.workers.http_served(), before, strict=True)]
    assert sum(served) == 64
    assert all(n > 0 for n in served), served
    assert stored_seqs(running, device) == list(range(64))


def test_the_workers_port_refuses_as_the_gateway_does(
    live: tuple[RunningGateway, TestClient],
) -> None:
    running, client = live
    url = telemetry_url(running)
    device = onboarded(client)
    tampered = bytearray(device.prepare(ONE))
    tampered[-1] ^= 1
    octets = {"content-type": "application/octet-stream"}
    metrics = running.gateway.ingest_core.metrics
    counted_before = metrics._refusals.labels(code="decryption_failed")._value.get()
    with httpx.Client(base_url=url) as http:
        answers = [
            http.post("/v1/telemetry", content=device.prepare(ONE), headers={}),
            http.post("/v1/telemetry", content=b"x" * (64 * 1024 + 1), headers=octets),
            http.post("/v1/telemetry", content=bytes(tampered), headers=octets),
            http.post("/v1/telemetry", content=b"VCm\x01" + bytes(8), headers=octets),
            http.get("/v1/health"),
        ]
    codes = [(r.status_code, r.json()["error"]["code"]) for r in answers]
    expected = [
        "unsupported_media_type", "message_too_large", "decryption_failed", "malformed_message",
        "not_found",
    ]  # fmt: skip
    assert codes == [(status_for(code), code) for code in expected]
    assert metrics._refusals.labels(code="decryption_failed")._value.get() == counted_before + 1
    assert stored_seqs(running, device) == []


def test_a_device_falls_back_to_the_gateways_url_when_the_port_is_away(
    live: tuple[RunningGateway, TestClient],
) -> None:
    running, client = live
    device = onboarded(client)
    device.telemetry_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert device.send(device.prepare(ONE))["accepted"] == 1  # through the gateway's own
    assert device._telemetry_client() is None  # and the port is left alone for a while
    assert stored_seqs(running, device) == [0]


def test_a_second_gateway_on_the_same_telemetry_port_is_refused(
    live: tuple[RunningGateway, TestClient], ledger: Ledger, tmp_path: Path
) -> None:
    running, _ = live
    url = telemetry_url(running)
    port = int(url.rsplit(":", 1)[1])
    settings = settings_for(tmp_path / "second", ingest_workers=1, telemetry_port=port)
    with pytest.raises(StartupError) as refused, running_gateway(settings, ledger=ledger):
        pass
    assert refused.value.code == "port_in_use"


def test_the_telemetry_port_is_kept_across_restarts(ledger: Ledger, tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "gateway", ingest_workers=1)
    urls = []
    for _ in range(2):
        with running_gateway(settings, ledger=ledger) as running:
            assert running.workers is not None
            urls.append(running.workers.telemetry_url)
    assert urls[0] == urls[1]
    assert (tmp_path / "gateway" / "telemetry.port").stat().st_mode & 0o777 == 0o600


def test_one_worker_under_a_full_pipe_answers_everything(ledger: Ledger, tmp_path: Path) -> None:
    """Sixteen MQTT devices, 64 messages in flight each, all on one worker: far more than a
    pipe's buffer both ways.  The node's reader once waited for the lock of a sender blocked
    on the full pipe to the worker, while the worker was blocked sending to the node: both
    ends stopped and every device timed out (found by benchmarks/gateway.py --workers 1)."""
    settings = settings_for(
        tmp_path / "gateway", mqtt=True, ingest_workers=1, rate_burst=10_000, rate_per_s=10_000
    )
    with (
        running_gateway(settings, ledger=ledger) as running,
        TestClient(create_app(running.gateway)) as client,
    ):
        devices = [onboarded(client) for _ in range(16)]
        answers, threads = publish_all(devices, 200)
        for t in threads:
            t.join(timeout=180)
        assert [len(a) for a in answers] == [200] * 16
        assert all("error" not in a for batch in answers for a in batch)
