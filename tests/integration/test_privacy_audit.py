"""Issue 6's privacy audit on a real anvil node: nothing of a patient's health data on chain.

First the scanner proves it can fail (leaks planted on chain are found, each where it was put),
then a demo-sized run (one node, six patients with a device each, three providers; consent,
thresholds, telemetry, sealing, anchoring) is collected from the deployment's first block to
the last and must show no vital value, unit, patient identifier or plaintext anywhere.  What is
searched and why is in ``tests/support/privacy_audit.py``.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from psycopg import sql
from pydantic import SecretStr

from tests.support.gateway import ADMIN_TOKEN
from tests.support.privacy_audit import (
    PRESTATE,
    STRUCT_LOGGER,
    AuditError,
    ChainWrite,
    Needles,
    Segment,
    collect,
    file_writes,
    find_leaks,
    postgres_tables,
    row_writes,
    sqlite_tables,
    store_needles,
)
from tests.support.vitals import DIA, GLU, HR, SPO2, SYS, TEMP
from vitalchain.crypto import PrivateKey
from vitalchain.crypto.keys import keccak256
from vitalchain.device.client import DeviceClient
from vitalchain.device.simulator import enrol
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import ANVIL_DEV_KEY, Ledger, RpcBackend
from vitalchain.node import running_gateway
from vitalchain.sdk.provider import ProviderClient
from vitalchain.sealing.sealer import SealingPolicy
from vitalchain.services.anvil import run_anvil
from vitalchain.services.postgres import LocalPostgres
from vitalchain.store import StoredMessage
from vitalchain.vitals import Vital, scope_of, to_fixed

HOUR = 3600


def deploy(url: str) -> tuple[Ledger, PrivateKey]:
    admin = PrivateKey.generate()
    return Ledger.deploy(RpcBackend(url, funder=PrivateKey(ANVIL_DEV_KEY)), admin), admin


def funded(ledger: Ledger) -> PrivateKey:
    key = PrivateKey.generate()
    ledger.fund(key.address)
    return key


def random_id() -> int:
    """Object and group IDs as docs/ledger-privacy.md advises: random, meaningless."""
    return secrets.randbelow(2**62 - 2**32) + 2**32


def abi_word(value: int) -> bytes:
    return value.to_bytes(32, "big", signed=True)


def send_raw(ledger: Ledger, key: PrivateKey, to: str, data: bytes) -> str:
    """A plain transaction with arbitrary calldata, outside the Ledger API (for planting)."""
    w3 = ledger.w3
    base = int(w3.eth.get_block("latest").get("baseFeePerGas", 0))
    tx = {
        "to": to,
        "value": 0,
        "data": data,
        "gas": 100_000,
        "nonce": w3.eth.get_transaction_count(key.address),  # type: ignore[arg-type]
        "chainId": ledger.chain_id,
        "maxFeePerGas": 2 * base + 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    raw = Account.sign_transaction(tx, key.secret).raw_transaction
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))
    assert receipt["status"] == 1
    return "0x" + bytes(receipt["transactionHash"]).hex()


def tx_hex(tx_hash: bytes) -> str:
    return "0x" + tx_hash.hex()


# --- 1. the scanner can fail --------------------------------------------------------------------


def test_scanner_finds_leaks_planted_in_calldata_events_and_storage(anvil_url: str) -> None:
    ledger, _ = deploy(anvil_url)
    start = ledger.block_number() + 1
    name, mrn = "Zoë Achterberg", "MRN-004217"
    low_spo2, high_hr, planted_threshold = 87.19, 131.57, 88.41
    needles = (
        Needles()
        .value(SPO2, low_spo2)
        .value(HR, high_hr)
        .value(SPO2, planted_threshold)
        .units()
        .identifier(name, "patient name")
        .identifier(mrn, "medical record number")
        .markers()
    )
    # a plain transaction whose calldata looks like leak(bytes32 name, int256 reading)
    planter = funded(ledger)
    selector = keccak256(b"leak(bytes32,int256)")[:4]
    plain = send_raw(
        ledger,
        planter,
        PrivateKey.generate().address,
        selector + name.encode().ljust(32, b"\0") + abi_word(to_fixed(low_spo2)),
    )
    # contract writes we control: anchor roots (calldata, event data and a storage slot) ...
    master, group = funded(ledger), random_id()
    ledger.create_group(master, group, random_id())
    mrn_root = tx_hex(ledger.anchor(master, group, mrn.encode().ljust(32, b"\0"), 1, 0).tx_hash)
    word_root = tx_hex(ledger.anchor(master, group, abi_word(to_fixed(high_hr)), 2, 1).tx_hash)
    # ... and a threshold whose bound is a reading: an int32 packed into the threshold's slot
    patient = funded(ledger)
    threshold = tx_hex(
        ledger.set_threshold(
            patient, patient.address, SPO2, to_fixed(planted_threshold), to_fixed(99)
        ).tx_hash
    )
    writes = collect(ledger.w3, start, ledger.block_number())
    leaks = find_leaks(writes, needles)

    name_b, mrn_b = name.encode(), mrn.encode()
    spo2_word, hr_word = abi_word(to_fixed(low_spo2)), abi_word(to_fixed(high_hr))
    bound_word = abi_word(to_fixed(planted_threshold))
    hr_lane, bound_lane = hr_word[-4:], bound_word[-4:]
    # (tx, kind, field, offset into the write, needle): anchor(uint64,bytes32,...) has the root
    # at calldata byte 36; Anchored has three topics, so its data (root first) starts at 96
    expected = {
        (plain, "calldata", "input", 4, name_b),
        (plain, "calldata", "input", 4 + len("Zoë ".encode()), b"Achterberg"),
        (plain, "calldata", "input", 36, spo2_word),
        (mrn_root, "calldata", "input", 36, mrn_b),
        (mrn_root, "calldata", "input", 40, b"004217"),
        (mrn_root, "event", "data", 96, mrn_b),
        (mrn_root, "event", "data", 100, b"004217"),
        (mrn_root, "storage", "slot value", 32, mrn_b),
        (mrn_root, "storage", "slot value", 36, b"004217"),
        (word_root, "calldata", "input", 36, hr_word),
        (word_root, "event", "data", 96, hr_word),
        (word_root, "storage", "slot value", 32, hr_word),
        (word_root, "storage", "slot value", 60, hr_lane),
        (threshold, "calldata", "input", 68, bound_word),  # setThreshold(address,uint8,int32,int32)
        (threshold, "event", "data", 96, bound_word),  # ThresholdSet: low is the first data word
        (threshold, "storage", "slot value", 60, bound_lane),  # {int32 low, int32 high, bool}
    }  # fmt: skip
    found = {(k.write.tx_hash, k.write.kind, k.location, k.offset, k.needle.pattern) for k in leaks}
    assert found == expected, "\n".join(str(k) for k in leaks)
    categories = {k.needle.pattern: k.needle.category for k in leaks}
    assert categories[name_b] == categories[mrn_b] == "identifier"
    assert categories[spo2_word] == categories[bound_lane] == "value"
    # the storage path really ran, on the prestate tracer, and saw the planted slots
    storage = [w for w in writes if w.kind == "storage"]
    assert storage
    assert {w.source for w in storage} == {PRESTATE}


def test_a_grant_shows_up_as_storage_writes(anvil_url: str) -> None:
    ledger, admin = deploy(anvil_url)
    patient, provider = funded(ledger), funded(ledger)
    ledger.register_provider(admin, provider.address)
    grant = ledger.grant(patient, provider.address, scope_of(SPO2), ledger.timestamp() + HOUR)
    writes = collect(ledger.w3, grant.block_number, grant.block_number)
    assert Counter(w.kind for w in writes) == {"calldata": 1, "event": 1, "storage": 3}
    # the packed consent record and the patient's provider list (length, then its element)
    slots = [w for w in writes if w.kind == "storage"]
    assert {w.address for w in slots} == {ledger.address_of("ConsentRegistry")}
    assert all(w.tx_hash == tx_hex(grant.tx_hash) for w in writes)


def test_matching_rules_on_hand_made_writes() -> None:
    """Markers and short units are found; a mostly-zero word is only matched where a word starts;
    a packed int32 only inside storage values."""
    payload = b'{"v":1,"readings":[{"seq":0,"vital":"spo2","value":96.37,"unit":"%","t":1}]}'
    needles = Needles().value(SPO2, 96.37).units().markers()
    json_write = ChainWrite(
        "calldata", "0x01", "0x0", payload, 1, (Segment("input", 0, len(payload), align=None),)
    )
    found = {k.needle.pattern for k in find_leaks([json_write], needles)}
    for marker in (b'"readings"', b'"vital"', b'"value"', b'"unit"', b'{"v":', b'"spo2"'):
        assert marker in found
    assert {b"96.37", b'"unit":"%"'} <= found

    fixed = to_fixed(96.37)
    # Anchored-like data: index 0, then a root that happens to start with the value's two bytes
    data = bytes(32) + fixed.to_bytes(2, "big") + bytes(30)
    event = ChainWrite("event", "0x02", "0x0", data, 1, (Segment("data", 0, 64),))
    assert find_leaks([event], needles) == []
    # a string "%" in ABI encoding is found; the lane is not searched outside storage
    abi_percent = (1).to_bytes(32, "big") + b"%".ljust(32, b"\0")
    lane = bytes(28) + fixed.to_bytes(4, "big")
    event = ChainWrite("event", "0x03", "0x0", abi_percent + lane, 1, (Segment("data", 0, 96),))
    hits = {(k.needle.form, k.offset) for k in find_leaks([event], needles)}
    assert hits == {("abi string", 0), ("abi int256", 64)}
    slot = ChainWrite(
        "storage", "0x04", "0x0", bytes(32) + bytes(20) + fixed.to_bytes(4, "big") + bytes(8), 1,
        (Segment("slot key", 0, 32), Segment("slot value", 32, 64, packed=True)),
    )  # fmt: skip
    assert [(k.needle.form, k.offset) for k in find_leaks([slot], needles)] == [
        ("packed int32", 52)
    ]
    with pytest.raises(ValueError, match="too short"):
        Needles().plaintext(b"%", "percent")


@pytest.fixture
def stepping_anvil() -> Iterator[str]:
    """An anvil of our own with --steps-tracing, so its struct logger reports opcodes."""
    with run_anvil(args=["--steps-tracing"]) as url:
        yield url


def test_struct_logger_fallback_agrees_with_the_prestate_tracer(
    anvil_url: str, stepping_anvil: str
) -> None:
    ledger, admin = deploy(stepping_anvil)
    start = ledger.block_number() + 1
    patient, provider = funded(ledger), funded(ledger)
    ledger.register_provider(admin, provider.address)
    ledger.grant(patient, provider.address, scope_of(HR), ledger.timestamp() + HOUR)
    ledger.set_threshold(provider, patient.address, HR, 5000, 11000)  # calls ConsentRegistry
    end = ledger.block_number()
    by_prestate = collect(stepping_anvil, start, end, tracer="prestate")
    by_steps = collect(stepping_anvil, start, end, tracer="structlog")
    diff = {(w.tx_hash, w.address, w.data) for w in by_prestate if w.kind == "storage"}
    steps = {(w.tx_hash, w.address, w.data) for w in by_steps if w.kind == "storage"}
    assert diff
    assert diff <= steps  # every SSTORE executed: a superset of the final changed slots
    assert {w.source for w in by_steps if w.kind == "storage"} == {STRUCT_LOGGER}
    # the shared anvil runs without --steps-tracing: its struct logger traces nothing, which
    # the fallback must refuse instead of reporting "no storage writes"
    other, _ = deploy(anvil_url)
    with pytest.raises(AuditError, match="steps-tracing"):
        collect(anvil_url, other.deployment.block, other.deployment.block, tracer="structlog")


# --- 2. the demo-sized run ------------------------------------------------------------------------

Message = tuple[tuple[Vital, float], ...]


@dataclass(frozen=True)
class PatientSpec:
    name: str
    mrn: str
    device: str
    round1: tuple[Message, ...]
    round2: tuple[Message, ...]  # after a threshold change and a revocation


# Readings have an odd hundredths digit and thresholds are whole numbers, so no reading can
# equal a threshold bound, which is legitimately on chain in the same fixed point.
PATIENTS = (
    PatientSpec("Zoë Achterberg", "MRN-004217", "pulse oximeter",
                (((SPO2, 96.37), (HR, 72.43)), ((SPO2, 95.81), (HR, 74.19))),
                (((SPO2, 87.19), (HR, 131.57)), ((SPO2, 86.73), (HR, 129.91)),
                 ((SPO2, 88.41),))),
    PatientSpec("José Ramírez Ortega", "MRN-118305", "blood pressure cuff",
                (((SYS, 121.33), (DIA, 79.47), (HR, 66.17)),),
                (((SYS, 187.39), (DIA, 103.77), (HR, 91.23)),)),
    PatientSpec("Mei-Ling Okonkwo", "MRN-220961", "thermometer",
                (((TEMP, 36.87),), ((TEMP, 37.19),)),
                (((TEMP, 39.71),),)),
    PatientSpec("Åsa Lindqvist", "MRN-307748", "glucose meter",
                (((GLU, 104.39),),),
                (((GLU, 231.57),),)),
    PatientSpec("Tomasz Wiśniewski", "MRN-451093", "pulse oximeter",
                (((SPO2, 97.13), (HR, 58.77)),),
                (((SPO2, 93.59), (HR, 38.21)),)),
    PatientSpec("Amara Nwosu-Bello", "MRN-569820", "blood pressure cuff and glucose meter",
                (((SYS, 133.49), (DIA, 84.27)), ((GLU, 61.93),)),
                (((SYS, 128.51), (DIA, 82.93)),)),
)  # fmt: skip
BREAK_GLASS_REASON = (
    "Tomasz Wiśniewski (MRN-451093) found unresponsive at home, SpO2 alarm".encode()
)


def distinctive_value(value: float) -> bool:
    """A reading the audit can tell apart from everything legitimately on chain: an odd
    hundredths digit (thresholds are whole numbers), at least 10.00 (its decimal text has 5
    bytes or more, and its fixed point is unlike any count, size, scope or enum), below 245.76
    (a packed int32 ``00 00 hi lo`` cannot be the top of a 2021-2029 unix timestamp), and a low
    byte above 6 (``00 00 hi lo`` cannot be a consent scope followed by its status byte).
    Block numbers are stored too: the audit runs on a fresh node, so they stay below 1,000."""
    fixed = to_fixed(value)
    return fixed % 2 == 1 and 1000 <= fixed < 0x6000 and fixed & 0xFF > 6


@dataclass
class DemoPatient:
    spec: PatientSpec
    key: PrivateKey
    device: str = ""


@dataclass
class Scenario:
    ledger: Ledger
    group_id: int
    first_block: int
    last_block: int
    patients: list[DemoPatient]
    providers: dict[str, PrivateKey]
    readings: list[tuple[Vital, float]]
    payloads: list[bytes]  # every data message the devices signed, as stored by the gateway
    hashed_texts: list[bytes]  # texts of which only a hash may reach the chain
    txs: dict[str, list[str]] = field(default_factory=dict)  # step → transaction hashes
    data_dir: Path = Path()  # the node's data directory, left in place

    def needles(self) -> Needles:
        needles = Needles().units().markers()
        for vital, value in self.readings:
            needles.value(vital, value)
        for patient in self.patients:
            needles.identifier(patient.spec.name, "patient name")
            needles.identifier(patient.spec.mrn, "medical record number")
        for i, payload in enumerate(self.payloads):
            needles.plaintext(payload, f"signed payload #{i}")
        for text in self.hashed_texts:
            needles.plaintext(text, "text only hashed on chain")
        return needles


def run_demo_scenario(
    ledger: Ledger, tmp_path: Path, admin: PrivateKey, store_dsn: str | None = None
) -> Scenario:
    """One node over ``ledger`` (``admin`` is its deployer, who registers providers), six
    patients with one device each, three providers; consent granted, denied, revoked and
    broken; thresholds set by patients and by providers; two rounds of telemetry with abnormal
    readings, each sealed and anchored.  Blocks go to ``store_dsn`` (PostgreSQL) if given,
    else to SQLite and files in the node's data directory.  Returns what the audit needs."""
    txs: dict[str, list[str]] = {}

    def note(step: str, tx_hash: bytes) -> None:
        txs.setdefault(step, []).append(tx_hex(tx_hash))

    settings = GatewaySettings(
        data_dir=tmp_path / "node",
        group_id=random_id(),
        master_object_id=random_id(),
        admin_token=SecretStr(ADMIN_TOKEN),
        mqtt=False,
        alert_ring_k=len(PATIENTS) - 1,  # every device rings with all the others
        store_dsn=store_dsn,
    )
    sealing = SealingPolicy(max_readings=4, max_age_s=3600)
    with contextlib.ExitStack() as stack:
        running = stack.enter_context(
            running_gateway(settings, ledger=ledger, sealing=sealing, background=False)
        )
        client = stack.enter_context(TestClient(running.app()))
        gateway, sealer = running.gateway, running.sealer

        patients = [DemoPatient(spec, funded(ledger)) for spec in PATIENTS]
        for p in patients:
            note("key", ledger.publish_key(p.key).tx_hash)
        providers = {role: funded(ledger) for role in ("cardiology", "endocrinology", "emergency")}
        for key in providers.values():
            note("provider", ledger.register_provider(admin, key.address).tx_hash)
            note("key", ledger.publish_key(key).tx_hash)
        cardio, endo, er = (
            providers["cardiology"],
            providers["endocrinology"],
            providers["emergency"],
        )
        zoe, jose, mei, asa, tomasz, amara = patients

        # consent: scopes per provider, one request denied
        until = ledger.timestamp() + 24 * HOUR
        for patient, provider, scope in (
            (zoe, cardio, scope_of(SPO2, HR)),
            (jose, cardio, scope_of(SYS, DIA, HR)),
            (mei, cardio, scope_of(TEMP)),
            (asa, endo, scope_of(GLU)),
            (tomasz, cardio, scope_of(SPO2, HR)),
            (amara, endo, scope_of(GLU, SYS, DIA)),
            (amara, cardio, scope_of(SYS, DIA)),
        ):
            note("consent", ledger.grant(patient.key, provider.address, scope, until).tx_hash)
        note("consent", ledger.request_access(er, jose.key.address, scope_of(SYS, DIA)).tx_hash)
        note("consent", ledger.deny(jose.key, er.address).tx_hash)

        # thresholds (whole numbers), by the patient or by a consented provider
        for setter, patient, vital, low, high in (
            (zoe.key, zoe, SPO2, 92, 100),
            (cardio, zoe, HR, 50, 120),
            (jose.key, jose, SYS, 90, 150),
            (jose.key, jose, DIA, 60, 95),
            (cardio, mei, TEMP, 36, 38),
            (endo, asa, GLU, 70, 180),
            (tomasz.key, tomasz, HR, 45, 110),
            (endo, amara, GLU, 65, 160),
        ):
            bounds = to_fixed(low), to_fixed(high)
            note(
                "threshold",
                ledger.set_threshold(setter, patient.key.address, vital, *bounds).tx_hash,
            )

        # devices onboard: the association is relayed on chain by the gateway
        devices: dict[str, DeviceClient] = {}
        for p in patients:
            device = DeviceClient(PrivateKey.generate(), random_id(), http=client)
            label = f"{p.spec.name} ({p.spec.mrn}) {p.spec.device}"
            device.onboard(enrol(client, ADMIN_TOKEN, p.key.address, label))
            devices[p.key.address], p.device = device, device.address
        for device in devices.values():  # anonymity on: every message carries a ring proof
            device.use_ring(device.fetch_ring(len(PATIENTS) - 1))

        def telemetry(round_no: int) -> None:
            for p in patients:
                device = devices[p.key.address]
                for message in p.spec.round1 if round_no == 1 else p.spec.round2:
                    ack = device.send(device.prepare(message))
                    assert ack["accepted"] == len(message)

        stored: dict[bytes, StoredMessage] = {}

        def seal_and_anchor() -> None:
            # what the journal holds now, before the anchor prunes it (issue 12 item 11)
            stored.update((m.message.message_id, m) for m in gateway.store.messages(limit=10_000))
            sealer.seal_due()  # abnormal readings asked for their patient's block already
            for pending in gateway.store.pending_patients():
                if pending.group_id == settings.group_id:
                    sealer.seal(pending.patient)  # the demo closes everything else too
            record = sealer.anchor()
            assert record is not None
            note("anchor", record.tx_hash)

        telemetry(1)
        seal_and_anchor()

        # between rounds: a provider changes a threshold, a patient revokes a provider
        changed = ledger.set_threshold(cardio, zoe.key.address, HR, to_fixed(55), to_fixed(115))
        note("threshold", changed.tx_hash)
        running.policy.refresh()
        note("consent", ledger.revoke(mei.key, cardio.address).tx_hash)

        telemetry(2)
        sealer.seal_due()

        # alerts: the rules raised some on the abnormal episodes above; each is ring-signed by
        # its device and recorded with AlertRegistry.recordAlert by the node's recorder thread.
        running.alerts.drain()
        for event in ledger.events.query("AlertRecorded", groupId=settings.group_id):
            note("alert", event.transaction_hash)
        assert txs.get("alert"), "the scenario raised no alert to audit"

        seal_and_anchor()

        # providers read: under consent, and an emergency access recorded with its reason
        assert ProviderClient(cardio, client).fetch(settings.group_id, zoe.key.address)
        emergency = (ledger, scope_of(SPO2, HR), 1, BREAK_GLASS_REASON)
        ProviderClient(er, client).fetch(
            settings.group_id, tomasz.key.address, break_glass=emergency
        )
        (glass,) = ledger.events.query("BreakGlassAccessed", patient=tomasz.key.address)
        note("break-glass", glass.transaction_hash)

        assert gateway.store.messages() == []  # everything was anchored: the journal is empty
        kept = sorted(stored.values(), key=lambda m: m.id)
        payloads = [m.message.payload for m in kept]
        readings = [(r.vital, r.value) for m in kept for r in m.message.readings]
    return Scenario(
        ledger=ledger,
        group_id=settings.group_id,
        first_block=ledger.deployment.block,
        last_block=ledger.block_number(),
        patients=patients,
        providers=providers,
        readings=readings,
        payloads=payloads,
        hashed_texts=[BREAK_GLASS_REASON],
        txs=txs,
        data_dir=settings.data_dir,
    )


REQUIRED_EVENTS = {
    "KeyPublished",
    "ProviderRegistered",
    "GroupCreated",
    "DeviceAssociated",
    "ConsentGranted",
    "AccessRequested",
    "ConsentDenied",
    "ConsentRevoked",
    "BreakGlassAccessed",
    "ThresholdSet",
    "Anchored",
    "AlertRecorded",
}


@pytest.fixture
def fresh_anvil() -> Iterator[str]:
    """An anvil of our own: its block numbers (which the contracts store) stay below 1,000,
    far from any distinctive reading's fixed point.  On the session's node, mined by every
    other test first, block 13,157 was stored as packed int32 ``00 00 33 65``: heart rate
    131.57 by the scanner's rules, and a failure that depended on the tests run before."""
    with run_anvil() as url:
        yield url


def test_demo_run_puts_no_health_data_on_chain(fresh_anvil: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    ledger, admin = deploy(fresh_anvil)
    scenario = run_demo_scenario(ledger, tmp_path, admin)
    ran = time.perf_counter()
    assert scenario.last_block < 1000  # the premise of distinctive_value's block rule

    sent = [reading for spec in PATIENTS for m in spec.round1 + spec.round2 for reading in m]
    assert all(distinctive_value(value) for _, value in sent)
    assert sorted(scenario.readings) == sorted(sent)  # every reading made it, none is unsearched
    assert len(scenario.payloads) == sum(len(s.round1) + len(s.round2) for s in PATIENTS)

    writes = collect(ledger.w3, scenario.first_block, scenario.last_block)
    needles = scenario.needles()
    leaks = find_leaks(writes, needles)
    scanned = time.perf_counter()
    assert leaks == [], "health data on chain:\n" + "\n".join(str(k) for k in leaks)

    # control: the same needles do find the plaintext the devices really produced
    for i, payload in enumerate(scenario.payloads):
        as_calldata = ChainWrite(
            "calldata",
            f"payload {i}",
            "",
            payload,
            0,
            (Segment("input", 0, len(payload), align=None),),
        )
        hits = find_leaks([as_calldata], needles)
        found = {(k.needle.category, k.needle.label, k.needle.form) for k in hits}
        assert ("plaintext", f"signed payload #{i}", "exact") in found
        assert ("plaintext", "telemetry/FHIR JSON", "marker") in found
        for reading in json.loads(payload)["readings"]:
            info = Vital.parse(reading["vital"]).info
            assert ("value", f"{info.short} reading {reading['value']!r}", "decimal") in found
            assert ("unit", f"unit {info.unit}", "json member") in found

    # the audit covered the whole run: every kind of write, every contract, every step
    kinds = Counter(w.kind for w in writes)
    assert min(kinds["calldata"], kinds["event"], kinds["storage"]) > 0
    assert {w.source for w in writes if w.kind == "storage"} == {PRESTATE}
    contracts = set(ledger.deployment.addresses.values())
    assert contracts <= {w.address for w in writes if w.kind == "storage"}
    assert contracts <= {w.address for w in writes if w.kind == "calldata"}  # creations too
    blocks = range(scenario.first_block, scenario.last_block + 1)
    events = [e for e in ledger.events.all() if e.block_number in blocks]
    assert {e.name for e in events} >= REQUIRED_EVENTS
    assert len(events) == sum(1 for w in writes if w.kind == "event" and w.address in contracts)
    setters = {e.args["setBy"] for e in events if e.name == "ThresholdSet"}
    assert setters & {p.key.address for p in scenario.patients}
    assert setters & {k.address for k in scenario.providers.values()}
    associations = [e for e in events if e.name == "DeviceAssociated"]
    assert {e.args["device"] for e in associations} == {p.device for p in scenario.patients}
    sent_txs = {h for step, hashes in scenario.txs.items() for h in hashes}
    assert {"key", "provider", "consent", "threshold", "anchor", "break-glass"} <= {
        step for step, hashes in scenario.txs.items() if hashes
    }
    assert sent_txs <= {w.tx_hash for w in writes if w.kind == "calldata"}

    size = Counter({kind: 0 for kind in kinds})
    for w in writes:
        size[w.kind] += len(w.data)
    print(
        f"\nprivacy audit: blocks {scenario.first_block}..{scenario.last_block}, "
        f"{kinds['calldata']} transactions; writes scanned {dict(kinds)}, bytes {dict(size)}; "
        f"{len(needles)} needles; run {ran - started:.1f} s, collect and scan "
        f"{scanned - ran:.1f} s"
    )


# --- 3. the store: issue 12 item 11 --------------------------------------------------------------


def _store_writes(
    data_dir: Path, pg: LocalPostgres | None, dsn: str | None
) -> tuple[list[ChainWrite], list[ChainWrite]]:
    """Every file and table row of the store backend in use and of the node's journal; and,
    apart, PostgreSQL's WAL (shared with its own catalogs: see the test)."""
    writes = file_writes(sorted(data_dir.glob("journal.db*")))
    writes += row_writes("journal", sqlite_tables(data_dir / "journal.db"))
    if dsn is None:
        writes += file_writes([*sorted(data_dir.glob("store.db*")), data_dir / "blocks"])
        writes += row_writes("store", sqlite_tables(data_dir / "store.db"))
        return writes, []
    assert pg is not None
    assert pg.root is not None
    writes += row_writes("postgres", postgres_tables(dsn))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CHECKPOINT")  # the table files on disk hold every committed row now
        # the files of every table in the public schema, with its TOAST table and indexes
        relations = conn.execute(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
            "UNION SELECT pg_relation_filepath(c.reltoastrelid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.reltoastrelid <> 0 "
            "UNION SELECT pg_relation_filepath(i.indexrelid) FROM pg_index i "
            "JOIN pg_class t ON t.oid = i.indrelid WHERE t.reltoastrelid <> 0 "
            "AND i.indrelid IN (SELECT reltoastrelid FROM pg_class)"
        ).fetchall()
    files = pg.root / "data"
    tables = [files / r[0] for r in relations if r[0] and (files / r[0]).exists()]
    assert len(tables) >= 4
    return writes + file_writes(tables), file_writes([files / "pg_wal"])


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_demo_run_leaves_no_plaintext_in_the_store(
    anvil_url: str, tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """The demo-sized run, then every file and every table row of the store (SQLite + block
    files, or PostgreSQL's tables and its files on disk) and of the node's journal searched
    for the run's vital values, units, JSON keys, payloads and patient identifiers: none.
    Then a planted plaintext row and file are found, so the scan can fail."""
    pg: LocalPostgres | None = None
    dsn = None
    if backend == "postgres":
        pg = request.getfixturevalue("postgres")
        name = f"audit_{secrets.token_hex(4)}"
        with psycopg.connect(pg.admin_dsn, autocommit=True) as admin_conn:
            admin_conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = pg.dsn_for(name)
    ledger, admin = deploy(anvil_url)
    scenario = run_demo_scenario(ledger, tmp_path, admin, store_dsn=dsn)
    data_dir = scenario.data_dir
    needles = store_needles(scenario.needles())
    assert {n.category for n in needles} == {"value", "unit", "identifier", "plaintext"}
    writes, wal = _store_writes(data_dir, pg, dsn)
    # PostgreSQL's WAL also logs its own catalogs (information_schema's view definitions name
    # a column "unit"), so there the bare JSON keys prove nothing; every other needle counts.
    in_wal = [n for n in needles if n.form != "marker"]
    leaks = find_leaks(writes, needles) + find_leaks(wal, in_wal)
    assert leaks == [], "plaintext in the store:\n" + "\n".join(str(k) for k in leaks[:20])

    # the scan looked at the real thing: blocks, key rings, anchors, and the journal's ranges
    rows = Counter(w.tx_hash.split("#")[0] for w in writes if w.kind == "row")
    place = "store" if dsn is None else "postgres"
    for table in ("blocks", "key_ring", "anchors"):
        assert rows[f"{place}:{table}"] > 0, rows
    assert rows["journal:seq_ranges"] > 0
    assert "journal:messages" not in rows  # pruned: every block was anchored
    if dsn is None:
        assert any(w.kind == "file" and w.tx_hash.endswith(".vcb") for w in writes)
    else:
        assert not (data_dir / "store.db").exists()  # blocks went to PostgreSQL only

    # control: a plaintext reading row and a plaintext file, planted, are both found
    vital, value = scenario.readings[0]
    payload = scenario.payloads[0]
    if dsn is None:
        import sqlite3

        with contextlib.closing(sqlite3.connect(data_dir / "store.db")) as db:
            db.execute("CREATE TABLE planted (patient TEXT, vital INTEGER, value REAL)")
            db.execute("INSERT INTO planted VALUES ('x', ?, ?)", (int(vital), value))
            db.commit()
        (data_dir / "blocks" / "planted.json").write_bytes(payload)
    else:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE planted (payload BYTEA, value DOUBLE PRECISION)")
            conn.execute("INSERT INTO planted VALUES (%s, %s)", (payload, value))
        (data_dir / "journal.db-planted").write_bytes(payload)
    writes, wal = _store_writes(data_dir, pg, dsn)
    found = find_leaks(writes, needles) + find_leaks(wal, in_wal)
    label = f"{vital.info.short} reading {value!r}"
    where = {(k.write.kind, k.needle.label, k.needle.form) for k in found}
    assert ("row", label, "float64 big-endian") in where  # the REAL / float8 column, by SQL
    # ... and in the database's file: SQLite stores a REAL big-endian, PostgreSQL natively
    assert {("file", label, f"float64 {end}-endian") for end in ("big", "little")} & where
    assert ("file", "signed payload #0", "exact") in where
    assert ("file", "telemetry/FHIR JSON", "marker") in where
    if dsn is not None:
        assert ("row", "signed payload #0", "exact") in where
