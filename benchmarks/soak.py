"""Soak: a gateway under steady load with alarm episodes, its memory watched (issue 13, item 8).

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 1000] [--episode-every-s 3]
        [--write]

The deployment's real shape, as in benchmarks/faults.py: ``vitalchain gateway run`` in its own
process (with its managed mosquitto), anvil in another, the load from this one.  Load devices
publish normal readings over MQTT at ``--rate`` messages per second in all, in batches of
one tenth of a second (the SDK's window of 64 unacknowledged messages).  Every
``--episode-every-s`` one of three alerting devices (ring-signing, so every alert is also
recorded on chain) sends over HTTP an episode of the next default rule in turn
(benchmarks/alerts.py: ``consecutive`` readings out of range in one message, then one back
in range).  A provider's SDK (``AlertSubscriber`` over the WebSocket: receipts,
de-duplication by alert ID, reconnection) receives the alerts and the provider acknowledges
each one, so the gateway may forget an alert once its episode has resolved.

The gateway's resident memory (VmRSS of its process, from /proc) is sampled every
``--sample-s``.  The run passes if **RSS grows by less than 10 % after the first minute** (the
largest sample after it against the sample at one minute; a run shorter than three minutes
uses a third of its length instead), **no alert is lost** (every episode the gateway
acknowledged has an alert) and **none is duplicated** (no episode with two alert IDs, and no
copy handed over twice by the SDK).  Exit status 0 on a pass, 1 otherwise.  Every process
started here is stopped on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from alerts import EPISODES, percentile  # beside this script
from faults import (
    AlertWatch,
    CareDeployment,
    Lane,
    care_deployment,
    send_acked,
)
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.device.mqtt import MqttPublisher
from vitalchain.vitals import Vital

ALERT_DEVICES = 3
BATCH_S = 0.1
MAX_GROWTH = 0.10


@dataclass
class Soak:
    minutes: float
    rate: int
    episode_every_s: float
    sent: int = 0  # load messages acknowledged
    refused: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    episodes: list[tuple[str, int]] = field(default_factory=list)  # (device, reading t ms)
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    dropped_by_sdk: int = 0
    technical: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # ms, reading received → handed over
    rss: list[tuple[float, int]] = field(default_factory=list)  # (s since start, kB)
    baseline_s: float = 60.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def achieved(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s else 0.0

    def baseline(self) -> tuple[float, int] | None:
        for sample in self.rss:
            if sample[0] >= self.baseline_s:
                return sample
        return None

    def growth(self) -> float | None:
        base = self.baseline()
        later = [kb for t, kb in self.rss if base is not None and t > base[0]]
        if base is None or not later:
            return None
        return max(later) / base[1] - 1

    @property
    def passed(self) -> bool:
        growth = self.growth()
        return (
            growth is not None
            and growth < MAX_GROWTH
            and self.lost == 0
            and self.duplicated == 0
            and bool(self.episodes)
        )


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def publish_load(lane: Lane, per_s: float, stop: threading.Event, soak: Soak) -> None:
    """One device's share of the load: a batch every BATCH_S, each acknowledged by the gateway
    before the next (so a slow gateway slows the device, as the SDK's window does)."""
    creds = lane.device.session.mqtt if lane.device.session else None
    assert creds is not None, "the gateway offered no MQTT"
    publisher = MqttPublisher(creds, timeout=10)
    publisher.connect()
    owed = 0.0
    start = time.monotonic()
    try:
        for tick in itertools.count(1):
            if stop.is_set():
                return
            owed += per_s * BATCH_S
            count, owed = int(owed), owed - int(owed)
            batch = [lane.device.prepare([(Vital.HEART_RATE, 72.0)]) for _ in range(count)]
            try:
                acks = publisher.publish_many(batch)
            except DeviceError as exc:
                with soak.lock:
                    soak.refused[exc.code] += len(batch)
                continue
            with soak.lock:
                for ack in acks:
                    if "error" in ack:
                        soak.refused[str(ack["error"].get("code"))] += 1
                    else:
                        soak.sent += 1
            pause = start + tick * BATCH_S - time.monotonic()
            if pause > 0:
                stop.wait(pause)
    finally:
        publisher.close()


def run(minutes: float, rate: int, episode_every_s: float, sample_s: float) -> Soak:
    soak = Soak(minutes, rate, episode_every_s)
    seconds = minutes * 60
    soak.baseline_s = 60.0 if seconds >= 180 else seconds / 3
    load_devices = max(1, min(20, rate // 50))
    with (
        tempfile.TemporaryDirectory(prefix="vc-soak-") as tmp,
        care_deployment(Path(tmp), mqtt=True, devices=load_devices) as care,
        httpx.Client(base_url=care.gateway.url, timeout=10) as http,
    ):
        alerting = _alerting_devices(care, http)
        watch = AlertWatch(care.ws_url, care.doctor)
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=publish_load, args=(lane, rate / len(care.lanes), stop, soak), daemon=True
            )
            for lane in care.lanes
        ]
        assert care.gateway.proc is not None
        pid = care.gateway.proc.pid
        start = time.monotonic()
        try:
            for thread in threads:
                thread.start()
            next_sample = next_episode = 0.0
            kinds = itertools.cycle(EPISODES)
            devices = itertools.cycle(alerting)
            while (now := time.monotonic() - start) < seconds:
                if now >= next_sample:
                    soak.rss.append((now, rss_kb(pid)))
                    next_sample += sample_s
                if now >= next_episode:
                    device, kind = next(devices), next(kinds)
                    at_ms = int(time.time() * 1000)
                    readings = [(kind.vital, kind.value)] * kind.readings
                    send_acked(http, device.prepare(readings, at_ms=at_ms))
                    send_acked(http, device.prepare([(kind.vital, kind.back)]))
                    soak.episodes.append((device.address, at_ms))
                    next_episode += episode_every_s
                time.sleep(0.05)
            soak.rss.append((time.monotonic() - start, rss_kb(pid)))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
            soak.elapsed_s = time.monotonic() - start
            try:
                _collect(soak, watch)
            finally:
                watch.close()
    return soak


def _alerting_devices(care: CareDeployment, http: httpx.Client) -> list[DeviceClient]:
    devices = [care.device(care.patient(), 61_000 + i, http) for i in range(ALERT_DEVICES)]
    normal = list({kind.vital: (kind.vital, kind.back) for kind in EPISODES}.values())
    for device in devices:  # ring of 2 (the gateway runs with k = 1): records go on chain
        device.use_ring(device.fetch_ring(1))
        send_acked(http, device.prepare(normal))  # the gateway reads each vital's thresholds
    return devices


def _collect(soak: Soak, watch: AlertWatch, wait_s: float = 60) -> None:
    """Wait for every episode's alert, then count: one alert ID per episode, each once."""
    wanted = set(soak.episodes)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and len(_by_episode(watch, wanted)) < len(wanted):
        time.sleep(0.2)
    time.sleep(2.0)  # a late second alert or re-sent copy shows up too
    found = _by_episode(watch, wanted)
    for episode in soak.episodes:
        ids = {r.alert_id for r in found.get(episode, [])}
        soak.delivered += bool(ids)
        soak.lost += not ids
        soak.duplicated += max(0, len(ids) - 1)
    soak.duplicated += watch.duplicates()
    soak.dropped_by_sdk = watch.subscriber.duplicates
    for r in watch.received:
        if r.kind != "threshold":
            soak.technical[f"{r.kind} {r.priority}"] += 1
        elif r.latency_ms is not None and r.repeat == 0:
            soak.latencies.append(r.latency_ms)


def _by_episode(watch: AlertWatch, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], list]:
    found: dict[tuple[str, int], list] = {}
    for r in watch.threshold():
        assert r.body is not None
        key = (str(r.body["device"]), round(float(r.body["first_out_at"]) * 1000))
        if key in wanted:
            found.setdefault(key, []).append(r)
    return found


def table(soak: Soak) -> str:
    base = soak.baseline()
    growth = soak.growth()
    later = [kb for t, kb in soak.rss if base is not None and t > base[0]]
    latency = (
        f"{statistics.median(soak.latencies):.0f} / {percentile(soak.latencies, 0.99):.0f} ms"
        if soak.latencies
        else "n/a"
    )
    other = ", ".join(f"{k} {v}" for k, v in sorted(soak.technical.items())) or "none"
    refused = ", ".join(f"{k} {v}" for k, v in sorted(soak.refused.items())) or "none"
    rows = [
        "| minutes | offered msg/s | achieved msg/s | episodes | alerts delivered | lost "
        "| duplicated | alert latency p50 / p99 | RSS at the baseline | largest RSS after it "
        "| growth | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {soak.minutes:g} | {soak.rate:,} | {soak.achieved:,.0f} | {len(soak.episodes)} "
        f"| {soak.delivered} | {soak.lost} | {soak.duplicated} | {latency} "
        + (f"| {base[1] / 1024:.1f} MiB at {base[0]:.0f} s " if base else "| n/a ")
        + (f"| {max(later) / 1024:.1f} MiB " if later else "| n/a ")
        + (f"| {100 * growth:+.1f} % " if growth is not None else "| n/a ")
        + f"| {'pass' if soak.passed else 'FAIL'} |",
        "",
        f"RSS every sample (MiB): {', '.join(f'{kb / 1024:.1f}' for _, kb in soak.rss)}",
        "",
        f"Load refusals: {refused}. Other alarms received: {other}. Re-sent copies dropped by "
        f"the SDK's de-duplication: {soak.dropped_by_sdk}.",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=1000, help="load messages per second")
    parser.add_argument("--episode-every-s", type=float, default=3.0)
    parser.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling period")
    parser.add_argument("--write", action="store_true", help="write the table into the docs")
    args = parser.parse_args()
    soak = run(args.minutes, args.rate, args.episode_every_s, args.sample_s)
    print(table(soak))
    if args.write:
        from report import write_section  # beside this script

        command = (
            f"`.venv/bin/python benchmarks/soak.py --minutes {args.minutes:g} --rate {args.rate} "
            f"--episode-every-s {args.episode_every_s:g} --sample-s {args.sample_s:g} --write`"
        )
        write_section("soak", command + "\n\n" + table(soak))
    sys.exit(0 if soak.passed else 1)


if __name__ == "__main__":
    main()
