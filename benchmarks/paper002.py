"""Paper 002's evaluation (section 5) reproduced with the real device SDK and a real gateway.

    .venv/bin/python benchmarks/paper002.py [--runs 100] [--loop 100] [--gap-ms 100] [--no-capture]

A gateway (``vitalchain gateway run --no-mqtt``: embedded chain, SQLite store, sealer) is
started in a child process on 127.0.0.1 at a free port; the device runs
in this process, so its CPU time is its own.  Measured, as in the paper:

1. **Time to prepare an association request and a data message** (``time.perf_counter``),
   mean ± sd (and median) over ``--runs`` runs after 20 warm-up runs.

   *Association request* means all of the device's own work in onboarding
   (``DeviceClient.onboard``, docs/spec/onboarding.md), i.e. paper 002's keySession →
   getTicket → association on the slave side:

   - build the keySession request (device public key, object ID, suite);
   - check the gateway's signature over the session (public-key recovery) and open the session
     key wrapped for the device key (ECDH + HKDF + AEAD);
   - build and seal the ticket request under the session key;
   - open the ticket (the master's EIP-712 token), sign the association request (EIP-712
     digest, secp256k1 ECDSA) and seal it;
   - open the association reply and attach the telemetry session;
   - serialise each request body to JSON bytes and parse each reply from JSON bytes.

   Not included: HTTP framing, sockets and the network, the gateway's work, the chain (the
   association transaction) and the enrolment (pairing code), which is the patient's or an
   administrator's step.  To measure exactly that, one real onboarding against the real gateway
   is recorded (its replies' bytes), then ``onboard`` is run ``--runs`` times with the same
   device key against a replay object in place of the HTTP client, which serialises the
   request and hands back the recorded reply bytes.  The per-step split is taken at the moment
   each request is serialised (the device hands it to the network).

   *Data message* means ``DeviceClient.prepare``: build the JSON payload, sign it (Keccak +
   ECDSA) and encrypt it under the session key (ChaCha20-Poly1305); rows for one reading and
   for a pulse oximeter's message (SpO2 + heart rate, the loop's message).
2. **CPU time** of the same runs (``time.process_time``: this process's user + system time).
3. **Energy**, where Intel RAPL is exposed (``/sys/class/powercap/intel-rapl:*/energy_uj``):
   package-wide counters (every process on the socket, the gateway included), reported gross
   and with the idle power measured just before subtracted.  Where RAPL is absent or
   unreadable the command says so and why, and reports no energy figure.
4. **The loop**: the onboarded device sends ``--loop`` pulse-oximeter messages over real HTTP
   (one keep-alive httpx connection) with ``--gap-ms`` between an acknowledgement and the next
   message; per-message preparation time, round trip (``send`` → parsed acknowledgement, which
   the gateway gives after a durable commit), total duration, device CPU, and that every
   message was accepted.
5. **Traffic capture** (paper 002's Wireshark analysis): tshark on the loopback interface,
   filtered to the gateway's port, once around the onboarding (informational: which
   identifiers the protocol sends in clear) and once around the loop (asserted: no vital value
   as serialised, no vital name or unit, no patient or device identifier on the wire, and every
   sent message found verbatim in the capture as a positive control).  The scan is
   ``benchmarks/capture.py``.

Exit status: 0 if everything ran and passed; 1 if a message was refused or a plaintext check
failed; 2 if the capture could not be made (tshark missing or refused to start), while every
other part still runs and prints.  ``--no-capture`` skips part 5.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json as jsonlib
import math
import os
import platform
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from capture import (  # benchmarks/capture.py: the script's directory is on sys.path
    Capture,
    CaptureError,
    Needle,
    address_needles,
    find_tshark,
    locate,
    scan_capture,
    tshark_capture,
)
from vitalchain.crypto import PrivateKey, PublicKey
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.device.physiology import DeviceKind, PatientProfile, VitalsGenerator
from vitalchain.device.simulator import enrol
from vitalchain.services.ports import free_port
from vitalchain.vitals import Vital

Readings = list[tuple[Vital, float]]
WARM_UP = 20
RAPL_ROOT = Path("/sys/class/powercap")
IDLE_S = 2.0  # idle phase before and after the loop, only when RAPL is there to measure it


# --- statistics --------------------------------------------------------------------------------


def mean_sd(samples: Sequence[float], scale: float = 1e6) -> str:
    xs = [s * scale for s in samples]
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):,.1f} ± {sd:,.1f}"


def median(samples: Sequence[float], scale: float = 1e6) -> str:
    return f"{statistics.median(samples) * scale:,.1f}"


def p95(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


# --- RAPL --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RaplDomain:
    name: str  # e.g. "package-0", "dram"
    energy: Path
    max_uj: int


@dataclass
class Rapl:
    domains: list[RaplDomain]

    def read(self) -> list[int]:
        return [int(d.energy.read_text()) for d in self.domains]

    def joules(self, before: list[int], after: list[int]) -> list[float]:
        """Per domain, allowing for one wrap of each counter."""
        out = []
        for d, b, a in zip(self.domains, before, after, strict=True):
            out.append(((a - b) % (d.max_uj + 1) if a < b else a - b) / 1e6)
        return out


def find_rapl(root: Path = RAPL_ROOT) -> tuple[Rapl | None, str]:
    """The RAPL domains of this machine, or None and the reason there are none to read."""
    if not root.is_dir():
        return None, (
            f"{root} does not exist: this kernel exposes no powercap interface, as is usual in a "
            "virtual machine (the hypervisor does not pass the RAPL energy counters through)"
        )
    domains = []
    for zone in sorted(root.glob("intel-rapl:*")):
        energy = zone / "energy_uj"
        if not energy.exists():
            continue
        try:
            energy.read_text()
            name = (zone / "name").read_text().strip()
            max_uj = int((zone / "max_energy_range_uj").read_text())
        except PermissionError:
            return None, (
                f"{energy} is not readable by this user (kernels since 5.10 restrict it to root)"
            )
        except OSError as exc:
            return None, f"{energy} could not be read: {exc.strerror}"
        domains.append(RaplDomain(f"{zone.name} {name}", energy, max_uj))
    if not domains:
        return None, f"{root} exists but has no intel-rapl:* zone with energy_uj"
    return Rapl(domains), ""


# --- the gateway in its own process ------------------------------------------------------------


@contextlib.contextmanager
def gateway_process(data_dir: Path, token: str) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = os.environ | {"VITALCHAIN_GATEWAY_ADMIN_TOKEN": token}
    # The gateway as operators run it: embedded chain, HTTP only, on loopback; the admin token
    # comes from VITALCHAIN_GATEWAY_ADMIN_TOKEN, never the command line.
    args = [sys.executable, "-m", "vitalchain", "gateway", "run", "--data-dir", str(data_dir),
            "--host", "127.0.0.1", "--port", str(port), "--no-mqtt"]  # fmt: skip
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                raise RuntimeError(f"the gateway did not start:\n{err}")
            time.sleep(0.2)
        yield url, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- onboarding: record once, replay for the device-side measurement ---------------------------


@dataclass(frozen=True)
class Recorded:
    path: str
    status: int
    content: bytes


class Recorder:
    """Passes the device's requests to the real HTTP client and keeps each reply's bytes."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self.replies: list[Recorded] = []

    def post(self, path: str, json: dict[str, Any]) -> httpx.Response:
        response = self.http.post(path, json=json)
        self.replies.append(Recorded(path, response.status_code, response.content))
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """The bands (anonymity on learns them at onboarding); not part of the replay."""
        return self.http.get(path, **kwargs)


class ReplayReply:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    def json(self) -> Any:
        return jsonlib.loads(self.content)


class Replay:
    """In place of the HTTP client: serialises each request body as the device would send it
    and answers with the recorded reply's bytes (parsed by the device), with no network."""

    def __init__(self, replies: list[Recorded]) -> None:
        self.replies = replies
        self.wire: list[bytes] = []
        self.marks: list[tuple[float, float]] = []

    def rewind(self) -> None:
        self.wire.clear()
        self.marks.clear()

    def post(self, path: str, json: dict[str, Any]) -> ReplayReply:
        self.wire.append(jsonlib.dumps(json, separators=(",", ":")).encode())
        self.marks.append((time.perf_counter(), time.process_time()))
        reply = self.replies[len(self.wire) - 1]
        if reply.path != path:
            raise RuntimeError(f"replay out of step: {path} where {reply.path} was recorded")
        return ReplayReply(reply.status, reply.content)


ONBOARDING_STEPS = (
    "1. keySession request (public key, object ID, suite)",
    "2. check the gateway's session signature, open the session key, seal the ticket request",
    "3. open the ticket, sign the association request (EIP-712), seal it",
    "4. open the association reply, attach the session",
)


@dataclass
class Timed:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    energy_j: list[float] | None = None  # per RAPL domain, for all runs together
    block_s: float = 0.0


def stand_ins(count: int) -> list[PublicKey]:
    """Public keys to fill a ring where the gateway has too few devices for one."""
    return [PrivateKey.generate().public_key for _ in range(count)]


def timed(fn: Callable[[], object], runs: int, rapl: Rapl | None) -> Timed:
    for _ in range(WARM_UP):
        fn()
    out = Timed()
    before = rapl.read() if rapl else []
    start = time.perf_counter()
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        out.wall.append(time.perf_counter() - w0)
        out.cpu.append(time.process_time() - c0)
    out.block_s = time.perf_counter() - start
    if rapl:
        out.energy_j = rapl.joules(before, rapl.read())
    return out


def association_runs(
    key: PrivateKey,
    object_id: int,
    pairing_code: str,
    replies: list[Recorded],
    runs: int,
    rapl: Rapl | None,
) -> tuple[Timed, list[Timed]]:
    """``onboard`` against the replay: the whole and each of its four steps."""
    replay = Replay(replies)
    steps = [Timed() for _ in ONBOARDING_STEPS]

    def once() -> None:
        # The paper's association only: learning the bands afterwards (a GET, anonymity on)
        # is the device's next step, not part of it.
        device = DeviceClient(key, object_id, http=cast(httpx.Client, replay), anonymity=False)
        replay.rewind()
        w0, c0 = time.perf_counter(), time.process_time()
        device.onboard(pairing_code)
        marks = [(w0, c0), *replay.marks, (time.perf_counter(), time.process_time())]
        for step, (a, b) in zip(steps, itertools.pairwise(marks), strict=True):
            step.wall.append(b[0] - a[0])
            step.cpu.append(b[1] - a[1])

    whole = timed(once, runs, rapl)
    for step in steps:  # drop the warm-up runs
        del step.wall[:WARM_UP], step.cpu[:WARM_UP]
    return whole, steps


# --- readings and what must not be on the wire -------------------------------------------------


def oximeter_readings(count: int, seed: int) -> list[Readings]:
    rng = random.Random(seed)
    generator = VitalsGenerator(PatientProfile.random(rng), seed=rng.randrange(2**32))
    return [generator.readings(DeviceKind.PULSE_OXIMETER, 2.0 * i) for i in range(count)]


def unit_needles() -> list[Needle]:
    """Every unit the payload can carry (UCUM), and the everyday spellings ("bpm", "mmHg").

    Bare when 4 bytes or longer; shorter ones quoted as JSON serialises them ("bpm" → ``"bpm"``),
    and "%" only in its serialised field, ``"unit":"%"`` (a 1- to 3-byte needle would turn up
    in ciphertext by chance)."""
    needles = []
    units = sorted({v.info.unit for v in Vital} | {"bpm", "mmHg", "mm Hg", "degC"})
    for unit in units:
        needles.append(Needle(f'unit field "{unit}"', f'"unit":"{unit}"'.encode()))
        if len(unit) >= 4:
            needles.append(Needle(f"unit {unit}", unit.encode()))
        elif len(unit) + 2 >= 4:
            needles.append(Needle(f'unit "{unit}" (quoted)', f'"{unit}"'.encode()))
    return needles


@dataclass
class Check:
    title: str
    needles: list[Needle]
    must_find: bool = False  # a positive control


def loop_checks(
    sent: list[Readings], messages: list[bytes], patient: str, device: DeviceClient
) -> list[Check]:
    values = sorted({jsonlib.dumps(value) for readings in sent for _, value in readings})
    vitals = sorted({v.info.short for readings in sent for v, _ in readings})
    public = device.key.public_key
    return [
        Check(
            f'vital values as serialised ({len(values)} distinct, e.g. `"value":{values[0]}`)',
            [Needle(f'"value":{v}', f'"value":{v}'.encode()) for v in values],
        ),
        Check(
            'vital names and payload fields (`"vital":"spo2"`, `"readings":[`, ...)',
            [Needle(f'"vital":"{v}"', f'"vital":"{v}"'.encode()) for v in vitals]
            + [Needle(f'"{v}"', f'"{v}"'.encode()) for v in vitals]
            + [Needle(k, k.encode()) for k in ('"readings":[', '"sent_at":', '"device":')],
        ),
        Check("unit strings (UCUM and bpm, mmHg)", unit_needles()),
        Check(
            "patient address (hex any case, ±0x; raw bytes)", address_needles("patient", patient)
        ),
        Check(
            "device address, public key, object ID",
            [
                *address_needles("device address", device.address),
                Needle("device key, compressed hex", public.compressed.hex().encode(), True),
                Needle("device key, uncompressed hex", public.uncompressed.hex().encode(), True),
                Needle("device key, compressed raw", public.compressed),
                Needle("object ID, decimal", str(device.object_id).encode()),
                Needle("object ID, 8 raw bytes", device.object_id.to_bytes(8, "big")),
            ],
        ),
        Check(
            "positive control: every sent message found verbatim",
            [Needle(f"message {i}", m) for i, m in enumerate(messages)],
            must_find=True,
        ),
    ]


def onboarding_checks(patient: str, device: DeviceClient, pairing_code: str) -> list[Check]:
    public = device.key.public_key
    return [
        Check("patient address", address_needles("patient", patient)[:1]),
        Check("device public key (hex)", [Needle("key", public.compressed.hex().encode(), True)]),
        Check("device address", address_needles("device", device.address)[:1]),
        Check("object ID (decimal)", [Needle("oid", str(device.object_id).encode())]),
        Check("pairing code", [Needle("pairing code", pairing_code.encode())]),
    ]


# --- the parts ---------------------------------------------------------------------------------


@dataclass
class LoopResult:
    prepare: list[float] = field(default_factory=list)
    prepare_cpu: list[float] = field(default_factory=list)
    rtt: list[float] = field(default_factory=list)
    accepted: int = 0
    refused: list[str] = field(default_factory=list)
    total_s: float = 0.0
    cpu_s: float = 0.0
    messages: list[bytes] = field(default_factory=list)
    energy_j: list[float] | None = None
    idle_before_j: list[float] | None = None
    idle_after_j: list[float] | None = None


def idle(rapl: Rapl | None) -> list[float] | None:
    if rapl is None:
        return None
    before = rapl.read()
    time.sleep(IDLE_S)
    return rapl.joules(before, rapl.read())


def run_loop(
    device: DeviceClient, url: str, sent: list[Readings], gap_s: float, rapl: Rapl | None
) -> LoopResult:
    result = LoopResult()
    result.idle_before_j = idle(rapl)
    with httpx.Client(base_url=url, timeout=30) as http:
        device.http = http
        before = rapl.read() if rapl else []
        start, cpu0 = time.perf_counter(), time.process_time()
        for i, readings in enumerate(sent):
            t0, c0 = time.perf_counter(), time.process_time()
            message = device.prepare(readings)
            t1, c1 = time.perf_counter(), time.process_time()
            try:
                ack = device.send(message)
            except DeviceError as exc:
                result.refused.append(f"{exc.code} ({exc.status})")
            else:
                if ack.get("accepted") == len(readings):
                    result.accepted += 1
                else:
                    result.refused.append(f"accepted {ack.get('accepted')} of {len(readings)}")
            t2 = time.perf_counter()
            result.prepare.append(t1 - t0)
            result.prepare_cpu.append(c1 - c0)
            result.rtt.append(t2 - t1)
            result.messages.append(message)
            if i + 1 < len(sent):
                time.sleep(gap_s)
        result.total_s = time.perf_counter() - start
        result.cpu_s = time.process_time() - cpu0
        if rapl:
            result.energy_j = rapl.joules(before, rapl.read())
        device.http = None
    result.idle_after_j = idle(rapl)
    return result


def print_checks(checks: list[Check], capture: Capture, reported: str, informational: bool) -> int:
    """Print the capture's size and each check; returns how many asserted checks failed."""
    print(f"- packets: {capture.packets:,} (tshark: {reported or 'no summary line'})")
    print(
        f"- bytes captured: {capture.packet_bytes:,} in packets, {len(capture.raw):,} in the pcap"
    )
    print(
        f"- TCP payload reassembled: {capture.payload_bytes:,} bytes in {len(capture.flows)} "
        "flow directions\n"
    )
    print("| check | needles | result |")
    print("|---|---|---|")
    failures = 0
    for check in checks:
        found = scan_capture(capture, check.needles)
        if informational:
            where = sorted({w for n in found for w in locate(capture, n)})
            result = f"in clear: {'; '.join(where) or 'outside HTTP'}" if found else "not seen"
        elif check.must_find:
            ok = len(found) == len(check.needles)
            result = f"{len(found)}/{len(check.needles)} found: " + ("pass" if ok else "**FAIL**")
            failures += not ok
        else:
            ok = not found
            result = (
                "none found: pass"
                if ok
                else "**FOUND: "
                + ", ".join(
                    f"{n.label} in {locate(capture, n) or 'non-HTTP bytes'}" for n in found[:5]
                )
                + "** (FAIL)"
            )
            failures += not ok
        print(f"| {check.title} | {len(check.needles)} | {result} |")
    return failures


def energy_rows(rapl: Rapl, label: str, t: Timed, runs: int, idle_j: list[float] | None) -> None:
    assert t.energy_j is not None
    for i, d in enumerate(rapl.domains):
        gross = t.energy_j[i] / runs * 1e6
        net = ""
        if idle_j is not None:
            net_j = t.energy_j[i] - idle_j[i] / IDLE_S * t.block_s
            net = f"{net_j / runs * 1e6:,.1f} µJ"
        print(f"| {label} | {d.name} | {gross:,.1f} µJ | {net} |")


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0]
    return (
        f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load:.2f} at start"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="device-side repetitions")
    parser.add_argument("--loop", type=int, default=100, help="messages in the loop")
    parser.add_argument("--gap-ms", type=float, default=100.0, help="pause between messages")
    parser.add_argument("--no-capture", action="store_true", help="skip the tshark capture")
    args = parser.parse_args()
    if args.runs < 2 or args.loop < 1:
        parser.error("--runs must be at least 2 and --loop at least 1")

    print(f"Machine: {machine()}\n")
    rapl, rapl_reason = find_rapl()
    capture_wanted = not args.no_capture
    capture_problem = ""
    if capture_wanted and find_tshark() is None:
        capture_problem = "tshark is not installed (apt-get install tshark)"
    exit_status = 0
    token = secrets.token_urlsafe(24)
    patient = PrivateKey.generate().address
    key = PrivateKey.generate()
    object_id = secrets.randbits(63) | (1 << 62)  # 19 decimal digits: a distinctive needle
    loop_readings = oximeter_readings(args.loop, seed=2)
    bench_readings = oximeter_readings(args.runs + WARM_UP, seed=3)

    with tempfile.TemporaryDirectory(prefix="paper002-") as tmp_name:
        tmp = Path(tmp_name)
        with gateway_process(tmp / "gateway", token) as (url, port):
            # Onboarding over real HTTP (captured when asked): enrolment, then the device.
            onboard_capture: tuple[Capture, str] | None = None
            with contextlib.ExitStack() as stack:
                running = None
                if capture_wanted and not capture_problem:
                    try:
                        running = stack.enter_context(tshark_capture(tmp / "onboard.pcap", port))
                    except CaptureError as exc:
                        capture_problem = str(exc)
                with httpx.Client(base_url=url, timeout=60) as http:
                    pairing_code = enrol(http, token, patient, "paper 002 benchmark")
                    recorder = Recorder(http)
                    device = DeviceClient(key, object_id, http=cast(httpx.Client, recorder))
                    device.onboard(pairing_code)
                    device.http = None
            if running is not None and running.capture is not None:
                onboard_capture = (running.capture, running.reported)

            # 1-3: device-side preparation, wall and CPU time (and energy with RAPL).
            idle_j = idle(rapl)
            association, steps = association_runs(
                key, object_id, pairing_code, recorder.replies, args.runs, rapl
            )
            # The default path, anonymity on: the bands learned at onboarding decide. The
            # gateway has one device, so the ring of 9 is made of 8 keys that are not devices
            # of the group: the same bytes and work as a ring from GET /v1/ring.
            assert device.bands is not None, "the device did not learn its bands"
            device.use_ring([device.key.public_key, *stand_ins(8)])
            it = iter(bench_readings)
            one = timed(lambda: device.prepare([(Vital.SPO2, 97.0)]), args.runs, rapl)
            low = timed(lambda: device.prepare([(Vital.SPO2, 85.0)]), args.runs, rapl)
            oxi = timed(lambda: device.prepare(next(it)), args.runs, rapl)

            # 4-5: the loop over real HTTP, captured when asked.
            loop_capture: tuple[Capture, str] | None = None
            with contextlib.ExitStack() as stack:
                running = None
                if capture_wanted and not capture_problem:
                    try:
                        running = stack.enter_context(tshark_capture(tmp / "loop.pcap", port))
                    except CaptureError as exc:
                        capture_problem = str(exc)
                loop = run_loop(device, url, loop_readings, args.gap_ms / 1000, rapl)
            if running is not None and running.capture is not None:
                loop_capture = (running.capture, running.reported)

    # --- report --------------------------------------------------------------------------------
    print(f"### Device-side preparation ({args.runs} runs each, after {WARM_UP} warm-up runs)\n")
    print("| operation | wall time, mean ± sd | median | CPU time, mean ± sd |")
    print("|---|---|---|---|")
    rows = [
        ("association request (onboarding, device side)", association),
        ("data message, 1 reading in band (SpO2 97 %): no ring proof", one),
        ("data message, 1 reading out of band (SpO2 85 %): ring of 9", low),
        ("data message, pulse oximeter (SpO2 + heart rate)", oxi),
    ]
    for name, t in rows:
        print(f"| {name} | {mean_sd(t.wall)} µs | {median(t.wall)} µs | {mean_sd(t.cpu)} µs |")

    print("\n### Association request, step by step (same runs)\n")
    print("| device-side step | wall time, mean ± sd | median | CPU time, mean |")
    print("|---|---|---|---|")
    for name, t in zip(ONBOARDING_STEPS, steps, strict=True):
        cpu = statistics.mean(t.cpu) * 1e6
        print(f"| {name} | {mean_sd(t.wall)} µs | {median(t.wall)} µs | {cpu:,.1f} µs |")

    print("\n### Energy (Intel RAPL)\n")
    if rapl is None:
        print(f"Energy is **not measured** on this machine: {rapl_reason}. No figure is given.")
    else:
        print("| operation | RAPL domain | energy per operation, gross | minus idle power |")
        print("|---|---|---|---|")
        for name, t in rows:
            energy_rows(rapl, name, t, args.runs, idle_j)
        print("\nPackage counters include every process on the socket (the gateway too).")

    gaps = f"{args.gap_ms:g} ms"
    print(f"\n### Loop: {args.loop} data messages over HTTP, {gaps} between them\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| prepare per message, mean ± sd (median) | {mean_sd(loop.prepare)} µs "
          f"({median(loop.prepare)} µs) |")  # fmt: skip
    print(f"| prepare per message, CPU time, mean ± sd (median) | {mean_sd(loop.prepare_cpu)} µs "
          f"({median(loop.prepare_cpu)} µs) |")  # fmt: skip
    print(f"| round trip send → ack, median | {statistics.median(loop.rtt) * 1e3:.2f} ms |")
    print(f"| round trip send → ack, p95 | {p95(loop.rtt) * 1e3:.2f} ms |")
    print(f"| round trip, first message (opens the connection) | {loop.rtt[0] * 1e3:.2f} ms |")
    print(f"| round trip, max | {max(loop.rtt) * 1e3:.2f} ms |")
    print(f"| total duration | {loop.total_s:.2f} s |")
    print(f"| device CPU time, whole loop (prepare + HTTP client) | {loop.cpu_s * 1e3:.1f} ms "
          f"({loop.cpu_s / args.loop * 1e6:,.0f} µs per message) |")  # fmt: skip
    ok = loop.accepted == args.loop and not loop.refused
    print(f"| accepted | {loop.accepted}/{args.loop}" + ("" if ok else " **(FAIL)**") + " |")
    if loop.refused:
        print(f"\nRefused: {', '.join(sorted(set(loop.refused)))}")
        exit_status = 1
    if rapl is not None and loop.energy_j is not None:
        print("\n| RAPL domain | idle before | loop | idle after |")
        print("|---|---|---|---|")
        for i, d in enumerate(rapl.domains):
            before = loop.idle_before_j[i] / IDLE_S if loop.idle_before_j else math.nan
            during = loop.energy_j[i] / loop.total_s
            after = loop.idle_after_j[i] / IDLE_S if loop.idle_after_j else math.nan
            print(f"| {d.name} | {before:.2f} W | {during:.2f} W | {after:.2f} W |")
    else:
        print("\nEnergy of the loop: not measured (no RAPL, see above).")

    print("\n### Traffic capture (tshark on lo)\n")
    if args.no_capture:
        print("Skipped (--no-capture).")
    elif capture_problem or onboard_capture is None or loop_capture is None:
        print(f"**Not captured**: {capture_problem or 'tshark produced no capture'}.")
        if exit_status == 0:
            exit_status = 2
    else:
        print("#### Onboarding (enrolment + keySession, ticket, association): informational\n")
        checks = onboarding_checks(patient, device, pairing_code)
        print_checks(checks, *onboard_capture, informational=True)
        print(f"\n#### Loop ({args.loop} data messages and their acknowledgements): asserted\n")
        checks = loop_checks(loop_readings, loop.messages, patient, device)
        if print_checks(checks, *loop_capture, informational=False):
            exit_status = 1
    print(f"\nExit status: {exit_status}")
    return exit_status


if __name__ == "__main__":
    sys.exit(main())
