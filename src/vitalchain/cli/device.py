"""``vitalchain device``: enrol a wearable, send readings from it, simulate many.

An enrolled device lives in one JSON file (mode 0600): its private key, object ID, patient,
gateway, and its telemetry session (ID, key, next sequence number), so later commands can
stream as that device without onboarding again.
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from vitalchain.cli._common import (
    ADMIN_TOKEN_ENV,
    DEFAULT_DEPLOYMENT,
    DEFAULT_GATEWAY,
    AdminTokenFileOpt,
    AdminTokenFlag,
    BadArgument,
    DeploymentOpt,
    admin_token,
    check_data_dir,
    command_group,
    err,
    fail,
    gateway_client,
    guard,
    new_file,
    open_chain,
    os_refusal,
    parse_address,
    parse_http_url,
    parse_vital,
    read_secret_json,
    stdout,
    write_secret_json,
)
from vitalchain.device.physiology import DeviceKind, Episode, EpisodeKind

if TYPE_CHECKING:
    import httpx

    from vitalchain.crypto.keys import PrivateKey
    from vitalchain.device.client import DeviceClient
    from vitalchain.device.mqtt import MqttPublisher
    from vitalchain.device.simulator import SimulatedDevice
    from vitalchain.ledger import Ledger
    from vitalchain.vitals import Vital
    from vitalchain.wire.receipt import Receipt

__all__ = ["device_app", "simulate"]

device_app = command_group(
    "Enrol wearables, send readings as one, or simulate many streaming realistic vitals."
)

FILE_TYPE = "vitalchain-device"
DEFAULT_SIMULATED = Path("var/simulated")
DeviceFileOpt = Annotated[
    Path, typer.Option("--device", help="A device file written by `device enrol`.")
]


@dataclasses.dataclass
class Enrolled:
    """A device file, loaded: the client attached to its session, and the file's fields."""

    path: Path
    record: dict[str, Any]
    client: DeviceClient

    @property
    def kind(self) -> DeviceKind:
        return DeviceKind(self.record["kind"])

    @property
    def patient(self) -> str:
        return str(self.record["patient"])

    def save(self) -> None:
        """Remember the next sequence number (the gateway refuses a replayed one), and the
        session as it is now: the SDK may have re-keyed it, and a key's use is counted."""
        self.record["next_seq"] = self.client.next_seq()
        if self.client.session_key is not None:
            usage = self.client.usage
            self.record["session_id"] = self.client.session_id.hex()
            self.record["session_key"] = self.client.session_key.hex()
            self.record["used"] = {"messages": usage.messages, "blocks": usage.blocks}
        write_secret_json(self.path, self.record, replace=True)


def _load(path: Path, http: httpx.Client | None) -> Enrolled:
    from vitalchain.crypto.aead import Suite, Usage
    from vitalchain.crypto.keys import PrivateKey
    from vitalchain.device.client import DeviceClient
    from vitalchain.errors import VitalchainError

    record = read_secret_json(path, "--device")
    try:
        if record.get("type") != FILE_TYPE or record.get("v") != 1:
            raise ValueError("not a device file")
        client = DeviceClient(
            PrivateKey(bytes.fromhex(record["key"])),
            int(record["object_id"]),
            suite=Suite[record["suite"]],
            http=http,
            first_seq=int(record["next_seq"]),
        )
        used = record.get("used") or {}  # absent in files written before re-keying
        client.attach(
            bytes.fromhex(record["session_id"]),
            bytes.fromhex(record["session_key"]),
            int(record["group_id"]),
            used=Usage(int(used.get("messages", 0)), int(used.get("blocks", 0))),
            gateway=parse_address(str(record["gateway"]), "--device"),
        )
        url = record.get("telemetry_url")  # absent in files of gateways without workers
        if url is not None and not isinstance(url, str):
            raise TypeError("telemetry_url")
        client.telemetry_url = url
        DeviceKind(record["kind"])
        parse_address(str(record["patient"]), "--device")
    except (KeyError, ValueError, TypeError, ArithmeticError, VitalchainError) as exc:
        raise BadArgument(
            f"{path} is not a vitalchain device file ({type(exc).__name__})",
            "--device",
            code="not_a_device_file",
        ) from None
    return Enrolled(path, record, client)


def _gateway_of(records: list[dict[str, Any]], given: str | None) -> str:
    if given:
        return given
    urls = {str(r.get("gateway_url") or DEFAULT_GATEWAY) for r in records}
    if len(urls) > 1:
        raise BadArgument(
            f"the devices belong to different gateways ({', '.join(sorted(urls))}); "
            "simulate one gateway's devices at a time",
            "--device",
            code="mixed_gateways",
        )
    return urls.pop() if urls else DEFAULT_GATEWAY


def _spinner(text: str) -> Progress:
    bar = Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err(),
        transient=True,
    )  # fmt: skip
    bar.add_task(text, total=None)
    return bar


@device_app.command("enrol")
def enrol(
    patient: Annotated[str, typer.Option(help="The patient who wears the device (0x…).")],
    out: Annotated[
        Path, typer.Option(help="Device file to create (mode 0600; holds the device key).")
    ],
    gateway: Annotated[str, typer.Option(help="Gateway base URL.")] = DEFAULT_GATEWAY,
    admin_token_file: AdminTokenFileOpt = None,
    kind: Annotated[
        DeviceKind, typer.Option(help="What the device measures (for `device simulate`).")
    ] = DeviceKind.PULSE_OXIMETER,
    label: Annotated[str, typer.Option(help="A label for the pairing (max 100).")] = "",
    object_id: Annotated[
        int | None,
        typer.Option(min=0, max=2**64 - 1, help="The device's object ID (default: random)."),
    ] = None,
    _old_flag: AdminTokenFlag = None,
) -> None:
    """Enrol a new wearable for a patient and save it to a device file.

    Creates the device key, asks the gateway for a pairing code with the admin token,
    onboards (session key, ticket, association on chain) and writes the key and the
    telemetry session to --out.
    """
    from vitalchain.crypto.keys import PrivateKey
    from vitalchain.device.client import DeviceClient
    from vitalchain.device.simulator import enrol as pairing_code

    whose = parse_address(patient, "--patient")
    token = admin_token(admin_token_file)
    if not token:
        raise BadArgument(
            f"an admin token is needed to enrol devices: set {ADMIN_TOKEN_ENV} or use "
            "--admin-token-file",
            "--admin-token-file",
            code="admin_token_missing",
        )
    new_file(out, "--out", exists="a device file is never overwritten")
    url = parse_http_url(gateway, "--gateway")
    key = PrivateKey.generate()
    oid = object_id if object_id is not None else secrets.randbelow(2**63)
    with (
        gateway_client(gateway) as http,
        _spinner(f"onboarding a {kind.value} through {gateway}"),
        guard(f"enrolment through {gateway} failed"),
    ):
        code = pairing_code(http, token, whose, label or f"{kind.value} of {whose[:10]}")
        client = DeviceClient(key, oid, http=http)
        session = client.onboard(code)
    try:
        write_secret_json(out, device_record(client, kind, whose, url))
    except OSError as exc:
        fail(f"enrolled, but cannot write {out}: {exc.strerror or exc}", why="not_writable")
    table = Table(show_header=False, title="device enrolled", title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("device", key.address)
    table.add_row("patient", whose)
    table.add_row("group", f"{session.group_id} (gateway {session.gateway})")
    table.add_row("on chain", f"associated in block {session.block_number}")
    table.add_row("file", f"{out} (mode 0600)")
    stdout().print(table)


def device_record(
    client: DeviceClient, kind: DeviceKind, patient: str, gateway_url: str
) -> dict[str, Any]:
    """The device file of an onboarded device (see the module docstring)."""
    session = client.session
    if session is None or client.session_key is None:
        raise ValueError("the device is not onboarded")
    return {
        "v": 1,
        "type": FILE_TYPE,
        "address": client.key.address,
        "key": client.key.secret.hex(),
        "object_id": client.object_id,
        "kind": kind.value,
        "patient": patient,
        "gateway_url": gateway_url.rstrip("/"),
        "gateway": session.gateway,
        "group_id": session.group_id,
        "suite": client.suite.name,
        "session_id": session.session_id.hex(),
        "session_key": client.session_key.hex(),
        "used": {"messages": client.usage.messages, "blocks": client.usage.blocks},
        "next_seq": client.next_seq(),
        "mqtt": session.mqtt.to_json() if session.mqtt else None,
        # Only when the gateway named its ingest workers' port (association v2).
        **({"telemetry_url": session.telemetry_url} if session.telemetry_url else {}),
    }


def _reading(text: str) -> tuple[Vital, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise BadArgument(
            f"{text!r} is not VITAL=VALUE (e.g. spo2=97)", "READINGS", code="bad_reading"
        )
    vitals = parse_vital(name, "READINGS")
    if len(vitals) != 1:
        raise BadArgument(
            f"{name!r} names {len(vitals)} vitals; send systolic=… diastolic=…",
            "READINGS",
            code="bad_reading",
        )
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise BadArgument(f"{value!r} is not a number", "READINGS", code="bad_reading")
    return vitals[0], number


ReceiptsOpt = Annotated[
    Path | None,
    typer.Option(
        "--receipts",
        metavar="FILE",
        help="Add the gateway's verified receipts to this collected-receipts file (created "
        "0600 if missing), for vitalchain verify-receipts.",
    ),
]


def _receipts_before(path: Path | None) -> list[Receipt]:
    """The receipts already in ``path`` (none if it does not exist yet), read before anything
    is sent: a file that is not a collected-receipts file is refused then, never overwritten."""
    from vitalchain.cli.verify import read_receipt_files

    if path is None or not path.exists():
        return []
    return read_receipt_files([path])


def _save_receipts(path: Path | None, before: list[Receipt], clients: list[DeviceClient]) -> int:
    """Write ``before`` and the clients' kept receipts to ``path`` (each once, 0600,
    atomically); the number of receipts the file holds."""
    from vitalchain.sdk.receipts import write_receipts

    if path is None:
        return 0
    merged = {receipt.encode(): receipt for receipt in before}
    for client in clients:
        for receipt in client.receipts.receipts if client.receipts is not None else []:
            merged.setdefault(receipt.encode(), receipt)
    try:
        write_receipts(path, merged.values())
    except OSError as exc:
        raise os_refusal(exc, f"cannot write receipts to {path}", "--receipts") from None
    return len(merged)


@device_app.command("send")
def send(
    device: DeviceFileOpt,
    readings: Annotated[
        list[str], typer.Argument(help="Readings as VITAL=VALUE, e.g. spo2=97 hr=72.")
    ],
    gateway: Annotated[
        str | None, typer.Option(help="Gateway base URL (default: the device file's).")
    ] = None,
    receipts: ReceiptsOpt = None,
) -> None:
    """Send readings from an enrolled device: one signed, encrypted message per vital class
    (a blood pressure's halves together), so each reaches only the providers consented to it.
    A message counts as accepted once the gateway's signed receipt of it verified."""
    parsed = [_reading(text) for text in readings]
    enrolled = _load(device, None)
    before = _receipts_before(receipts)
    url = _gateway_of([enrolled.record], gateway)
    with gateway_client(url) as http:
        enrolled.client.http = http
        try:
            with guard(f"the gateway at {url} refused the message"):
                messages = enrolled.client.prepare_by_class(parsed)
                accepted = sum(int(enrolled.client.send(m)["accepted"]) for m in messages)
        finally:
            enrolled.save()
            kept = _save_receipts(receipts, before, [enrolled.client])
    stdout().print(
        f"[green]accepted[/green] {accepted} reading(s) from {enrolled.client.address}",
    )
    if receipts is not None:
        stdout().print(f"{kept} receipt(s) in {receipts}")


def simulate(
    gateway: Annotated[
        str | None,
        typer.Option(help="Gateway base URL (default: the device files', else 127.0.0.1:8700)."),
    ] = None,
    admin_token_file: AdminTokenFileOpt = None,
    patients: Annotated[
        int, typer.Option(min=1, max=1000, help="Simulated patients (without --device).")
    ] = 2,
    devices: Annotated[
        list[Path] | None,
        typer.Option(
            "--device",
            help="Stream from these enrolled devices instead of enrolling simulated ones "
            "(repeatable; no admin token needed).",
        ),
    ] = None,
    minutes: Annotated[
        float, typer.Option(min=0.1, help="Patient time to simulate, in minutes.")
    ] = 60.0,
    speedup: Annotated[
        float,
        typer.Option(
            min=1.0,
            help="Simulated seconds per real second (an oximeter at 150x sends ~37 messages/s, "
            "under the gateway's default 50/s per device).",
        ),
    ] = 150.0,
    transport: Annotated[str, typer.Option(help="http or mqtt.")] = "http",
    seed: Annotated[int | None, typer.Option(help="Random seed for reproducible vitals.")] = None,
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for the simulated patients' keys and device files (0600), so the "
            "patients can read their blocks and the devices stream again (--device).",
        ),
    ] = DEFAULT_SIMULATED,
    rpc_url: Annotated[
        str | None,
        typer.Option(
            help="Publish the simulated patients' keys on this chain first (with "
            "--deployment), so their blocks seal; without it they are only written to --out.",
        ),
    ] = None,
    deployment: DeploymentOpt = DEFAULT_DEPLOYMENT,
    receipts: ReceiptsOpt = None,
    episode: Annotated[
        str | None,
        typer.Option(
            metavar="KIND",
            help="Script one abnormal episode for the first simulated patient (without "
            "--device), from a fifth of --minutes for three tenths of it: desaturation, "
            "tachycardia, hypertensive_crisis, … (others come at random, 0.5 an hour).",
        ),
    ] = None,
    _old_flag: AdminTokenFlag = None,
) -> None:
    """Simulate wearables: enrol, onboard, and stream realistic vitals with abnormal episodes.

    Without --device, enrols --patients simulated patients (each wearing a cuff and an
    oximeter) with the admin token, writes each patient's key and each device's file to
    --out, and with --rpc-url publishes the patients' keys (a gateway seals a patient's
    blocks only for a published key); with --device, streams as those enrolled devices.
    """
    import httpx

    from vitalchain.device.client import DeviceError
    from vitalchain.device.simulator import Simulation

    if transport not in ("http", "mqtt"):
        raise BadArgument("transport is http or mqtt", "--transport", code="invalid_transport")
    scripted: tuple[Episode, ...] = ()
    if episode is not None:
        if devices:
            raise BadArgument(
                "--episode scripts a simulated patient; --device streams as enrolled ones",
                "--episode",
                code="invalid_episode",
            )
        try:
            kind = EpisodeKind(episode.strip().lower())
        except ValueError:
            raise BadArgument(
                f"{episode!r} is not an episode; choose one of "
                f"{', '.join(k.value for k in EpisodeKind)}",
                "--episode",
                code="invalid_episode",
            ) from None
        scripted = (Episode(kind, start_s=minutes * 60 * 0.2, duration_s=minutes * 60 * 0.3),)
    files = [_load(path, None) for path in devices or []]
    before = _receipts_before(receipts)
    token = "" if files else admin_token(admin_token_file)
    if not files and not token:
        raise BadArgument(
            f"an admin token is needed to enrol devices: set {ADMIN_TOKEN_ENV} or use "
            "--admin-token-file",
            "--admin-token-file",
            code="admin_token_missing",
        )
    url = _gateway_of([f.record for f in files], gateway)
    ledger = None
    if not files:
        check_data_dir(out, "--out", default=DEFAULT_SIMULATED)
        if rpc_url is not None:
            ledger = open_chain(rpc_url, deployment)
    console = stdout()
    with gateway_client(url) as http:
        sim = Simulation(
            http,
            token or "",
            patients=0 if files else patients,
            seed=seed,
            speedup=speedup,
            scripted=scripted,
        )
        enrolled = files
        mqtt_of: dict[str, dict[str, Any]] = {}
        for item in enrolled:
            item.client.http = http
            sim.add_device(item.client, item.kind, item.patient)
            if item.record.get("mqtt"):
                mqtt_of[item.client.address] = item.record["mqtt"]
        if not enrolled:
            _keep_patient_keys(sim.patients, out, ledger)
            try:
                with _spinner(f"onboarding {len(sim.devices)} devices through {url}"):
                    sim.onboard()
            except (DeviceError, OSError, httpx.HTTPError) as exc:
                fail(f"onboarding failed: {exc}", why=getattr(exc, "code", None))
            enrolled = _write_device_files(sim.devices, out, url)
        publishers: dict[str, MqttPublisher] = {}
        try:
            if transport == "mqtt":
                _connect_mqtt(sim.devices, mqtt_of, publishers)

            def publish(device: SimulatedDevice, message: bytes) -> dict[str, object]:
                return publishers[device.client.address].publish(message)

            with Progress(console=err()) as bar, guard("the simulation stopped"):
                task = bar.add_task(f"{len(sim.devices)} devices streaming", total=1.0)
                stats = sim.run(
                    minutes * 60,
                    publish=publish if publishers else None,
                    progress=lambda f: bar.update(task, completed=f),
                )
        finally:
            for publisher in publishers.values():
                publisher.close()
            for item in enrolled:
                item.save()
            kept = _save_receipts(receipts, before, [d.client for d in sim.devices])
    table = Table("messages", "readings accepted", "refused", "patient time", "wall time")
    table.add_row(
        str(stats.sent_messages),
        str(stats.accepted_readings),
        ", ".join(f"{k}: {v}" for k, v in stats.refused.items()) or "0",
        f"{stats.simulated_s / 60:.0f} min",
        f"{stats.wall_s:.1f} s",
    )
    console.print(table)
    if receipts is not None:
        console.print(f"{kept} receipt(s) in {receipts}")


def _keep_patient_keys(patients: dict[str, PrivateKey], out: Path, ledger: Ledger | None) -> None:
    """Write each simulated patient's key to ``out`` (0600), before anything is enrolled, and
    publish it when a chain is given: without a published key the gateway cannot wrap a
    block's data key for the patient, so their readings would never seal."""
    from vitalchain.cli._common import ensure_gas, guard

    os.makedirs(out, mode=0o700, exist_ok=True)
    for address, key in patients.items():
        path = new_file(out / f"patient-{address}.key", "--out")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key.secret.hex() + "\n")
        except OSError as exc:
            fail(f"cannot write {path}: {exc.strerror or exc}", why="not_writable")
    if ledger is not None:
        with (
            _spinner(f"publishing {len(patients)} patients' keys"),
            guard("cannot publish the patients' keys"),
        ):
            for address, key in patients.items():
                if not ledger.has_key(address):
                    ensure_gas(ledger, address)
                    ledger.publish_key(key)
        err().print(f"published the keys of {len(patients)} patients; written to {out}/")
    else:
        err().print(
            f"[yellow]note:[/yellow] the patients' keys are in {out}/ but not published, so "
            "the gateway seals none of their readings until each runs `vitalchain key "
            "publish --key FILE` (or pass --rpc-url to publish them here)",
        )


def _write_device_files(devices: list[SimulatedDevice], out: Path, url: str) -> list[Enrolled]:
    """A device file per onboarded simulated device in ``out``; their next_seq is saved after
    the run like any enrolled device's."""
    written: list[Enrolled] = []
    for device in devices:
        path = new_file(
            out / f"{device.kind.value}-{device.client.address}.json",
            "--out",
            exists="a device file is never overwritten",
        )
        record = device_record(device.client, device.kind, device.patient, url)
        try:
            write_secret_json(path, record)
        except OSError as exc:
            fail(f"cannot write {path}: {exc.strerror or exc}", why="not_writable")
        written.append(Enrolled(path, record, device.client))
    return written


def _connect_mqtt(
    devices: list[SimulatedDevice],
    from_files: dict[str, dict[str, Any]],
    publishers: dict[str, MqttPublisher],
) -> None:
    """One connected publisher per device into ``publishers`` (the caller closes them)."""
    from vitalchain.device.mqtt import MqttPublisher
    from vitalchain.errors import DecodeError
    from vitalchain.wire.onboarding import MqttGrant

    for device in devices:
        address = device.client.address
        creds = device.client.session.mqtt if device.client.session else None
        if creds is None and address in from_files:
            try:
                creds = MqttGrant.parse_value(from_files[address])
            except DecodeError:
                fail(
                    f"the device file of {address} holds malformed MQTT credentials",
                    why="not_a_device_file",
                )
        if creds is None:
            fail("the gateway offers no MQTT; use --transport http", why="no_mqtt")
        publishers[address] = MqttPublisher(
            creds, receipts=device.client.receipts, on_ack=device.client.note_ack
        )
        with guard(f"cannot connect device {address} to the MQTT broker"):
            publishers[address].connect()


device_app.command("simulate")(simulate)
