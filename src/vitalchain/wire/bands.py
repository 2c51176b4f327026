"""A patient's threshold bands, as a device learns them (docs/spec/telemetry.md, "Bands").

With anonymity on, a device ring-signs a data message only when one of its readings is
outside the patient's band (issue 16): an in-band message costs one ECDSA signature, an
out-of-band one, which is what an alert is raised from, the bLSAG proof that keeps the alert
anonymous.  So the device must know the band the gateway's alarms use: the gateway answers
``GET /v1/sessions/{session_id}/bands`` from its threshold policy (the chain's
``AlertRegistry``, else the vital's adult default), and this module is that answer's one
definition, built by the gateway and read by the device SDK.

Bounds travel in the vital's unit and are compared as the contract compares them, in its
two-decimal fixed point (:func:`vitalchain.vitals.evaluate_fixed`), so the device and the
gateway agree at the edges to the hundredth.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import ClassVar, Literal

from pydantic import field_validator, model_validator

from vitalchain.vitals import NORMAL, Vital, evaluate_fixed, from_fixed, to_fixed
from vitalchain.wire._json import Strict, WireObject

__all__ = ["Band", "Bands"]


class Band(Strict):
    """One vital's inclusive band, in the vital's unit."""

    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low > self.high:
            raise ValueError("a band is finite with low <= high")
        return self


class Bands(WireObject):
    """The bands of one session's patient, keyed by the vital's short name (``spo2``, …)."""

    _what: ClassVar[str] = "bands"
    v: Literal[1] = 1
    bands: dict[str, Band]

    @field_validator("bands")
    @classmethod
    def _known_names(cls, value: dict[str, Band]) -> dict[str, Band]:
        # A vital this release does not know is one its devices do not measure: dropped, so a
        # gateway of a later release (with more vitals) does not break an earlier device.
        return {name: band for name, band in value.items() if _vital(name) is not None}

    @classmethod
    def of(cls, fixed: Mapping[Vital, tuple[int, int]]) -> Bands:
        """From the policy's fixed-point (low, high) per vital."""
        return cls(
            bands={
                vital.info.short: Band(low=from_fixed(low), high=from_fixed(high))
                for vital, (low, high) in sorted(fixed.items())
            }
        )

    def fixed(self) -> dict[Vital, tuple[int, int]]:
        bands: dict[Vital, tuple[int, int]] = {}
        for name, band in self.bands.items():
            vital = _vital(name)
            if vital is not None:
                bands[vital] = (to_fixed(band.low), to_fixed(band.high))
        return bands

    def out_of_band(self, readings: Iterable[tuple[Vital, float]]) -> bool:
        """True if a reading is outside its vital's band, or its vital has no band here (a
        device that cannot tell proves, rather than leave an alert unprovable)."""
        fixed = self.fixed()
        for vital, value in readings:
            band = fixed.get(vital)
            if band is None or evaluate_fixed(band[0], band[1], to_fixed(value)) != NORMAL:
                return True
        return False


_BY_SHORT = {vital.info.short: vital for vital in Vital}


def _vital(name: str) -> Vital | None:
    return _BY_SHORT.get(name)
