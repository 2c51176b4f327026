"""Kill -9 the gateway mid-stream: every acknowledged reading survives, and devices carry on.

The gateway runs as its own process (``python -m vitalchain gateway run``) against a real
anvil node, so that the chain outlives it; the test owns both processes.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import ADMIN_TOKEN
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.device.simulator import enrol
from vitalchain.services.ports import free_port
from vitalchain.vitals import Vital


def start_gateway(data_dir: Path, port: int, rpc_url: str) -> subprocess.Popen[bytes]:
    env = os.environ | {"VITALCHAIN_GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "vitalchain", "gateway", "run",
            "--data-dir", str(data_dir), "--port", str(port), "--rpc-url", rpc_url,
            "--group-id", "4242", "--no-mqtt",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"gateway exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError("gateway did not come up")


@pytest.fixture
def gateway_dir(tmp_path: Path) -> Path:
    return tmp_path / "gateway"


def stored_seqs(data_dir: Path, device: str) -> set[int]:
    """The device's stored seqs, from the gateway's journal: its readings until they are
    anchored and pruned, and the stored ranges (committed with them) ever after."""
    db = sqlite3.connect(f"file:{data_dir / 'journal.db'}?mode=ro", uri=True)
    try:
        readings = {
            int(s) for (s,) in db.execute("SELECT seq FROM readings WHERE device = ?", (device,))
        }
        ranges = db.execute(
            "SELECT first_seq, last_seq FROM seq_ranges WHERE device = ?", (device,)
        ).fetchall()
        recorded = {s for first, last in ranges for s in range(int(first), int(last) + 1)}
        assert readings <= recorded
        return recorded
    finally:
        db.close()


def test_acknowledged_readings_survive_a_kill(anvil_url: str, gateway_dir: Path) -> None:
    port = free_port()
    proc = start_gateway(gateway_dir, port, anvil_url)
    acked: list[int] = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            device = DeviceClient(PrivateKey.generate(), 777_000_001, http=http)
            device.onboard(enrol(http, ADMIN_TOKEN, PrivateKey.generate().address))
            stop = threading.Event()

            def stream() -> None:
                while not stop.is_set():
                    try:
                        ack = device.send(
                            device.prepare([(Vital.HEART_RATE, 72), (Vital.SPO2, 97)])
                        )
                        acked.append(int(ack["last_seq"]))
                    except (DeviceError, httpx.HTTPError):
                        return  # the gateway is gone

            sender = threading.Thread(target=stream)
            sender.start()
            while len(acked) < 40:
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)  # mid-stream, no clean shutdown
            proc.wait(timeout=10)
            stop.set()
            sender.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # Both readings of every acknowledged message are on disk.
    seqs = stored_seqs(gateway_dir, device.address)
    missing = [s for s in acked for s in (s - 1, s) if s not in seqs]
    assert len(acked) >= 40
    assert missing == []

    # Restart on the same data: the device's session and its replay window carry over.
    proc = start_gateway(gateway_dir, port, anvil_url)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            device.http = http
            ack = device.send(device.prepare([(Vital.HEART_RATE, 71)]))
            assert ack["last_seq"] > max(acked)
            with pytest.raises(DeviceError) as err:  # an old sequence number is still a replay
                device.send(_rewound(device).prepare([(Vital.HEART_RATE, 70)]))
            assert err.value.code == "replayed"
            # Health is served from its probes' cache (issue 12 item 15): wait for a probe.
            deadline = time.monotonic() + 10
            while http.get("/v1/health").json()["readings"] < 2 * len(acked) + 1:
                assert time.monotonic() < deadline, "health never counted the readings"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _rewound(device: DeviceClient) -> DeviceClient:
    """The same device with its counter set back to 0, as after a naive device reset."""
    clone = DeviceClient(device.key, device.object_id, http=device.http, first_seq=0)
    clone._aead, clone._header, clone._group_id = device._aead, device._header, device._group_id
    return clone
