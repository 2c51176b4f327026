"""Vital-sign kinds: the one table of IDs, units, codes and ranges every layer shares.

IDs match the contracts (``uint8 vital``); a consent scope is a bitmask of ``1 << id``.
On chain, thresholds are ``int32`` fixed-point with two decimals (37.25 °C → 3725).  Units are
UCUM as FHIR wants them; codes are LOINC.  Like ``errors``, this module imports nothing of ours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

__all__ = [
    "ALL_VITALS_SCOPE",
    "HIGH",
    "LOW",
    "NORMAL",
    "SCALE",
    "Vital",
    "VitalInfo",
    "by_class",
    "class_of",
    "evaluate_fixed",
    "from_fixed",
    "scope_of",
    "to_fixed",
]

SCALE = 100  # two decimals on chain
T = TypeVar("T")


class Vital(IntEnum):
    SYSTOLIC_BP = 1
    DIASTOLIC_BP = 2
    HEART_RATE = 3
    SPO2 = 4
    BODY_TEMPERATURE = 5
    GLUCOSE = 6
    RESPIRATORY_RATE = 7
    # A glucometer's fingerstick reading: a kind of its own, not GLUCOSE with a specimen flag,
    # because readings carry no specimen and LOINC codes capillary glucose separately (41653-7
    # vs 2339-0).  A device reports the kind it measures; the two are never merged.
    CAPILLARY_GLUCOSE = 8

    @property
    def info(self) -> VitalInfo:
        return _INFO[self]

    @property
    def bit(self) -> int:
        return 1 << int(self)

    @classmethod
    def parse(cls, name: str) -> Vital:
        key = name.strip().lower().replace("-", "_")
        for vital in cls:
            if key in (vital.name.lower(), vital.info.short):
                return vital
        raise ValueError(f"unknown vital {name!r}; choose one of {[v.info.short for v in cls]}")


@dataclass(frozen=True, slots=True)
class VitalInfo:
    short: str
    unit: str  # UCUM
    loinc: str
    display: str
    plausible: tuple[float, float]  # physically possible range; outside it a reading is refused
    normal: tuple[float, float]  # default alert thresholds for adults
    # The unit as clinicians write it in tables and charts ("mmHg", "°C"); ``unit`` (UCUM) is
    # what every format carries and what FHIR codes.
    symbol: str
    # The vital's name on a chart or a table's column ("SpO2"); ``display`` is LOINC's.
    label: str


_INFO = {
    Vital.SYSTOLIC_BP: VitalInfo(
        "systolic",
        "mm[Hg]",
        "8480-6",
        "Systolic blood pressure",
        (40, 300),
        (90, 140),
        "mmHg",
        "Systolic BP",
    ),
    Vital.DIASTOLIC_BP: VitalInfo(
        "diastolic",
        "mm[Hg]",
        "8462-4",
        "Diastolic blood pressure",
        (20, 200),
        (60, 90),
        "mmHg",
        "Diastolic BP",
    ),
    Vital.HEART_RATE: VitalInfo(
        "heart_rate",
        "/min",
        "8867-4",
        "Heart rate",
        (20, 300),
        (50, 110),
        "bpm",
        "Heart rate",
    ),
    Vital.SPO2: VitalInfo(
        "spo2",
        "%",
        "59408-5",
        "Oxygen saturation by pulse oximetry",
        (50, 100),
        (92, 100),
        "%",
        "SpO2",
    ),
    Vital.BODY_TEMPERATURE: VitalInfo(
        "temperature",
        "Cel",
        "8310-5",
        "Body temperature",
        (25, 45),
        (35.5, 38.0),
        "°C",
        "Temperature",
    ),
    Vital.GLUCOSE: VitalInfo(
        "glucose",
        "mg/dL",
        "2339-0",
        "Glucose [Mass/volume] in Blood",
        (10, 1000),
        (70, 180),
        "mg/dL",
        "Glucose",
    ),
    # 0 is plausible (apnoea must alarm, not be refused); outside 9..20 NEWS2 scores 2 or more.
    Vital.RESPIRATORY_RATE: VitalInfo(
        "respiratory_rate",
        "/min",
        "9279-1",
        "Respiratory rate",
        (0, 90),
        (9, 20),
        "breaths/min",
        "Respiratory rate",
    ),
    Vital.CAPILLARY_GLUCOSE: VitalInfo(
        "capillary_glucose",
        "mg/dL",
        "41653-7",
        "Glucose [Mass/volume] in Capillary blood by Glucometer",
        (10, 1000),
        (70, 180),
        "mg/dL",
        "Capillary glucose",
    ),
}


def scope_of(*vitals: Vital) -> int:
    """Consent scope bitmask covering ``vitals``."""
    mask = 0
    for vital in vitals:
        mask |= vital.bit
    return mask


ALL_VITALS_SCOPE = scope_of(*Vital)

# Readings measured as one (a blood pressure's two halves) are signed, sealed and consented
# to together; every other vital is a class of its own.  A device signs one message per
# class, so a block section (docs/spec/block.md) never mixes what one consent may read
# with what it may not.
_CLASSES = (scope_of(Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP),)


def class_of(vital: Vital) -> int:
    """The scope bits of ``vital``'s class: the vitals sent, sealed and consented together."""
    return next((c for c in _CLASSES if c & vital.bit), vital.bit)


def by_class(readings: Sequence[tuple[Vital, T]]) -> list[list[tuple[Vital, T]]]:
    """``readings`` split by :func:`class_of`, each class in the order it first appears."""
    groups: dict[int, list[tuple[Vital, T]]] = {}
    for item in readings:
        groups.setdefault(class_of(item[0]), []).append(item)
    return list(groups.values())


def to_fixed(value: float) -> int:
    """Round half away from zero to the chain's two-decimal int32."""
    scaled = math.floor(abs(value) * SCALE + 0.5)
    fixed = scaled if value >= 0 else -scaled
    if not -(2**31) <= fixed < 2**31:
        raise ValueError("value does not fit the on-chain int32 fixed-point range")
    return fixed


def from_fixed(value: int) -> float:
    return value / SCALE


LOW, NORMAL, HIGH = -1, 0, 1  # a reading below, inside, above its band


def evaluate_fixed(low: int, high: int, value: int) -> int:
    """The contract's ``evaluate``, bit for bit: inclusive bounds, fixed-point integers.  The
    one rule, so the gateway's alarms and a device deciding whether to ring-sign agree."""
    if value < low:
        return LOW
    if value > high:
        return HIGH
    return NORMAL
