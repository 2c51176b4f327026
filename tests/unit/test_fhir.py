"""FHIR export: every resource validated with fhir.resources, plus the vital-signs profile rules.

fhir.resources 8.x defaults to R5 and ships only R4B (4.3.0) and STU3 besides, no plain R4
package; R4B's Observation and Bundle are wire-compatible with R4 for everything used here,
so ``fhir.resources.R4B`` is the validator.  It checks structure and primitive formats
(dateTime, decimal, extra keys) but no profiles or terminology bindings, so
:func:`check_profile` checks the R4 vital-signs profile rules the export relies on.
"""

from __future__ import annotations

import json
import math
import random
import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import __fhir_version__
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

from tests.support.cli import ADDRESS, NOWHERE, invoke, one_line
from tests.support.ledger import funded
from tests.support.vitals import DIA, GLU, HR, SPO2, SYS, TEMP
from vitalchain import fhir
from vitalchain.crypto import PrivateKey
from vitalchain.device.physiology import DeviceKind, PatientProfile, VitalsGenerator
from vitalchain.ledger import Ledger
from vitalchain.store.model import Message, Reading
from vitalchain.vitals import Vital
from vitalchain.wire.address import to_checksum_address

PATIENT = to_checksum_address(bytes.fromhex("5a" * 20))
OTHER_PATIENT = to_checksum_address(bytes.fromhex("6b" * 20))
CUFF = to_checksum_address(bytes.fromhex("c1" * 20))
CUFF2 = to_checksum_address(bytes.fromhex("c2" * 20))
OXI = to_checksum_address(bytes.fromhex("0e" * 20))
BAD_CHECKSUM = PATIENT[:-1] + PATIENT[-1].swapcase()  # mixed case, one letter flipped
T0 = 1_795_321_500_123  # 2026-11-22T...Z, with milliseconds
NOW = datetime(2026, 11, 23, 8, 0, 0, 500_000, tzinfo=UTC)

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SD = "http://hl7.org/fhir/StructureDefinition/"
# R4 "Vital Signs" value set (observation-vitalsignresult) members used by this export.
VITAL_SIGNS_CODES = {
    "85354-9", "8480-6", "8462-4", "8867-4", "2708-6", "59408-5", "8310-5", "9279-1",
}  # fmt: skip
# Specific profile → (required LOINC code, allowed UCUM units of the value or components).
SPECIFIC = {
    "heartrate": ("8867-4", {"/min"}),
    "oxygensat": ("2708-6", {"%"}),
    "bodytemp": ("8310-5", {"Cel", "[degF]"}),
    "resprate": ("9279-1", {"/min"}),
    "bp": ("85354-9", {"mm[Hg]"}),
}
# FHIR dateTime with a time part must carry a zone; the export always says +00:00.
UTC_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"


def reading(vital: Vital, value: float, *, seq: int, t_ms: int = T0) -> Reading:
    return Reading(seq=seq, vital=vital, value=value, t_ms=t_ms)


def message(device: str, readings: list[Reading], patient: str = PATIENT) -> Message:
    return Message(
        message_id=bytes([readings[0].seq % 256]) * 32,
        device=device,
        group_id=7,
        patient=patient,
        received_at_ms=readings[-1].t_ms + 250,
        payload=b'{"secret": "not exported"}',
        signature=b"\x11" * 65,
        readings=tuple(readings),
    )


def loinc_codes(concept: dict[str, Any]) -> set[str]:
    return {c["code"] for c in concept["coding"] if c["system"] == LOINC}


def check_profile(obs: dict[str, Any]) -> None:
    """The R4 vital-signs profile constraints (vitalsigns, bp, heartrate, oxygensat, bodytemp)."""
    profiles = obs.get("meta", {}).get("profile", [])
    categories = {
        (c["system"], c["code"]) for concept in obs["category"] for c in concept["coding"]
    }
    assert obs["status"] in {"registered", "preliminary", "final", "amended"}
    assert obs["subject"]["type"] == "Patient"
    assert obs["subject"]["identifier"]["system"] == fhir.PATIENT_SYSTEM
    assert obs["device"]["type"] == "Device"
    assert UTC_DATETIME.match(obs["effectiveDateTime"])  # vs-1: at least a day
    if SD + "vitalsigns" not in profiles:
        assert not profiles
        return
    assert (CATEGORY, "vital-signs") in categories
    assert loinc_codes(obs["code"]) & VITAL_SIGNS_CODES
    assert ("valueQuantity" in obs) != ("component" in obs)  # vs-2 / vs-3, no dataAbsentReason
    quantities = [obs["valueQuantity"]] if "valueQuantity" in obs else []
    for component in obs.get("component", []):
        assert loinc_codes(component["code"]) & VITAL_SIGNS_CODES
        quantities.append(component["valueQuantity"])
    for quantity in quantities:
        assert quantity["system"] == UCUM
        assert isinstance(quantity["value"], int | float)
        assert math.isfinite(quantity["value"])
    specific = [p.removeprefix(SD) for p in profiles if p != SD + "vitalsigns"]
    assert len(specific) <= 1
    for name in specific:
        code, units = SPECIFIC[name]
        assert code in loinc_codes(obs["code"])
        assert {q["code"] for q in quantities} <= units
    if "bp" in specific:
        components = [loinc_codes(c["code"]) for c in obs["component"]]
        assert components == [{"8480-6"}, {"8462-4"}]


def validate_observation(obs: dict[str, Any]) -> Observation:
    check_profile(obs)
    return Observation.model_validate_json(json.dumps(obs, allow_nan=False))


def validate_bundle(doc: dict[str, Any]) -> Bundle:
    """Validate the Bundle as it goes over the wire; also bdl-7 (unique fullUrl)."""
    parsed = Bundle.model_validate_json(json.dumps(doc, allow_nan=False))
    assert parsed.type == "collection"
    urls = [entry["fullUrl"] for entry in doc["entry"]]
    assert len(set(urls)) == len(urls)
    for entry, model in zip(doc["entry"], parsed.entry or [], strict=True):
        assert isinstance(model.resource, Observation)
        check_profile(entry["resource"])
    return parsed


def one(vital: Vital, value: float) -> dict[str, Any]:
    [obs] = fhir.observations(PATIENT, [(OXI, reading(vital, value, seq=5))])
    validate_observation(obs)
    return obs


def test_validates_against_r4b() -> None:
    assert __fhir_version__ == "4.3.0"


# --- each vital kind ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vital", "value", "codes", "unit", "shown", "profile"),
    [
        (HR, 72, {"8867-4"}, "/min", "bpm", "heartrate"),
        (SPO2, 97, {"2708-6", "59408-5"}, "%", "%", "oxygensat"),
        (TEMP, 36.85, {"8310-5"}, "Cel", "°C", "bodytemp"),
        (SYS, 124, {"8480-6"}, "mm[Hg]", "mmHg", None),
        (DIA, 79, {"8462-4"}, "mm[Hg]", "mmHg", None),
        (Vital.RESPIRATORY_RATE, 16, {"9279-1"}, "/min", "breaths/min", "resprate"),
    ],
)
def test_vital_sign_kinds(
    vital: Vital, value: float, codes: set[str], unit: str, shown: str, profile: str | None
) -> None:
    """UCUM in the code a receiver computes with; the unit as people write it for display."""
    obs = one(vital, value)
    assert loinc_codes(obs["code"]) == codes
    assert obs["valueQuantity"] == {"value": value, "unit": shown, "system": UCUM, "code": unit}
    assert obs["status"] == "final"
    assert obs["category"] == [{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}]
    expected = [SD + "vitalsigns"] + ([SD + profile] if profile else [])
    assert obs["meta"]["profile"] == expected
    assert obs["subject"]["identifier"] == {"system": fhir.PATIENT_SYSTEM, "value": PATIENT}
    assert obs["device"]["identifier"] == {"system": fhir.DEVICE_SYSTEM, "value": OXI}
    assert obs["identifier"] == [{"system": fhir.READING_SYSTEM, "value": f"{OXI}:5"}]


def test_spo2_is_coded_for_the_profile_and_the_method() -> None:
    coding = one(SPO2, 96)["code"]["coding"]
    assert [c["code"] for c in coding] == ["2708-6", "59408-5"]
    assert all(c["system"] == LOINC for c in coding)


@pytest.mark.parametrize(("vital", "code"), [(GLU, "2339-0"), (Vital.CAPILLARY_GLUCOSE, "41653-7")])
def test_glucose_is_laboratory_not_vital_signs(vital: Vital, code: str) -> None:
    """Blood glucose (a CGM, venous) and a glucometer's capillary fingerstick: two LOINC codes,
    because they are two kinds (vitals.py); neither is in the vital-signs value set."""
    obs = one(vital, 112)
    assert obs["category"] == [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}]
    assert "meta" not in obs
    assert loinc_codes(obs["code"]) == {code}
    assert obs["code"]["text"] == vital.info.display
    assert obs["valueQuantity"] == {"value": 112, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}


def test_the_new_kinds_parse_by_name_and_short_name() -> None:
    for vital, names in {
        Vital.RESPIRATORY_RATE: ("respiratory_rate", "Respiratory-Rate", " RESPIRATORY_RATE "),
        Vital.CAPILLARY_GLUCOSE: ("capillary_glucose", "capillary-glucose"),
    }.items():
        for name in names:
            assert Vital.parse(name) is vital
        assert Vital.parse(vital.info.short) is vital
        assert Vital.parse(vital.name) is vital
    assert (int(Vital.RESPIRATORY_RATE), int(Vital.CAPILLARY_GLUCOSE)) == (7, 8)  # the contract's
    with pytest.raises(ValueError, match="capillary_glucose"):  # listed among the choices
        Vital.parse("venous_glucose")


# --- interpretation and reference range from the patient's thresholds -----------------------


def judged(vital: Vital, value: float, low: float, high: float) -> dict[str, Any]:
    [obs] = fhir.observations(
        PATIENT, [(OXI, reading(vital, value, seq=5))], ranges={vital: (low, high)}
    )
    validate_observation(obs)
    return obs


def flag(concept: list[dict[str, Any]]) -> str:
    [interpretation] = concept
    [coding] = interpretation["coding"]
    assert coding["system"] == INTERPRETATION
    return str(coding["code"])


def quantity(vital: Vital, value: float) -> dict[str, Any]:
    return {"value": value, "unit": vital.info.symbol, "system": UCUM, "code": vital.info.unit}


@pytest.mark.parametrize(
    ("vital", "low", "high", "values"),
    [
        (Vital.RESPIRATORY_RATE, 10, 22, {26: "H", 8: "L", 16: "N", 10: "N", 22: "N"}),
        (Vital.CAPILLARY_GLUCOSE, 70, 180, {240: "H", 54: "L", 120: "N"}),
        (HR, 50, 110, {111: "H", 49: "L", 72: "N"}),
        (TEMP, 35.5, 38.0, {38.01: "H", 35.49: "L", 38.004: "N"}),  # 38.004 is 38.00 on chain
        (SPO2, 92, 100, {91: "L", 100: "N"}),
        (GLU, 70, 180, {181: "H", 69.99: "L"}),
    ],
)
def test_interpretation_and_reference_range_are_the_patient_thresholds(
    vital: Vital, low: float, high: float, values: dict[float, str]
) -> None:
    """H above, L below, N inside, bounds inclusive (the contract's ``evaluate``); the range is
    the thresholds themselves, as UCUM quantities of the vital's unit."""
    for value, expected in values.items():
        obs = judged(vital, value, low, high)
        assert flag(obs["interpretation"]) == expected, value
        assert obs["referenceRange"] == [
            {"low": quantity(vital, low), "high": quantity(vital, high)}
        ]
        assert obs["valueQuantity"]["value"] == value


def test_a_vital_without_a_threshold_gets_neither() -> None:
    readings = [(OXI, reading(HR, 72, seq=1)), (OXI, reading(SPO2, 88, seq=2))]
    for ranges in (None, {}, {HR: (50.0, 110.0)}):
        by_code = {
            o["code"]["coding"][0]["code"]: o
            for o in fhir.observations(PATIENT, readings, ranges=ranges)
        }
        spo2 = by_code["2708-6"]
        assert "interpretation" not in spo2  # nothing invented
        assert "referenceRange" not in spo2
        validate_observation(spo2)
        assert ("interpretation" in by_code["8867-4"]) == bool(ranges)


def test_a_blood_pressure_panel_is_judged_per_component() -> None:
    """Each half against its own thresholds; the panel itself is not flagged (no value)."""
    readings = [(CUFF, reading(SYS, 150, seq=10)), (CUFF, reading(DIA, 80, seq=11))]
    [obs] = fhir.observations(PATIENT, readings, ranges={SYS: (90, 140), DIA: (60, 90)})
    validate_observation(obs)
    assert "interpretation" not in obs
    assert "referenceRange" not in obs
    systolic, diastolic = obs["component"]
    assert flag(systolic["interpretation"]) == "H"
    assert flag(diastolic["interpretation"]) == "N"
    assert systolic["referenceRange"] == [{"low": quantity(SYS, 90), "high": quantity(SYS, 140)}]
    [only] = fhir.observations(PATIENT, readings, ranges={DIA: (60, 75)})
    assert "interpretation" not in only["component"][0]
    assert flag(only["component"][1]["interpretation"]) == "H"


@pytest.mark.parametrize(
    "ranges",
    [
        {HR: (110, 50)},
        {HR: (70, 70)},
        {HR: (math.nan, 100)},
        {HR: (50, math.inf)},
        {HR: (True, 100)},
        {HR: (50,)},
        {3: (50, 110)},
    ],
)
def test_malformed_ranges_are_refused(ranges: Any) -> None:
    with pytest.raises(ValueError, match="range"):
        fhir.observations(PATIENT, [(OXI, reading(HR, 72, seq=1))], ranges=ranges)


def test_the_cli_reads_the_thresholds_from_the_chain(ledger: Ledger) -> None:
    """``fhir export`` asks the chain (AlertRegistry.thresholdOf) for the vitals it exports,
    respiratory rate and capillary glucose included; an unset vital is left out."""
    from vitalchain.cli.provider import _thresholds

    patient = funded(ledger)
    rr, cap = Vital.RESPIRATORY_RATE, Vital.CAPILLARY_GLUCOSE
    ledger.set_threshold(patient, patient.address, rr, 1000, 2200)
    ledger.set_threshold(patient, patient.address, cap, 7000, 18050)
    ranges = _thresholds(ledger, patient.address, {rr, cap, HR})
    assert ranges == {rr: (10.0, 22.0), cap: (70.0, 180.5)}
    doc = fhir.bundle(
        patient.address,
        [(OXI, reading(rr, 30, seq=1)), (OXI, reading(cap, 180.5, seq=2))],
        now=NOW,
        ranges=ranges,
    )
    validate_bundle(doc)
    resources = [e["resource"] for e in doc["entry"]]
    assert [flag(o["interpretation"]) for o in resources] == ["H", "N"]
    assert resources[1]["referenceRange"][0]["high"]["value"] == 180.5


# --- blood pressure pairing -----------------------------------------------------------------


def bp_panels(observations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in observations if "85354-9" in loinc_codes(o["code"])]


def test_systolic_and_diastolic_make_one_panel() -> None:
    readings = [(CUFF, reading(SYS, 131, seq=10)), (CUFF, reading(DIA, 84, seq=11))]
    [obs] = fhir.observations(PATIENT, readings)
    validate_observation(obs)
    assert obs["meta"]["profile"] == [SD + "vitalsigns", SD + "bp"]
    assert "valueQuantity" not in obs
    assert [c["valueQuantity"]["value"] for c in obs["component"]] == [131, 84]
    assert all(c["valueQuantity"]["code"] == "mm[Hg]" for c in obs["component"])
    assert obs["identifier"][0]["value"] == f"{CUFF}:10+11"


@pytest.mark.parametrize(("vital", "code"), [(SYS, "8480-6"), (DIA, "8462-4")])
def test_lone_pressure_is_its_own_observation(vital: Vital, code: str) -> None:
    readings = [(CUFF, reading(vital, 100, seq=3)), (CUFF, reading(HR, 70, seq=4))]
    obs = fhir.observations(PATIENT, readings)
    assert not bp_panels(obs)
    [lone] = [o for o in obs if code in loinc_codes(o["code"])]
    validate_observation(lone)
    assert lone["valueQuantity"]["value"] == 100
    assert lone["meta"]["profile"] == [SD + "vitalsigns"]


def test_pairs_at_different_times_stay_apart() -> None:
    readings = [
        (CUFF, reading(SYS, 120, seq=1, t_ms=T0)),
        (CUFF, reading(DIA, 80, seq=2, t_ms=T0)),
        (CUFF, reading(SYS, 150, seq=3, t_ms=T0 + 900_000)),
        (CUFF, reading(DIA, 95, seq=4, t_ms=T0 + 900_000)),
        (CUFF, reading(DIA, 70, seq=5, t_ms=T0 + 1_800_000)),
    ]
    obs = fhir.observations(PATIENT, readings)
    panels = bp_panels(obs)
    assert [[c["valueQuantity"]["value"] for c in p["component"]] for p in panels] == [
        [120, 80],
        [150, 95],
    ]
    assert len(obs) == 3  # and the unmatched diastolic at T0 + 30 min
    for o in obs:
        validate_observation(o)


def test_pairs_from_two_devices_at_the_same_time_stay_apart() -> None:
    readings = [
        (CUFF, reading(SYS, 120, seq=1)),
        (CUFF2, reading(SYS, 140, seq=1)),
        (CUFF2, reading(DIA, 90, seq=2)),
        (CUFF, reading(DIA, 80, seq=2)),
    ]
    panels = bp_panels(fhir.observations(PATIENT, readings))
    got = {
        p["device"]["identifier"]["value"]: [c["valueQuantity"]["value"] for c in p["component"]]
        for p in panels
    }
    assert got == {CUFF: [120, 80], CUFF2: [140, 90]}


def test_pressures_of_different_devices_are_never_paired() -> None:
    readings = [(CUFF, reading(SYS, 120, seq=1)), (CUFF2, reading(DIA, 80, seq=1))]
    obs = fhir.observations(PATIENT, readings)
    assert not bp_panels(obs)
    assert len(obs) == 2


# --- identifiers, determinism and time ------------------------------------------------------


def sample_pairs() -> list[tuple[str, Reading]]:
    return [
        (CUFF, reading(SYS, 120, seq=1)),
        (CUFF, reading(DIA, 80, seq=2)),
        (OXI, reading(SPO2, 98, seq=40)),
        (OXI, reading(HR, 66, seq=41)),
        (OXI, reading(TEMP, 36.6, seq=42, t_ms=T0 + 1)),
    ]


def test_export_is_deterministic_and_order_independent() -> None:
    pairs = sample_pairs()
    first = fhir.bundle(PATIENT, pairs, now=NOW)
    shuffled = pairs[::-1] + pairs[:2]  # other order, and exact duplicates are dropped
    assert fhir.bundle(PATIENT, shuffled, now=NOW) == first
    ids = [e["resource"]["identifier"][0]["value"] for e in first["entry"]]
    assert len(set(ids)) == len(ids)
    for entry in first["entry"]:
        value = entry["resource"]["identifier"][0]["value"]
        expected = uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "urn:vitalchain:reading"), value)
        assert entry["fullUrl"] == f"urn:uuid:{expected}"
    later = fhir.bundle(PATIENT, pairs, now=NOW + timedelta(days=1))
    assert later["entry"] == first["entry"]
    assert later["timestamp"] != first["timestamp"]


def test_address_case_does_not_change_identifiers() -> None:
    lower = [(device.lower(), r) for device, r in sample_pairs()]
    assert fhir.bundle(PATIENT.lower(), lower, now=NOW) == fhir.bundle(
        PATIENT, sample_pairs(), now=NOW
    )


def test_times_are_utc_with_offset() -> None:
    [obs] = fhir.observations(PATIENT, [(OXI, reading(HR, 60, seq=1, t_ms=T0))])
    expected = datetime.fromtimestamp(T0 // 1000, UTC) + timedelta(milliseconds=T0 % 1000)
    assert obs["effectiveDateTime"] == expected.isoformat(timespec="milliseconds")
    assert obs["effectiveDateTime"].endswith(".123+00:00")
    parsed = validate_observation(obs).effectiveDateTime
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)

    cet = timezone(timedelta(hours=1))
    doc = fhir.bundle(PATIENT, [], now=datetime(2026, 11, 23, 9, 0, tzinfo=cet))
    assert doc["timestamp"] == "2026-11-23T08:00:00.000+00:00"
    validate_bundle(doc)


def test_default_clock_is_now_in_utc() -> None:
    before = datetime.now(UTC)
    stamp = datetime.fromisoformat(fhir.bundle(PATIENT, [])["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert before - timedelta(milliseconds=1) <= stamp <= datetime.now(UTC)


# --- refusals -------------------------------------------------------------------------------


def test_mixed_patients_are_refused() -> None:
    messages = [
        message(CUFF, [reading(SYS, 120, seq=1)]),
        message(OXI, [reading(HR, 70, seq=2)], patient=OTHER_PATIENT),
    ]
    with pytest.raises(ValueError, match="patients"):
        fhir.bundle_from_messages(messages, now=NOW)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        fhir.bundle(PATIENT, [(OXI, reading(HR, value, seq=1))], now=NOW)


@pytest.mark.parametrize(
    "address",
    ["Jane Doe", "jane@example.org", "0x1234", "0x" + "zz" * 20, "0X" + PATIENT[2:], BAD_CHECKSUM],
)
def test_non_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match=r"address|checksum"):
        fhir.observations(address, [])
    with pytest.raises(ValueError, match=r"address|checksum"):
        fhir.observations(PATIENT, [(address, reading(HR, 70, seq=1))])


def test_conflicting_readings_under_one_seq_are_refused() -> None:
    pairs = [(OXI, reading(HR, 70, seq=1)), (OXI, reading(HR, 71, seq=1))]
    with pytest.raises(ValueError, match="seq 1"):
        fhir.observations(PATIENT, pairs)


def test_naive_clock_and_impossible_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        fhir.bundle(PATIENT, [], now=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="time"):
        fhir.observations(PATIENT, [(OXI, reading(HR, 70, seq=1, t_ms=10**18))])


# --- from messages, at realistic size -------------------------------------------------------


def realistic_messages() -> list[Message]:
    """Six hours of a cuff, an oximeter, a thermometer and a glucometer, from the simulator."""
    gen = VitalsGenerator(PatientProfile.typical(), seed=2026, start_s=T0 / 1000)
    devices = {
        DeviceKind.BP_CUFF: (CUFF, 900),
        DeviceKind.PULSE_OXIMETER: (OXI, 300),
        DeviceKind.THERMOMETER: (to_checksum_address(b"\x7e" * 20), 600),
        DeviceKind.GLUCOMETER: (to_checksum_address(b"\x91" * 20), 300),
    }
    messages: list[Message] = []
    for kind, (device, interval_s) in devices.items():
        seq = 1000
        for t_s in range(0, 6 * 3600, interval_s):
            batch = []
            for vital, value in gen.readings(kind, float(t_s)):
                seq += 1
                batch.append(reading(vital, value, seq=seq, t_ms=T0 + t_s * 1000))
            messages.append(message(device, batch))
    random.Random(1).shuffle(messages)
    return messages


def test_realistic_bundle_validates() -> None:
    messages = realistic_messages()
    total = sum(len(m.readings) for m in messages)
    assert total >= 300
    doc = fhir.bundle_from_messages(messages, now=NOW)
    parsed = validate_bundle(doc)
    cuff_readings = sum(len(m.readings) for m in messages if m.device == CUFF)
    assert len(parsed.entry or []) == total - cuff_readings // 2  # every cuff reading paired
    kinds = {e["resource"]["code"]["coding"][0]["code"] for e in doc["entry"]}
    assert kinds == {"85354-9", "8867-4", "2708-6", "8310-5", "2339-0"}
    times = [e["resource"]["effectiveDateTime"] for e in doc["entry"]]
    assert times == sorted(times)


def test_no_messages_give_an_empty_bundle() -> None:
    doc = fhir.bundle_from_messages([], now=NOW)
    assert doc["entry"] == []
    validate_bundle(doc)


def strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def test_no_personal_data_beyond_the_pseudonymous_address() -> None:
    messages = realistic_messages()
    ranges = {v: v.info.normal for v in Vital}
    doc = fhir.bundle_from_messages(messages, now=NOW, ranges=ranges)
    text = json.dumps(doc)
    for m in messages:  # nothing of the signed envelope leaves: payload, signature, ids
        assert m.message_id.hex() not in text
        assert m.signature.hex() not in text
    assert "secret" not in text
    assert "received" not in text.lower()
    for entry in doc["entry"]:
        obs = entry["resource"]
        assert set(obs) <= {
            "resourceType",
            "meta",
            "identifier",
            "status",
            "category",
            "code",
            "subject",
            "effectiveDateTime",
            "device",
            "valueQuantity",
            "component",
            "interpretation",
            "referenceRange",
        }
        assert obs["subject"] == {
            "type": "Patient",
            "identifier": {"system": fhir.PATIENT_SYSTEM, "value": PATIENT},
        }
        assert "reference" not in obs["device"]
        assert "display" not in obs["subject"]
        assert "display" not in obs["device"]
    # The patient's address appears only as the subject; every other string is a code,
    # a terminology URL, a display of a LOINC code or a unit, a time, a uuid or a reading
    # identifier.
    assert text.count(PATIENT) == len(doc["entry"])
    allowed = re.compile(
        r"^(https?://\S+|urn:(uuid:[0-9a-f-]{36}|vitalchain:\w+)|0x[0-9a-fA-F]{40}(:\d+(\+\d+)?)?"
        r"|\d{4}-\d\d-\d\dT[\d:.]+\+00:00|[\w\[\]/%-]+|collection|Bundle|Observation)$"
    )
    displays = {text for v in Vital for text in (v.info.display, v.info.symbol)}  # and units
    for s in strings(doc):
        assert allowed.match(s) or s in displays or s.startswith(("Blood pressure", "Oxygen")), s


def test_a_transaction_bundle_creates_each_reading_once() -> None:
    """``fhir export --bundle transaction``: POST-able to a FHIR server; each entry a
    conditional create on the reading's identifier, so a second post stores nothing twice."""
    readings = [(OXI, reading(Vital.SPO2, 97, seq=1)), (OXI, reading(Vital.HEART_RATE, 72, seq=2))]
    doc = fhir.bundle(PATIENT, readings, now=NOW, kind="transaction")
    parsed = Bundle.model_validate_json(json.dumps(doc, allow_nan=False))
    assert parsed.type == "transaction"
    assert len(parsed.entry or []) == 2
    for entry in doc["entry"]:
        identifier = entry["resource"]["identifier"][0]
        assert entry["request"] == {
            "method": "POST",
            "url": "Observation",
            "ifNoneExist": f"identifier={fhir.READING_SYSTEM}|{identifier['value']}",
        }
        check_profile(entry["resource"])
    collection = fhir.bundle(PATIENT, readings, now=NOW)
    assert [e["resource"] for e in collection["entry"]] == [e["resource"] for e in doc["entry"]]
    assert all("request" not in e for e in collection["entry"])


def test_only_known_bundle_types_and_the_cli_offers_exactly_those() -> None:
    with pytest.raises(ValueError, match="collection, transaction"):
        fhir.bundle(PATIENT, [], now=NOW, kind="searchset")
    from vitalchain.cli.provider import BundleType

    assert tuple(b.value for b in BundleType) == fhir.BUNDLE_TYPES


def test_the_spec_lists_the_vital_registry_as_the_code_has_it() -> None:
    """docs/spec/telemetry.md's "Vital registry" table: id, name, unit, LOINC of every kind."""
    spec = Path(__file__).resolve().parents[2] / "docs" / "spec" / "telemetry.md"
    rows = {}
    for line in spec.read_text().splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0].isdigit():
            rows[int(cells[0])] = tuple(cells[1:4])
    assert rows == {int(v): (v.info.short, v.info.unit, v.info.loinc) for v in Vital}


def test_the_cli_checks_a_named_deployment_before_fetching(tmp_path: Path) -> None:
    """A --deployment that cannot be read is refused before the gateway is asked (here it
    could not answer); --no-ranges needs no chain, so there the fetch is what fails."""
    key = tmp_path / "me.key"
    key.write_text(PrivateKey.generate().secret.hex() + "\n")
    export = ("fhir", "export", "--key", str(key), "--patient", ADDRESS, "--gateway", NOWHERE)
    missing = str(tmp_path / "none.json")
    one_line(invoke(*export, "--out", "-", "--deployment", missing), "unreadable_file", missing)
    one_line(
        invoke(*export, "--out", "-", "--deployment", missing, "--no-ranges"),
        "unreachable",
        exit_code=1,
    )
