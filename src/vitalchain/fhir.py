"""FHIR R4 export of decrypted readings: a Bundle of vital-signs Observations, as plain dicts.

Plain dicts keep the runtime free of a FHIR model library; the tests validate every resource
against ``fhir.resources``.  What a receiver sees about the patient is the pseudonymous
Ethereum address (``urn:vitalchain:patient``) and nothing else: no name, no demographics.

Each Observation carries an ``identifier`` derived from what the device signed
(``urn:vitalchain:reading``, ``<device>:<seq>``), and the Bundle entry's ``fullUrl`` is a
uuid5 of it, so exporting the same readings twice yields the same resources and a receiver can
de-duplicate (or conditionally create) by identifier.

Systolic and diastolic readings of one device at one device time become one ``bp`` panel
(85354-9) whose identifier names both readings (``<device>:<sys seq>+<dia seq>``).  A partner
exported later in another bundle therefore gives a panel with a different identifier than the
lone Observation exported earlier: pairing can only see the readings of one export.

Given the patient's thresholds (``ranges``: the on-chain policy, read by the caller; this module
asks no chain), each value carries a ``referenceRange`` equal to them and an ``interpretation``
of H, L or N, judged as the contract's ``evaluate`` judges: inclusive bounds, in the chain's
two-decimal fixed point.  A vital without a threshold gets neither, rather than a range the
patient never had (the gateway's adult defaults are an alerting fallback, not a reference).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from vitalchain.store.model import Message, Reading
from vitalchain.vitals import Vital, to_fixed
from vitalchain.wire.address import parse_address

__all__ = [
    "BUNDLE_TYPES",
    "DEVICE_SYSTEM",
    "PATIENT_SYSTEM",
    "READING_SYSTEM",
    "bundle",
    "bundle_from_messages",
    "observations",
]

PATIENT_SYSTEM = "urn:vitalchain:patient"
DEVICE_SYSTEM = "urn:vitalchain:device"
READING_SYSTEM = "urn:vitalchain:reading"
_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, READING_SYSTEM)

_LOINC = "http://loinc.org"
_UCUM = "http://unitsofmeasure.org"
_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_FLAGS = {-1: ("L", "Low"), 0: ("N", "Normal"), 1: ("H", "High")}
_PROFILE = "http://hl7.org/fhir/StructureDefinition/"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BUNDLE_TYPES = ("collection", "transaction")

# The vital-signs profile each kind conforms to; glucose is not a vital sign (laboratory).
_SPECIFIC_PROFILE = {
    Vital.HEART_RATE: "heartrate",
    Vital.SPO2: "oxygensat",
    Vital.BODY_TEMPERATURE: "bodytemp",
    Vital.RESPIRATORY_RATE: "resprate",
}
_LABORATORY = (Vital.GLUCOSE, Vital.CAPILLARY_GLUCOSE)
Ranges = Mapping[Vital, tuple[float, float]]
_BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
# The oxygensat profile requires 2708-6; 59408-5 (pulse oximetry) says how it was measured.
_SPO2_REQUIRED = ("2708-6", "Oxygen saturation in Arterial blood")


def observations(
    patient: str, readings: Iterable[tuple[str, Reading]], *, ranges: Ranges | None = None
) -> list[dict[str, Any]]:
    """Observations for ``(device address, reading)`` pairs of one patient, BP pairs merged.

    ``ranges``: the patient's (low, high) thresholds per vital, in the vital's unit; a vital
    absent from it gets no referenceRange and no interpretation.
    Ordered by device time, then device, then sequence number, so output is deterministic.
    Raises ``ValueError`` for a malformed address, a non-finite value, a time FHIR cannot
    express, two different readings under one ``(device, seq)``, or a malformed range.
    """
    subject = _address(patient, "patient")
    known = _ranges(ranges)
    unique: dict[tuple[str, int], Reading] = {}
    for device_text, reading in readings:
        device = _address(device_text, "device")
        _check(reading)
        key = (device, reading.seq)
        if unique.setdefault(key, reading) != reading:
            raise ValueError(f"two different readings share device {device} seq {reading.seq}")

    built: list[tuple[tuple[int, str, int], dict[str, Any]]] = []
    pressures: dict[tuple[str, int], tuple[list[Reading], list[Reading]]] = {}
    for (device, _), reading in unique.items():
        if reading.vital in (Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP):
            systolic, diastolic = pressures.setdefault((device, reading.t_ms), ([], []))
            (systolic if reading.vital is Vital.SYSTOLIC_BP else diastolic).append(reading)
        else:
            resource = _single(subject, device, reading, known)
            built.append(((reading.t_ms, device, reading.seq), resource))
    for (device, t_ms), (systolic, diastolic) in pressures.items():
        systolic.sort(key=lambda r: r.seq)
        diastolic.sort(key=lambda r: r.seq)
        pairs = min(len(systolic), len(diastolic))
        for sys_r, dia_r in zip(systolic[:pairs], diastolic[:pairs], strict=True):
            first = min(sys_r.seq, dia_r.seq)
            built.append(((t_ms, device, first), _panel(subject, device, sys_r, dia_r, known)))
        for lone in systolic[pairs:] + diastolic[pairs:]:
            built.append(((t_ms, device, lone.seq), _single(subject, device, lone, known)))
    built.sort(key=lambda item: item[0])
    return [resource for _, resource in built]


def bundle(
    patient: str,
    readings: Iterable[tuple[str, Reading]],
    *,
    now: datetime | None = None,
    kind: str = "collection",
    ranges: Ranges | None = None,
) -> dict[str, Any]:
    """One patient's readings as a Bundle stamped with ``now`` (default: clock).

    ``collection`` (the default), not ``searchset``: the export is a set of resources handed
    over as a unit, not the answer to a search on a FHIR server, so it has no ``search`` modes,
    ``total`` or paging links to be truthful about.  ``transaction`` is the same resources
    ready to POST to a FHIR server's base URL: each entry a conditional create on its reading
    identifier (``ifNoneExist``), so posting the same export twice stores each reading once.
    ``ranges`` as for :func:`observations`.
    """
    return _bundle(observations(patient, readings, ranges=ranges), now, kind)


def bundle_from_messages(
    messages: Iterable[Message], *, now: datetime | None = None, ranges: Ranges | None = None
) -> dict[str, Any]:
    """All readings of verified messages (from the store or an opened block) as one Bundle.

    Messages carry their device and patient; a Bundle is about one patient, so messages of
    different patients raise ``ValueError``.  No messages give an empty Bundle.
    """
    patients: set[str] = set()
    pairs: list[tuple[str, Reading]] = []
    for message in messages:
        patients.add(_address(message.patient, "patient"))
        pairs.extend((message.device, reading) for reading in message.readings)
    if len(patients) > 1:
        raise ValueError(f"messages of {len(patients)} patients; a bundle holds one patient")
    resources = observations(patients.pop(), pairs, ranges=ranges) if patients else []
    return _bundle(resources, now)


def _bundle(
    resources: list[dict[str, Any]], now: datetime | None, kind: str = "collection"
) -> dict[str, Any]:
    if kind not in BUNDLE_TYPES:
        raise ValueError(f"a bundle is one of {', '.join(BUNDLE_TYPES)}, not {kind!r}")
    stamp = datetime.now(UTC) if now is None else now
    if stamp.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    entries: list[dict[str, Any]] = [
        {"fullUrl": _full_url(resource), "resource": resource} for resource in resources
    ]
    if kind == "transaction":
        for entry in entries:
            identifier = entry["resource"]["identifier"][0]
            entry["request"] = {
                "method": "POST",
                "url": "Observation",
                "ifNoneExist": f"identifier={identifier['system']}|{identifier['value']}",
            }
    return {"resourceType": "Bundle", "type": kind, "timestamp": _iso(stamp), "entry": entries}


def _full_url(resource: dict[str, Any]) -> str:
    value = resource["identifier"][0]["value"]
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, value)}"


def _single(
    subject: str, device: str, reading: Reading, ranges: dict[Vital, tuple[float, float]]
) -> dict[str, Any]:
    info = reading.vital.info
    codings = [_coding(info.loinc, info.display)]
    if reading.vital is Vital.SPO2:
        codings.insert(0, _coding(*_SPO2_REQUIRED))
    laboratory = reading.vital in _LABORATORY
    profiles = [] if laboratory else [_PROFILE + "vitalsigns"]
    if reading.vital in _SPECIFIC_PROFILE:
        profiles.append(_PROFILE + _SPECIFIC_PROFILE[reading.vital])
    resource = _observation(
        subject,
        device,
        identifier=f"{device}:{reading.seq}",
        profiles=profiles,
        category="laboratory" if laboratory else "vital-signs",
        codings=codings,
        text=info.display,
        t_ms=reading.t_ms,
    )
    resource["valueQuantity"] = _quantity(reading)
    resource.update(_judged(reading, ranges))
    return resource


def _panel(
    subject: str,
    device: str,
    systolic: Reading,
    diastolic: Reading,
    ranges: dict[Vital, tuple[float, float]],
) -> dict[str, Any]:
    resource = _observation(
        subject,
        device,
        identifier=f"{device}:{systolic.seq}+{diastolic.seq}",
        profiles=[_PROFILE + "vitalsigns", _PROFILE + "bp"],
        category="vital-signs",
        codings=[_coding(*_BP_PANEL)],
        text="Blood pressure",
        t_ms=systolic.t_ms,
    )
    resource["component"] = [
        {
            "code": {
                "coding": [_coding(r.vital.info.loinc, r.vital.info.display)],
                "text": r.vital.info.display,
            },
            "valueQuantity": _quantity(r),
            **_judged(r, ranges),
        }
        for r in (systolic, diastolic)
    ]
    return resource


def _observation(
    subject: str,
    device: str,
    *,
    identifier: str,
    profiles: list[str],
    category: str,
    codings: list[dict[str, str]],
    text: str,
    t_ms: int,
) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Observation"}
    if profiles:
        resource["meta"] = {"profile": profiles}
    resource.update(
        {
            "identifier": [{"system": READING_SYSTEM, "value": identifier}],
            "status": "final",
            "category": [{"coding": [{"system": _CATEGORY, "code": category}]}],
            "code": {"coding": codings, "text": text},
            "subject": {
                "type": "Patient",
                "identifier": {"system": PATIENT_SYSTEM, "value": subject},
            },
            "effectiveDateTime": _iso(_EPOCH + timedelta(milliseconds=t_ms)),
            "device": {"type": "Device", "identifier": {"system": DEVICE_SYSTEM, "value": device}},
        }
    )
    return resource


def _coding(code: str, display: str) -> dict[str, str]:
    return {"system": _LOINC, "code": code, "display": display}


def _quantity(reading: Reading) -> dict[str, Any]:
    """``unit`` is for people (mmHg, °C), ``code`` the UCUM a receiver computes with."""
    return _amount(reading.vital, reading.value)


def _amount(vital: Vital, value: float) -> dict[str, Any]:
    info = vital.info
    return {"value": value, "unit": info.symbol, "system": _UCUM, "code": info.unit}


def _judged(reading: Reading, ranges: dict[Vital, tuple[float, float]]) -> dict[str, Any]:
    """``interpretation`` and ``referenceRange`` of a value, or nothing without a range.

    Compared in fixed point, as the contract and the gateway compare (37.004 is 37.00), so the
    flag is what ``AlertRegistry.evaluate`` says of this value against these thresholds (the
    alert rules add confirmation and hysteresis on top; thresholds may have changed since).
    """
    if reading.vital not in ranges:
        return {}
    low, high = ranges[reading.vital]
    value = to_fixed(reading.value)
    flag = -1 if value < to_fixed(low) else 1 if value > to_fixed(high) else 0
    code, display = _FLAGS[flag]
    return {
        "interpretation": [
            {"coding": [{"system": _INTERPRETATION, "code": code, "display": display}]}
        ],
        "referenceRange": [
            {"low": _amount(reading.vital, low), "high": _amount(reading.vital, high)}
        ],
    }


def _ranges(ranges: Ranges | None) -> dict[Vital, tuple[float, float]]:
    """A copy of ``ranges``, each checked: a known vital, finite numbers, low below high."""
    checked: dict[Vital, tuple[float, float]] = {}
    for vital, bounds in (ranges or {}).items():
        if not isinstance(vital, Vital):
            raise ValueError(f"range for unknown vital {vital!r}")
        try:
            low, high = bounds
        except (TypeError, ValueError):
            raise ValueError(f"range of {vital.info.short} is not a (low, high) pair") from None
        for bound in (low, high):
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise ValueError(f"range of {vital.info.short} holds a non-number")
            if not math.isfinite(bound):
                raise ValueError(f"range of {vital.info.short} is not finite")
        if not low < high:
            raise ValueError(f"range of {vital.info.short}: low {low} is not below high {high}")
        checked[vital] = (low, high)
    return checked


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC with an explicit ``+00:00`` offset and millisecond precision."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _check(reading: Reading) -> None:
    """Refuse what would make invalid FHIR rather than emit it."""
    if not isinstance(reading.vital, Vital):
        raise ValueError(f"unknown vital {reading.vital!r}")
    if isinstance(reading.value, bool) or not isinstance(reading.value, int | float):
        raise ValueError(f"value of seq {reading.seq} is not a number")
    if not math.isfinite(reading.value):
        raise ValueError(f"non-finite value {reading.value!r} at seq {reading.seq}")
    if reading.seq < 0:
        raise ValueError(f"negative seq {reading.seq}")
    try:
        _EPOCH + timedelta(milliseconds=reading.t_ms)
    except OverflowError:
        raise ValueError(f"time {reading.t_ms} ms is outside what FHIR can express") from None


def _address(text: str, role: str) -> str:
    """EIP-55 form, so one identity always exports as one identifier value.

    Anything else (a name, an e-mail, a typo in a checksummed address) is refused, which also
    keeps personal data out of the identifiers.
    """
    try:
        return parse_address(text)
    except ValueError as exc:
        raise ValueError(f"{role} address: {exc}") from None
