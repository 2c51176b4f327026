"""The demo scenario: real gateways, devices, providers and chain, driven end to end.

Everything runs on loopback: each gateway serves its HTTP and WebSocket API with uvicorn on
a free port, devices onboard and stream over HTTP or MQTT, providers subscribe to alerts over
WebSocket and fetch blocks over HTTP, and every contract call is a real transaction on the
embedded chain (or on the node at ``rpc_url``).  The scenario returns a :class:`DemoRun`; the
report module turns it into Markdown, JSON and plots.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from vitalchain.crypto.keys import PrivateKey
from vitalchain.demo.config import DemoConfig
from vitalchain.demo.portals import DemoWorld
from vitalchain.device.mqtt import MqttPublisher
from vitalchain.device.physiology import Episode, EpisodeKind
from vitalchain.device.simulator import SimulatedDevice, Simulation, SimulationStats
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import EmbeddedBackend, Ledger
from vitalchain.node import RunningGateway, rpc_backend, running_gateway, served
from vitalchain.sdk.alert import Alert, open_alert
from vitalchain.sdk.provider import AccessError, FetchedBlock, ProviderClient
from vitalchain.sdk.receipts import check_receipts
from vitalchain.sdk.subscriber import AlertSubscriber
from vitalchain.sdk.verify import Report, verify_patient
from vitalchain.sealing.sealer import SealingPolicy
from vitalchain.services.mosquitto import BrokerError, find_mosquitto
from vitalchain.store import SqliteStore
from vitalchain.store.files import write_private
from vitalchain.vitals import Vital, from_fixed

__all__ = ["Band", "DemoConfig", "DemoRun", "Notice", "PatientReading", "run_demo"]

log = logging.getLogger(__name__)
HOUR = 3600
ALL_VITALS = sum(v.bit for v in Vital)


@dataclass
class Cluster:
    """One gateway (cluster head) and the patients and devices it serves."""

    index: int
    node: RunningGateway
    url: str
    admin_token: str
    simulation: Simulation
    transport: str = "http"
    stats: SimulationStats | None = None

    @property
    def group_id(self) -> int:
        return self.node.gateway.group_id


@dataclass
class Notice:
    provider: str
    patient: str
    group_id: int
    alert_id: str
    kind: str
    latency_ms: float
    received_at_ms: int
    vital: str | None
    value: float | None
    # Added for the clinical report (all optional, so older constructions still hold):
    priority: str | None = None  # high / medium / low (docs/alarms.md)
    device: str | None = None  # the device whose reading raised it (threshold alerts)
    reading_t_ms: int | None = None  # that reading's device stamp (the body's ``at``)
    repeat: int = 0  # 0: first notification; n: the n-th reminder of a high alarm
    condition: str | None = None  # a technical alarm's condition (device_stale, …)
    low: float | None = None  # the band the reading was judged against
    high: float | None = None


@dataclass(frozen=True)
class PatientReading:
    """One reading as a consented provider decrypted it, placed on the patient's clock."""

    patient: str
    device: str
    vital: str  # VitalInfo.short
    value: float
    t_ms: int  # the device's stamp (wall clock: the gateway checks it against its own)
    patient_s: float | None  # patient time since the simulated start; None: not known


@dataclass(frozen=True)
class Band:
    """The thresholds the gateway applied to a patient's vital: on chain, else the default."""

    low: float
    high: float
    on_chain: bool


@dataclass
class DemoRun:
    """What happened, with the evidence each step left (the report's input)."""

    config: DemoConfig
    chain: str
    transports: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    devices_associated: int = 0
    messages_sent: int = 0
    readings_stored: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    blocks_sealed: int = 0
    anchors: int = 0
    alerts_raised: int = 0
    alerts_recorded: int = 0
    notices: list[Notice] = field(default_factory=list)
    revoked: dict[str, Any] = field(default_factory=dict)
    fetch: dict[str, Any] = field(default_factory=dict)
    verify: dict[str, Any] = field(default_factory=dict)
    tamper: dict[str, Any] = field(default_factory=dict)
    scoped: dict[str, Any] = field(default_factory=dict)  # a SpO2-only consent's fetch
    receipts: dict[str, Any] = field(default_factory=dict)  # one patient's, checked (issue 17)
    series: list[dict[str, Any]] = field(default_factory=list)  # one patient's decrypted readings
    episodes: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    # The clinical report's facts (every patient, not just the one the care steps look at):
    patient_groups: dict[str, int] = field(default_factory=dict)  # patient → group, in order
    patient_clock_s: dict[str, float] = field(default_factory=dict)  # clock time at patient 0 s
    sampling_s: dict[str, float] = field(default_factory=dict)  # device → its interval (s)
    # device → {its stamp t_ms → patient seconds}: each message the device prepared
    patient_time: dict[str, dict[int, float]] = field(default_factory=dict)
    readings: list[PatientReading] = field(default_factory=list)
    thresholds: dict[str, dict[str, Band]] = field(default_factory=dict)  # patient → vital →

    def patient_s(self, device: str | None, t_ms: int | None) -> float | None:
        """The patient time of a device's stamp (None if that device never stamped it)."""
        if device is None or t_ms is None:
            return None
        return self.patient_time.get(device, {}).get(t_ms)

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary (summary.json; the tests assert on it)."""
        # The alarm-signal delay is the first notification's; a high alarm's reminders come a
        # minute apart by design and are not a delay (as the report's alert list counts them).
        latencies = [n.latency_ms for n in self.notices if n.repeat == 0]
        return {
            "v": 1,
            "chain": self.chain,
            "gateways": self.config.gateways,
            "providers": self.config.providers,
            "patients": self.config.patients,
            "transports": {str(k): v for k, v in self.transports.items()},
            "devices_associated": self.devices_associated,
            "messages_sent": self.messages_sent,
            "readings_stored": self.readings_stored,
            "refused_messages": self.refused,
            "blocks_sealed": self.blocks_sealed,
            "anchors": self.anchors,
            "alerts_raised": self.alerts_raised,
            "alerts_recorded_on_chain": self.alerts_recorded,
            "alerts_delivered": len(self.notices),
            "alert_latency_ms": {
                "p50": round(statistics.median(latencies), 1) if latencies else None,
                "max": round(max(latencies), 1) if latencies else None,
            },
            "revoked_provider": self.revoked,
            "provider_fetch": self.fetch,
            "verify": self.verify,
            "tamper": self.tamper,
            "scoped_fetch": self.scoped,
            "receipts": self.receipts,
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
            "notes": self.notes,
        }


def _open_ledger(config: DemoConfig, admin: PrivateKey) -> tuple[Ledger, str]:
    if config.rpc_url is None:
        return Ledger.deploy(EmbeddedBackend(), admin), "embedded (py-evm, in process)"
    return Ledger.deploy(rpc_backend(config.rpc_url), admin), config.rpc_url


@contextlib.contextmanager
def _timed(run: DemoRun, name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        run.timings_s[name] = time.perf_counter() - start


def run_demo(
    config: DemoConfig,
    workdir: Path,
    *,
    step: Callable[[str], None] = lambda _: None,
    progress: Callable[[float], None] = lambda _: None,
    hold: Callable[[DemoRun, DemoWorld], None] | None = None,
) -> DemoRun:
    """Run the whole scenario in ``workdir``: the chain's ``deployment.json`` and one data
    directory per gateway (its journal, block store, state, broker files), left in place.

    ``hold`` is called at the end while everything still runs (the portal's screenshots,
    ``--serve``); the world stops when it returns."""
    config.check()
    started = time.perf_counter()
    admin = PrivateKey.generate()
    step("deploying the contracts")
    deploy_started = time.perf_counter()
    ledger, chain = _open_ledger(config, admin)
    write_private(workdir / "deployment.json", ledger.deployment.to_json().encode())
    run = DemoRun(config, chain)
    run.timings_s["deploy"] = time.perf_counter() - deploy_started
    mqtt_ok = config.mqtt and find_mosquitto() is not None
    if config.mqtt and not mqtt_ok:
        run.notes.append("mosquitto is not installed: every device streams over HTTP only")
    providers = _providers(ledger, admin, config.providers)
    # Group IDs are random on a shared node, so a second run does not collide with the first.
    base_group = 1 if config.rpc_url is None else secrets.randbelow(2**40) + 1_000
    with contextlib.ExitStack() as stack:
        clusters: list[Cluster] = []
        step(f"starting {config.gateways} gateways")
        with _timed(run, "gateways"):
            for index in range(config.gateways):
                clusters.append(
                    _start_cluster(
                        stack, config, ledger, workdir, index, base_group, mqtt_ok, run.notes
                    )
                )
        run.transports = {c.group_id: c.transport for c in clusters}
        step(f"onboarding {config.patients} patients' devices")
        with _timed(run, "onboarding"):
            patients = _onboard(ledger, clusters, providers, run)
        step("providers subscribing to alerts over WebSocket")
        subscribers = _subscribe(stack, clusters, providers, run)
        _stamp_patient_time(clusters, run)
        step(f"streaming {config.patient_minutes:g} patient-minutes at {config.speedup:g}x")
        with _timed(run, "streaming"):
            _stream(clusters, config, progress)
        step("sealing the last blocks and anchoring their roots")
        with _timed(run, "sealing"):
            _seal_and_anchor(clusters, run)
        _collect_notices(subscribers, clusters, run)
        step("every patient's readings and thresholds, as their providers see them")
        with _timed(run, "clinical"):
            _collect_clinical(ledger, clusters, providers, patients, run)
        step("revoking a consent, fetching and decrypting, verifying, tampering")
        with _timed(run, "care"):
            _care(ledger, clusters, providers, patients, run)
        for cluster in clusters:
            stats = cluster.stats or SimulationStats()
            run.messages_sent += stats.sent_messages
            for code, n in stats.refused.items():
                run.refused[code] = run.refused.get(code, 0) + n
            run.readings_stored += cluster.node.gateway.store.count_readings()
            run.alerts_recorded += ledger.alert_count(cluster.group_id)
            run.alerts_raised += cluster.node.alerts.raised_total
        if hold is not None:
            hold(run, _world(ledger, clusters, providers, patients))
    run.timings_s["total"] = time.perf_counter() - started
    return run


def _world(
    ledger: Ledger,
    clusters: list[Cluster],
    providers: list[PrivateKey],
    patients: list[tuple[Cluster, PrivateKey]],
) -> DemoWorld:
    """Provider 1 (who lost patient 0 to a revoke and sees patient 1, tampered with) and
    patient 0, for the portals."""
    return DemoWorld(
        ledger,
        [c.url for c in clusters],
        providers[1 % len(providers)],
        patients[0][1],
        patients[1][1].address,
    )


def _providers(ledger: Ledger, admin: PrivateKey, count: int) -> list[PrivateKey]:
    keys = [PrivateKey.generate() for _ in range(count)]
    for key in keys:
        ledger.fund(key.address)
        ledger.register_provider(admin, key.address)
        ledger.publish_key(key)
    return keys


def _start_cluster(
    stack: contextlib.ExitStack,
    config: DemoConfig,
    ledger: Ledger,
    workdir: Path,
    index: int,
    base_group: int,
    mqtt_ok: bool,
    notes: list[str],
) -> Cluster:
    token = secrets.token_urlsafe(24)
    patients = config.patients // config.gateways + (index < config.patients % config.gateways)
    devices = 2 * patients  # a BP cuff and a pulse oximeter each
    settings = GatewaySettings(
        data_dir=workdir / f"gateway-{index + 1}",
        group_id=base_group + index,
        master_object_id=secrets.randbelow(2**63),
        admin_token=SecretStr(token),
        mqtt=mqtt_ok and index == 0,
        rate_per_s=1000.0,
        rate_burst=10_000,
        preauth_burst=max(60, 2 * devices),  # every device enrols at once, from this one client
        alert_ring_k=max(1, min(config.ring_k, devices - 1)),
    )
    sealing = SealingPolicy(max_readings=120, max_age_s=10.0, anchor_every_s=5.0)
    try:
        node = stack.enter_context(running_gateway(settings, ledger=ledger, sealing=sealing))
    except BrokerError as exc:  # installed but cannot start: carry on over HTTP, and say so
        notes.append(f"mosquitto could not start ({exc.code}): every device streams over HTTP")
        settings = settings.model_copy(
            update={"mqtt": False, "data_dir": settings.data_dir.with_name(f"gateway-{index + 1}b")}
        )
        node = stack.enter_context(running_gateway(settings, ledger=ledger, sealing=sealing))
    url = stack.enter_context(served(node.app()))
    http = stack.enter_context(httpx.Client(base_url=url, timeout=30))
    simulation = Simulation(
        http,
        token,
        patients=patients,
        seed=config.seed + index,
        speedup=config.speedup,
        episode_rate_per_hour=config.episodes_per_hour,
        horizon_s=config.patient_minutes * 60,
        # Whatever the seed, each cluster's first patient desaturates once (SpO2 alerts).
        scripted=(
            Episode(
                EpisodeKind.DESATURATION,
                start_s=config.patient_minutes * 60 * 0.2,
                duration_s=config.patient_minutes * 60 * 0.3,
            ),
        ),
    )
    transport = "mqtt" if node.bridge is not None else "http"
    return Cluster(index, node, url, token, simulation, transport)


def _onboard(
    ledger: Ledger, clusters: list[Cluster], providers: list[PrivateKey], run: DemoRun
) -> list[tuple[Cluster, PrivateKey]]:
    """Patients publish keys and consent to two providers each (patient 0 also to a third,
    for SpO2 only); devices onboard in 4 steps."""
    expires = ledger.timestamp() + 30 * 24 * HOUR
    patients: list[tuple[Cluster, PrivateKey]] = []
    for cluster in clusters:
        for patient in cluster.simulation.patients.values():
            ledger.fund(patient.address)
            ledger.publish_key(patient)
            n = len(patients)
            for provider in (providers[n % len(providers)], providers[(n + 1) % len(providers)]):
                ledger.grant(patient, provider.address, ALL_VITALS, expires)
            if n == 0 and len(providers) > 2:
                ledger.grant(patient, providers[2].address, Vital.SPO2.bit, expires)
            patients.append((cluster, patient))
    for cluster in clusters:
        cluster.simulation.onboard()
        run.devices_associated += sum(
            1 for d in cluster.simulation.devices if d.client.session is not None
        )
        devices = cluster.simulation.devices
        k = cluster.node.alerts.ring_k
        for device in devices:  # anonymity on: ring-sign every message among k others
            device.client.use_ring(device.client.fetch_ring(min(k, len(devices) - 1)))
        seen: set[str] = set()
        for device in devices:  # a patient's devices share one physiology and its episodes
            if device.patient in seen:
                continue
            seen.add(device.patient)
            run.episodes.extend(
                {
                    "group": cluster.group_id,
                    "patient": device.patient,
                    "kind": str(episode.kind),
                    "start_s": episode.start_s,
                    "end_s": episode.start_s + episode.duration_s,
                }
                for episode in device.episodes
            )
    return patients


def _stamp_patient_time(clusters: list[Cluster], run: DemoRun) -> None:
    """Record, for every stamp a device puts on a message, the patient time it belongs to.

    Devices stamp messages with the wall clock (the gateway checks clocks), while the
    physiology runs on the simulation's faster, and on a busy machine uneven, patient clock;
    a fixed ratio would misplace readings.  The simulator prepares a device's messages while
    that device's ``next_due_s`` is the current patient time, so a clock that notes it on
    each call maps every stamp exactly.  Wall time itself is unchanged."""
    for cluster in clusters:
        for device in cluster.simulation.devices:
            run.patient_groups.setdefault(device.patient, cluster.group_id)
            run.patient_clock_s.setdefault(device.patient, device.generator.start_s)
            run.sampling_s[device.client.address] = device.interval_s
            stamps = run.patient_time.setdefault(device.client.address, {})
            device.client.clock = _stamping_clock(device, stamps, device.client.clock)


def _stamping_clock(
    device: SimulatedDevice, stamps: dict[int, float], clock: Callable[[], float]
) -> Callable[[], float]:
    def now() -> float:
        t = clock()
        stamps[int(t * 1000)] = device.next_due_s  # the stamp prepare() will compute
        return t

    return now


def _collect_clinical(
    ledger: Ledger,
    clusters: list[Cluster],
    providers: list[PrivateKey],
    patients: list[tuple[Cluster, PrivateKey]],
    run: DemoRun,
) -> None:
    """Each patient's readings, fetched and decrypted by a provider it consented to (every
    vital), and the threshold band the gateway applied to each vital it reports."""
    for n, (cluster, patient) in enumerate(patients):
        provider = providers[n % len(providers)]  # consented to every vital (_onboard)
        with httpx.Client(base_url=cluster.url, timeout=30) as http:
            fetched = ProviderClient(provider, http).fetch(cluster.group_id, patient.address)
        vitals: set[Vital] = set()
        for block in fetched:
            for device, reading in block.readings(provider):
                vitals.add(reading.vital)
                run.readings.append(
                    PatientReading(
                        patient.address,
                        device,
                        reading.vital.info.short,
                        reading.value,
                        reading.t_ms,
                        run.patient_s(device, reading.t_ms),
                    )
                )
        bands = run.thresholds.setdefault(patient.address, {})
        for vital in sorted(vitals):
            low, high = cluster.node.policy.thresholds(patient.address, vital)
            on_chain = ledger.threshold_of(patient.address, int(vital)) is not None
            bands[vital.info.short] = Band(from_fixed(low), from_fixed(high), on_chain)


def _subscribe(
    stack: contextlib.ExitStack,
    clusters: list[Cluster],
    providers: list[PrivateKey],
    run: DemoRun,
) -> list[tuple[Cluster, PrivateKey, AlertSubscriber, list[dict[str, Any]], threading.Thread]]:
    subscribers = []
    for cluster in clusters:
        ws_url = cluster.url.replace("http://", "ws://") + "/v1/alerts/ws"
        for provider in providers:
            subscriber = AlertSubscriber(ws_url, provider)
            stack.callback(subscriber.close)
            inbox: list[dict[str, Any]] = []
            thread = threading.Thread(target=_listen, args=(subscriber, inbox), daemon=True)
            thread.start()
            subscribers.append((cluster, provider, subscriber, inbox, thread))
    return subscribers


def _listen(subscriber: AlertSubscriber, inbox: list[dict[str, Any]]) -> None:
    with contextlib.suppress(Exception):  # the socket closes at the end of the run
        for notice in subscriber:
            inbox.append(notice)


def _stream(clusters: list[Cluster], config: DemoConfig, progress: Callable[[float], None]) -> None:
    """Every cluster streams at once, each on its own thread (HTTP or MQTT)."""
    done: dict[int, float] = {c.index: 0.0 for c in clusters}
    lock = threading.Lock()

    def report(index: int, fraction: float) -> None:
        with lock:
            done[index] = fraction
            progress(sum(done.values()) / len(done))

    def stream(cluster: Cluster) -> None:
        publishers: dict[str, MqttPublisher] = {}
        publish: Callable[[SimulatedDevice, bytes], dict[str, object]] | None = None
        if cluster.transport == "mqtt":
            for device in cluster.simulation.devices:
                assert device.client.session is not None
                creds = device.client.session.mqtt
                assert creds is not None
                # the device's book checks and keeps each ack's receipt, and the client hears
                # when its bands changed, as over HTTP
                publishers[device.client.address] = MqttPublisher(
                    creds, receipts=device.client.receipts, on_ack=device.client.note_ack
                )
                publishers[device.client.address].connect()

            def publish(device: SimulatedDevice, message: bytes) -> dict[str, object]:
                return publishers[device.client.address].publish(message)

        try:
            cluster.stats = cluster.simulation.run(
                config.patient_minutes * 60,
                publish=publish,
                progress=lambda f: report(cluster.index, f),
            )
        finally:
            for publisher in publishers.values():
                publisher.close()

    threads = [threading.Thread(target=stream, args=(c,), daemon=True) for c in clusters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _seal_and_anchor(clusters: list[Cluster], run: DemoRun) -> None:
    for cluster in clusters:
        node = cluster.node
        node.sealer.stop()  # the background thread; the rest is sealed here, deterministically
        node.alerts.drain()
        for pending in node.gateway.store.pending_patients():
            if pending.group_id == cluster.group_id:
                while node.sealer.seal(pending.patient) is not None:
                    pass
        node.sealer.anchor()
        run.blocks_sealed += len(node.sealer.tree)
        run.anchors += len(node.gateway.store.anchors(cluster.group_id))


def _collect_notices(
    subscribers: list[
        tuple[Cluster, PrivateKey, AlertSubscriber, list[dict[str, Any]], threading.Thread]
    ],
    clusters: list[Cluster],
    run: DemoRun,
) -> None:
    """Wait briefly for in-flight notifications, then open each with its recipient's key."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pending = sum(c.node.hub.pending(p.address) for c, p, *_ in subscribers)
        if pending == 0:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    for cluster, provider, _, inbox, _ in subscribers:
        for notice in list(inbox):
            alert = Alert.from_json(notice["alert"])
            body = open_alert(alert, provider)
            at = body.get("at")
            run.notices.append(
                Notice(
                    provider.address,
                    str(body.get("patient")),
                    cluster.group_id,
                    alert.alert_id.hex(),
                    alert.kind,
                    float(notice["latency_ms"]),
                    alert.received_at_ms,
                    body.get("vital"),
                    body.get("value"),
                    priority=body.get("priority"),
                    device=body.get("device"),
                    reading_t_ms=round(at * 1000) if _is_threshold(body) and at else None,
                    repeat=int(notice.get("repeat", 0)),
                    condition=body.get("condition"),
                    low=body.get("low"),
                    high=body.get("high"),
                )
            )


def _is_threshold(body: dict[str, Any]) -> bool:
    """A threshold alert's ``at`` is its reading's stamp; a technical alarm's is its own."""
    return body.get("kind") == "threshold"


def _care(
    ledger: Ledger,
    clusters: list[Cluster],
    providers: list[PrivateKey],
    patients: list[tuple[Cluster, PrivateKey]],
    run: DemoRun,
) -> None:
    """Revoke, fetch and decrypt, verify, then tamper with a block file and verify again."""
    # Patient 0 consented to providers 0 and 1; it revokes provider 1.
    cluster, patient = patients[0]
    allowed, revoked = providers[0], providers[1 % len(providers)]
    ledger.revoke(patient, revoked.address)
    with httpx.Client(base_url=cluster.url, timeout=30) as http:
        try:
            ProviderClient(revoked, http).fetch(cluster.group_id, patient.address)
        except AccessError as exc:
            run.revoked = {
                "provider": revoked.address,
                "refused": True,
                "status": exc.status,
                "code": exc.code,
            }
        else:
            run.revoked = {"provider": revoked.address, "refused": False}
        reader = ProviderClient(allowed, http)
        fetched = reader.fetch(cluster.group_id, patient.address)
        readings = 0
        for block in fetched:
            for _, reading in block.readings(allowed):  # device signatures checked
                readings += 1
                vital = reading.vital.info.short
                run.series.append({"t_ms": reading.t_ms, "vital": vital, "value": reading.value})
        run.fetch = {
            "provider": allowed.address,
            "patient": patient.address,
            "group": cluster.group_id,
            "blocks": len(fetched),
            "readings_decrypted": readings,
        }
        report = _verify(reader, ledger, cluster.group_id, patient.address)
        run.verify = {"ok": report.ok, "checks": len(report.checks)}
        run.receipts = _check_receipts(ledger, cluster, patient, reader, fetched, report)
        if len(providers) > 2:
            run.scoped = _scoped_fetch(ledger, http, cluster.group_id, patient, providers[2])
    # An attacker with write access to the store's disk flips one bit of a sealed block.
    victim_cluster, victim = patients[1]
    store = victim_cluster.node.gateway.store.block_store
    tamper: dict[str, Any] = {"patient": victim.address, "group": victim_cluster.group_id}
    if isinstance(store, SqliteStore):
        target = store.patient_block(victim_cluster.group_id, victim.address, 1)
        if target is not None:
            (path,) = (store.block_dir / str(victim_cluster.group_id)).glob(
                f"{target.leaf_index}-*.vcb"
            )
            data = bytearray(path.read_bytes())
            data[len(target.signed_part()) - 1] ^= 0x01  # the signed part's last byte
            path.write_bytes(bytes(data))
            tamper["block"] = target.number
    with httpx.Client(base_url=victim_cluster.url, timeout=30) as http:
        client = ProviderClient(victim, http)
        client.fetch(victim_cluster.group_id, victim.address)
        report = _verify(client, ledger, victim_cluster.group_id, victim.address)
    tamper["detected"] = not report.ok
    tamper["failed_checks"] = sorted({c.name for c in report.failures})
    run.tamper = tamper


def _check_receipts(
    ledger: Ledger,
    cluster: Cluster,
    patient: PrivateKey,
    reader: ProviderClient,
    fetched: list[FetchedBlock],
    verified: Report,
) -> dict[str, Any]:
    """The receipts the patient's devices kept (each verified as it arrived), collected and
    checked again against the chain, and against the blocks the provider fetched: every
    acknowledged reading must be in a sealed, anchored block (``receipt_not_sealed``)."""
    devices = [d for d in cluster.simulation.devices if d.patient == patient.address]
    collected = [
        r for d in devices if d.client.receipts is not None for r in d.client.receipts.receipts
    ]
    checked = check_receipts(
        collected, ledger, blocks=fetched, reader=reader.key, source=reader.source,
        patient=patient.address, verified=verified,
    )  # fmt: skip
    return {
        "devices": len(devices),
        "collected": checked.collected,
        "verified": checked.verified,
        "sealed": checked.sealed,
        "anchored": checked.anchored,
        "not_sealed": checked.not_sealed,
        "ok": checked.ok,
        "failed_checks": sorted({c.name for c in checked.failures}),
    }


def _verify(client: ProviderClient, ledger: Ledger, group_id: int, patient: str) -> Report:
    """Verify what ``client`` fetched, under its own key: the blocks it already parsed and
    decrypted are shared (``opened``), not parsed or decrypted again."""
    return verify_patient(
        client.source, ledger, group_id, patient, reader=client.key, opened=client.opened
    )


def _scoped_fetch(
    ledger: Ledger, http: httpx.Client, group_id: int, patient: PrivateKey, nurse: PrivateKey
) -> dict[str, Any]:
    """A provider consented to SpO2 only: what it is given, and that it still verifies."""
    reader = ProviderClient(nurse, http)
    fetched = reader.fetch(group_id, patient.address)
    opened = [f for f in fetched if f.stanza is not None]  # blocks of BP alone: no key
    readings = [r for f in opened for _, r in f.readings(nurse)]
    vitals = sorted({r.vital.info.short for r in readings})
    withheld = sum(len(f.block.withheld()) for f in fetched)
    report = _verify(reader, ledger, group_id, patient.address)
    return {
        "provider": nurse.address,
        "scope": ["spo2"],
        "vitals_decrypted": vitals,
        "readings_decrypted": len(readings),
        "sections_withheld": withheld,
        "verify_ok": report.ok,
    }
