"""Alert latency under ingest load: from a reading's arrival to the provider's notification.

    .venv/bin/python benchmarks/alerts.py [--rates 1000 5000] [--seconds 20]
        [--chains embedded anvil] [--repeats 1] [--write]

One node in this process per run (SQLite store, sealer, anchorer, alarm service and chain
outbox running), on the embedded chain (py-evm in a child process, as a gateway node runs it)
or on anvil (started here on a free loopback port, stopped at the end, whatever happens).
Load devices stream normal readings through the ingest core at the offered rate; nine
alerting devices (ring of 9: k = 8) take turns sending an episode every 0.1 s, cycling
through every default rule of alerts/rules.py (the rule's own priority and its urgent,
high-priority limit): ``consecutive`` out-of-range readings in one message, ring-signed at
send time, then a reading back in range.
A provider's subscription (the hub queue and event loop a WebSocket uses) stamps each
notification on arrival and receipts and acknowledges it, as the SDK and a clinician would;
latency = that time minus the reading's arrival at the gateway (IEC 60601-1-8's alarm-signal
generation delay).  Messages are prepared before the clock starts, so device CPU is not in
the figures, and every device sends once before it (steady state).

``--write`` puts the tables into docs/benchmarks.md (section ``alerts``) and the per-rule
delays into docs/alarms.md (section ``delays``), each with the command that measured them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from vitalchain.alerts.rules import DEFAULT_RULES, Priority, VitalRule
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.device.simulator import enrol
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import ANVIL_DEV_KEY, EmbeddedBackend, Ledger, RpcBackend
from vitalchain.node import running_gateway
from vitalchain.sdk.alert import Alert, open_alert
from vitalchain.sealing.sealer import SealingPolicy
from vitalchain.services.anvil import AnvilProcess
from vitalchain.vitals import Vital, scope_of

_ids = itertools.count(70_000)
LOAD_DEVICES = 20
ALERT_DEVICES = 9
EPISODE_EVERY_S = 0.1
WARM_UP_S = 3.0
TOKEN = "benchmark-admin-token"  # the gateway refuses admin tokens under 16 bytes
DOCS = Path(__file__).resolve().parents[1] / "docs"


@dataclass(frozen=True)
class Episode:
    """One default rule's alarm condition: ``value`` is outside the adult default band
    (vitals.py) and, for ``urgent`` rows, beyond the rule's urgent limit too."""

    rule: str
    vital: Vital
    value: float
    back: float  # inside the band less hysteresis: resolves the episode
    priority: Priority

    @property
    def readings(self) -> int:
        return _rule(self.vital).consecutive


def _rule(vital: Vital) -> VitalRule:
    return DEFAULT_RULES[vital]


# Every default rule of docs/alarms.md's table, in its order (the stale-data alarms are
# time-driven, not reading-driven: their delay is the alarm clock's tick, see alarms.md).
EPISODES = (
    Episode("SpO2 below the band", Vital.SPO2, 89.0, 97.0, _rule(Vital.SPO2).priority),
    Episode("SpO2 below 85 %", Vital.SPO2, 80.0, 97.0, Priority.HIGH),
    Episode("heart rate outside the band", Vital.HEART_RATE, 120.0, 72.0, Priority.MEDIUM),
    Episode("heart rate < 40 or > 130 /min", Vital.HEART_RATE, 140.0, 72.0, Priority.HIGH),
    Episode("systolic BP above the band", Vital.SYSTOLIC_BP, 150.0, 120.0, Priority.MEDIUM),
    Episode("systolic BP > 180 or < 90 mmHg", Vital.SYSTOLIC_BP, 190.0, 120.0, Priority.HIGH),
    Episode("diastolic BP outside the band", Vital.DIASTOLIC_BP, 100.0, 75.0, Priority.MEDIUM),
    Episode("diastolic BP > 120 mmHg", Vital.DIASTOLIC_BP, 125.0, 75.0, Priority.HIGH),
    Episode("temperature outside the band", Vital.BODY_TEMPERATURE, 38.5, 36.8, Priority.LOW),
    Episode("temperature < 35 or > 40 °C", Vital.BODY_TEMPERATURE, 40.5, 36.8, Priority.HIGH),
    Episode("glucose outside the band", Vital.GLUCOSE, 190.0, 100.0, Priority.MEDIUM),
    Episode("glucose < 55 or > 260 mg/dL", Vital.GLUCOSE, 50.0, 100.0, Priority.HIGH),
)  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the p99 of 200 values is the second-worst of them."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Result:
    chain: str
    offered: int
    achieved: float
    episodes: int
    latencies: list[float] = field(default_factory=list)  # ms, one per episode's alert
    to_delivery: list[float] = field(default_factory=list)  # ms, reading → delivery made
    by_rule: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    priorities: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    recorded: int = 0
    record_wait_s: float = 0.0
    other: int = 0  # notices not raised by an episode (technical alarms), not in the figures


@contextlib.contextmanager
def chain(kind: str) -> Iterator[str | None]:
    """None for the embedded chain; an anvil URL, the node stopped on the way out."""
    if kind == "embedded":
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="vc-alerts-anvil-") as tmp:
        anvil = AnvilProcess(Path(tmp) / "state.json")
        anvil.start()
        try:
            yield anvil.url
        finally:
            anvil.stop()


def run(rate: int, seconds: float, rpc_url: str | None = None, *, isolated: bool = True) -> Result:
    """One row; ``isolated=False`` runs the embedded chain in this process (as unit tests do)
    instead of in its own (as a gateway node does)."""
    backend = (
        RpcBackend(rpc_url, funder=PrivateKey(ANVIL_DEV_KEY))
        if rpc_url
        else EmbeddedBackend(isolated=isolated)
    )
    try:
        return _run(rate, seconds, backend, rpc_url is not None)
    finally:
        backend.close()  # the embedded chain's child process, if any


def _run(rate: int, seconds: float, backend: EmbeddedBackend | RpcBackend, anvil: bool) -> Result:
    admin = PrivateKey.generate()
    ledger = Ledger.deploy(backend, admin)
    result = Result("anvil" if anvil else "embedded", rate, 0.0, 0)
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
            every_vital = scope_of(*Vital)

            def device_for() -> DeviceClient:
                patient = PrivateKey.generate()
                ledger.fund(patient.address)
                ledger.publish_key(patient)
                ledger.grant(patient, doctor.address, every_vital, ledger.timestamp() + 86400)
                device = DeviceClient(PrivateKey.generate(), next(_ids), http=http)
                device.onboard(enrol(http, TOKEN, patient.address))
                return device

            alerting = [device_for() for _ in range(ALERT_DEVICES)]
            load = [device_for() for _ in range(LOAD_DEVICES)]
            for device in alerting:
                device.use_ring(device.fetch_ring(ALERT_DEVICES - 1))
            # Steady state: every device has been seen and the gateway has read its patient's
            # recipients from the chain (the warm-up a running gateway does on first contact),
            # and the thresholds of every vital an episode uses: the first reading
            # of a (patient, vital) reads them from the chain (ledger/thresholds.py).
            core = node.gateway.ingest_core
            normal = list({kind.vital: (kind.vital, kind.back) for kind in EPISODES}.values())
            for device in alerting:
                core.ingest(device.prepare(normal))
            for device in load:
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
                kind = EPISODES[i % len(EPISODES)]
                low = device.prepare([(kind.vital, kind.value)] * kind.readings)
                back = device.prepare([(kind.vital, kind.back)])
                alert_msgs.append((kind, low, back))

            lock = threading.Lock()
            answered: queue.SimpleQueue[str | None] = queue.SimpleQueue()
            notices: list[tuple[dict[str, Any], float]] = []
            loop = asyncio.new_event_loop()
            inbox = node.hub.subscribe(doctor.address, loop)

            async def listen() -> None:
                while (text := await inbox.get()) != "":  # "" ends it (see below)
                    arrived = time.time() * 1000
                    notice = json.loads(text)
                    with lock:
                        notices.append((notice, arrived))
                    answered.put(notice["alert_id"])

            def respond() -> None:
                """The SDK's receipt and the clinician's acknowledgement, off the listener."""
                while (alert_id := answered.get()) is not None:
                    with contextlib.suppress(Exception):  # a technical alarm's may be refused
                        node.alerts.receipt(alert_id, doctor.address)
                        node.alerts.acknowledge(alert_id, doctor.address)

            listener = threading.Thread(target=loop.run_until_complete, args=(listen(),))
            listener.daemon = True
            listener.start()
            responder = threading.Thread(target=respond, daemon=True)
            responder.start()

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
                    _, low, back = alert_msgs[next_episode]
                    futures.append(core.submit(low))
                    futures.append(core.submit(back))
                    next_episode += 1
            for f in futures:
                f.result(timeout=120)
            elapsed = time.perf_counter() - start
            result.achieved = len(futures) / elapsed
            result.episodes = next_episode
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with lock:
                    threshold = sum(1 for n, _ in notices if n["alert"]["kind"] == "threshold")
                if threshold >= next_episode:
                    break
                time.sleep(0.05)
            # The chain records go out through the outbox, after the notifications.
            waited = time.monotonic()
            want = threshold
            while time.monotonic() - waited < 60:
                result.recorded = ledger.alert_count(settings.group_id)
                if result.recorded >= want:
                    break
                time.sleep(0.25)
            result.record_wait_s = time.monotonic() - waited
            answered.put(None)
            responder.join(timeout=30)
            node.hub.unsubscribe(doctor.address, inbox)
            loop.call_soon_threadsafe(inbox.put_nowait, "")
            listener.join(timeout=10)
            loop.close()
    for notice, arrived in notices:
        kind = _episode_of(notice, doctor)
        if kind is None or notice.get("repeat", 0):
            result.other += 1
            continue
        latency = arrived - notice["received_at"]
        result.latencies.append(latency)
        result.to_delivery.append(notice["notified_at"] - notice["received_at"])
        result.by_rule[kind.rule].append(latency)
        result.priorities[kind.rule].add(str(notice.get("priority")))
    return result


def _episode_of(notice: dict[str, Any], reader: PrivateKey) -> Episode | None:
    """The default rule whose episode raised ``notice`` (None for a technical alarm): the
    recipient opens the alert and finds the vital and value the benchmark sent."""
    alert = Alert.from_json(notice["alert"])
    if alert.kind != "threshold":
        return None
    body = open_alert(alert, reader)
    for kind in EPISODES:
        if body["vital"] == kind.vital.info.short and body["value"] == kind.value:
            return kind
    return None


def _groups(results: list[Result]) -> list[list[Result]]:
    """Repeats of one (chain, offered rate), in the order first run."""
    groups: dict[tuple[str, int], list[Result]] = {}
    for r in results:
        groups.setdefault((r.chain, r.offered), []).append(r)
    return list(groups.values())


def summary(results: list[Result]) -> str:
    """One row per (chain, rate): with repeats, the median over the runs of each run's
    figure (p99 with the runs' range), as everywhere in docs/benchmarks.md."""
    rows = [
        "| chain | offered msg/s | achieved msg/s | alerts delivered | p50 | p99 | max "
        "| reading → delivery made, p50 / p99 | recorded on chain |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for runs in _groups(results):
        first = runs[0]
        done = [r for r in runs if r.latencies]
        delivered = sum(len(r.latencies) for r in runs)
        episodes = sum(r.episodes for r in runs)
        achieved = statistics.median(r.achieved for r in runs)
        if not done:
            rows.append(f"| {first.chain} | {first.offered:,} | {achieved:,.0f} | 0/{episodes} |")
            continue
        p99s = [percentile(r.latencies, 0.99) for r in done]
        spread = (
            f" ({min(p99s):.0f} to {max(p99s):.0f} over {len(done)} runs)" if len(done) > 1 else ""
        )
        rows.append(
            f"| {first.chain} | {first.offered:,} | {achieved:,.0f} | {delivered}/{episodes} "
            f"| {statistics.median(statistics.median(r.latencies) for r in done):.1f} ms "
            f"| {statistics.median(p99s):.1f} ms{spread} "
            f"| {max(max(r.latencies) for r in done):.1f} ms "
            f"| {statistics.median(statistics.median(r.to_delivery) for r in done):.0f} / "
            f"{statistics.median(percentile(r.to_delivery, 0.99) for r in done):.0f} ms "
            f"| {sum(r.recorded for r in runs)} |"
        )
    return "\n".join(rows)


TARGET_RATE, TARGET_P99_MS = 1000, 100.0  # issue 13: p99 <= 100 ms at 1,000 msg/s


def verdicts(results: list[Result]) -> str:
    """The target, judged on the median p99 of the repeats at the target rate, per chain."""
    lines = []
    for runs in _groups(results):
        done = [r for r in runs if r.latencies]
        if runs[0].offered != TARGET_RATE or not done:
            continue
        p99s = [percentile(r.latencies, 0.99) for r in done]
        p99 = statistics.median(p99s)
        met = sum(1 for x in p99s if x <= TARGET_P99_MS)
        verdict = "met" if p99 <= TARGET_P99_MS else "**missed**"
        lines.append(
            f"- Target p99 <= {TARGET_P99_MS:g} ms at {TARGET_RATE:,} msg/s, {runs[0].chain} "
            f"chain: {verdict} ({p99:.1f} ms; {met} of {len(p99s)} runs within it)."
        )
    return "\n".join(lines)


def delays(results: list[Result], rate: int = 1000) -> str:
    """Per default rule: IEC 60601-1-8's alarm-signal generation delay at ``rate`` msg/s
    (the alerts of every repeat pooled)."""
    chosen = [runs for runs in _groups(results) if runs[0].offered == rate]
    head = "| rule | priority | alarm-condition delay | " + " | ".join(
        f"signal generation delay, {runs[0].chain} chain: p50 / p99 (alerts)" for runs in chosen
    )
    rows = [head + " |", "|---" * (3 + len(chosen)) + "|"]
    for kind in EPISODES:
        rule = _rule(kind.vital)
        window = f"{rule.consecutive} readings in a row or {rule.sustain_s:g} s"
        seen: set[str] = set()
        cells = []
        for runs in chosen:
            got = [x for r in runs for x in r.by_rule.get(kind.rule, [])]
            for r in runs:
                seen |= r.priorities.get(kind.rule, set())
            cells.append(
                f"{statistics.median(got):.0f} / {percentile(got, 0.99):.0f} ms ({len(got)})"
                if got
                else "none delivered"
            )
        priority = ", ".join(sorted(seen)) if seen else str(kind.priority)
        rows.append(f"| {kind.rule} | {priority} | {window} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--chains", nargs="+", choices=("embedded", "anvil"), default=["embedded", "anvil"]
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs of each chain and rate")
    parser.add_argument("--write", action="store_true", help="write the tables into the docs")
    args = parser.parse_args()
    results = []
    load_before = os.getloadavg()[0]
    for kind in args.chains:
        with chain(kind) as url:
            for _ in range(args.repeats):
                for rate in args.rates:
                    results.append(run(rate, args.seconds, url))
                    print(summary(results[-1:]), flush=True)
    machine = (
        f"Load average (1 min) {load_before:.2f} before the first run and "
        f"{os.getloadavg()[0]:.2f} after the last, on this machine's {os.cpu_count()} cores."
    )
    print()
    print(summary(results))
    print(machine)
    print(verdicts(results))
    print()
    print(delays(results))
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from report import write_section  # beside this script

        command = (
            f"`.venv/bin/python benchmarks/alerts.py --rates {' '.join(map(str, args.rates))} "
            f"--seconds {args.seconds:g} --chains {' '.join(args.chains)}"
            + (f" --repeats {args.repeats}" if args.repeats > 1 else "")
            + " --write`"
        )
        write_section(
            "alerts",
            f"{command}\n\n{summary(results)}\n\n{machine}\n\n{verdicts(results)}",
        )
        if any(r.offered == 1000 for r in results):
            write_section(
                "delays",
                f"Measured with {command} (1,000 msg/s rows; p99 is nearest-rank over the alerts"
                " counted, so with few alerts it is their maximum). "
                + machine
                + "\n\n"
                + delays(results),
                path=DOCS / "alarms.md",
            )


if __name__ == "__main__":
    main()
