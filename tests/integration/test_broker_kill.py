"""kill -9 the gateway while a device streams over MQTT: nothing the device sent is lost.

The gateway runs as its own process (``python -m vitalchain gateway run``) against a real
anvil node, so that the chain outlives it.  The device's client publishes every message
once and never resends (only MQTT's own retransmission of an unacknowledged QoS 1 publish
runs).  Each message must get an answer all the same, ``accepted`` or ``replayed``: the
broker died with the gateway, came back on the same port with its persistence file, the
device reconnected by itself, and the gateway's session took up what was queued.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.support.broker import brokers_of
from tests.support.gateway import ADMIN_TOKEN
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.device.mqtt import MqttPublisher
from vitalchain.device.simulator import enrol
from vitalchain.services.ports import free_port
from vitalchain.vitals import Vital

BATCH = 8


def start_gateway(data_dir: Path, port: int, rpc_url: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "vitalchain", "gateway", "run", "--data-dir", str(data_dir),
         "--port", str(port), "--rpc-url", rpc_url, "--group-id", "4343"],
        env=os.environ | {"VITALCHAIN_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the gateway exited with {proc.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, "the gateway", 90)
    return proc


def test_a_killed_gateway_loses_nothing_sent_over_mqtt(anvil_url: str, tmp_path: Path) -> None:
    data_dir, port = tmp_path / "gateway", free_port()
    proc = start_gateway(data_dir, port, anvil_url)
    answers: list[dict[str, Any]] = []
    failure: list[BaseException] = []
    stop = threading.Event()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            device = DeviceClient(PrivateKey.generate(), 778_000_001, http=http)
            device.onboard(enrol(http, ADMIN_TOKEN, PrivateKey.generate().address))
        assert device.session is not None
        assert device.session.mqtt is not None
        mqtt = MqttPublisher(device.session.mqtt, timeout=90, reconnect_delay=(1, 2))
        mqtt.connect()

        def stream() -> None:
            try:
                while not stop.is_set():
                    batch = [device.prepare([(Vital.HEART_RATE, 72)]) for _ in range(BATCH)]
                    answers.extend(mqtt.publish_many(batch, window=BATCH))
            except DeviceError as exc:
                failure.append(exc)

        sender = threading.Thread(target=stream)
        sender.start()
        try:
            wait_for(lambda: len(answers) >= 40 or bool(failure), "the stream")
            proc.send_signal(signal.SIGKILL)  # mid-stream, no clean shutdown
            proc.wait(timeout=10)
            wait_for(lambda: not brokers_of(data_dir), "the broker to die with it", 10)
            before = len(answers)
            proc = start_gateway(data_dir, port, anvil_url)
            wait_for(lambda: len(answers) >= before + 40 or bool(failure), "more answers", 90)
        finally:
            stop.set()
            sender.join(timeout=100)
            mqtt.close()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=20)
        for pid in brokers_of(data_dir):
            os.kill(pid, signal.SIGKILL)
    assert failure == []
    codes = [a.get("error", {}).get("code", "accepted") for a in answers]
    assert set(codes) <= {"accepted", "replayed"}, codes
    assert codes.count("accepted") >= 80  # readings stored after the restart, too
    seqs = [int(a["last_seq"]) for a in answers if "error" not in a]
    assert seqs == sorted(seqs)  # in the order sent, across the restart
    assert not brokers_of(data_dir)
