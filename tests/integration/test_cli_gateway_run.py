"""``vitalchain gateway run`` as an operator runs it: its own process, real chain, real broker.

What it prints at start (URL, MQTT port, group, chain, enrolment), a clean stop on SIGTERM
(exit 0, broker and lock gone with it), and the data directory bound to one chain: a reset
anvil (same chain ID, same contract addresses, new genesis block) is refused with
``chain_mismatch`` until ``--reset-data`` moves the old data aside (issue 12 items 4, 9, 18).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from tests.support.waiting import wait_for
from vitalchain.cli import app
from vitalchain.gateway.startup import CHAIN_RECORD, DataDirLock
from vitalchain.services.anvil import run_anvil
from vitalchain.services.ports import free_port

TOKEN = "gateway-run-test-token-0123456789"


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def output(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)


def start(log: Path, *args: str, token: str | None = None) -> Gateway:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALCHAIN_GATEWAY_")}
    env["COLUMNS"] = "300"
    if token:
        env["VITALCHAIN_GATEWAY_ADMIN_TOKEN"] = token
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vitalchain", "gateway", "run", "--port", "0", *args],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    gateway = Gateway(proc, log)
    wait_for(
        lambda: "(store: " in gateway.output or proc.poll() is not None, timeout=90
    )  # the last line
    return gateway


@pytest.fixture
def gateways() -> Iterator[list[Gateway]]:
    """Every gateway a test starts is stopped afterwards, whatever happens."""
    started: list[Gateway] = []
    yield started
    for gateway in started:
        if gateway.proc.poll() is None:
            gateway.proc.kill()
            gateway.proc.wait()


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_banner_and_a_clean_stop_on_sigterm(tmp_path: Path, gateways: list[Gateway]) -> None:
    data = tmp_path / "gw"
    gateway = start(tmp_path / "out", "--data-dir", str(data), "--group-id", "7")
    gateways.append(gateway)
    out = gateway.output
    assert gateway.proc.poll() is None, out
    url = re.search(r"gateway running at (http://127\.0\.0\.1:\d+)", out)
    mqtt = re.search(r"MQTT\s+127\.0\.0\.1:(\d+)", out)
    assert url is not None, out
    assert mqtt is not None, out
    assert re.search(r"group\s+7 \(gateway 0x[0-9a-fA-F]{40}\)", out), out
    assert re.search(r"chain\s+\d+, embedded", out), out
    assert "by admin DISABLED" in out  # no token: said at start
    assert "patients can still enrol devices with their own signature" in out
    assert httpx.get(url.group(1) + "/v1/health", timeout=10).json()["group_id"] == 7
    assert listening(int(mqtt.group(1)))
    assert "Traceback" not in out

    assert gateway.stop(signal.SIGTERM) == 0, gateway.output  # cleanup ran, not killed
    assert "stopped the gateway" in gateway.output
    assert not listening(int(mqtt.group(1)))  # the broker went with it
    DataDirLock.acquire(data).release()  # and the lock


def test_a_reset_chain_is_refused_until_reset_data(
    tmp_path: Path, anvil_url: str, gateways: list[Gateway]
) -> None:
    """anvil restarted: chain ID and (same deployer, same nonce) contract addresses are the
    same, only the genesis block tells the chains apart."""
    data, key = tmp_path / "gw", tmp_path / "deployer.key"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    data.mkdir()

    def deploy(url: str) -> None:
        result = CliRunner().invoke(
            app,
            ["chain", "deploy", "--rpc-url", url, "--key", str(key), "--force",
             "--out", str(data / "deployment.json")],
        )  # fmt: skip
        assert result.exit_code == 0, result.output

    with run_anvil() as first:
        deploy(first)
        args = ("--data-dir", str(data), "--rpc-url", first, "--no-mqtt", "--group-id", "3")
        gateway = start(tmp_path / "1.out", *args, "--admin-token-file", str(token_file))
        gateways.append(gateway)
        out = gateway.output
        assert re.search(rf"chain\s+31337 at {re.escape(first)}", out), out
        assert "enrolment  enabled" in out
        assert "MQTT       off (--no-mqtt)" in out
        assert gateway.stop(signal.SIGINT) == 0, gateway.output
        recorded = (data / CHAIN_RECORD).read_text()
        # the same chain again: accepted
        again = start(tmp_path / "2.out", *args)
        gateways.append(again)
        assert again.proc.poll() is None, again.output
        assert again.stop() == 0
    with run_anvil() as second:  # a new chain: same ID, same addresses
        deploy(second)
        args = ("--data-dir", str(data), "--rpc-url", second, "--no-mqtt", "--group-id", "3")
        refused = start(tmp_path / "3.out", *args)
        gateways.append(refused)
        assert refused.proc.wait(timeout=30) == 2
        (line,) = refused.output.strip().splitlines()
        assert line.endswith("(chain_mismatch)"), line
        assert "genesis block" in line
        assert (data / CHAIN_RECORD).read_text() == recorded  # nothing written
        fresh = start(tmp_path / "4.out", *args, "--reset-data")
        gateways.append(fresh)
        assert fresh.proc.poll() is None, fresh.output
        assert "moved the old data" in fresh.output
        assert fresh.stop() == 0
    (aside,) = data.glob(".old-*")
    assert (aside / CHAIN_RECORD).read_text() == recorded
    assert (data / CHAIN_RECORD).read_text() != recorded


def test_a_deployment_file_naming_no_contracts_is_refused(
    tmp_path: Path, anvil_url: str, gateways: list[Gateway]
) -> None:
    data = tmp_path / "gw"
    data.mkdir()
    names = ("TrustGroups", "KeyDirectory", "ConsentRegistry", "AnchorLog", "AlertRegistry")
    addresses = {n: "0x" + "42" * 20 for n in names}
    (data / "deployment.json").write_text(
        json.dumps({"chain_id": 31337, "block": 0, "addresses": addresses})
    )
    gateway = start(tmp_path / "out", "--data-dir", str(data), "--rpc-url", anvil_url)
    gateways.append(gateway)
    assert gateway.proc.wait(timeout=30) == 2
    (line,) = gateway.output.strip().splitlines()
    assert line.endswith("(deployment_not_on_chain)"), line
    assert not (data / CHAIN_RECORD).exists()


def _spawned(gateway: Gateway) -> list[psutil.Process]:
    """The gateway's children started by multiprocessing's spawn (the ingest workers, and
    the embedded chain's process)."""
    return [
        p
        for p in psutil.Process(gateway.proc.pid).children(recursive=True)
        if "spawn_main" in " ".join(p.cmdline())
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_ingest_workers_go_with_the_gateway(
    tmp_path: Path, gateways: list[Gateway], sig: int
) -> None:
    """By default one ingest worker per core, named in the banner with the telemetry port
    they share; SIGTERM stops them with the gateway (exit 0), and so does a SIGKILL of the
    gateway (each worker reads the end of its pipe): no process is left behind."""
    gateway = start(tmp_path / "out", "--data-dir", str(tmp_path / "gw"), "--no-mqtt")
    gateways.append(gateway)
    out = gateway.output
    found = re.search(r"ingest\s+(\d+) worker processes; HTTP telemetry also at (\S+)", out)
    assert found is not None, out
    assert int(found.group(1)) == len(os.sched_getaffinity(0))
    assert len(_spawned(gateway)) >= int(found.group(1))
    everything = psutil.Process(gateway.proc.pid).children(recursive=True)
    port = int(found.group(2).rsplit(":", 1)[1])
    assert listening(port)
    code = gateway.stop(sig)
    if sig == signal.SIGTERM:
        assert code == 0, gateway.output
        assert "stopped the gateway" in gateway.output
    _, alive = psutil.wait_procs(everything, timeout=20)
    assert alive == [], [p.pid for p in alive]
    assert not listening(port)
    assert "Traceback" not in gateway.output


def test_a_telemetry_port_that_is_the_gateways_own_is_refused(
    tmp_path: Path, gateways: list[Gateway]
) -> None:
    port = str(free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VITALCHAIN_GATEWAY_")}
    done = subprocess.run(
        [sys.executable, "-m", "vitalchain", "gateway", "run", "--no-mqtt", "--port", port,
         "--telemetry-port", port, "--data-dir", str(tmp_path / "gw")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "port_in_use" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize("value", ["-1", "65", "two"])
def test_bad_ingest_worker_counts_are_refused(value: str) -> None:
    result = CliRunner().invoke(app, ["gateway", "run", "--ingest-workers", value])
    assert result.exit_code == 2
    assert "--ingest-workers" in result.output
