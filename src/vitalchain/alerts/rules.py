"""Alert rules: when an out-of-range vital becomes an alert, at which priority, when it clears.

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
- Priority (IEC 60601-1-8 high / medium / low): a confirmed excursion is ``rule.priority``,
  or HIGH when the confirming reading is beyond the rule's urgent limit (``value <
  urgent_low`` for a low, ``value > urgent_high`` for a high).  An episode already ALERTING
  below HIGH that then stays beyond the urgent limit, confirmed the same way (``consecutive``
  urgent readings in a row or ``sustain_s``), returns ONE upgraded :class:`Raised` (HIGH,
  ``upgraded=True``) that supersedes the open alert; a priority never goes down inside an
  episode, because a patient who was urgent a minute ago is not safe yet.
- One in-range reading while PENDING returns to NORMAL with no event, so a single noisy spike
  raises nothing.  An out-of-range reading in the other direction restarts the count there.
- While ALERTING, further readings in the alert's direction return ``None`` (apart from the
  one upgrade): one alert per episode.  :class:`Cleared` is returned only for a reading inside
  the hysteresis band ``[low + h, high - h]``; ``h`` is clamped to ``(high - low) / 2``, so a
  too-wide ``h`` means "clear at the midpoint" rather than "never clear".
- An out-of-range reading in the *other* direction while ALERTING starts a new PENDING episode
  in that direction; no event is returned and the open alert stays open.  If that episode
  raises, the new :class:`Raised` supersedes the old alert (no :class:`Cleared` in between); if
  instead a reading comes back inside the band first, the old alert clears as usual.
- A reading whose ``at`` is older than the last one seen for that (patient, vital) is ignored
  (``None``), so out-of-order delivery cannot flip state.  Equal timestamps are processed.
- Stale data is a technical alarm at two levels, judged per device: ``check_stale(now)``
  returns a :class:`Stale` ``warning`` (LOW) for a device silent ``stale_warning_s`` and an
  ``urgent`` one (MEDIUM) once silent ``stale_urgent_s`` (Nightscout's 15 / 30 min), each
  level once per silence; a check that finds a device already past both reports ``urgent``
  only.  The limits are the patient's smallest non-zero setting over the rules of the vitals
  that device reports (0 disables a level), so a spot-check cuff can be given hours without
  loosening the oximeter's minutes.  A reading newer than the last one seen re-arms both (a
  delayed, older reading does not: it proves nothing about the device now).
- Thresholds (``low``, ``high``) are passed per reading because they live on chain and may
  change; the rule (counts, hysteresis, priority) is read from the :class:`RuleBook` at every
  reading.

Durable state: everything the engine knows is an :class:`EpisodeState` per (patient, vital)
and a :class:`DeviceSeen` per (patient, device), frozen records of plain fields.  Every change
is reported to the :class:`RuleSink` (under the engine's lock, before the event is returned,
and before memory changes: a sink that raises leaves the engine as it was), and
``RuleEngine(book, episodes=..., devices=...)`` continues exactly where those records left off,
so a store that keeps the latest record of each key can rebuild the engine after kill -9.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, fields, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeGuard

from vitalchain.edge.codes import status_for
from vitalchain.errors import VitalchainError
from vitalchain.vitals import Vital

__all__ = [
    "DEFAULT_POLICIES",
    "DEFAULT_RULES",
    "Cleared",
    "DeviceSeen",
    "EpisodeState",
    "Priority",
    "PriorityPolicy",
    "Raised",
    "RuleBook",
    "RuleEngine",
    "RuleError",
    "RuleSink",
    "Stale",
    "StaleLevel",
    "VitalRule",
]

MAX_CONSECUTIVE = 1000
MAX_SECONDS = 86400.0


class RuleError(VitalchainError):
    """A rule, policy, reading or stored record refused before anything changed.

    Codes: ``invalid_rule`` (a rule value or field name), ``invalid_policy`` (a priority
    policy), ``invalid_reading`` (a non-finite value, bound or time, or ``low > high``),
    ``invalid_time`` (a non-finite ``now``), ``invalid_state`` (a record given to restore an
    engine is not one this engine could have written).
    """

    code = "invalid_rule"

    @property
    def status(self) -> int:
        """The edge's table's: 422 (a well-formed request with unusable values) for all but
        ``invalid_state``, a stored record the server could not have written (500)."""
        return status_for(self.code) or 500


class Priority(StrEnum):
    """IEC 60601-1-8 alarm priorities: high needs an immediate response, medium a prompt one."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def rank(self) -> int:
        """3 for high, 2 medium, 1 low: ``a.rank > b.rank`` means ``a`` is more urgent."""
        return _RANK[self]

    @classmethod
    def parse(cls, value: object) -> Priority:
        """A Priority from itself or its name ("high"); anything else is ``ValueError``."""
        if isinstance(value, Priority):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        raise ValueError(f"priority must be one of high, medium, low, not {value!r}")


_RANK = {Priority.HIGH: 3, Priority.MEDIUM: 2, Priority.LOW: 1}

StaleLevel = Literal["warning", "urgent"]
_STALE_RANK: dict[str | None, int] = {None: 0, "warning": 1, "urgent": 2}
STALE_PRIORITY: Mapping[str, Priority] = MappingProxyType(
    {"warning": Priority.LOW, "urgent": Priority.MEDIUM}
)


def _is_number(value: object) -> TypeGuard[float]:
    # bool is an int to Python, but True as a count or a duration is always a caller's mistake.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_seconds(name: str, value: object, code: str = "invalid_rule") -> None:
    if not (_is_number(value) and 0 <= value <= MAX_SECONDS):  # NaN fails the comparison
        raise RuleError(
            f"{name} must be a number of seconds in 0..{MAX_SECONDS:g}, not {value!r}", code=code
        )


@dataclass(frozen=True, slots=True)
class PriorityPolicy:
    """What a priority means to the people paged: escalation, snooze choices, repeats."""

    escalate_after_s: float  # unacknowledged this long -> next tier
    snooze_choices_s: tuple[float, ...]  # the only durations a snooze may take (Nightscout)
    repeat_every_s: float  # > 0: re-notify until acknowledged (Dexcom urgent low); 0: never

    def __post_init__(self) -> None:
        after = self.escalate_after_s
        if not (_is_number(after) and 0 < after <= MAX_SECONDS):
            raise RuleError(
                f"escalate_after_s must be in (0, {MAX_SECONDS:g}], not {after!r}",
                code="invalid_policy",
            )
        choices: object = self.snooze_choices_s
        if not (
            isinstance(choices, tuple)
            and choices
            and all(_is_number(c) and 0 < c <= MAX_SECONDS for c in choices)
            and list(choices) == sorted(set(choices))
        ):
            raise RuleError(
                "snooze_choices_s must be a non-empty, strictly increasing tuple of seconds"
                f" in (0, {MAX_SECONDS:g}], not {choices!r}",
                code="invalid_policy",
            )
        _check_seconds("repeat_every_s", self.repeat_every_s, "invalid_policy")

    @property
    def max_snooze_s(self) -> float:
        return float(self.snooze_choices_s[-1])


# Why these values (docs/alarms.md has the table and the sources):
# - Escalation: HIGH needs an immediate response (IEC 60601-1-8), so the next tier is paged
#   after 1 min; MEDIUM a prompt one (5 min); LOW awareness (15 min).
# - Snooze choices: a fixed list per level, as Nightscout offers; a HIGH alarm can be snoozed
#   15 min at most and repeats every minute until acknowledged (Dexcom's urgent low cannot be
#   turned off and repeats until confirmed).
DEFAULT_POLICIES: Mapping[Priority, PriorityPolicy] = MappingProxyType(
    {
        Priority.HIGH: PriorityPolicy(60.0, (300.0, 600.0, 900.0), 60.0),
        Priority.MEDIUM: PriorityPolicy(300.0, (900.0, 1800.0, 3600.0), 0.0),
        Priority.LOW: PriorityPolicy(900.0, (1800.0, 3600.0, 7200.0), 0.0),
    }
)


def _optional_limit(name: str, value: object) -> None:
    if value is not None and not (_is_number(value) and math.isfinite(value)):
        raise RuleError(f"{name} must be a finite number or None, not {value!r}")


@dataclass(frozen=True, slots=True)
class VitalRule:
    """How one vital turns readings into alerts; validated on construction, so never invalid."""

    consecutive: int  # raise after this many consecutive out-of-range readings (>= 1) ...
    sustain_s: float  # ... or once out of range this long (0: count path only), whichever first
    hysteresis: float  # vital's unit; an alert clears only inside [low + h, high - h]
    _: KW_ONLY
    priority: Priority = Priority.MEDIUM  # of a confirmed excursion of the on-chain band
    urgent_low: float | None = None  # confirmed with a value below this: HIGH
    urgent_high: float | None = None  # confirmed with a value above this: HIGH
    stale_warning_s: float = 900.0  # a device silent this long: stale warning (LOW); 0: off
    stale_urgent_s: float = 1800.0  # ... this long: stale urgent (MEDIUM); 0: off

    def __post_init__(self) -> None:
        count: object = self.consecutive
        if not (_is_int(count) and 1 <= count <= MAX_CONSECUTIVE):
            raise RuleError(
                f"consecutive must be an integer in 1..{MAX_CONSECUTIVE}, not {count!r}"
            )
        _check_seconds("sustain_s", self.sustain_s)
        h = self.hysteresis
        if not (_is_number(h) and math.isfinite(h) and h >= 0):
            raise RuleError(f"hysteresis must be a finite number >= 0, not {h!r}")
        try:
            object.__setattr__(self, "priority", Priority.parse(self.priority))
        except ValueError as exc:
            raise RuleError(str(exc)) from None
        _optional_limit("urgent_low", self.urgent_low)
        _optional_limit("urgent_high", self.urgent_high)
        if (
            self.urgent_low is not None
            and self.urgent_high is not None
            and self.urgent_low >= self.urgent_high
        ):
            raise RuleError(
                f"urgent_low {self.urgent_low} must be below urgent_high {self.urgent_high}"
            )
        _check_seconds("stale_warning_s", self.stale_warning_s)
        _check_seconds("stale_urgent_s", self.stale_urgent_s)
        if 0 < self.stale_urgent_s <= self.stale_warning_s:
            raise RuleError(
                f"stale_warning_s {self.stale_warning_s:g} must be below stale_urgent_s"
                f" {self.stale_urgent_s:g} (or either 0 to disable that level)"
            )

    def confirmed(self, count: int, first_at: float, at: float) -> bool:
        """Whether a run of ``count`` readings since ``first_at`` confirms an alarm condition:
        M readings in a row (``consecutive``) or out for N seconds (``sustain_s``), whichever
        first; the one rule for a raise and for an upgrade."""
        return count >= self.consecutive or (self.sustain_s > 0 and at - first_at >= self.sustain_s)

    def urgent(self, direction: int, value: float) -> bool:
        """Whether ``value`` (out of range in ``direction``) is beyond this rule's urgent limit."""
        if direction < 0:
            return self.urgent_low is not None and value < self.urgent_low
        return self.urgent_high is not None and value > self.urgent_high


RULE_FIELDS = frozenset(f.name for f in fields(VitalRule) if f.name != "_")

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
# - Capillary glucose is a fingerstick, deliberate and hours apart: one reading confirms; the
#   urgent limits are those of glucose.
# - Respiratory rate: a patch's per-minute estimate; three in a row or 60 s, h = 2 /min.  Urgent
#   at <= 8 or >= 25 /min (NEWS2 "red"; the default band 9..20 is where NEWS2 scores below 2).
# - Priorities and urgent limits: SpO2 < 85 % (issue 13), heart rate < 40 or > 130 /min and
#   systolic < 90 mmHg (the NEWS2 single-parameter "red" scores), a hypertensive crisis
#   > 180 / > 120 mmHg (AHA), glucose < 55 mg/dL (Dexcom urgent low) or > 260 mg/dL
#   (Nightscout's urgent high), temperature < 35 Cel (hypothermia) or > 40 Cel.  Temperature
#   inside those is LOW: it drifts over hours.  Configurable defaults, not medical advice.
# - Stale after 15 min (warning) and 30 min (urgent), Nightscout's stale-data alarms.  Patients
#   with spot-check devices (a cuff used twice a day) need a per-patient override.
DEFAULT_RULES: Mapping[Vital, VitalRule] = MappingProxyType(
    {
        Vital.SYSTOLIC_BP: VitalRule(2, 60.0, 5.0, urgent_low=90.0, urgent_high=180.0),
        Vital.DIASTOLIC_BP: VitalRule(2, 60.0, 5.0, urgent_high=120.0),
        Vital.HEART_RATE: VitalRule(3, 30.0, 5.0, urgent_low=40.0, urgent_high=130.0),
        Vital.SPO2: VitalRule(3, 30.0, 1.0, urgent_low=85.0),
        Vital.BODY_TEMPERATURE: VitalRule(
            2, 120.0, 0.2, priority=Priority.LOW, urgent_low=35.0, urgent_high=40.0
        ),
        Vital.GLUCOSE: VitalRule(2, 300.0, 10.0, urgent_low=55.0, urgent_high=260.0),
        Vital.RESPIRATORY_RATE: VitalRule(3, 60.0, 2.0, urgent_low=9.0, urgent_high=24.0),
        Vital.CAPILLARY_GLUCOSE: VitalRule(1, 0.0, 10.0, urgent_low=55.0, urgent_high=260.0),
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

    def set(self, patient: str, vital: Vital, **changes: object) -> VitalRule:
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

    def stale_limits(
        self, patient: str, vitals: Iterable[Vital] | None = None
    ) -> tuple[float, float]:
        """(warning, urgent) for a device reporting ``vitals`` (default: every vital).

        Each is the smallest non-zero setting over the patient's rules for those vitals; 0
        means that level is off.  The smallest wins because a device is judged as a whole: its
        most closely watched vital sets the pace.  Judging by the device's own vitals lets a
        twice-a-day cuff have a long limit without loosening the oximeter's.
        """
        chosen = list(Vital) if vitals is None else list(vitals)
        with self._lock:
            rules = [self._overrides.get((patient, v), self._defaults[v]) for v in chosen]
        warning = min((r.stale_warning_s for r in rules if r.stale_warning_s > 0), default=0.0)
        urgent = min((r.stale_urgent_s for r in rules if r.stale_urgent_s > 0), default=0.0)
        return float(warning), float(urgent)


@dataclass(frozen=True, slots=True)
class Raised:
    patient: str
    device: str  # the device whose reading confirmed the episode
    vital: Vital
    direction: int  # -1 low, +1 high
    value: float
    low: float
    high: float
    first_out_at: float  # start of the confirming run (the urgent run for an upgrade)
    at: float
    readings_out: int  # length of the confirming run
    priority: Priority = Priority.MEDIUM
    upgraded: bool = False  # True: supersedes this episode's open alert at a higher priority


@dataclass(frozen=True, slots=True)
class Cleared:
    patient: str
    vital: Vital
    at: float
    value: float


@dataclass(frozen=True, slots=True)
class Stale:
    """A technical alarm: the device sent nothing newer than ``last_seen`` until ``at``."""

    patient: str
    device: str
    last_seen: float
    at: float
    level: StaleLevel = "warning"
    priority: Priority = Priority.LOW  # warning LOW, urgent MEDIUM


@dataclass(frozen=True, slots=True)
class EpisodeState:
    """Everything the engine knows of one (patient, vital); plain fields, for a store."""

    patient: str
    vital: Vital  # an IntEnum: stored as its int
    last_at: float  # newest reading processed; older ones are ignored
    raised: int = 0  # direction of the open alert; 0: none (NORMAL or PENDING)
    priority: Priority | None = None  # of the open alert; None without one
    pending: int = 0  # direction of the out-of-range run being counted; 0: none
    count: int = 0  # readings in that run
    first_out_at: float = 0.0  # first reading of that run
    urgent_count: int = 0  # ALERTING below HIGH: readings in a row beyond the urgent limit
    urgent_first_at: float = 0.0  # first of those


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    """One (patient, device)'s newest reading, its vitals, the stale level already reported."""

    patient: str
    device: str
    last_seen: float
    stale_level: StaleLevel | None = None  # reported during the current silence; None: none
    vitals: int = 0  # bitmask (Vital.bit) of the vitals seen from it; 0: judged by all rules


class RuleSink(Protocol):
    """Where the engine reports each changed record (the alarm store implements it)."""

    def episode_changed(self, state: EpisodeState) -> None: ...

    def device_seen(self, seen: DeviceSeen) -> None: ...


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


def _restored_episode(state: object) -> EpisodeState:
    if not isinstance(state, EpisodeState):
        raise RuleError(f"not an EpisodeState: {state!r}", code="invalid_state")
    try:
        vital = Vital(state.vital)
        priority = None if state.priority is None else Priority.parse(state.priority)
    except ValueError as exc:
        raise RuleError(f"episode record: {exc}", code="invalid_state") from None
    numbers = (state.last_at, state.first_out_at, state.urgent_first_at)
    directions = (state.raised, state.pending)
    if not (
        all(_is_number(x) and math.isfinite(x) for x in numbers)
        and all(d in (-1, 0, 1) for d in directions)
        and _is_int(state.count)
        and _is_int(state.urgent_count)
        and state.count >= 0
        and state.urgent_count >= 0
        and (priority is None) == (state.raised == 0)
    ):
        raise RuleError(f"inconsistent episode record {state!r}", code="invalid_state")
    return replace(state, vital=vital, priority=priority)


def _restored_device(seen: object) -> DeviceSeen:
    if not (
        isinstance(seen, DeviceSeen)
        and _is_int(seen.vitals)
        and 0 <= seen.vitals < 1 << (max(Vital) + 1)
        and _is_number(seen.last_seen)
        and math.isfinite(seen.last_seen)
        and seen.stale_level in _STALE_RANK
    ):
        raise RuleError(f"inconsistent device record {seen!r}", code="invalid_state")
    return seen


class RuleEngine:
    """Applies a :class:`RuleBook` to a stream of readings; see the module docstring."""

    def __init__(
        self,
        rules: RuleBook,
        *,
        sink: RuleSink | None = None,
        episodes: Iterable[EpisodeState] = (),
        devices: Iterable[DeviceSeen] = (),
    ) -> None:
        self._rules = rules
        self._sink = sink
        self._episodes: dict[tuple[str, Vital], EpisodeState] = {}
        self._devices: dict[tuple[str, str], DeviceSeen] = {}
        for episode in episodes:
            restored = _restored_episode(episode)
            self._episodes[(restored.patient, restored.vital)] = restored
        for seen in devices:
            device = _restored_device(seen)
            self._devices[(device.patient, device.device)] = device
        self._lock = threading.Lock()

    def snapshot(self) -> tuple[tuple[EpisodeState, ...], tuple[DeviceSeen, ...]]:
        """Every record the engine holds; ``RuleEngine(book, episodes=, devices=)`` resumes it."""
        with self._lock:
            return tuple(self._episodes.values()), tuple(self._devices.values())

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
            seen_key = (patient, device)
            seen = self._devices.get(seen_key)
            new_seen = seen
            if seen is None:
                new_seen = DeviceSeen(patient, device, at, vitals=vital.bit)
            elif at > seen.last_seen:
                new_seen = DeviceSeen(patient, device, at, vitals=seen.vitals | vital.bit)
            elif not seen.vitals & vital.bit:  # older, yet news about what the device reports
                new_seen = replace(seen, vitals=seen.vitals | vital.bit)
            key = (patient, vital)
            episode = self._episodes.get(key)
            new_episode, event = episode, None
            if episode is None or at >= episode.last_at:
                new_episode, event = self._step(
                    rule, episode or EpisodeState(patient, vital, at), device, value, low, high, at
                )
            if self._sink is not None:  # the store first: if it fails, nothing changed here
                if new_seen is not seen and new_seen is not None:
                    self._sink.device_seen(new_seen)
                if new_episode != episode and new_episode is not None:
                    self._sink.episode_changed(new_episode)
            if new_seen is not None:
                self._devices[seen_key] = new_seen
            if new_episode is not None:
                self._episodes[key] = new_episode
            return event

    @staticmethod
    def _step(
        rule: VitalRule,
        ep: EpisodeState,
        device: str,
        value: float,
        low: float,
        high: float,
        at: float,
    ) -> tuple[EpisodeState, Raised | Cleared | None]:
        ep = replace(ep, last_at=at)
        direction = _direction(value, low, high)
        patient, vital = ep.patient, ep.vital  # fixed for the episode

        def raised(first: float, count: int, priority: Priority, upgraded: bool = False) -> Raised:
            """The alert of this reading, confirmed by a run of ``count`` from ``first``."""
            return Raised(
                patient=patient,
                device=device,
                vital=vital,
                direction=direction,
                value=value,
                low=low,
                high=high,
                first_out_at=first,
                at=at,
                readings_out=count,
                priority=priority,
                upgraded=upgraded,
            )

        if direction == 0:
            ep = replace(ep, pending=0, count=0, urgent_count=0)
            if ep.raised and _in_band(value, low, high, rule.hysteresis):
                return replace(ep, raised=0, priority=None), Cleared(
                    ep.patient, ep.vital, at, value
                )
            return ep, None
        if direction == ep.raised:
            ep = replace(ep, pending=0, count=0)  # an opposite-direction run is broken
            if ep.priority is Priority.HIGH or not rule.urgent(direction, value):
                return replace(ep, urgent_count=0), None
            first = at if ep.urgent_count == 0 else ep.urgent_first_at
            count = ep.urgent_count + 1
            if not rule.confirmed(count, first, at):
                return replace(ep, urgent_count=count, urgent_first_at=first), None
            upgraded = raised(first, count, Priority.HIGH, upgraded=True)
            return replace(
                ep, priority=Priority.HIGH, urgent_count=0, urgent_first_at=0.0
            ), upgraded
        if direction != ep.pending:
            ep = replace(ep, pending=direction, count=0, first_out_at=at)
        ep = replace(ep, count=ep.count + 1, urgent_count=0)
        if not rule.confirmed(ep.count, ep.first_out_at, at):
            return ep, None
        priority = Priority.HIGH if rule.urgent(direction, value) else rule.priority
        event = raised(ep.first_out_at, ep.count, priority)
        ep = replace(ep, raised=direction, priority=priority, pending=0, count=0, first_out_at=0.0)
        return ep, event

    def check_stale(self, now: float) -> list[Stale]:
        """Devices newly past a stale level of their patient's limits; each once per silence."""
        if not math.isfinite(now):
            raise RuleError("now must be finite", code="invalid_time")
        limits: dict[tuple[str, int], tuple[float, float]] = {}
        changed: list[DeviceSeen] = []
        found: list[Stale] = []
        with self._lock:
            for seen in self._devices.values():
                if seen.stale_level == "urgent":
                    continue
                key = (seen.patient, seen.vitals)
                if key not in limits:
                    vitals = [v for v in Vital if seen.vitals & v.bit] or None
                    limits[key] = self._rules.stale_limits(seen.patient, vitals)
                warning, urgent = limits[key]
                silent = now - seen.last_seen
                level: StaleLevel | None = None
                if urgent > 0 and silent >= urgent:
                    level = "urgent"
                elif warning > 0 and silent >= warning:
                    level = "warning"
                if level is None or _STALE_RANK[level] <= _STALE_RANK[seen.stale_level]:
                    continue
                changed.append(replace(seen, stale_level=level))
                found.append(
                    Stale(
                        seen.patient, seen.device, seen.last_seen, now, level, STALE_PRIORITY[level]
                    )
                )
            if self._sink is not None:
                for record in changed:
                    self._sink.device_seen(record)
            for record in changed:
                self._devices[(record.patient, record.device)] = record
        return found
