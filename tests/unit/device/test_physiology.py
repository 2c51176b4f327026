"""The simulator's physiology: realistic enough that alert rules are exercised meaningfully."""

from __future__ import annotations

import itertools
import math
import statistics
from random import Random

import pytest

from tests.support.vitals import DIA, GLU, HR, SPO2, SYS, TEMP
from vitalchain.device.physiology import (
    DEFAULT_INTERVAL_S,
    DEVICE_VITALS,
    TYPICAL_BASELINES,
    DeviceKind,
    Episode,
    EpisodeKind,
    PatientProfile,
    VitalsGenerator,
    random_episodes,
)
from vitalchain.vitals import Vital

HOUR = 3600.0
DAY = 24 * HOUR
TYPICAL = PatientProfile.typical()

# Primary vitals each episode drives, and which way out of `normal` they go.
PRIMARY: dict[EpisodeKind, dict[Vital, str]] = {
    EpisodeKind.HYPERTENSIVE_CRISIS: {SYS: "high", DIA: "high"},
    EpisodeKind.HYPOTENSION: {SYS: "low", DIA: "low"},
    EpisodeKind.TACHYCARDIA: {HR: "high"},
    EpisodeKind.BRADYCARDIA: {HR: "low"},
    EpisodeKind.DESATURATION: {SPO2: "low"},
    EpisodeKind.FEVER: {TEMP: "high"},
    EpisodeKind.HYPOTHERMIA: {TEMP: "low"},
    EpisodeKind.HYPOGLYCEMIA: {GLU: "low"},
    EpisodeKind.HYPERGLYCEMIA: {GLU: "high"},
}


def in_normal(vital: Vital, x: float) -> bool:
    lo, hi = vital.info.normal
    return lo <= x <= hi


def series(
    gen: VitalsGenerator, vital: Vital, step_s: float, n: int, t0: float = 0.0
) -> list[float]:
    return [gen.sample(vital, t0 + i * step_s) for i in range(n)]


def lag1(xs: list[float], spike: float) -> float:
    """Lag-1 correlation of the noise, leaving out single-sample spikes (artefacts)."""
    bad = {
        i
        for i in range(1, len(xs) - 1)
        if min(abs(xs[i] - xs[i - 1]), abs(xs[i] - xs[i + 1])) > spike
        and (xs[i] - xs[i - 1]) * (xs[i] - xs[i + 1]) > 0
    }
    pairs = [(xs[i], xs[i + 1]) for i in range(len(xs) - 1) if not {i, i + 1} & bad]
    assert len(pairs) > 0.9 * len(xs)
    return statistics.correlation([a for a, _ in pairs], [b for _, b in pairs])


def runs(flags: list[bool]) -> list[int]:
    """Lengths of consecutive True runs."""
    out, n = [], 0
    for f in flags:
        if f:
            n += 1
        elif n:
            out.append(n)
            n = 0
    if n:
        out.append(n)
    return out


# --- devices ---------------------------------------------------------------------------------


def test_device_vitals_mapping() -> None:
    assert set(DEVICE_VITALS) == set(DeviceKind) == set(DEFAULT_INTERVAL_S)
    assert DEVICE_VITALS[DeviceKind.BP_CUFF] == (SYS, DIA)
    assert set(DEVICE_VITALS[DeviceKind.PULSE_OXIMETER]) == {SPO2, HR}
    assert DEVICE_VITALS[DeviceKind.THERMOMETER] == (TEMP,)
    assert DEVICE_VITALS[DeviceKind.GLUCOMETER] == (GLU,)
    # Every vital the simulator has a physiology for (not respiratory or capillary glucose).
    assert set(DEVICE_VITALS[DeviceKind.MULTI]) == set(TYPICAL_BASELINES)
    assert set(TYPICAL_BASELINES) == set(Vital) - {Vital.RESPIRATORY_RATE, Vital.CAPILLARY_GLUCOSE}
    assert all(v > 0 for v in DEFAULT_INTERVAL_S.values())
    assert DEFAULT_INTERVAL_S[DeviceKind.PULSE_OXIMETER] < DEFAULT_INTERVAL_S[DeviceKind.BP_CUFF]


def test_readings_one_per_vital_and_consistent_with_sample() -> None:
    gen = VitalsGenerator(TYPICAL, seed=3)
    for kind in DeviceKind:
        got = gen.readings(kind, 100.0)
        assert [v for v, _ in got] == list(DEVICE_VITALS[kind])
    # One measurement per group and timestamp: MULTI agrees with the single-purpose devices.
    multi = dict(gen.readings(DeviceKind.MULTI, 100.0))
    assert multi[HR] == gen.sample(HR, 100.0)
    assert dict(gen.readings(DeviceKind.BP_CUFF, 100.0)) == {SYS: multi[SYS], DIA: multi[DIA]}


# --- determinism and validity ----------------------------------------------------------------


def run_multi(seed: int | None, episodes: list[Episode], n: int = 1500) -> list[float]:
    gen = VitalsGenerator(TYPICAL, episodes, seed=seed, start_s=7 * HOUR)
    return [x for i in range(n) for _, x in gen.readings(DeviceKind.MULTI, i * 60.0)]


def test_same_seed_same_values() -> None:
    episodes = random_episodes(Random(5), DAY, rate_per_hour=1.0)
    assert run_multi(11, episodes) == run_multi(11, episodes)
    assert run_multi(11, episodes) != run_multi(12, episodes)
    assert len(run_multi(None, episodes, n=10)) == 60


def test_one_device_cadence_does_not_change_another() -> None:
    a = VitalsGenerator(TYPICAL, seed=8)
    b = VitalsGenerator(TYPICAL, seed=8)
    temps_a = []
    for i in range(300):
        temps_a.append(a.sample(TEMP, i * 60.0))
        for j in range(15):
            b.sample(SPO2, i * 60.0 + j * 4.0)
    assert temps_a == series(b, TEMP, 60.0, 300)


def test_plausible_resolution_and_pulse_pressure() -> None:
    rng = Random(21)
    extreme = [Episode(k, 600.0 + i * 2 * HOUR, HOUR, 2.0) for i, k in enumerate(EpisodeKind)]
    cases = [(TYPICAL, extreme)] + [
        (PatientProfile.random(rng), random_episodes(rng, 2 * DAY, rate_per_hour=1.0))
        for _ in range(3)
    ]
    for seed, (profile, episodes) in enumerate(cases):
        gen = VitalsGenerator(profile, episodes, seed=seed)
        for i in range(1500):
            got = dict(gen.readings(DeviceKind.MULTI, i * 77.0))
            for vital, x in got.items():
                lo, hi = vital.info.plausible
                assert lo <= x <= hi, (vital, x)
                scale = 10 if vital is TEMP else 1
                assert math.isclose(x * scale, round(x * scale), abs_tol=1e-9), (vital, x)
            assert got[SYS] > got[DIA]


def test_repeated_and_out_of_order_calls() -> None:
    gen = VitalsGenerator(TYPICAL, seed=1)
    x = gen.sample(HR, 500.0)
    assert gen.sample(HR, 500.0) == x
    early = gen.sample(HR, 100.0)  # tolerated, not rewound
    assert HR.info.plausible[0] <= early <= HR.info.plausible[1]
    assert gen.sample(HR, 500.0) == x


# --- baseline behaviour ----------------------------------------------------------------------


def test_typical_profile_stays_mostly_within_normal() -> None:
    gen = VitalsGenerator(TYPICAL, seed=4)
    values: dict[Vital, list[float]] = {v: [] for v in TYPICAL_BASELINES}
    for i in range(3 * 1440):
        for vital, x in gen.readings(DeviceKind.MULTI, i * 60.0):
            values[vital].append(x)
    for vital, xs in values.items():
        share = sum(in_normal(vital, x) for x in xs) / len(xs)
        assert share >= 0.97, (vital, share)
        assert abs(statistics.fmean(xs) - TYPICAL_BASELINES[vital]) < 0.1 * TYPICAL_BASELINES[vital]


def test_noise_is_autocorrelated() -> None:
    for seed in range(3):
        gen = VitalsGenerator(TYPICAL, seed=seed, start_s=9 * HOUR)
        assert lag1(series(gen, TEMP, 60.0, 240), 1.0) > 0.5  # four hours: little circadian trend
        assert lag1(series(gen, HR, 4.0, 900), 20.0) > 0.5  # one hour
        assert lag1(series(gen, GLU, 300.0, 288), 20.0) > 0.5  # one day at CGM cadence


def test_circadian_rhythm() -> None:
    def mean_at(vital: Vital, hour: float) -> float:
        xs = []
        for day in range(4):
            gen = VitalsGenerator(TYPICAL, seed=day)
            xs += series(gen, vital, 120.0, 30, t0=day * DAY + hour * HOUR)
        return statistics.fmean(xs)

    assert mean_at(HR, 2.5) < mean_at(HR, 15.0) - 6
    assert mean_at(SYS, 2.5) < mean_at(SYS, 15.0) - 8
    assert mean_at(TEMP, 4.5) < mean_at(TEMP, 17.0) - 0.3
    assert mean_at(GLU, 8.3) > mean_at(GLU, 4.0) + 15  # after breakfast


def test_systolic_and_diastolic_move_together() -> None:
    gen = VitalsGenerator(TYPICAL, seed=2)
    pairs = [gen.readings(DeviceKind.BP_CUFF, i * 300.0) for i in range(600)]
    assert statistics.correlation([p[0][1] for p in pairs], [p[1][1] for p in pairs]) > 0.5


def test_artefacts_are_isolated_single_samples() -> None:
    gen = VitalsGenerator(TYPICAL, seed=9)
    spo2, hr = [], []
    for i in range(15000):
        got = dict(gen.readings(DeviceKind.PULSE_OXIMETER, i * 4.0))
        spo2.append(got[SPO2])
        hr.append(got[HR])
    low = [not in_normal(SPO2, x) for x in spo2]
    assert 15 <= sum(low) <= 200  # rare: about 0.4 % of samples
    assert set(runs(low)) == {1}
    for i, flag in enumerate(low):  # motion corrupts the pulse in the same sample
        if flag and 0 < i < len(hr) - 1:
            assert hr[i] > max(hr[i - 1], hr[i + 1]) + 10

    temps = series(VitalsGenerator(TYPICAL, seed=9), TEMP, 60.0, 7 * 1440)
    cold = [not in_normal(TEMP, x) for x in temps]
    assert sum(cold) >= 10
    assert set(runs(cold)) == {1}


# --- episodes --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(EpisodeKind))
def test_episode_leaves_normal_and_recovers(kind: EpisodeKind) -> None:
    start, duration = 2 * HOUR, max(HOUR, 2 * HOUR if kind is EpisodeKind.FEVER else 0.0)
    episode = Episode(kind, start, duration)
    gen = VitalsGenerator(TYPICAL, [episode], seed=13, start_s=6 * HOUR)
    step = 15.0
    times = [i * step for i in range(int((start + duration + 3 * HOUR) / step))]
    for vital, direction in PRIMARY[kind].items():
        xs = [gen.sample(vital, t) for t in times]
        lo, hi = vital.info.normal
        outside = [(x < lo) if direction == "low" else (x > hi) for x in xs]
        during = [o for t, o in zip(times, outside, strict=True) if start <= t < start + duration]
        before = [in_normal(vital, x) for t, x in zip(times, xs, strict=True) if t < start]
        after = [
            in_normal(vital, x) for t, x in zip(times, xs, strict=True) if t >= start + duration
        ]
        assert sum(during) / len(during) >= 0.6, (vital, sum(during) / len(during))
        assert sum(before) / len(before) >= 0.95
        assert sum(after) / len(after) >= 0.95
    assert gen.episode_active(start + duration / 2) == [kind]
    assert gen.episode_active(start - 1) == gen.episode_active(start + duration) == []


def plateau_mean(vital: Vital, episodes: list[Episode], seed: int = 17) -> float:
    gen = VitalsGenerator(TYPICAL, episodes, seed=seed)
    return statistics.fmean(series(gen, vital, 10.0, 120, t0=1.25 * HOUR))  # 1:15-1:35


def test_severity_scales_the_excursion() -> None:
    def ep(severity: float) -> list[Episode]:
        return [Episode(EpisodeKind.DESATURATION, HOUR, HOUR, severity)]

    assert plateau_mean(SPO2, ep(0.0)) == plateau_mean(SPO2, [])
    assert plateau_mean(SPO2, ep(2.0)) < plateau_mean(SPO2, ep(1.0)) - 8
    assert 82 < plateau_mean(SPO2, ep(1.0)) < 88
    with pytest.raises(ValueError, match="severity"):
        Episode(EpisodeKind.FEVER, 0.0, HOUR, 2.5)
    with pytest.raises(ValueError, match="duration"):
        Episode(EpisodeKind.FEVER, 0.0, 0.0)


def test_coupling_raises_heart_rate() -> None:
    # Same seed, same calls: the noise is identical, so the difference is the coupling alone.
    base = plateau_mean(HR, [])
    fever = plateau_mean(HR, [Episode(EpisodeKind.FEVER, 0.0, 3 * HOUR)])
    assert 22 < fever - base < 28  # ~10 bpm per °C for 36.8 -> 39.3 °C
    desat = plateau_mean(HR, [Episode(EpisodeKind.DESATURATION, HOUR, HOUR)])
    assert 3 < desat - base < 15
    crisis = [Episode(EpisodeKind.HYPERTENSIVE_CRISIS, HOUR, HOUR)]
    assert plateau_mean(SYS, crisis) > 175
    assert plateau_mean(DIA, crisis) > 105


def test_episode_never_moves_a_vital_backwards() -> None:
    # A baseline already beyond the crisis target is not pulled down towards it.
    profile = PatientProfile({SYS: 200.0, DIA: 120.0})
    crisis = [Episode(EpisodeKind.HYPERTENSIVE_CRISIS, HOUR, HOUR)]
    gen_with = VitalsGenerator(profile, crisis, seed=1)
    gen_without = VitalsGenerator(profile, seed=1)
    assert series(gen_with, SYS, 10.0, 120, t0=1.25 * HOUR) == series(
        gen_without, SYS, 10.0, 120, t0=1.25 * HOUR
    )


def test_onset_is_gradual() -> None:
    gen = VitalsGenerator(TYPICAL, [Episode(EpisodeKind.HYPERGLYCEMIA, HOUR, 2 * HOUR)], seed=2)
    xs = series(gen, GLU, 60.0, 30, t0=HOUR)
    assert xs[0] < 140  # not a step
    assert max(b - a for a, b in itertools.pairwise(xs)) < 40


# --- profiles and random episodes ------------------------------------------------------------


def test_random_profiles_are_plausible_and_varied() -> None:
    rng = Random(30)
    profiles = [PatientProfile.random(rng) for _ in range(300)]
    for p in profiles:
        assert set(p.baselines) == set(TYPICAL_BASELINES)
        for vital, x in p.baselines.items():
            assert in_normal(vital, x), (vital, x)
        assert p.baselines[SYS] - p.baselines[DIA] >= 25
    assert any(p.baselines[SYS] >= 130 for p in profiles)
    assert any(p.baselines[GLU] >= 126 for p in profiles)
    assert len({p.baselines[HR] for p in profiles}) > 10


def test_profile_fills_missing_baselines_and_validates() -> None:
    p = PatientProfile({HR: 88.0})
    assert p.baselines[HR] == 88.0
    assert p.baselines[GLU] == TYPICAL_BASELINES[GLU]
    with pytest.raises(ValueError, match="baseline"):
        PatientProfile({SPO2: 120.0})
    with pytest.raises(ValueError, match="systolic"):
        PatientProfile({SYS: 80.0, DIA: 79.0})


def test_random_episodes_respect_horizon_and_rate() -> None:
    horizon = 1000 * HOUR
    episodes = random_episodes(Random(1), horizon, rate_per_hour=0.5)
    assert 400 <= len(episodes) <= 600
    assert all(e.start_s >= 0 and e.end_s <= horizon for e in episodes)
    assert [e.start_s for e in episodes] == sorted(e.start_s for e in episodes)
    assert {e.kind for e in episodes} == set(EpisodeKind)
    assert all(0.9 <= e.severity <= 1.5 for e in episodes)
    for i, a in enumerate(episodes):  # never two episodes on one vital at once
        for b in episodes[i + 1 :]:
            if b.start_s >= a.end_s:
                break
            assert not set(PRIMARY[a.kind]) & set(PRIMARY[b.kind])

    only = random_episodes(Random(2), 100 * HOUR, 2.0, kinds=[EpisodeKind.DESATURATION])
    assert 150 <= len(only) <= 250
    assert {e.kind for e in only} == {EpisodeKind.DESATURATION}
    assert random_episodes(Random(3), DAY, rate_per_hour=0.0) == []
    short = random_episodes(Random(4), 2 * HOUR, 5.0, kinds=[EpisodeKind.FEVER])
    assert all(e.end_s <= 2 * HOUR for e in short)
    with pytest.raises(ValueError, match="kinds"):
        random_episodes(Random(5), DAY, kinds=[])
