"""Faults and bad input: the gateway killed under load, the chain and PostgreSQL taken away.

    .venv/bin/python benchmarks/faults.py [--trials 10] [--outage-s 60] [--write docs/benchmarks.md]

Each scenario runs the real deployment shape: ``vitalchain gateway run`` in its own process
(with its managed mosquitto), against anvil in its own process, devices streaming from this
one through the device SDK's wire format.  A device keeps every message it has not had
acknowledged and sends it again, as the SDK promises; a message is *acknowledged* once the
gateway answered 200 (or ``replayed``, which means stored).  After the run every patient
fetches its own blocks through the access API, decrypts them and checks each device
signature: an acknowledged reading missing from the sealed blocks is *lost*.

Scenarios (issue 12, "Done when"):

- ``kill9``: SIGKILL the gateway at a random moment under load, restart it on the same data
  directory; over HTTP and over MQTT, ``--trials`` times each.
- ``anvil-stop``: SIGSTOP anvil for ``--outage-s``, then SIGCONT: ingest goes on, anchoring
  waits, and catches up.
- ``anvil-restart``: stop anvil (it dumps its state), keep it down for ``--outage-s``, start it
  again on the same port from that state.
- ``postgres-stop``: the block store on PostgreSQL, the server stopped for ``--outage-s``:
  nothing lost, every refusal a 503.
- ``alerts-kill9`` (issue 13): SIGKILL the gateway ``--trials`` times, each time with an
  alarm episode in progress (some of a sustained rule's readings stored, or the confirming one
  just stored), under load; a provider's SDK (``AlertSubscriber``: reconnects, catches up,
  receipts, de-duplicates by alert ID) must get exactly one alert per episode.

``tests/integration/test_faults.py`` runs each with 3 trials and short outages inside
``make test``.  Every process started here is stopped on the way out, whatever happens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from vitalchain.alerts.rules import DEFAULT_RULES
from vitalchain.crypto.keys import PrivateKey
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.device.simulator import enrol
from vitalchain.ledger import Deployment, Ledger
from vitalchain.node import rpc_backend
from vitalchain.sdk.alert import Alert, open_alert
from vitalchain.sdk.provider import AccessError, ProviderClient
from vitalchain.sdk.subscriber import AlertSubscriber, SubscriptionClosed
from vitalchain.services.anvil import AnvilProcess
from vitalchain.services.ports import free_port
from vitalchain.store.files import private_dir
from vitalchain.vitals import Vital, scope_of

TOKEN = "faults-benchmark-admin-token-0123"
GROUP = 1
READING = [(Vital.SPO2, 97.0)]


# --- processes ---------------------------------------------------------------------------------


class GatewayProcess:
    """``vitalchain gateway run`` on one data directory, started and ended like a service."""

    def __init__(
        self,
        data_dir: Path,
        rpc_url: str,
        *,
        mqtt: bool,
        store_dsn: str | None = None,
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.env = env or {}
        self.rpc_url = rpc_url
        self.mqtt = mqtt
        self.port = free_port()
        self.mqtt_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.store_dsn = store_dsn
        self.log = log or data_dir.parent / f"{data_dir.name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 90) -> None:
        env = os.environ | {
            "VITALCHAIN_GATEWAY_ADMIN_TOKEN": TOKEN,
            "VITALCHAIN_GATEWAY_RATE_PER_S": "1000000",
            "VITALCHAIN_GATEWAY_RATE_BURST": "1000000",
            # this one process is every patient and provider: not the per-client limit's case
            "VITALCHAIN_GATEWAY_PREAUTH_RATE_PER_S": "1000000",
            "VITALCHAIN_GATEWAY_PREAUTH_BURST": "1000000",
            "VITALCHAIN_GATEWAY_SEAL_MAX_AGE_S": "1",
            "VITALCHAIN_GATEWAY_ANCHOR_EVERY_S": "1",
            "VITALCHAIN_GATEWAY_ALERT_RING_K": "1",
        }
        if self.store_dsn:
            env["VITALCHAIN_GATEWAY_STORE_DSN"] = self.store_dsn
        env |= self.env
        args = [sys.executable, "-m", "vitalchain", "gateway", "run"]
        args += ["--data-dir", str(self.data_dir), "--port", str(self.port)]
        args += ["--rpc-url", self.rpc_url]
        args += ["--mqtt", "--mqtt-port", str(self.mqtt_port)] if self.mqtt else ["--no-mqtt"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(args, env=env, stdout=out, stderr=out)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError("the gateway did not start:\n" + "\n".join(tail))
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


def leftovers(data_dir: Path, wait_s: float = 0) -> list[str]:
    """Processes still running that were started for ``data_dir`` (gateway or broker), after
    giving them ``wait_s`` to go (a broker told by the kernel that its gateway died still
    saves its queue before it exits)."""
    deadline = time.monotonic() + wait_s
    while (found := _running_for(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _running_for(data_dir: Path) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(data_dir) in cmdline and int(pid) != os.getpid():
            found.append(f"{pid} {cmdline.strip()}")
    return found


# --- devices and the load ----------------------------------------------------------------------


@dataclass
class Lane:
    """One device of one patient, with what it sent and what the gateway acknowledged."""

    device: DeviceClient
    patient: PrivateKey
    unacked: list[tuple[int, bytes]] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    acked_at: list[float] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)
    publisher: Any = None

    def message(self) -> tuple[int, bytes]:
        if not self.unacked:
            seq = self.device._seq
            self.unacked.append((seq, self.device.prepare(READING)))
        return self.unacked[0]

    def settle(self, seq: int) -> None:
        self.unacked.pop(0)
        self.acked.add(seq)
        self.acked_at.append(time.monotonic())


def onboard(gateway: GatewayProcess, ledger: Ledger, count: int) -> list[Lane]:
    lanes = []
    with httpx.Client(base_url=gateway.url, timeout=30) as http:
        for i in range(count):
            patient = PrivateKey.generate()
            ledger.fund(patient.address)
            ledger.publish_key(patient)
            device = DeviceClient(PrivateKey.generate(), 50_000 + i, http=http)
            device.onboard(enrol(http, TOKEN, patient.address, f"faults {i}"))
            device.http = None
            lanes.append(Lane(device, patient))
    return lanes


def _code(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status_code}"


def run_http(lane: Lane, url: str, stop: threading.Event) -> None:
    """Send, wait for the answer, resend what was not acknowledged: the SDK's contract."""
    with httpx.Client(base_url=url, timeout=5) as http:
        while not stop.is_set():
            seq, data = lane.message()
            try:
                response = http.post(
                    "/v1/telemetry",
                    content=data,
                    headers={"content-type": "application/octet-stream"},
                )
            except httpx.HTTPError:
                lane.refusals["connection"] += 1
                time.sleep(0.05)
                continue
            if response.status_code == 200:
                lane.settle(seq)
                continue
            code = _code(response)
            lane.refusals[code] += 1
            if code == "replayed":  # stored before, its acknowledgement lost in the crash
                lane.settle(seq)
            else:
                time.sleep(0.05)
            time.sleep(0.005)


def run_mqtt(lane: Lane, stop: threading.Event) -> None:
    from vitalchain.device.mqtt import MqttPublisher

    creds = lane.device.session.mqtt if lane.device.session else None
    assert creds is not None, "the gateway offered no MQTT"
    publisher = MqttPublisher(creds, timeout=2)
    lane.publisher = publisher
    while not stop.is_set():
        try:
            publisher.connect()
            break
        except (DeviceError, OSError):
            lane.refusals["connection"] += 1
            time.sleep(0.2)
    try:
        while not stop.is_set():
            seq, data = lane.message()
            try:
                ack = publisher.publish_many([data])[0]
            except (DeviceError, OSError):
                lane.refusals["no_ack"] += 1
                continue
            code = ack.get("error", {}).get("code") if "error" in ack else None
            if code is None or code == "replayed":
                lane.settle(seq)
            else:
                lane.refusals[str(code)] += 1
                time.sleep(0.05)
    finally:
        with contextlib.suppress(Exception):
            publisher.close()


def sealed_readings(url: str, lanes: list[Lane]) -> tuple[dict[str, set[int]], int]:
    """What each patient can fetch, decrypt and verify: device → sequence numbers; and the
    group's log size (the highest leaf index seen, plus one)."""
    found: dict[str, set[int]] = {}
    size = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for lane in lanes:
            client = ProviderClient(lane.patient, http)
            try:
                blocks = client.fetch(GROUP, lane.patient.address)
            except AccessError as exc:
                if exc.code != "unknown_block":
                    raise
                blocks = []
            for fetched in blocks:
                size = max(size, fetched.block.leaf_index + 1)
                for device, reading in fetched.readings(lane.patient):
                    found.setdefault(device, set()).add(reading.seq)
    return found, size


def settle_and_count(
    gateway: GatewayProcess, ledger: Ledger, lanes: list[Lane], timeout: float = 120
) -> tuple[int, int, float, bool]:
    """Wait until every acknowledged reading is in a sealed, anchored block (or time out);
    returns (acknowledged, lost, seconds waited, anchored)."""
    start = time.monotonic()
    acked = sum(len(lane.acked) for lane in lanes)
    while True:
        found, size = sealed_readings(gateway.url, lanes)
        lost = sum(len(lane.acked - found.get(lane.device.address, set())) for lane in lanes)
        anchor = ledger.latest_anchor(GROUP)
        anchored = anchor is not None and anchor.tree_size >= size
        if (lost == 0 and anchored) or time.monotonic() - start > timeout:
            return acked, lost, time.monotonic() - start, anchored
        time.sleep(0.5)


@contextlib.contextmanager
def load(lanes: list[Lane], gateway: GatewayProcess, mqtt: bool) -> Iterator[threading.Event]:
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=run_mqtt if mqtt else run_http,
            args=(lane, stop) if mqtt else (lane, gateway.url, stop),
            daemon=True,
        )
        for lane in lanes
    ]
    for thread in threads:
        thread.start()
    try:
        yield stop
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)


@contextlib.contextmanager
def deployment(
    workdir: Path, *, mqtt: bool, devices: int, store_dsn: str | None = None
) -> Iterator[tuple[AnvilProcess, GatewayProcess, Ledger, list[Lane]]]:
    anvil = AnvilProcess(workdir / "anvil-state.json")
    anvil.start()
    gateway = GatewayProcess(workdir / "gateway", anvil.url, mqtt=mqtt, store_dsn=store_dsn)
    try:
        gateway.start()
        ledger = Ledger(
            rpc_backend(anvil.url), Deployment.load(gateway.data_dir / "deployment.json")
        )
        lanes = onboard(gateway, ledger, devices)
        yield anvil, gateway, ledger, lanes
    finally:
        gateway.stop()
        anvil.stop()
        stray = leftovers(gateway.data_dir, wait_s=10)
        for line in stray:  # never leave a process behind, even when the gateway did
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
        if stray:
            raise RuntimeError(f"processes left behind: {stray}")


# --- scenarios ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    acked: int
    lost: int
    stored_after: list[int] = field(default_factory=list)  # per restart: readings acked after it
    refusals: Counter[str] = field(default_factory=Counter)
    catch_up_s: float | None = None
    anchored: bool = False
    resumed_s: list[float] = field(default_factory=list)  # per restart: until the first ack


def _acked_since(lanes: list[Lane], moment: float) -> int:
    return sum(1 for lane in lanes for t in list(lane.acked_at) if t > moment)


def _refusals(lanes: list[Lane]) -> Counter[str]:
    total: Counter[str] = Counter()
    for lane in lanes:
        total.update(lane.refusals)
    return total


def kill9(trials: int, *, mqtt: bool, devices: int = 4, seed: int = 1) -> Outcome:
    """SIGKILL the gateway under load ``trials`` times on one data directory."""
    rng = random.Random(seed)
    name = f"kill -9 under load, {'MQTT' if mqtt else 'HTTP'}"
    with (
        tempfile.TemporaryDirectory(prefix="vc-faults-") as tmp,
        deployment(Path(tmp), mqtt=mqtt, devices=devices) as (_, gateway, ledger, lanes),
    ):
        after: list[int] = []
        resumed: list[float] = []
        with load(lanes, gateway, mqtt):
            for _ in range(trials):
                time.sleep(rng.uniform(0.5, 1.5))
                gateway.kill(signal.SIGKILL)
                if stray := leftovers(gateway.data_dir, wait_s=10):
                    raise RuntimeError(f"kill -9 left processes behind: {stray}")
                restarted = time.monotonic()
                gateway.start()
                # Devices come back on their own (MQTT clients after their reconnect backoff):
                # wait for the first acknowledgement, then let them stream a little.
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not _acked_since(lanes, restarted):
                    time.sleep(0.05)
                resumed.append(time.monotonic() - restarted)
                time.sleep(0.5)
                after.append(_acked_since(lanes, restarted))
        acked, lost, waited, anchored = settle_and_count(gateway, ledger, lanes)
        return Outcome(name, acked, lost, after, _refusals(lanes), waited, anchored, resumed)


def anvil_outage(outage_s: float, *, restart: bool, devices: int = 4) -> Outcome:
    """anvil stopped (SIGSTOP, a hung node) or ended and started again, under load."""
    name = f"anvil {'killed and restarted' if restart else 'stopped (SIGSTOP)'}, {outage_s:g} s"
    with (
        tempfile.TemporaryDirectory(prefix="vc-faults-") as tmp,
        deployment(Path(tmp), mqtt=False, devices=devices) as (anvil, gateway, ledger, lanes),
    ):
        with load(lanes, gateway, mqtt=False):
            time.sleep(1.0)
            if restart:
                anvil.stop()
            else:
                anvil.signal(signal.SIGSTOP)
            try:
                time.sleep(outage_s)
            finally:
                if restart:
                    anvil.start()
                else:
                    anvil.signal(signal.SIGCONT)
            back = time.monotonic()
            time.sleep(1.0)
        acked, lost, _, anchored = settle_and_count(gateway, ledger, lanes)
        return Outcome(name, acked, lost, [], _refusals(lanes), time.monotonic() - back, anchored)


def postgres_outage(outage_s: float, *, devices: int = 4) -> Outcome:
    """The block store's PostgreSQL stopped under load, then started again."""
    from vitalchain.services.postgres import LocalPostgres

    name = f"PostgreSQL stopped, {outage_s:g} s"
    with (
        tempfile.TemporaryDirectory(prefix="vc-faults-") as tmp,
        LocalPostgres() as pg,
        deployment(Path(tmp), mqtt=False, devices=devices, store_dsn=pg.dsn) as (
            _,
            gateway,
            ledger,
            lanes,
        ),
    ):
        statuses: Counter[int] = Counter()
        with load(lanes, gateway, mqtt=False):
            time.sleep(1.0)
            pg.halt()
            try:
                deadline = time.monotonic() + outage_s
                with httpx.Client(base_url=gateway.url, timeout=5) as http:
                    while time.monotonic() < deadline:
                        # What a provider sees meanwhile: the store's API must say 503.
                        response = http.post(
                            "/v1/store/challenges",
                            json={"v": 1, "provider": lanes[0].patient.address},
                        )
                        statuses[response.status_code] += 1
                        time.sleep(0.25)
            finally:
                pg.resume()
            back = time.monotonic()
            time.sleep(1.0)
        acked, lost, _, anchored = settle_and_count(gateway, ledger, lanes)
        refusals = _refusals(lanes)
        refusals.update({f"store API {s}": n for s, n in statuses.items()})
        return Outcome(name, acked, lost, [], refusals, time.monotonic() - back, anchored)


# --- alarms (issue 13) -------------------------------------------------------------------------

EPISODE_VITAL = Vital.SPO2
ABNORMAL = 88.0  # SpO2 below the default band (92) and above the urgent limit (85): MEDIUM
NORMAL = 97.0
DAY = 86400


@dataclass
class CareDeployment:
    """anvil, the test's own contracts (so it is the provider registry's admin), a gateway
    process on them, load lanes, and a provider consented for every patient it is given."""

    anvil: AnvilProcess
    gateway: GatewayProcess
    ledger: Ledger
    admin: PrivateKey
    lanes: list[Lane]
    doctor: PrivateKey

    def patient(self) -> PrivateKey:
        key = PrivateKey.generate()
        self.ledger.fund(key.address)
        self.ledger.publish_key(key)
        self.ledger.grant(key, self.doctor.address, scope_of(*Vital), self.ledger.timestamp() + DAY)
        return key

    def device(self, patient: PrivateKey, object_id: int, http: httpx.Client) -> DeviceClient:
        device = DeviceClient(PrivateKey.generate(), object_id, http=http)
        device.onboard(enrol(http, TOKEN, patient.address, f"alarm {object_id}"))
        return device

    @property
    def ws_url(self) -> str:
        return self.gateway.url.replace("http://", "ws://") + "/v1/alerts/ws"


@contextlib.contextmanager
def care_deployment(
    workdir: Path, *, mqtt: bool = False, devices: int = 2, env: dict[str, str] | None = None
) -> Iterator[CareDeployment]:
    """Like :func:`deployment`, on contracts deployed here (the gateway's own deployer would
    be the only registry admin), with one provider registered; every process is stopped on the
    way out and checked gone."""
    anvil = AnvilProcess(workdir / "anvil-state.json")
    anvil.start()
    gateway = GatewayProcess(workdir / "gateway", anvil.url, mqtt=mqtt, env=env)
    try:
        admin = PrivateKey.generate()
        ledger = Ledger.deploy(rpc_backend(anvil.url), admin)
        private_dir(gateway.data_dir)
        ledger.deployment.save(gateway.data_dir / "deployment.json")
        gateway.start()
        doctor = PrivateKey.generate()
        ledger.fund(doctor.address)
        ledger.register_provider(admin, doctor.address)
        ledger.publish_key(doctor)
        lanes = onboard(gateway, ledger, devices) if devices else []
        yield CareDeployment(anvil, gateway, ledger, admin, lanes, doctor)
    finally:
        gateway.stop()
        anvil.stop()
        stray = leftovers(gateway.data_dir, wait_s=10)
        for line in stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line.split()[0]), signal.SIGKILL)
        if stray:
            raise RuntimeError(f"processes left behind: {stray}")


@dataclass
class Received:
    """One notification the provider's SDK handed over (after its de-duplication)."""

    alert_id: str
    repeat: int
    kind: str
    priority: str | None
    body: dict[str, Any] | None  # opened with the provider's key (threshold alerts)
    at: float  # time.time() when handed over
    latency_ms: float | None = None  # the SDK's: the reading's arrival → handed over


class AlertWatch:
    """A provider's ``AlertSubscriber`` on its own thread: what it hands over, each alert
    acknowledged (a clinician's response: it stops escalation and lets the gateway forget the
    alert once the episode resolved).  Acknowledgements that meet a dead gateway are retried."""

    def __init__(self, url: str, key: PrivateKey, *, ack: bool = True) -> None:
        self.key = key
        self.ack = ack
        self.received: list[Received] = []
        self.handed: Counter[tuple[str, int]] = Counter()  # (alert id, repeat) → times returned
        self.events: Counter[str] = Counter()
        self.unacked: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.subscriber = AlertSubscriber(url, key, on_event=self._event)
        self._thread = threading.Thread(target=self._run, name="alert-watch", daemon=True)
        self._thread.start()

    def _event(self, name: str, _details: dict[str, Any]) -> None:
        with self._lock:
            self.events[name] += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                notice = self.subscriber.receive(timeout=0.5)
            except TimeoutError:
                self._acknowledge()
                continue
            except SubscriptionClosed:
                return
            alert = Alert.from_json(notice["alert"])
            body = open_alert(alert, self.key) if alert.kind == "threshold" else None
            got = Received(
                notice["alert_id"],
                notice["repeat"],
                alert.kind,
                notice["priority"],
                body,
                time.time(),
                notice.get("latency_ms"),
            )
            with self._lock:
                self.received.append(got)
                self.handed[(got.alert_id, got.repeat)] += 1
                if self.ack and got.repeat == 0:
                    self.unacked.append(got.alert_id)
            self._acknowledge()

    def _acknowledge(self) -> None:
        with self._lock:
            todo, self.unacked = self.unacked, []
        failed = []
        for alert_id in todo:
            try:
                self.subscriber.client().acknowledge(alert_id)
            except (httpx.HTTPError, OSError):
                failed.append(alert_id)  # the gateway is restarting: again later
            except Exception:  # refused (e.g. a technical alarm already retired): done
                self._event("ack_refused", {})
        with self._lock:
            self.unacked = failed + self.unacked

    def threshold(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.kind == "threshold"]

    def duplicates(self) -> int:
        """Notifications handed over more than once for the same (alert id, repeat): what the
        SDK's de-duplication let through (must be 0)."""
        with self._lock:
            return sum(n - 1 for n in self.handed.values() if n > 1)

    def close(self) -> None:
        self._stop.set()
        self.subscriber.close()
        self._thread.join(timeout=10)


def send_acked(http: httpx.Client, data: bytes, deadline_s: float = 60) -> str:
    """Send one data message until the gateway acknowledges it (resending across a restart,
    as the SDK does); returns ``stored`` or ``replayed`` (stored before its answer was lost)."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            response = http.post(
                "/v1/telemetry", content=data, headers={"content-type": "application/octet-stream"}
            )
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == 200:
            return "stored"
        if response is not None and _code(response) == "replayed":
            return "replayed"
        if time.monotonic() > deadline:
            raise RuntimeError("a data message was never acknowledged")
        time.sleep(0.1)


@dataclass
class AlertTrials:
    name: str
    trials: int
    expected: int = 0  # episodes confirmed (every one must raise exactly one alert)
    delivered: int = 0  # episodes whose alert the provider's SDK handed over
    lost: int = 0  # episodes without one
    duplicated: int = 0  # episodes with more than one alert ID, plus copies the SDK let through
    dropped_by_sdk: int = 0  # re-sent copies the SDK recognised and dropped (not duplicates)
    kill_points: Counter[str] = field(default_factory=Counter)  # readings stored at the kill
    after_restart_s: list[float] = field(default_factory=list)  # restart → that alert handed over
    start_s: list[float] = field(default_factory=list)  # restart → the gateway answers health
    technical: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)


def alerts_kill9(trials: int, *, devices: int = 2, seed: int = 1) -> AlertTrials:
    """SIGKILL the gateway ``trials`` times, each with an episode in progress, under load.

    Each trial is one sustained-rule episode of one patient's oximeter (M = 3 readings of SpO2
    88 %, each its own message): k of them are stored (k = M, M-1, … 1 in turn; k = M means
    the alert was just raised and may or may not have been notified), the gateway is killed and
    started again, the device sends the rest and a reading back in range.  Every episode must
    reach the provider exactly once after the SDK's de-duplication by alert ID."""
    rng = random.Random(seed)
    m = DEFAULT_RULES[EPISODE_VITAL].consecutive
    out = AlertTrials("kill -9 with an alarm episode in progress", trials)
    with (
        tempfile.TemporaryDirectory(prefix="vc-faults-") as tmp,
        care_deployment(Path(tmp), devices=devices) as care,
        httpx.Client(base_url=care.gateway.url, timeout=5) as http,
    ):
        patient = care.patient()
        device = care.device(patient, 60_000, http)
        watch = AlertWatch(care.ws_url, care.doctor)
        episodes: list[tuple[int, float]] = []  # (first abnormal reading's t in ms, restarted)
        try:
            with load(care.lanes, care.gateway, mqtt=False):
                for trial in range(trials):
                    time.sleep(rng.uniform(0.3, 1.0))
                    stored = m - trial % m  # M (just raised), M-1, … 1, M, …
                    first_ms = int(time.time() * 1000)
                    for i in range(stored):
                        send_acked(
                            http, device.prepare([(EPISODE_VITAL, ABNORMAL)], at_ms=first_ms + i)
                        )
                    time.sleep(rng.uniform(0, 0.05))
                    care.gateway.kill(signal.SIGKILL)
                    if stray := leftovers(care.gateway.data_dir, wait_s=10):
                        raise RuntimeError(f"kill -9 left processes behind: {stray}")
                    restarted = time.time()
                    care.gateway.start()
                    out.start_s.append(time.time() - restarted)
                    out.kill_points[f"{stored} of {m}"] += 1
                    for i in range(stored, m):
                        send_acked(
                            http, device.prepare([(EPISODE_VITAL, ABNORMAL)], at_ms=first_ms + i)
                        )
                    send_acked(http, device.prepare([(EPISODE_VITAL, NORMAL)], at_ms=first_ms + m))
                    episodes.append((first_ms, restarted))
                    out.expected += 1
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and len(_matched(watch, episodes)) < len(
                    episodes
                ):
                    time.sleep(0.2)
                time.sleep(2.0)  # anything late (a second alert, a re-send) shows up too
        finally:
            watch.close()
        matched = _matched(watch, episodes)
        for first_ms, restarted in episodes:
            alerts = matched.get(first_ms, [])
            ids = {r.alert_id for r in alerts}
            if ids:
                out.delivered += 1
                out.after_restart_s.append(min(r.at for r in alerts) - restarted)
            else:
                out.lost += 1
            out.duplicated += max(0, len(ids) - 1)
        out.duplicated += watch.duplicates()
        out.dropped_by_sdk = watch.subscriber.duplicates
        for r in watch.received:
            if r.kind != "threshold":
                out.technical[r.kind] += 1
        out.refusals = _refusals(care.lanes)
    return out


def _matched(watch: AlertWatch, episodes: list[tuple[int, float]]) -> dict[int, list[Received]]:
    """Threshold alerts by the episode they belong to (its first abnormal reading's time)."""
    firsts = {first_ms for first_ms, _ in episodes}
    found: dict[int, list[Received]] = {}
    for r in watch.threshold():
        assert r.body is not None
        first = round(float(r.body["first_out_at"]) * 1000)
        if first in firsts:
            found.setdefault(first, []).append(r)
    return found


def alert_table(outcomes: list[AlertTrials]) -> str:
    rows = [
        "| scenario | trials | readings stored at the kill | alerts expected | delivered | lost "
        "| duplicated (after de-duplication by alert ID) | re-sent copies dropped by the SDK "
        "| gateway up again (median) | restart → alert handed over (median, max) | other alarms |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        points = ", ".join(f"{k}: {v}" for k, v in sorted(o.kill_points.items()))
        after = (
            f"{statistics.median(o.after_restart_s):.1f} s, {max(o.after_restart_s):.1f} s"
            if o.after_restart_s
            else "n/a"
        )
        other = ", ".join(f"{k} {v}" for k, v in sorted(o.technical.items())) or "none"
        rows.append(
            f"| {o.name} | {o.trials} | {points} | {o.expected} | {o.delivered} | {o.lost} "
            f"| {o.duplicated} | {o.dropped_by_sdk} "
            f"| {statistics.median(o.start_s) if o.start_s else 0:.1f} s | {after} | {other} |"
        )
    return "\n".join(rows)


def table(outcomes: list[Outcome]) -> str:
    rows = [
        "| scenario | acknowledged readings | lost | stored after each restart (median, min) "
        "| first ack after a restart (median, max) | anchors caught up | time to catch up "
        "| refusals seen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        after = (
            f"{statistics.median(o.stored_after):g}, {min(o.stored_after)}"
            if o.stored_after
            else "n/a"
        )
        catch = f"{o.catch_up_s:.1f} s" if o.catch_up_s is not None else "n/a"
        first = (
            f"{statistics.median(o.resumed_s):.1f} s, {max(o.resumed_s):.1f} s"
            if o.resumed_s
            else "n/a"
        )
        refused = ", ".join(f"{k} {v}" for k, v in sorted(o.refusals.items())) or "none"
        rows.append(
            f"| {o.name} | {o.acked} | {o.lost} | {after} | {first} "
            f"| {'yes' if o.anchored else 'NO'} "
            f"| {catch} | {refused} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10, help="kill -9 trials per transport")
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument(
        "--only",
        choices=("kill9", "anvil-stop", "anvil-restart", "postgres-stop", "alerts-kill9"),
        default=None,
    )
    parser.add_argument(
        "--write", action="store_true", help="write the table into docs/benchmarks.md"
    )
    args = parser.parse_args()
    outcomes = []
    if args.only in (None, "kill9"):
        for mqtt in (False, True):
            outcomes.append(kill9(args.trials, mqtt=mqtt, devices=args.devices))
            print(table(outcomes[-1:]), flush=True)
    if args.only in (None, "anvil-stop"):
        outcomes.append(anvil_outage(args.outage_s, restart=False, devices=args.devices))
        print(table(outcomes[-1:]), flush=True)
    if args.only in (None, "anvil-restart"):
        outcomes.append(anvil_outage(args.outage_s, restart=True, devices=args.devices))
        print(table(outcomes[-1:]), flush=True)
    if args.only in (None, "postgres-stop"):
        outcomes.append(postgres_outage(args.outage_s, devices=args.devices))
        print(table(outcomes[-1:]), flush=True)
    alert_outcomes = []
    if args.only in (None, "alerts-kill9"):
        alert_outcomes.append(alerts_kill9(args.trials, devices=min(args.devices, 2)))
        print(alert_table(alert_outcomes[-1:]), flush=True)
    print()
    if outcomes:
        print(table(outcomes))
    if alert_outcomes:
        print(alert_table(alert_outcomes))
    if args.write:
        from report import write_section  # beside this script

        command = (
            f"`.venv/bin/python benchmarks/faults.py --trials {args.trials} "
            f"--outage-s {args.outage_s:g} --devices {args.devices}"
            + (f" --only {args.only}" if args.only else "")
            + " --write`"
        )
        if outcomes:
            write_section("faults", command + "\n\n" + table(outcomes))
        if alert_outcomes:
            write_section("faults-alerts", command + "\n\n" + alert_table(alert_outcomes))


if __name__ == "__main__":
    main()
