"""Alert rules: when an out-of-range vital becomes an alert, when it clears, when data is stale.

A threshold crossing alone alarms on every motion artefact; monitoring systems instead raise
only on a confirmed excursion and clear only on a clear recovery.  This module is that logic,
pure and with time injected (``at`` / ``now`` are seconds as floats, never the wall clock).

Episodes, per (patient, vital)::

    NORMAL ──out of range──▶ PENDING ──M in a row, or out for N s──▶ ALERTING ──in band──▶ NORMAL
                                │                                       │
                                └──back in [low, high]: NORMAL, silent  └──in [low, high] but
                                                                           not in band: stays

- A reading is normal when ``low <= value <= high`` (inclusive, exactly like the contract's
  ``evaluate``); ``value < low`` is low (direction -1), ``value > high`` is high (+1).
- PENDING counts consecutive out-of-range readings in one direction.  :class:`Raised` is
  returned (state ALERTING) when the count reaches ``consecutive`` or, if ``sustain_s > 0``,
  when ``at - first_out_at >= sustain_s``, whichever comes first.  ``sustain_s`` is judged when
  a reading arrives: silence proves nothing either way (that is the stale alarm's job).
- One in-range reading while PENDING returns to NORMAL with no event, so a single noisy spike
  raises nothing.  An out-of-range reading in the other direction restarts the count there.
- While ALERTING, further readings in the alert's direction return ``None``: one alert per
  episode.  :class:`Cleared` is returned only for a reading inside the hysteresis band
  ``[low + h, high - h]``; ``h`` is clamped to ``(high - low) / 2``, so a too-wide ``h`` means
  "clear at the midpoint" rather than "never clear".
- An out-of-range reading in the *other* direction while ALERTING starts a new PENDING episode
  in that direction; no event is returned and the open alert stays open.  If that episode
  raises, the new :class:`Raised` supersedes the old alert (no :class:`Cleared` in between); if
  instead a reading comes back inside the band first, the old alert clears as usual.
- A reading whose ``at`` is older than the last one seen for that (patient, vital) is ignored
  (``None``), so out-of-order delivery cannot flip state.  Equal timestamps are processed.
- Stale data: ``observe`` keeps each (patient, device)'s newest ``at``.  ``check_stale(now)``
  returns one :class:`Stale` per device silent for at least ``RuleBook.stale_after(patient)``
  seconds, once per silence; a reading newer than the last one seen re-arms it (a delayed,
  older reading does not: it proves nothing about the device now).
- Thresholds (``low``, ``high``) are passed per reading because they live on chain and may
  change; the rule (counts, hysteresis) is read from the :class:`RuleBook` at every reading.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any, TypeGuard

from vitalchain.errors import VitalchainError
from vitalchain.vitals import Vital

__all__ = [
    "DEFAULT_RULES",
    "Cleared",
    "Raised",
    "RuleBook",
    "RuleEngine",
    "RuleError",
    "Stale",
    "VitalRule",
]

MAX_CONSECUTIVE = 1000
MAX_SECONDS = 86400.0


class RuleError(VitalchainError):
    """A rule or reading refused before anything changed.

    Codes: ``invalid_rule`` (a rule value or field name), ``invalid_reading`` (a non-finite
    value, bound or time, or ``low > high``), ``invalid_time`` (a non-finite ``now``).
    """

    code = "invalid_rule"
    status = 422  # every refusal here is a well-formed request with unusable values


def _is_number(value: object) -> TypeGuard[float]:
    # bool is an int to Python, but True as a count or a duration is always a caller's mistake.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_seconds(name: str, value: object) -> None:
    if not (_is_number(value) and 0 <= value <= MAX_SECONDS):  # NaN fails the comparison
        raise RuleError(f"{name} must be a number of seconds in 0..{MAX_SECONDS:g}, not {value!r}")


@dataclass(frozen=True, slots=True)
class VitalRule:
    """How one vital turns readings into alerts; validated on construction, so never invalid."""

    consecutive: int  # raise after this many consecutive out-of-range readings (>= 1) ...
    sustain_s: float  # ... or once out of range this long (0: count path only), whichever first
    hysteresis: float  # vital's unit; an alert clears only inside [low + h, high - h]
    stale_after_s: float  # device silent this long -> stale-data alarm; 0 disables

    def __post_init__(self) -> None:
        count: object = self.consecutive
        if not (_is_int(count) and 1 <= count <= MAX_CONSECUTIVE):
            raise RuleError(
                f"consecutive must be an integer in 1..{MAX_CONSECUTIVE}, not {count!r}"
            )
        _check_seconds("sustain_s", self.sustain_s)
        _check_seconds("stale_after_s", self.stale_after_s)
        h = self.hysteresis
        if not (_is_number(h) and math.isfinite(h) and h >= 0):
            raise RuleError(f"hysteresis must be a finite number >= 0, not {h!r}")


RULE_FIELDS = frozenset(f.name for f in fields(VitalRule))

# Why these values:
# - SpO2 and heart rate come from optical sensors sampled every few seconds; motion and a
#   slipping probe produce dips and spikes lasting seconds.  Three readings in a row or 30 s
#   filters those while a real desaturation or arrhythmia still alarms within half a minute.
#   h = 1 % / 5 per min stops flapping when a patient hovers at the threshold.
# - Blood pressure is a cuff measurement minutes apart, each one deliberate, so two in a row
#   confirm; 60 s covers a cuff re-measuring at once.  h = 5 mmHg is about the cuff's accuracy.
# - Temperature drifts slowly; two readings or 2 min, and h = 0.2 Cel above sensor noise.
# - Glucose: CGMs report every 5 min, so 300 s means "still out at the next sample";
#   h = 10 mg/dL is in the order of a CGM's error near the thresholds.
# - Stale after 300 s: a streaming wearable silent for 5 min is off, flat or out of range.
#   Patients with spot-check devices (a cuff used twice a day) need a per-patient override,
#   because staleness is judged per device against the patient's smallest setting.
DEFAULT_RULES: Mapping[Vital, VitalRule] = MappingProxyType(
    {
        Vital.SYSTOLIC_BP: VitalRule(2, 60.0, 5.0, 300.0),
        Vital.DIASTOLIC_BP: VitalRule(2, 60.0, 5.0, 300.0),
        Vital.HEART_RATE: VitalRule(3, 30.0, 5.0, 300.0),
        Vital.SPO2: VitalRule(3, 30.0, 1.0, 300.0),
        Vital.BODY_TEMPERATURE: VitalRule(2, 120.0, 0.2, 300.0),
        Vital.GLUCOSE: VitalRule(2, 300.0, 10.0, 300.0),
    }
)


class RuleBook:
    """Defaults per vital, overridable per patient (a clinician tunes one noisy patient)."""

    def __init__(self, defaults: Mapping[Vital, VitalRule] = DEFAULT_RULES) -> None:
        missing = [v.info.short for v in Vital if v not in defaults]
        if missing:
            raise RuleError(f"defaults lack a rule for {', '.join(missing)}")
        for vital in Vital:
            if not isinstance(defaults[vital], VitalRule):
                raise RuleError(f"default for {vital.info.short} is not a VitalRule")
        self._defaults = {vital: defaults[vital] for vital in Vital}  # a copy: ours to keep
        self._overrides: dict[tuple[str, Vital], VitalRule] = {}
        self._lock = threading.Lock()

    def rule(self, patient: str, vital: Vital) -> VitalRule:
        with self._lock:
            return self._overrides.get((patient, vital), self._defaults[vital])

    def set(self, patient: str, vital: Vital, **changes: float | int) -> VitalRule:
        """Change fields of the patient's rule (on top of any earlier override); all or nothing."""
        unknown = sorted(set(changes) - RULE_FIELDS)
        if unknown:
            raise RuleError(f"unknown rule field(s): {', '.join(unknown)}")
        with self._lock:
            current = self._overrides.get((patient, vital), self._defaults[vital])
            values: dict[str, Any] = dict(changes)
            updated = replace(current, **values)  # validates; raises before anything is stored
            self._overrides[(patient, vital)] = updated
            return updated

    def reset(self, patient: str, vital: Vital) -> None:
        """Back to the default for that vital; a no-op without an override."""
        with self._lock:
            self._overrides.pop((patient, vital), None)

    def stale_after(self, patient: str) -> float:
        """The smallest non-zero ``stale_after_s`` of the patient's rules; 0 if all disabled."""
        with self._lock:
            limits = [
                self._overrides.get((patient, vital), self._defaults[vital]).stale_after_s
                for vital in Vital
            ]
        return float(min((s for s in limits if s > 0), default=0.0))


@dataclass(frozen=True, slots=True)
class Raised:
    patient: str
    device: str  # the device whose reading confirmed the episode
    vital: Vital
    direction: int  # -1 low, +1 high
    value: float
    low: float
    high: float
    first_out_at: float
    at: float
    readings_out: int


@dataclass(frozen=True, slots=True)
class Cleared:
    patient: str
    vital: Vital
    at: float
    value: float


@dataclass(frozen=True, slots=True)
class Stale:
    patient: str
    device: str
    last_seen: float
    at: float


@dataclass(slots=True)
class _Episode:
    last_at: float = -math.inf
    raised: int = 0  # direction of the open alert; 0: none (NORMAL or PENDING)
    pending: int = 0  # direction of the out-of-range run being counted; 0: none
    count: int = 0
    first_out_at: float = 0.0


def _direction(value: float, low: float, high: float) -> int:
    if value < low:
        return -1
    if value > high:
        return 1
    return 0


def _in_band(value: float, low: float, high: float, hysteresis: float) -> bool:
    # Clamping both edges at the midpoint is h clamped to (high - low) / 2, and keeps the band
    # non-empty even where rounding would put low + h a hair above high - h.
    middle = low + (high - low) / 2
    return min(low + hysteresis, middle) <= value <= max(high - hysteresis, middle)


class RuleEngine:
    """Applies a :class:`RuleBook` to a stream of readings; see the module docstring."""

    def __init__(self, rules: RuleBook) -> None:
        self._rules = rules
        self._episodes: dict[tuple[str, Vital], _Episode] = {}
        self._last_seen: dict[tuple[str, str], float] = {}
        self._stale_reported: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def observe(
        self,
        patient: str,
        device: str,
        vital: Vital,
        value: float,
        low: float,
        high: float,
        at: float,
    ) -> Raised | Cleared | None:
        # NaN compares false with everything, so it would read as "in range" and clear alerts.
        if not all(math.isfinite(x) for x in (value, low, high, at)):
            raise RuleError("value, low, high and at must be finite", code="invalid_reading")
        if low > high:
            raise RuleError(f"low {low} is above high {high}", code="invalid_reading")
        rule = self._rules.rule(patient, vital)
        with self._lock:
            self._seen(patient, device, at)
            episode = self._episodes.setdefault((patient, vital), _Episode())
            if at < episode.last_at:
                return None
            episode.last_at = at
            direction = _direction(value, low, high)
            if direction == 0:
                episode.pending = episode.count = 0
                if episode.raised and _in_band(value, low, high, rule.hysteresis):
                    episode.raised = 0
                    return Cleared(patient, vital, at, value)
                return None
            if direction == episode.raised:
                episode.pending = episode.count = 0  # an opposite-direction run is broken
                return None
            if direction != episode.pending:
                episode.pending, episode.count, episode.first_out_at = direction, 0, at
            episode.count += 1
            sustained = rule.sustain_s > 0 and at - episode.first_out_at >= rule.sustain_s
            if episode.count < rule.consecutive and not sustained:
                return None
            raised = Raised(
                patient=patient,
                device=device,
                vital=vital,
                direction=direction,
                value=value,
                low=low,
                high=high,
                first_out_at=episode.first_out_at,
                at=at,
                readings_out=episode.count,
            )
            episode.raised, episode.pending, episode.count = direction, 0, 0
            return raised

    def check_stale(self, now: float) -> list[Stale]:
        """Devices newly silent for their patient's ``stale_after``; each once per silence."""
        if not math.isfinite(now):
            raise RuleError("now must be finite", code="invalid_time")
        limits: dict[str, float] = {}
        found: list[Stale] = []
        with self._lock:
            for key, last_seen in self._last_seen.items():
                if key in self._stale_reported:
                    continue
                patient, device = key
                if patient not in limits:
                    limits[patient] = self._rules.stale_after(patient)
                limit = limits[patient]
                if limit > 0 and now - last_seen >= limit:
                    self._stale_reported.add(key)
                    found.append(Stale(patient, device, last_seen, now))
        return found

    def _seen(self, patient: str, device: str, at: float) -> None:
        key = (patient, device)
        previous = self._last_seen.get(key)
        if previous is None or at > previous:
            self._last_seen[key] = at
            self._stale_reported.discard(key)
