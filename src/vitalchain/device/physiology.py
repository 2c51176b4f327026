"""Physiology for the device simulator: realistic, seedable vital-sign streams.

A reading is a deterministic mean (patient baseline, circadian rhythm, meals, abnormal episodes
and the physiology that couples them) plus Ornstein-Uhlenbeck noise, so a noisy excursion lasts
minutes rather than one sample, as in real monitoring data.  Rare single-sample artefacts (motion
on the oximeter or cuff, a dislodged probe, a CGM compression low) are the spikes an alert rule
must ride out.  Values are rounded to what the instrument displays and clamped into
``Vital.info.plausible``, so every reading is one the gateway accepts.

Time: ``t_s`` is seconds since the generator's start; ``start_s`` is the wall-clock time of that
start (seconds since midnight, or a Unix timestamp read as UTC) and only sets the circadian phase.
Episodes are placed in ``t_s`` time.
"""

from __future__ import annotations

import math
import secrets
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from random import Random
from types import MappingProxyType

from vitalchain.vitals import Vital

__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEVICE_VITALS",
    "TYPICAL_BASELINES",
    "DeviceKind",
    "Episode",
    "EpisodeKind",
    "PatientProfile",
    "VitalsGenerator",
    "random_episodes",
]

_SYS = Vital.SYSTOLIC_BP
_DIA = Vital.DIASTOLIC_BP
_HR = Vital.HEART_RATE
_SPO2 = Vital.SPO2
_TEMP = Vital.BODY_TEMPERATURE
_GLU = Vital.GLUCOSE

_DAY_S = 86_400.0
_HOUR_S = 3_600.0
_TWO_PI = 2.0 * math.pi

TYPICAL_BASELINES: Mapping[Vital, float] = MappingProxyType(
    {_SYS: 124.0, _DIA: 79.0, _HR: 72.0, _SPO2: 97.0, _TEMP: 36.8, _GLU: 105.0}
)


class EpisodeKind(StrEnum):
    HYPERTENSIVE_CRISIS = "hypertensive_crisis"
    HYPOTENSION = "hypotension"
    TACHYCARDIA = "tachycardia"
    BRADYCARDIA = "bradycardia"
    DESATURATION = "desaturation"
    FEVER = "fever"
    HYPOTHERMIA = "hypothermia"
    HYPOGLYCEMIA = "hypoglycemia"
    HYPERGLYCEMIA = "hyperglycemia"


_K = EpisodeKind

# Where each episode drives its vitals at severity 1 (absolute values, whatever the baseline).
_TARGETS: Mapping[EpisodeKind, Mapping[Vital, float]] = MappingProxyType(
    {
        _K.HYPERTENSIVE_CRISIS: {_SYS: 185.0, _DIA: 115.0},
        _K.HYPOTENSION: {_SYS: 76.0, _DIA: 46.0},
        _K.TACHYCARDIA: {_HR: 135.0},
        _K.BRADYCARDIA: {_HR: 40.0},
        _K.DESATURATION: {_SPO2: 85.0},
        _K.FEVER: {_TEMP: 39.3},
        _K.HYPOTHERMIA: {_TEMP: 34.0},
        _K.HYPOGLYCEMIA: {_GLU: 55.0},
        _K.HYPERGLYCEMIA: {_GLU: 300.0},
    }
)

# Onset (and recovery) time; capped at a fifth of the episode so short ones still plateau.
_RAMP_S: Mapping[EpisodeKind, float] = MappingProxyType(
    {
        _K.HYPERTENSIVE_CRISIS: 300.0,
        _K.HYPOTENSION: 180.0,
        _K.TACHYCARDIA: 90.0,
        _K.BRADYCARDIA: 90.0,
        _K.DESATURATION: 60.0,
        _K.FEVER: 1200.0,
        _K.HYPOTHERMIA: 900.0,
        _K.HYPOGLYCEMIA: 600.0,
        _K.HYPERGLYCEMIA: 1200.0,
    }
)

# Typical durations, for random_episodes.
_DURATION_S: Mapping[EpisodeKind, tuple[float, float]] = MappingProxyType(
    {
        _K.HYPERTENSIVE_CRISIS: (20 * 60.0, 90 * 60.0),
        _K.HYPOTENSION: (10 * 60.0, 45 * 60.0),
        _K.TACHYCARDIA: (5 * 60.0, 30 * 60.0),
        _K.BRADYCARDIA: (5 * 60.0, 30 * 60.0),
        _K.DESATURATION: (2 * 60.0, 15 * 60.0),
        _K.FEVER: (2 * _HOUR_S, 8 * _HOUR_S),
        _K.HYPOTHERMIA: (1 * _HOUR_S, 3 * _HOUR_S),
        _K.HYPOGLYCEMIA: (20 * 60.0, 60 * 60.0),
        _K.HYPERGLYCEMIA: (1 * _HOUR_S, 4 * _HOUR_S),
    }
)


@dataclass(frozen=True)
class Episode:
    """An abnormal excursion; severity 0..2 scales how far it goes (1 = textbook values)."""

    kind: EpisodeKind
    start_s: float
    duration_s: float
    severity: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", EpisodeKind(self.kind))
        if not (math.isfinite(self.start_s) and math.isfinite(self.duration_s)):
            raise ValueError("episode start and duration must be finite")
        if self.duration_s <= 0:
            raise ValueError("episode duration must be positive")
        if not 0.0 <= self.severity <= 2.0:
            raise ValueError("episode severity must be within 0..2")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class PatientProfile:
    """Per-patient means; glucose is the fasting level (meals add to it).

    Vitals left out take ``TYPICAL_BASELINES``, so a profile can override just one.
    """

    baselines: Mapping[Vital, float]

    def __post_init__(self) -> None:
        merged = dict(TYPICAL_BASELINES)
        merged.update({Vital(v): float(x) for v, x in self.baselines.items()})
        for vital, value in merged.items():
            lo, hi = vital.info.plausible
            if not lo <= value <= hi:
                raise ValueError(f"{vital.info.short} baseline {value} outside {lo}..{hi}")
        if merged[_SYS] <= merged[_DIA] + 10:
            raise ValueError("systolic baseline must exceed diastolic by more than 10 mmHg")
        object.__setattr__(self, "baselines", MappingProxyType(merged))

    @classmethod
    def typical(cls) -> PatientProfile:
        return cls(TYPICAL_BASELINES)

    @classmethod
    def random(cls, rng: Random) -> PatientProfile:
        """A plausible adult: ~20 % with high-normal BP, ~20 % with diabetic-range fasting glucose.

        Ranges leave room for the night-time dip and the noise, so most patients stay in the
        default alert thresholds and only the hypertensive or diabetic ones brush against them.
        """
        if rng.random() < 0.2:
            systolic = _clip(rng.gauss(131.0, 3.0), 128.0, 135.0)
        else:
            systolic = _clip(rng.gauss(118.0, 5.0), 110.0, 126.0)
        diastolic = _clip(0.5 * systolic + rng.gauss(17.0, 2.5), 72.0, 84.0)
        if rng.random() < 0.2:
            glucose = _clip(rng.gauss(128.0, 7.0), 118.0, 140.0)
        else:
            glucose = _clip(rng.gauss(97.0, 6.0), 85.0, 110.0)
        return cls(
            {
                _SYS: round(systolic),
                _DIA: round(diastolic),
                _HR: round(_clip(rng.gauss(74.0, 6.0), 65.0, 90.0)),
                _SPO2: round(_clip(rng.gauss(97.3, 0.7), 95.5, 99.0), 1),
                _TEMP: round(_clip(rng.gauss(36.8, 0.15), 36.4, 37.2), 1),
                _GLU: round(glucose),
            }
        )


class DeviceKind(StrEnum):
    BP_CUFF = "bp_cuff"
    PULSE_OXIMETER = "pulse_oximeter"
    THERMOMETER = "thermometer"
    GLUCOMETER = "glucometer"
    MULTI = "multi"  # a wearable patch reporting all six


DEVICE_VITALS: Mapping[DeviceKind, tuple[Vital, ...]] = MappingProxyType(
    {
        DeviceKind.BP_CUFF: (_SYS, _DIA),
        DeviceKind.PULSE_OXIMETER: (_SPO2, _HR),
        DeviceKind.THERMOMETER: (_TEMP,),
        DeviceKind.GLUCOMETER: (_GLU,),
        # The six it simulates: respiratory rate and capillary glucose have no physiology here.
        DeviceKind.MULTI: (_SYS, _DIA, _HR, _SPO2, _TEMP, _GLU),
    }
)

# Real-world cadence: home cuff every 15 min, oximeter every few seconds, temperature patch each
# minute, CGM every 5 min.  The simulator may compress time; the physiology is in seconds.
DEFAULT_INTERVAL_S: Mapping[DeviceKind, float] = MappingProxyType(
    {
        DeviceKind.BP_CUFF: 900.0,
        DeviceKind.PULSE_OXIMETER: 4.0,
        DeviceKind.THERMOMETER: 60.0,
        DeviceKind.GLUCOMETER: 300.0,
        DeviceKind.MULTI: 60.0,
    }
)

# --- circadian rhythm and meals -------------------------------------------------------------

_BEDTIME_H = 23.0
_WAKE_H = 6.5
_SLEEP_EDGE_H = 0.25  # logistic width of falling asleep / waking
_SLEEP_FRACTION = (24.0 - _BEDTIME_H + _WAKE_H) / 24.0
# Night-time dip (day minus night); subtracted around the daily mean so baselines stay 24 h means.
_SLEEP_DIP: Mapping[Vital, float] = MappingProxyType({_SYS: 15.0, _DIA: 8.0, _HR: 12.0, _SPO2: 0.8})
_TEMP_AMPLITUDE = 0.3  # °C; core temperature peaks late afternoon, bottoms out before dawn
_TEMP_PEAK_H = 17.0
_MEALS_H = (7.5, 12.75, 19.0)
_MEAL_JITTER_H = 0.33
_MEAL_PEAK_S = 50 * 60.0  # post-prandial glucose peaks ~50 min after eating
_MEAL_SPAN_S = 6 * _HOUR_S


def _asleep(tod_h: float) -> float:
    """Smooth 0..1 sleep indicator; measured from noon so it is continuous across midnight."""
    x = (tod_h - 12.0) % 24.0
    bed = _BEDTIME_H - 12.0
    wake = _WAKE_H + 12.0
    return 1.0 / (1.0 + math.exp((bed - x) / _SLEEP_EDGE_H)) - 1.0 / (
        1.0 + math.exp((wake - x) / _SLEEP_EDGE_H)
    )


# --- noise and measurement channels ---------------------------------------------------------


class _OU:
    """Exact Ornstein-Uhlenbeck step, so noise statistics don't depend on the sampling cadence."""

    __slots__ = ("_a", "_b", "_dt", "sd", "tau", "x")

    def __init__(self, sd: float, tau_s: float, rng: Random) -> None:
        self.sd = sd
        self.tau = tau_s
        self.x = rng.gauss(0.0, sd)  # start in the stationary distribution
        self._dt = -1.0
        self._a = 1.0
        self._b = 0.0

    def step(self, dt: float, z: float) -> float:
        if dt != self._dt:
            a = math.exp(-dt / self.tau)
            self._a = a
            self._b = self.sd * math.sqrt(1.0 - a * a)
            self._dt = dt
        self.x = self._a * self.x + self._b * z
        return self.x


@dataclass(frozen=True, slots=True)
class _Channel:
    vital: Vital
    loadings: tuple[tuple[int, float], ...]  # (process index, weight)
    meas_sd: float  # white instrument noise
    artefact: tuple[float, float]  # shift range of a single-sample artefact
    relative: bool = False  # noise scales with the level (glucose variability is proportional)


@dataclass(frozen=True, slots=True)
class _GroupSpec:
    """Vitals one instrument measures at once: they share noise, artefacts and a timestamp."""

    name: str
    processes: tuple[tuple[float, float], ...]  # (sd, tau_s)
    channels: tuple[_Channel, ...]
    artefact_p: float  # per measurement


_GROUPS = (
    # A shared slow component makes systolic and diastolic move together; a cuff motion artefact
    # inflates both.
    _GroupSpec(
        "bp",
        ((4.0, 1800.0), (2.5, 180.0), (1.8, 180.0)),
        (
            _Channel(_SYS, ((0, 1.0), (1, 1.0)), 2.0, (25.0, 45.0)),
            _Channel(_DIA, ((0, 0.55), (2, 1.0)), 1.5, (15.0, 27.0)),
        ),
        0.008,
    ),
    # Motion on the finger probe reads low SpO2 and a spurious high pulse in the same sample.
    _GroupSpec(
        "oximetry",
        ((0.7, 120.0), (3.5, 300.0), (2.0, 20.0)),
        (
            _Channel(_SPO2, ((0, 1.0),), 0.4, (-8.0, -18.0)),
            _Channel(_HR, ((1, 1.0), (2, 1.0)), 1.0, (30.0, 60.0)),
        ),
        0.004,
    ),
    _GroupSpec(
        "temperature",
        ((0.12, 1800.0),),
        (_Channel(_TEMP, ((0, 1.0),), 0.04, (-1.8, -3.5)),),  # probe lifted off the skin
        0.003,
    ),
    _GroupSpec(
        "glucose",
        ((6.0, 2400.0),),
        (_Channel(_GLU, ((0, 1.0),), 2.5, (-30.0, -50.0), relative=True),),  # compression low
        0.003,
    ),
)

_DECIMALS: Mapping[Vital, int] = MappingProxyType({_TEMP: 1})
_MIN_PULSE_PRESSURE = 10.0
_DIA_FLOOR = float(_DIA.info.plausible[0])


@dataclass(frozen=True, slots=True)
class _Effect:
    """One episode as it touches one measurement group (indices are channel positions)."""

    start: float
    end: float
    ramp: float
    severity: float
    blends: tuple[tuple[int, float, bool], ...]  # pull towards a severity-1 target (, rising)
    adds: tuple[tuple[int, float], ...]  # coupled shifts on top


class _Group:
    __slots__ = (
        "channels",
        "effects",
        "last_t",
        "max_len",
        "n_normals",
        "prev_artefact",
        "processes",
        "rng",
        "spec",
        "starts",
        "values",
    )

    def __init__(
        self, spec: _GroupSpec, rng: Random, effects: list[_Effect], base: Mapping[Vital, float]
    ) -> None:
        self.spec = spec
        self.rng = rng
        self.processes = [_OU(sd, tau, rng) for sd, tau in spec.processes]
        self.n_normals = len(spec.processes) + len(spec.channels)
        # Flattened per-channel constants: the hot loop reads a tuple, not attributes.
        self.channels = [
            (
                ch.vital,
                ch.loadings,
                ch.meas_sd,
                1.0 / base[ch.vital] if ch.relative else 0.0,
                ch.artefact[0],
                ch.artefact[1] - ch.artefact[0],
                _DECIMALS.get(ch.vital),
                float(ch.vital.info.plausible[0]),
                float(ch.vital.info.plausible[1]),
            )
            for ch in spec.channels
        ]
        effects.sort(key=lambda e: e.start)
        self.effects = effects
        self.starts = [e.start for e in effects]
        self.max_len = max((e.end - e.start for e in effects), default=0.0)
        self.last_t: float | None = None
        self.values: tuple[float, ...] = ()
        self.prev_artefact = False


def _normals(rng: Random, n: int) -> list[float]:
    """Box-Muller in pairs: a fixed number of draws per call, and cheaper than ``rng.gauss``."""
    out: list[float] = []
    rand = rng.random
    while len(out) < n:
        r = math.sqrt(-2.0 * math.log(1.0 - rand()))
        a = _TWO_PI * rand()
        out.append(r * math.cos(a))
        out.append(r * math.sin(a))
    return out


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _envelope(t: float, e: _Effect) -> float:
    """Raised-cosine onset and recovery: physiology drifts, it does not step."""
    if t < e.start or t >= e.end:
        return 0.0
    u = min(t - e.start, e.end - t) / e.ramp
    if u >= 1.0:
        return 1.0
    return 0.5 - 0.5 * math.cos(math.pi * u)


def _scaled_target(level: float, target: float, severity: float, rising: bool) -> float:
    """Where an episode heads from ``level``; severity 0 stays put.

    Rises scale linearly, falls geometrically so severity 2 stays above zero.  An episode never
    moves a vital against its direction: a level already beyond the target stays there.
    """
    if rising:
        return level + severity * (target - level) if target > level else level
    return level * math.pow(target / level, severity) if target < level else level


def _rising(vital: Vital, target: float) -> bool:
    return target > TYPICAL_BASELINES[vital]


def _episode_shifts(
    episode: Episode, base: Mapping[Vital, float]
) -> tuple[dict[Vital, float], dict[Vital, float]]:
    """Severity-1 targets the episode pulls towards, and the coupled shifts it adds elsewhere."""
    s = episode.severity
    blends = dict(_TARGETS[episode.kind])
    reached = {v: _scaled_target(base[v], x, s, _rising(v, x)) for v, x in blends.items()}
    adds: dict[Vital, float] = {}
    kind = episode.kind
    if kind is _K.DESATURATION:  # hypoxic drive: a little faster
        adds[_HR] = 0.8 * max(0.0, base[_SPO2] - reached[_SPO2])
    elif kind is _K.FEVER:  # ~10 bpm per °C
        adds[_HR] = 10.0 * max(0.0, reached[_TEMP] - base[_TEMP])
    elif kind is _K.HYPOTENSION:  # baroreflex compensation
        adds[_HR] = 0.35 * max(0.0, base[_SYS] - reached[_SYS])
    elif kind is _K.HYPOGLYCEMIA:  # adrenergic response
        adds[_HR] = 12.0 * s
    return blends, adds


class VitalsGenerator:
    """Deterministic vitals for one patient.

    Each instrument group (BP, oximetry, temperature, glucose) draws from its own seeded stream,
    so one device's cadence does not change another's values; the same seed and the same calls
    give the same values.  Calls are expected with non-decreasing ``t_s`` per group.  An earlier
    ``t_s`` is tolerated but does not rewind the noise: it is read from the latest state and is
    not cached.  Vitals of one group sampled at the same ``t_s`` are one measurement (a BP cuff
    reading's systolic and diastolic come together), and repeated calls return the same value.
    """

    def __init__(
        self,
        profile: PatientProfile,
        episodes: Sequence[Episode] = (),
        *,
        seed: int | None = None,
        start_s: float = 0.0,
    ) -> None:
        self.profile = profile
        self.episodes: tuple[Episode, ...] = tuple(sorted(episodes, key=lambda e: e.start_s))
        self.seed = secrets.randbits(64) if seed is None else seed
        self.start_s = start_s
        self._base = dict(profile.baselines)
        glucose = self._base[_GLU]
        self._meal_rise = max(25.0, 30.0 + 0.6 * (glucose - 100.0))  # diabetics swing further
        self._meals: dict[int, tuple[tuple[float, float], ...]] = {}
        shifts = [(e, *_episode_shifts(e, self._base)) for e in self.episodes]
        self._groups: list[_Group] = []
        self._where: dict[Vital, tuple[_Group, int]] = {}
        for spec in _GROUPS:
            index = {ch.vital: i for i, ch in enumerate(spec.channels)}
            effects = []
            for ep, blends, adds in shifts:
                b = tuple((index[v], x, _rising(v, x)) for v, x in blends.items() if v in index)
                a = tuple((index[v], x) for v, x in adds.items() if v in index and x != 0.0)
                if b or a:
                    ramp = min(_RAMP_S[ep.kind], 0.2 * ep.duration_s)
                    effects.append(_Effect(ep.start_s, ep.end_s, ramp, ep.severity, b, a))
            rng = Random(f"vitalchain.vitals:{self.seed}:{spec.name}")
            group = _Group(spec, rng, effects, self._base)
            self._groups.append(group)
            for vital, i in index.items():
                self._where[vital] = (group, i)

    def sample(self, vital: Vital, t_s: float) -> float:
        """Value at ``t_s`` seconds since start, rounded to instrument resolution.

        The mean follows the circadian rhythm (BP, HR, SpO2 dip at night; temperature bottoms out
        before dawn; glucose rises after meals), active episodes and their coupling (desaturation,
        fever, hypotension and hypoglycemia raise HR; systolic and diastolic move together).  On
        top sits Ornstein-Uhlenbeck noise, so consecutive samples are correlated, and rare
        single-sample artefacts.  The result is clamped inside ``vital.info.plausible``.
        """
        group, i = self._where[vital]
        if t_s != group.last_t:
            if group.last_t is not None and t_s < group.last_t:
                return self._measure(group, t_s)[i]
            group.values = self._measure(group, t_s)
            group.last_t = t_s
        return group.values[i]

    def readings(self, kind: DeviceKind, t_s: float) -> list[tuple[Vital, float]]:
        return [(vital, self.sample(vital, t_s)) for vital in DEVICE_VITALS[kind]]

    def episode_active(self, t_s: float) -> list[EpisodeKind]:
        return [e.kind for e in self.episodes if e.start_s <= t_s < e.end_s]

    # --- internals ------------------------------------------------------------------------

    def _measure(self, g: _Group, t: float) -> tuple[float, ...]:
        # Random draws never depend on the mean, so two generators with the same seed and calls
        # share their noise exactly; an episode's effect is then the difference between them.
        rng = g.rng
        last = g.last_t
        dt = t - last if last is not None and t > last else 0.0
        z = _normals(rng, g.n_normals)
        noise = [p.step(dt, z[k]) for k, p in enumerate(g.processes)]
        artefact = rng.random() < g.spec.artefact_p and not g.prev_artefact
        amount = rng.random()
        g.prev_artefact = artefact
        clock = self.start_s + t
        tod_h = (clock % _DAY_S) / _HOUR_S
        asleep = _asleep(tod_h) - _SLEEP_FRACTION
        means = [self._base_mean(c[0], clock, tod_h, asleep) for c in g.channels]
        if g.effects:
            self._apply_episodes(g, t, means)
        out: list[float] = []
        n = len(g.processes)
        for i, (_, loadings, meas_sd, rel, art_lo, art_span, decimals, lo, hi) in enumerate(
            g.channels
        ):
            e = meas_sd * z[n + i]
            for k, w in loadings:
                e += w * noise[k]
            x = means[i] + (e * means[i] * rel if rel else e)
            if artefact:
                x += art_lo + amount * art_span
            x = float(round(x)) if decimals is None else round(x, decimals)
            out.append(lo if x < lo else hi if x > hi else x)
        if g.spec.name == "bp":  # a cuff never reports diastolic at or above systolic
            out[1] = max(_DIA_FLOOR, min(out[1], out[0] - _MIN_PULSE_PRESSURE))
        return tuple(out)

    @staticmethod
    def _apply_episodes(g: _Group, t: float, means: list[float]) -> None:
        lo = bisect_right(g.starts, t - g.max_len)  # earlier starts have ended by t
        hi = bisect_right(g.starts, t)
        adds = [0.0] * len(means)
        for e in g.effects[lo:hi]:
            env = _envelope(t, e)
            if env == 0.0:
                continue
            for i, target, rising in e.blends:
                m = means[i]
                means[i] = m + env * (_scaled_target(m, target, e.severity, rising) - m)
            for i, shift in e.adds:
                adds[i] += env * shift
        for i, shift in enumerate(adds):
            means[i] += shift

    def _base_mean(self, vital: Vital, clock: float, tod_h: float, asleep: float) -> float:
        base = self._base[vital]
        if vital is _GLU:
            return base + self._meal_rise * self._meal_load(clock)
        if vital is _TEMP:
            return base + _TEMP_AMPLITUDE * math.cos(_TWO_PI * (tod_h - _TEMP_PEAK_H) / 24.0)
        return base - _SLEEP_DIP[vital] * asleep

    def _meal_load(self, clock: float) -> float:
        """Sum of gamma-shaped post-prandial curves (1.0 at a normal meal's peak)."""
        day = math.floor(clock / _DAY_S)
        total = 0.0
        for d in (day - 1, day):
            for when, size in self._meals_of(d):
                tau = clock - when
                if 0.0 < tau < _MEAL_SPAN_S:
                    x = tau / _MEAL_PEAK_S
                    total += size * x * math.exp(1.0 - x)
        return total

    def _meals_of(self, day: int) -> tuple[tuple[float, float], ...]:
        """Meal times and sizes vary day to day but depend only on the seed and the day."""
        meals = self._meals.get(day)
        if meals is None:
            rng = Random(f"vitalchain.vitals:{self.seed}:meals:{day}")
            meals = tuple(
                (
                    day * _DAY_S + (h + rng.gauss(0.0, _MEAL_JITTER_H)) * _HOUR_S,
                    rng.uniform(0.7, 1.3),
                )
                for h in _MEALS_H
            )
            if len(self._meals) > 8:
                self._meals.clear()
            self._meals[day] = meals
        return meals


def random_episodes(
    rng: Random,
    horizon_s: float,
    rate_per_hour: float = 0.5,
    kinds: Sequence[EpisodeKind] | None = None,
) -> list[Episode]:
    """Poisson-timed episodes of typical length, all inside ``[0, horizon_s]``.

    Episodes that would act on the same vital at once (a hypo- inside a hyperglycemia) are
    avoided by drawing another kind, so each episode is recognisable in the data.
    """
    pool = tuple(EpisodeKind) if kinds is None else tuple(EpisodeKind(k) for k in kinds)
    if not pool:
        raise ValueError("kinds must not be empty")
    if rate_per_hour < 0 or horizon_s < 0:
        raise ValueError("rate_per_hour and horizon_s must be non-negative")
    episodes: list[Episode] = []
    if rate_per_hour == 0:
        return episodes
    active: list[Episode] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate_per_hour / _HOUR_S)
        if t >= horizon_s:
            return episodes
        active = [e for e in active if e.end_s > t]
        busy = {v for e in active for v in _TARGETS[e.kind]}
        free = [k for k in pool if busy.isdisjoint(_TARGETS[k])]
        if not free:
            continue
        kind = rng.choice(free)
        lo, hi = _DURATION_S[kind]
        duration = min(rng.uniform(lo, hi), horizon_s - t)
        severity = round(rng.uniform(1.0, 1.5), 2)
        if duration < 60.0:
            continue
        episode = Episode(kind, t, duration, severity)
        episodes.append(episode)
        active.append(episode)
