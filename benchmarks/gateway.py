"""Gateway benchmark: device-side preparation, and verified, durably stored messages per second.

    .venv/bin/python benchmarks/gateway.py [--messages N] [--devices D]
    .venv/bin/python benchmarks/gateway.py --workers 0 1 2 [--rounds 3] [--write]

``--workers``: the ingest worker processes (issue 16 item 3) instead: for each worker count,
HTTP and MQTT, 1 and 10 readings, ``--rounds`` rounds on one gateway process each, medians:
messages/s as a share of the raw verification rate measured before each round, and the
gateway's CPU per message (its own process and its workers', from /proc, over the blast's
window; the broker's apart) as a multiple of one raw verification.  HTTP goes to the port the
gateway named at association (the workers' with workers, its own without).

Device side (paper 002, Table 2): preparing an association request and a data message,
mean ± sd and median over >= 100 runs, wall and CPU time.  Gateway side: the ingest core on its
own, then HTTP and MQTT end to end with the gateway in its own process (``vitalchain gateway
run``) and the load generator in this one.  Messages are prepared before the clock starts, so
the figures are the gateway's.  The ceiling is coincurve's raw ECDSA verifications per second:
every message needs one.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import coincurve
import httpx
from pydantic import SecretStr

from vitalchain.crypto import Aead, PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.device.simulator import enrol
from vitalchain.gateway.service import Gateway
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import ChainOutbox, EmbeddedBackend, Ledger
from vitalchain.ledger.eip712 import Domain, request_digest
from vitalchain.node import settle_heap
from vitalchain.services.ports import free_port
from vitalchain.store.files import private_database
from vitalchain.vitals import Vital
from vitalchain.wire.onboarding import AAD_ASSOCIATION_REQUEST

TOKEN = "benchmark-admin-token"
ONE = [(Vital.SPO2, 97.0)]
TEN = [(Vital.SPO2, 97.0), (Vital.HEART_RATE, 72.0)] * 5


def stats(samples: list[float]) -> str:
    us = [s * 1e6 for s in samples]
    mean, sd, median = statistics.mean(us), statistics.stdev(us), statistics.median(us)
    return f"{mean:.1f} ± {sd:.1f} us (median {median:.1f})"


def device_side(runs: int) -> list[tuple[str, str, str]]:
    """What a wearable spends per association request and per data message."""
    key = PrivateKey.generate()
    domain = Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    token = PrivateKey.generate().sign_digest(os.urandom(32)).to_rsv()
    session_key = os.urandom(32)
    aead = Aead(session_key)
    sid = os.urandom(16)

    def association() -> bytes:
        request = key.sign_digest(request_digest(domain, 7, 42, key.address, token)).to_rsv()
        body = json.dumps({"v": 1, "object_id": 42, "token": token.hex(), "request": request.hex()})
        return aead.seal(body.encode(), AAD_ASSOCIATION_REQUEST + sid)

    device = DeviceClient(key, 42)
    device.attach(sid, session_key, 7)
    rows = []
    for name, fn in (
        ("association request", association),
        ("data message, 1 reading", lambda: device.prepare(ONE)),
        ("data message, 10 readings", lambda: device.prepare(TEN)),
    ):
        for _ in range(20):
            fn()
        wall, cpu = [], []
        for _ in range(runs):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
        rows.append((name, stats(wall), f"{statistics.mean(cpu) * 1e6:.0f} us"))
    return rows


def raw_verify_rate() -> float:
    sk = coincurve.PrivateKey()
    digest = os.urandom(32)
    sig = sk.sign(digest, hasher=None)
    pk = sk.public_key
    n = 3000
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            pk.verify(sig, digest, hasher=None)
        best = max(best, n / (time.perf_counter() - t))
    return best


# --- the gateway in its own process ------------------------------------------------------------


@contextlib.contextmanager
def gateway_process(
    data_dir: Path, mqtt: bool, workers: int = 0, pids: list[int] | None = None
) -> Iterator[str]:
    """``vitalchain gateway run`` with ``workers`` ingest workers; ``pids`` gets its PID."""
    port = free_port()
    env = os.environ | {
        "VITALCHAIN_GATEWAY_ADMIN_TOKEN": TOKEN,
        "VITALCHAIN_GATEWAY_RATE_PER_S": "1000000",
        "VITALCHAIN_GATEWAY_RATE_BURST": "1000000",
    }
    args = [
        sys.executable,
        "-m",
        "vitalchain",
        "gateway",
        "run",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--ingest-workers",
        str(workers),
    ]
    args += ["--mqtt"] if mqtt else ["--no-mqtt"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if pids is not None:
        pids.append(proc.pid)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("gateway did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def onboarded(url: str, count: int) -> list[DeviceClient]:
    devices = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(count):
            device = DeviceClient(PrivateKey.generate(), 10_000 + i, http=client)
            device.onboard(enrol(client, TOKEN, PrivateKey.generate().address))
            device.http = None
            devices.append(device)
    return devices


def raw_verify_median(rounds: int = 5) -> float:
    """The raw verification rate as a median of ``rounds`` (the headline's other runs take
    the best of five; a ratio to a median is what the worker table states)."""
    return statistics.median(raw_verify_rate() for _ in range(rounds))


def gateway_pids(node: int, telemetry_port: int | None) -> tuple[list[int], list[int]]:
    """The gateway's processes (the node and its ingest workers, the ones listening on the
    telemetry port) and the broker's (mosquitto, a child of the node)."""
    import psutil

    gateway, broker = [node], []
    for child in psutil.Process(node).children(recursive=True):
        if child.name() == "mosquitto":
            broker.append(child.pid)
        elif telemetry_port is not None and any(
            c.status == "LISTEN" and c.laddr.port == telemetry_port for c in child.net_connections()
        ):
            gateway.append(child.pid)
    return gateway, broker


@dataclass
class WorkerRound:
    workers: int
    path: str  # "HTTP" or "MQTT"
    readings: int
    msg_s: float
    verify_s: float  # raw verifications/s measured before the round
    gateway_cpu_s: float  # per message
    broker_cpu_s: float  # per message

    @property
    def share(self) -> float:
        return self.msg_s / self.verify_s

    @property
    def cpu_x(self) -> float:
        return self.gateway_cpu_s * self.verify_s


def worker_rounds(
    workers: int, mqtt: bool, devices: int, messages: int, rounds: int
) -> list[WorkerRound]:
    """One gateway process with ``workers`` ingest workers: ``rounds`` blasts each of 1 and
    10 readings a message, the load generator (this process) on pre-built messages."""
    from gateways import cpu_seconds  # beside this script (run as a script)

    out: list[WorkerRound] = []
    pids: list[int] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        gateway_process(Path(tmp), mqtt, workers, pids) as url,
    ):
        fleet = onboarded(url, devices)
        session = fleet[0].session
        assert session is not None
        target = session.telemetry_url or url
        port = int(target.rsplit(":", 1)[1]) if session.telemetry_url else None
        gateway, broker = gateway_pids(pids[0], port)
        assert len(gateway) == 1 + workers, f"found {len(gateway) - 1} of {workers} workers"
        per_device = messages // devices
        for readings in (ONE, TEN):
            for _ in range(rounds):
                batches = [[d.prepare(readings) for _ in range(per_device)] for d in fleet]
                verify = raw_verify_median()
                before = [cpu_seconds(p) for p in gateway + broker]
                rate = blast_mqtt(fleet, batches) if mqtt else blast_http(target, batches)
                spent = [cpu_seconds(p) - b for p, b in zip(gateway + broker, before, strict=True)]
                count = per_device * devices
                out.append(
                    WorkerRound(
                        workers, "MQTT" if mqtt else "HTTP", len(readings), rate, verify,
                        sum(spent[: len(gateway)]) / count, sum(spent[len(gateway) :]) / count,
                    )
                )  # fmt: skip
                print(f"  {out[-1]}", file=sys.stderr, flush=True)
    return out


def worker_report(results: list[WorkerRound], args: argparse.Namespace) -> str:
    """The worker table (medians of the rounds) and the 1 -> 2 worker ratios."""
    med = statistics.median
    lines = [
        "Command:",
        "",
        "```sh",
        ".venv/bin/python benchmarks/gateway.py --workers "
        + " ".join(map(str, args.workers))
        + f" --rounds {args.rounds} --messages {args.messages} --devices {args.devices} --write",
        "```",
        "",
        f"The gateway (`vitalchain gateway run --ingest-workers N`, SQLite store, embedded "
        f"chain) in its own process; the load generator in this one, on messages built before "
        f"the clock starts; {args.devices} devices, {args.messages} messages a round, "
        f"{args.rounds} rounds per row, medians. Raw verifications/s are measured before each "
        f"round (median of five). Gateway CPU is the node's process and its workers', from "
        f"/proc over the blast; the broker's is apart. Machine: {os.cpu_count()} cores.",
        "",
        "| workers | path | readings/msg | messages/s | readings/s | share of raw verify rate "
        "| readings/s ÷ verify rate | gateway CPU per message | ÷ one verification "
        "| broker CPU per message | runs (msg/s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[int, str, int], list[WorkerRound]] = {}
    for r in results:
        groups.setdefault((r.workers, r.path, r.readings), []).append(r)
    for (workers, path, readings), rows in groups.items():
        rate = med(r.msg_s for r in rows)
        lines.append(
            f"| {workers} | {path} | {readings} | {rate:,.0f} | {rate * readings:,.0f} "
            f"| {med(r.share for r in rows):.1%} | {med(r.share * readings for r in rows):.2f}x "
            f"| {med(r.gateway_cpu_s for r in rows) * 1e6:,.0f} µs "
            f"| {med(r.cpu_x for r in rows):.1f}x "
            f"| {med(r.broker_cpu_s for r in rows) * 1e6:,.0f} µs "
            f"| {' '.join(f'{r.msg_s:,.0f}' for r in rows)} |"
        )
    ratios = []
    for (workers, path, readings), rows in groups.items():
        base = groups.get((1, path, readings))
        if workers == 2 and base:
            ratio = med(r.msg_s for r in rows) / med(r.msg_s for r in base)
            ratios.append(f"| {path} | {readings} | {ratio:.2f}x |")
    if ratios:
        lines += ["", "| path | readings/msg | 1 → 2 workers (messages/s) |", "|---|---|---|"]
        lines += ratios
    verify = med(r.verify_s for r in results)
    lines += ["", f"Raw coincurve ECDSA verifications/s in these runs (median): {verify:,.0f}."]
    return "\n".join(lines)


def _responses(sock: socket.socket, count: int, buffer: bytearray) -> list[int]:
    """Read ``count`` HTTP/1.1 responses off a pipelined connection; returns their statuses."""
    statuses = []
    while len(statuses) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = bytes(buffer[:head_end]).decode("latin-1").split("\r\n")
            length = next(
                int(h.split(":", 1)[1]) for h in head if h.lower().startswith("content-length")
            )
            if len(buffer) >= head_end + 4 + length:
                statuses.append(int(head[0].split()[1]))
                del buffer[: head_end + 4 + length]
                continue
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    return statuses


def blast_http(url: str, messages: list[list[bytes]], window: int = 16) -> float:
    """One keep-alive connection per device, requests pipelined ``window`` deep, so the load
    generator spends little CPU and each device's messages arrive in order."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/telemetry HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n"
    )
    requests = [
        [(head + f"Content-Length: {len(m)}\r\n\r\n").encode() + m for m in per_device]
        for per_device in messages
    ]
    errors: list[int] = []

    def run(lane: list[bytes]) -> None:
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = bytearray()
        for i in range(0, len(lane), window):
            batch = lane[i : i + window]
            sock.sendall(b"".join(batch))
            errors.extend(s for s in _responses(sock, len(batch), buffer) if s != 200)
        sock.close()

    workers = [threading.Thread(target=run, args=(lane,)) for lane in requests]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} refusals, statuses {sorted(set(errors))}")
    return sum(len(m) for m in messages) / elapsed


def blast_mqtt(devices: list[DeviceClient], messages: list[list[bytes]]) -> float:
    from vitalchain.device.mqtt import MqttPublisher

    publishers = []
    for device in devices:
        assert device.session is not None
        assert device.session.mqtt is not None
        publisher = MqttPublisher(device.session.mqtt, timeout=120)
        publisher.connect()
        publishers.append(publisher)
    results: list[list[dict[str, object]]] = [[] for _ in devices]

    def run(i: int) -> None:
        results[i] = publishers[i].publish_many(messages[i])

    workers = [threading.Thread(target=run, args=(i,)) for i in range(len(devices))]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    for publisher in publishers:
        publisher.close()
    refused = [a for r in results for a in r if "error" in a]
    if refused:
        raise RuntimeError(f"{len(refused)} refusals, e.g. {refused[0]}")
    return sum(len(m) for m in messages) / elapsed


@contextlib.contextmanager
def in_process_gateway(devices: int = 2) -> Iterator[tuple[Gateway, list[DeviceClient]]]:
    """A gateway on the embedded chain with ``devices`` onboarded clients, no transport: the
    ingest path as a node runs it (``Gateway.ingest``), for the core's own ceiling."""
    from fastapi.testclient import TestClient

    from vitalchain.gateway.app import create_app
    from vitalchain.ledger.watcher import ChainWatcher

    with tempfile.TemporaryDirectory() as tmp:
        settings = GatewaySettings(
            data_dir=Path(tmp),
            admin_token=SecretStr(TOKEN),
            mqtt=False,
            rate_per_s=1e9,
            rate_burst=10**9,
        )
        master = PrivateKey.generate()
        ledger = Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())
        outbox = ChainOutbox(ledger, master, private_database(Path(tmp) / "outbox.db"))
        outbox.start()
        ledger.fund(master.address)
        watcher = ChainWatcher(ledger.events, poll_s=settings.revocation_poll_s)
        gateway = Gateway(settings, master, ledger, outbox=outbox, watcher=watcher)
        gateway.start()
        watcher.start()
        try:
            with TestClient(create_app(gateway)) as client:
                clients = []
                for i in range(devices):
                    d = DeviceClient(PrivateKey.generate(), 20_000 + i, http=client)
                    d.onboard(enrol(client, TOKEN, PrivateKey.generate().address))
                    clients.append(d)
            yield gateway, clients
        finally:
            gateway.close()
            watcher.stop()
            outbox.close()


def ingest_core(count: int, readings: list[tuple[Vital, float]]) -> float:
    """The ingest core alone, two threads, no transport: the gateway's own ceiling."""
    with in_process_gateway() as (gateway, devices):
        batches = [[d.prepare(readings) for _ in range(count // 2)] for d in devices]

        def run(batch: list[bytes]) -> None:
            for m in batch:
                gateway.ingest(m)

        settle_heap()  # as node.serve does before serving
        workers = [threading.Thread(target=run, args=(b,)) for b in batches]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        rate = count / (time.perf_counter() - start)
        gc.unfreeze()  # the load generators that follow run as before
        return rate


def measure(label: str, fn: Callable[[], float]) -> tuple[str, float]:
    return label, fn()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=6000, help="messages per transport run")
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--runs", type=int, default=200, help="device-side repetitions")
    parser.add_argument(
        "--workers", type=int, nargs="+", default=None, help="ingest worker counts to compare"
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --workers: rounds per row")
    parser.add_argument("--transports", nargs="+", default=["http", "mqtt"])
    parser.add_argument("--write", action="store_true", help="with --workers: into the docs")
    parser.add_argument("--doc", type=Path, default=None, help="with --write: another file")
    args = parser.parse_args()
    if args.workers is not None:
        results: list[WorkerRound] = []
        for workers in args.workers:
            for transport in args.transports:
                print(f"{workers} worker(s), {transport}...", file=sys.stderr, flush=True)
                results += worker_rounds(
                    workers, transport == "mqtt", args.devices, args.messages, args.rounds
                )
        text = worker_report(results, args)
        print(text)
        if args.write:
            from report import DOCS, write_section  # beside this script

            write_section("ingest-workers", text, args.doc or DOCS)
        return

    print(f"### Device side ({args.runs} runs each)\n")
    print("| operation | wall time, mean ± sd | CPU time, mean |")
    print("|---|---|---|")
    for name, wall, cpu in device_side(args.runs):
        print(f"| {name} | {wall} | {cpu} |")

    ceiling = raw_verify_rate()
    rows: list[tuple[str, float]] = []
    for label, readings in (("1 reading", ONE), ("10 readings", TEN)):
        rows.append((f"ingest core, in process, {label}", ingest_core(args.messages, readings)))
    per_device = args.messages // args.devices
    for mqtt in (False, True):
        for label, readings in (("1 reading", ONE), ("10 readings", TEN)):
            with tempfile.TemporaryDirectory() as tmp, gateway_process(Path(tmp), mqtt) as url:
                devices = onboarded(url, args.devices)
                messages = [[d.prepare(readings) for _ in range(per_device)] for d in devices]
                if mqtt:
                    rows.append((f"MQTT, {label}", blast_mqtt(devices, messages)))
                else:
                    rows.append((f"HTTP, {label}", blast_http(url, messages)))
    print(f"\n### Gateway ingest ({args.messages} messages, {args.devices} devices)\n")
    print("| path | messages/s | readings/s | share of raw ECDSA verify rate |")
    print("|---|---|---|---|")
    for name, rate in rows:
        per = 10 if "10 readings" in name else 1
        print(f"| {name} | {rate:,.0f} | {rate * per:,.0f} | {rate / ceiling:.0%} |")
    print(f"\nRaw coincurve ECDSA verifications/s on this machine: {ceiling:,.0f}")


if __name__ == "__main__":
    main()
