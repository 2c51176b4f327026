"""The command line end to end, with real parts: a real anvil node, a real gateway over HTTP.

The gateway (the node's composition: store, sealer, access API, alerts) is served by uvicorn
on a free 127.0.0.1 port in this process; every step a person would take goes through the
``vitalchain`` CLI: deploy, keys, provider registration, consent, a device enrolled and
streaming, fetch and decrypt, FHIR export, a live alert, revocation, and ``verify``.
``chain start`` runs as its own process and is stopped with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from tests.support.waiting import wait_for
from vitalchain.cli import app
from vitalchain.crypto import PrivateKey
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import Deployment, Ledger
from vitalchain.node import RunningGateway, rpc_backend, running_gateway, served
from vitalchain.sdk.alert import Alert
from vitalchain.sealing.sealer import SealingPolicy
from vitalchain.services.ports import free_port

ADMIN_TOKEN = "cli-test-admin-token-0123456789"


def cli(*args: str, ok: bool = True, token: str | None = None) -> Result:
    """The CLI in this process; ``token`` is given the way operators give it (environment)."""
    result = CliRunner().invoke(app, list(args), env={"VITALCHAIN_GATEWAY_ADMIN_TOKEN": token})
    if ok:
        assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


@dataclass
class Setup:
    dir: Path
    rpc: tuple[str, ...]  # --rpc-url and --deployment
    gateway_url: str
    running: RunningGateway
    ledger: Ledger
    admin_key: Path

    @property
    def group_id(self) -> int:
        return self.running.gateway.group_id


@pytest.fixture(scope="module")
def setup(anvil_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """`vitalchain chain deploy` onto anvil, then a gateway on that deployment, over HTTP."""
    work = tmp_path_factory.mktemp("cli")
    deployment, admin_key = work / "deployment.json", work / "admin.key"
    result = cli(
        "chain", "deploy", "--rpc-url", anvil_url, "--out", str(deployment),
        "--key", str(admin_key),
    )  # fmt: skip
    assert "ConsentRegistry" in result.output
    assert admin_key.stat().st_mode & 0o777 == 0o600
    assert admin_key.read_text().strip() not in result.output
    ledger = Ledger(rpc_backend(anvil_url), Deployment.load(deployment))
    settings = GatewaySettings(
        data_dir=work / "gateway", admin_token=SecretStr(ADMIN_TOKEN), mqtt=False
    )
    sealing = SealingPolicy(max_readings=200, max_age_s=0.5, anchor_every_s=0.5)
    with (
        running_gateway(settings, ledger=ledger, sealing=sealing) as running,
        served(running.app()) as url,
    ):
        yield Setup(
            work,
            ("--rpc-url", anvil_url, "--deployment", str(deployment)),
            url,
            running,
            ledger,
            admin_key,
        )


def sealed_and_anchored(s: Setup, patient: str, readings: int) -> None:
    """Wait until ``readings`` of the patient are in blocks and the log's root is anchored."""
    store = s.running.gateway.store

    def done() -> bool:
        blocks = store.blocks(s.group_id, patient)
        anchor = s.ledger.latest_anchor(s.group_id)
        leaves = len(store.leaf_hashes(s.group_id))
        sealed = sum(b.readings for b in blocks)
        return sealed == readings and anchor is not None and anchor.tree_size == leaves

    wait_for(done)


def test_the_whole_flow_through_the_cli(setup: Setup) -> None:
    s, work = setup, setup.dir
    # keys for a patient and a doctor; the doctor is registered by the consent admin
    patient = cli("key", "new", "--out", str(work / "patient.key")).stdout.strip()
    doctor = cli("key", "new", "--out", str(work / "doctor.key")).stdout.strip()
    patient_key, doctor_key = str(work / "patient.key"), str(work / "doctor.key")
    cli("provider", "register", "--admin-key", str(s.admin_key), "--provider", doctor, *s.rpc)
    assert s.ledger.is_provider(doctor)
    cli("key", "publish", "--key", doctor_key, *s.rpc)
    assert s.ledger.has_key(doctor)

    # the patient grants SpO2 and heart rate for 7 days (and publishes their own key)
    result = cli(
        "consent", "grant", "--key", patient_key, "--provider", doctor, "--vitals", "spo2,hr",
        "--days", "7", *s.rpc,
    )  # fmt: skip
    assert "granted" in result.output
    assert s.ledger.has_key(patient)
    shown = cli("consent", "show", "--patient", patient, "--provider", doctor, *s.rpc)
    assert "granted: heart_rate, spo2" in shown.output

    # a pulse oximeter is enrolled for the patient and streams a minute of patient time
    device_file = work / "oximeter.json"
    result = cli(
        "device", "enrol", "--gateway", s.gateway_url, "--patient", patient,
        "--kind", "pulse_oximeter", "--out", str(device_file), token=ADMIN_TOKEN,
    )  # fmt: skip
    record = json.loads(device_file.read_text())
    assert device_file.stat().st_mode & 0o777 == 0o600
    assert record["key"] not in result.output
    assert record["session_key"] not in result.output
    device = record["address"]
    assert s.ledger.is_active_device(device)
    receipts = work / "receipts.json"
    result = cli(
        "device", "simulate", "--device", str(device_file), "--minutes", "1", "--seed", "3",
        "--receipts", str(receipts),
    )  # fmt: skip
    readings = 2 * len(range(0, 60, 4))  # an oximeter every 4 s: SpO2 and heart rate
    assert "readings accepted" in result.output
    assert json.loads(device_file.read_text())["next_seq"] == readings
    sealed_and_anchored(s, patient, readings)

    # the doctor fetches and decrypts under consent
    fetched = json.loads(
        cli("provider", "fetch", "--key", doctor_key, "--patient", patient,
            "--gateway", s.gateway_url, "--json").stdout
    )  # fmt: skip
    rows = fetched["readings"]
    assert fetched["group_id"] == s.group_id
    assert len(rows) == readings
    assert {r["vital"] for r in rows} == {"spo2", "heart_rate"}
    assert {r["device"] for r in rows} == {device}
    assert sorted(r["seq"] for r in rows) == list(range(readings))
    assert all(50 <= r["value"] <= 100 for r in rows if r["vital"] == "spo2")
    table = cli(
        "provider", "fetch", "--key", doctor_key, "--patient", patient, "--gateway", s.gateway_url
    ).output
    assert f"{readings} readings" in table
    assert "spo2" in table
    assert "heart_rate" in table

    # ... and exports them as a FHIR R4 Bundle
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.observation import Observation

    bundle_file = work / "bundle.json"
    cli("fhir", "export", "--key", doctor_key, "--patient", patient, "--gateway", s.gateway_url,
        "--out", str(bundle_file))  # fmt: skip
    bundle = Bundle.model_validate_json(bundle_file.read_text())
    assert bundle.type == "collection"
    assert bundle.entry is not None
    assert len(bundle.entry) == readings
    assert all(isinstance(e.resource, Observation) for e in bundle.entry)
    codes = {c.code for e in bundle.entry for c in e.resource.code.coding}  # type: ignore[union-attr]
    assert {"59408-5", "8867-4"} <= codes  # SpO2 by pulse oximetry, heart rate
    # ... or as a transaction to POST to a FHIR server: the same resources, each created once
    posted = work / "transaction.json"
    cli("fhir", "export", "--key", doctor_key, "--patient", patient, "--gateway", s.gateway_url,
        "--out", str(posted), "--bundle", "transaction")  # fmt: skip
    transaction = Bundle.model_validate_json(posted.read_text())
    assert transaction.type == "transaction"
    assert transaction.entry is not None
    assert [e.request.method for e in transaction.entry] == ["POST"] * readings  # type: ignore[union-attr]

    # other wearables join the group: the crowd an alert's ring hides the oximeter in
    crowd = work / "crowd"
    crowd.mkdir()
    cli("device", "simulate", "--gateway", s.gateway_url, "--patients", "4", "--minutes", "0.2",
        "--out", str(crowd), *s.rpc, token=ADMIN_TOKEN)  # fmt: skip
    on_chain = s.ledger.alert_count(s.group_id)

    # a live alert: the doctor watches, the device reports low SpO2 three times
    watch_out, watch_err = work / "watch.out", work / "watch.err"
    with watch_out.open("w") as out, watch_err.open("w") as err:
        watcher = subprocess.Popen(  # its own process: it blocks on the WebSocket
            [sys.executable, "-m", "vitalchain", "alerts", "watch", "--key", doctor_key,
             "--gateway", s.gateway_url, "--count", "1", "--timeout", "30", "--json"],
            stdout=out, stderr=err,
        )  # fmt: skip
    try:
        wait_for(lambda: "subscribed" in watch_err.read_text() or watcher.poll() is not None)
        assert watcher.poll() is None, watch_err.read_text()
        cli("device", "send", "--device", str(device_file), "spo2=85", "spo2=84", "spo2=83",
            "--receipts", str(receipts))  # fmt: skip
        assert watcher.wait(timeout=30) == 0, watch_err.read_text()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
    (alert,) = [json.loads(line) for line in watch_out.read_text().splitlines()]
    assert alert["kind"] == "threshold"
    assert alert["body"]["vital"] == "spo2"
    assert alert["body"]["direction"] == -1
    assert (alert["body"]["patient"], alert["body"]["device"]) == (patient, device)
    assert 0 <= alert["latency_ms"] < 30_000
    readings += 3
    sealed_and_anchored(s, patient, readings)
    # ring-signed among 9 devices of the group by `device send` itself, so on chain too
    (raised,) = [a for a in s.running.alerts.raised if a.alert_id.hex() == alert["alert_id"]]
    assert raised.ring is not None
    assert len(raised.ring.members) == 9
    wait_for(lambda: s.ledger.alert_count(s.group_id) == on_chain + 1, "the alert on chain")

    # the patient revokes: the doctor's next fetch is refused, clearly
    cli("consent", "revoke", "--key", patient_key, "--provider", doctor, *s.rpc)
    refused = cli(
        "provider", "fetch", "--key", doctor_key, "--patient", patient,
        "--gateway", s.gateway_url, ok=False,
    )  # fmt: skip
    assert refused.exit_code == 1
    assert "access refused" in refused.output
    assert "no_consent" in refused.output
    export = cli(
        "fhir", "export", "--key", doctor_key, "--patient", patient, "--gateway", s.gateway_url,
        "--out", str(work / "after-revoke.json"), ok=False,
    )  # fmt: skip
    assert export.exit_code == 1
    assert not (work / "after-revoke.json").exists()

    # the patient verifies every block against the chain; the revoked doctor cannot
    verify = ("verify", "--patient", patient, "--group-id", str(s.group_id),
              "--store", s.gateway_url, *s.rpc)  # fmt: skip
    result = cli(*verify, "--key", patient_key)
    assert "verified: no check failed" in result.output
    assert cli(*verify, "--key", doctor_key, ok=False).exit_code == 3
    # ... and that the gateway sealed every reading it gave the device a receipt for
    checked = cli("verify-receipts", "--receipts", str(receipts), "--patient", patient,
                  "--key", patient_key, "--gateway", s.gateway_url, *s.rpc).output  # fmt: skip
    # the simulated minute, one message per vital class (SpO2, heart rate), then the episode's
    messages = 2 * len(range(0, 60, 4)) + 1
    summary = " ".join(checked.split())
    assert f"verified: no check failed ({messages} receipt(s), {messages} verified, " in summary
    assert "0 not sealed" in summary


def test_simulated_patients_keys_are_kept_and_published_so_their_blocks_seal(
    setup: Setup,
) -> None:
    """`device simulate --patients N` used to throw the patients' keys away: their readings
    never sealed (no published key to wrap for) and nobody could ever read them."""
    s = setup
    out = s.dir / "simulated"
    out.mkdir()
    result = cli(
        "device", "simulate", "--gateway", s.gateway_url, "--patients", "2", "--minutes", "1",
        "--seed", "5", "--out", str(out), *s.rpc, token=ADMIN_TOKEN,
    )  # fmt: skip
    assert "published the keys of 2 patients" in result.output
    key_files = sorted(out.glob("patient-*.key"))
    device_files = sorted(out.glob("*.json"))
    assert len(key_files) == 2
    assert len(device_files) == 4  # a cuff and an oximeter each
    for path in (*key_files, *device_files):
        assert path.stat().st_mode & 0o777 == 0o600, path
    for path in key_files:
        assert path.read_text().strip() not in result.output
    patients = [path.name.removeprefix("patient-").removesuffix(".key") for path in key_files]
    for patient, path in zip(patients, key_files, strict=True):
        key = PrivateKey(bytes.fromhex(path.read_text().strip()))
        assert key.address == patient
        assert s.ledger.has_key(patient)  # published: the gateway can wrap for the patient
    records = [json.loads(p.read_text()) for p in device_files]
    assert {r["patient"] for r in records} == set(patients)
    assert all(r["next_seq"] > 0 for r in records)  # saved after the run

    # the readings seal, and the patient reads them with the kept key
    store = s.running.gateway.store
    for patient in patients:
        wait_for(lambda p=patient: store.blocks(s.group_id, p))  # type: ignore[misc]
    fetched = json.loads(
        cli("provider", "fetch", "--key", str(key_files[0]), "--patient", patients[0],
            "--gateway", s.gateway_url, "--json").stdout
    )  # fmt: skip
    assert fetched["readings"]
    assert {r["device"] for r in fetched["readings"]} <= {r["address"] for r in records}
    # the simulated devices stream again from their files, no token needed
    again = cli("device", "simulate", "--device", str(device_files[0]), "--minutes", "0.2")
    assert "readings accepted" in again.output


def test_a_simulated_episode_is_ring_signed_and_recorded_on_chain(setup: Setup) -> None:
    """`device simulate` used to never ring-sign, so its alerts were neither anonymous nor on
    chain (no_ring).  Now each device learns its band and ring-signs its out-of-band
    messages among 9 devices of the group (anonymity on by default, issue 16): every
    threshold alert of a sustained desaturation is in the chain's alert log."""
    s = setup
    out = s.dir / "episode"
    out.mkdir()
    alerts = s.running.alerts
    earlier, on_chain = {a.alert_id for a in alerts.raised}, s.ledger.alert_count(s.group_id)
    refused = alerts.refused_total
    cli(
        "device", "simulate", "--gateway", s.gateway_url, "--patients", "5", "--minutes", "2",
        "--seed", "11", "--episode", "desaturation", "--out", str(out), *s.rpc,
        token=ADMIN_TOKEN,
    )  # fmt: skip

    def threshold_alerts() -> list[Alert] | None:
        new = [a for a in alerts.raised if a.kind == "threshold" and a.alert_id not in earlier]
        return new or None

    episode = wait_for(threshold_alerts, "the episode's alerts")
    alerts.drain()
    wait_for(
        lambda: s.ledger.alert_count(s.group_id) - on_chain == len(episode),
        "the alerts on chain",
    )
    assert alerts.refused_total == refused  # none was "not recorded on chain"
    for alert in episode:
        assert alert.ring is not None
        assert len(alert.ring.members) == 9  # the device and 8 others of the group
        assert s.ledger.key_image_used(alert.key_image)  # type: ignore[arg-type]
    bad = cli("device", "simulate", "--device", str(next(out.glob("*.json"))), "--episode",
              "fever", ok=False)  # fmt: skip
    assert bad.exit_code == 2
    assert "invalid_episode" in bad.output
    unknown = cli("device", "simulate", "--gateway", s.gateway_url, "--episode", "hiccups",
                  ok=False, token=ADMIN_TOKEN)  # fmt: skip
    assert unknown.exit_code == 2
    assert "invalid_episode" in unknown.output


def test_a_refusal_by_the_chain_is_one_clear_line(setup: Setup) -> None:
    """Granting consent to an address that is not a registered provider: the contract's
    refusal, decoded, exit 1."""
    patient = setup.dir / "someone.key"
    cli("key", "new", "--out", str(patient))
    stranger = "0x" + "42" * 20
    result = cli(
        "consent", "grant", "--key", str(patient), "--provider", stranger, "--vitals", "all",
        *setup.rpc, ok=False,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "not a registered provider" in result.output
    assert "consent_registry.not_provider" in result.output


def test_chain_start_deploys_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    out, key = tmp_path / "deployment.json", tmp_path / "deployer.key"
    log = tmp_path / "chain.out"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vitalchain", "chain", "start", "--port", str(port),
             "--out", str(out), "--key", str(key)],
            stdout=sink, stderr=subprocess.STDOUT, env=os.environ | {"COLUMNS": "200"},
        )  # fmt: skip
    try:
        wait_for(lambda: "chain running" in log.read_text() or proc.poll() is not None, timeout=60)
        assert proc.poll() is None, log.read_text()
        url = f"http://127.0.0.1:{port}"
        ledger = Ledger(rpc_backend(url), Deployment.load(out))
        assert ledger.w3.eth.get_code(ledger.address_of("ConsentRegistry"))
        assert key.stat().st_mode & 0o777 == 0o600
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopped the chain" in log.read_text()
    with pytest.raises(ConnectionRefusedError):  # anvil went with it
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
