"""Alert latency under ingest load: from a reading's arrival to the provider's notification.

    .venv/bin/python benchmarks/alerts.py [--rates 1000 5000] [--seconds 8] [--rpc-url URL]

One node in this process (embedded chain unless --rpc-url names an anvil node, SQLite store,
sealer and anchorer running). Load
devices stream normal readings through the ingest core at the offered rate; nine alert devices
(ring of 9: k = 8) take turns sending a sustained low-SpO2 episode, ring-signed at send time.
A provider's subscription (the same hub queue and event loop a WebSocket uses) stamps each
notification on arrival; latency = that time minus the reading's arrival at the gateway.
Messages are prepared before the clock starts, so device CPU is not in the figures, and every
device sends once before it (steady state: the gateway has read its recipients from the chain).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr

from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.device.simulator import enrol
from vitalchain.gateway.sealer import SealingPolicy
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import ANVIL_DEV_KEY, EmbeddedBackend, Ledger, RpcBackend
from vitalchain.node import running_gateway
from vitalchain.vitals import Vital

_ids = itertools.count(70_000)
LOAD_DEVICES = 20
ALERT_DEVICES = 9
EPISODE_EVERY_S = 0.1
WARM_UP_S = 3.0
TOKEN = "benchmark-admin-token"  # the gateway refuses admin tokens under 16 bytes


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(rate: int, seconds: float, rpc_url: str | None = None) -> dict[str, float]:
    admin = PrivateKey.generate()
    backend = (
        RpcBackend(rpc_url, funder=PrivateKey(ANVIL_DEV_KEY)) if rpc_url else EmbeddedBackend()
    )
    ledger = Ledger.deploy(backend, admin)
    with tempfile.TemporaryDirectory() as tmp:
        settings = GatewaySettings(
            data_dir=Path(tmp), admin_token=SecretStr(TOKEN), mqtt=False, group_id=next(_ids),
            rate_per_s=1e6, rate_burst=1_000_000, alert_ring_k=8,
        )  # fmt: skip
        sealing = SealingPolicy(max_readings=500, max_age_s=5)
        with (
            running_gateway(settings, ledger=ledger, sealing=sealing) as node,
            TestClient(node.app()) as http,
        ):
            doctor = PrivateKey.generate()
            ledger.fund(doctor.address)
            ledger.publish_key(doctor)
            ledger.register_provider(admin, doctor.address)

            def device_for() -> DeviceClient:
                patient = PrivateKey.generate()
                ledger.fund(patient.address)
                ledger.publish_key(patient)
                ledger.grant(patient, doctor.address, Vital.SPO2.bit, ledger.timestamp() + 86400)
                device = DeviceClient(PrivateKey.generate(), next(_ids), http=http)
                device.onboard(enrol(http, TOKEN, patient.address))
                return device

            alerting = [device_for() for _ in range(ALERT_DEVICES)]
            load = [device_for() for _ in range(LOAD_DEVICES)]
            for device in alerting:
                device.use_ring(device.fetch_ring(ALERT_DEVICES - 1))
            # Steady state: every device has been seen and the gateway has read its patient's
            # recipients from the chain (the warm-up a running gateway does on first contact).
            core = node.gateway.ingest_core
            for device in alerting + load:
                core.ingest(device.prepare([(Vital.HEART_RATE, 72.0)]))
            time.sleep(WARM_UP_S)
            total = int(rate * seconds)
            load_msgs = [
                load[i % LOAD_DEVICES].prepare([(Vital.HEART_RATE, 72.0)]) for i in range(total)
            ]
            episodes = int(seconds / EPISODE_EVERY_S)
            alert_msgs = []
            for i in range(episodes):
                device = alerting[i % ALERT_DEVICES]
                alert_msgs.append(
                    (device.prepare([(Vital.SPO2, 85.0)] * 3), device.prepare([(Vital.SPO2, 97.0)]))
                )

            latencies: list[float] = []
            loop = asyncio.new_event_loop()
            inbox = node.hub.subscribe(doctor.address, loop)

            async def listen() -> None:
                while True:
                    notice = json.loads(await inbox.get())
                    latencies.append(time.time() * 1000 - notice["received_at"])

            listener = threading.Thread(target=loop.run_until_complete, args=(listen(),))
            listener.daemon = True
            listener.start()

            futures = []
            start = time.perf_counter()
            next_episode = 0
            for i, data in enumerate(load_msgs):
                due = start + i / rate
                now = time.perf_counter()
                if due > now:
                    time.sleep(due - now)
                futures.append(core.submit(data))
                if next_episode < episodes and now - start >= next_episode * EPISODE_EVERY_S:
                    low, back = alert_msgs[next_episode]
                    futures.append(core.submit(low))
                    futures.append(core.submit(back))
                    next_episode += 1
            for f in futures:
                f.result(timeout=120)
            elapsed = time.perf_counter() - start
            deadline = time.monotonic() + 30
            while len(latencies) < next_episode and time.monotonic() < deadline:
                time.sleep(0.05)
            node.alerts.drain()
            recorded = ledger.alert_count(settings.group_id)
    return {
        "offered": rate,
        "achieved": len(futures) / elapsed,
        "alerts": len(latencies),
        "episodes": next_episode,
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies),
        "recorded": recorded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rpc-url", help="an anvil node instead of the in-process chain")
    args = parser.parse_args()
    print("\n| offered msg/s | achieved msg/s | alerts delivered | p50 | p99 | max | on chain |")
    print("|---|---|---|---|---|---|---|")
    for rate in args.rates:
        r = run(rate, args.seconds, args.rpc_url)
        print(
            f"| {r['offered']:,} | {r['achieved']:,.0f} | {r['alerts']:.0f}/{r['episodes']:.0f} |"
            f" {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['max']:.1f} ms | {r['recorded']:.0f} |"
        )


if __name__ == "__main__":
    main()
