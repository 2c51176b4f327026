"""Short names for the vitals, as the tests' tables of readings use them."""

from __future__ import annotations

from vitalchain.vitals import Vital

SYS, DIA, HR, SPO2, TEMP, GLU = (
    Vital.SYSTOLIC_BP,
    Vital.DIASTOLIC_BP,
    Vital.HEART_RATE,
    Vital.SPO2,
    Vital.BODY_TEMPERATURE,
    Vital.GLUCOSE,
)
