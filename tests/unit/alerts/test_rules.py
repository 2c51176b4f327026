"""Alert rules: confirmation by count or time, hysteresis, direction, ordering, staleness."""

from __future__ import annotations

import math
import re
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.threads import run_together
from vitalchain.alerts.rules import (
    DEFAULT_POLICIES,
    DEFAULT_RULES,
    Cleared,
    DeviceSeen,
    EpisodeState,
    Priority,
    PriorityPolicy,
    Raised,
    RuleBook,
    RuleEngine,
    RuleError,
    Stale,
    VitalRule,
)
from vitalchain.errors import VitalchainError
from vitalchain.vitals import Vital

ALICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BOB = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
RING = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"
CUFF = "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"

SPO2_LOW, SPO2_HIGH = 92.0, 100.0
HR_LOW, HR_HIGH = 50.0, 110.0


def engine(**spo2: Any) -> tuple[RuleBook, RuleEngine]:
    book = RuleBook()
    if spo2:
        book.set(ALICE, Vital.SPO2, **spo2)
    return book, RuleEngine(book)


def spo2(e: RuleEngine, value: float, at: float, patient: str = ALICE) -> Raised | Cleared | None:
    return e.observe(patient, RING, Vital.SPO2, value, SPO2_LOW, SPO2_HIGH, at)


def low_spo2(value: float, first_out_at: float, at: float, **more: Any) -> Raised:
    """The alert Alice's ring raises for a low SpO2: three readings out, unless ``more`` says."""
    fields: dict[str, Any] = {"readings_out": 3, **more}
    return Raised(
        patient=ALICE,
        device=RING,
        vital=Vital.SPO2,
        direction=-1,
        value=value,
        low=SPO2_LOW,
        high=SPO2_HIGH,
        first_out_at=first_out_at,
        at=at,
        **fields,
    )


def hr(e: RuleEngine, value: float, at: float, patient: str = ALICE) -> Raised | Cleared | None:
    return e.observe(patient, RING, Vital.HEART_RATE, value, HR_LOW, HR_HIGH, at)


# --- defaults ------------------------------------------------------------------------------------


def test_defaults_cover_every_vital_with_the_documented_values() -> None:
    assert set(DEFAULT_RULES) == set(Vital)
    medium, low, high = Priority.MEDIUM, Priority.LOW, Priority.HIGH
    expected = {
        Vital.SPO2: (3, 30, 1, medium, 85, None),
        Vital.HEART_RATE: (3, 30, 5, medium, 40, 130),
        Vital.SYSTOLIC_BP: (2, 60, 5, medium, 90, 180),
        Vital.DIASTOLIC_BP: (2, 60, 5, medium, None, 120),
        Vital.BODY_TEMPERATURE: (2, 120, 0.2, low, 35, 40),
        Vital.GLUCOSE: (2, 300, 10, medium, 55, 260),
        Vital.RESPIRATORY_RATE: (3, 60, 2, medium, 9, 24),
        Vital.CAPILLARY_GLUCOSE: (1, 0, 10, medium, 55, 260),
    }
    assert set(expected) == set(Vital)
    for vital, (count, sustain, h, priority, urgent_low, urgent_high) in expected.items():
        assert DEFAULT_RULES[vital] == VitalRule(
            count,
            sustain,
            h,
            priority=priority,
            urgent_low=urgent_low,
            urgent_high=urgent_high,
            stale_warning_s=900,
            stale_urgent_s=1800,
        ), vital
    assert high not in {rule.priority for rule in DEFAULT_RULES.values()}  # HIGH needs urgency


@pytest.mark.parametrize("vital", list(Vital))
def test_default_hysteresis_leaves_a_real_band_inside_the_normal_range(vital: Vital) -> None:
    low, high = vital.info.normal
    assert 0 < DEFAULT_RULES[vital].hysteresis < (high - low) / 2


def test_defaults_cannot_be_mutated_in_place() -> None:
    with pytest.raises(TypeError):
        DEFAULT_RULES[Vital.SPO2] = VitalRule(1, 0, 0)  # type: ignore[index]


def test_a_rulebook_needs_a_rule_for_every_vital() -> None:
    partial: dict[Vital, VitalRule] = {v: r for v, r in DEFAULT_RULES.items() if v != Vital.GLUCOSE}
    with pytest.raises(RuleError, match="glucose") as info:
        RuleBook(partial)
    assert info.value.code == "invalid_rule"


def test_a_rulebook_copies_its_defaults() -> None:
    defaults = dict(DEFAULT_RULES)
    book = RuleBook(defaults)
    defaults[Vital.SPO2] = VitalRule(1, 0, 0)
    assert book.rule(ALICE, Vital.SPO2) == DEFAULT_RULES[Vital.SPO2]


# --- raising ------------------------------------------------------------------------------------


def test_count_path_raises_on_the_mth_consecutive_reading() -> None:
    _, e = engine()
    assert spo2(e, 88, 0) is None
    assert spo2(e, 87, 1) is None
    raised = spo2(e, 86, 2)
    assert raised == low_spo2(86, first_out_at=0, at=2)


def test_one_alert_per_episode() -> None:
    _, e = engine()
    events = [spo2(e, 85, t) for t in range(20)]
    assert [type(ev) for ev in events if ev is not None] == [Raised]


def test_sustained_path_raises_before_the_count_is_reached() -> None:
    _, e = engine(consecutive=10, sustain_s=30)
    assert [spo2(e, 85, t) for t in (100, 110, 120, 129.9)] == [None] * 4
    raised = spo2(e, 85, 130)
    assert isinstance(raised, Raised)
    assert (raised.first_out_at, raised.at, raised.readings_out) == (100, 130, 5)


def test_sustain_zero_means_only_the_count_counts() -> None:
    _, e = engine(consecutive=3, sustain_s=0)
    assert spo2(e, 85, 0) is None
    assert spo2(e, 85, 3600) is None  # an hour out of range, but only two readings
    assert isinstance(spo2(e, 85, 7200), Raised)


def test_consecutive_one_raises_on_the_first_reading() -> None:
    _, e = engine(consecutive=1)
    raised = spo2(e, 91.9, 5)
    assert isinstance(raised, Raised)
    assert raised.readings_out == 1
    assert raised.first_out_at == 5


def test_bounds_are_inclusive() -> None:
    _, e = engine(consecutive=1)
    assert spo2(e, SPO2_LOW, 0) is None
    assert spo2(e, SPO2_HIGH, 1) is None
    assert isinstance(spo2(e, 100.01, 2), Raised)


def test_a_single_spike_raises_nothing() -> None:
    _, e = engine()
    seq = [85, 85, 96, 85, 85, 96, 85, 85, 96]
    assert [spo2(e, v, t) for t, v in enumerate(seq)] == [None] * len(seq)
    # ... while three lows without an interruption do raise.
    assert spo2(e, 85, 10) is None
    assert spo2(e, 85, 11) is None
    assert isinstance(spo2(e, 85, 12), Raised)


def test_a_spike_also_resets_the_sustain_clock() -> None:
    _, e = engine(consecutive=100, sustain_s=30)
    assert spo2(e, 85, 0) is None
    assert spo2(e, 95, 20) is None
    assert spo2(e, 85, 31) is None  # 31 s after the first low, but the run began at 31
    assert isinstance(spo2(e, 85, 61), Raised)


def test_direction_change_while_pending_restarts_the_count() -> None:
    _, e = engine()  # heart rate: 3 in a row by default
    assert hr(e, 40, 0) is None
    assert hr(e, 40, 1) is None
    assert hr(e, 130, 2) is None  # high now: count restarts at 1
    assert hr(e, 130, 3) is None
    raised = hr(e, 131, 4)
    assert isinstance(raised, Raised)
    assert (raised.direction, raised.first_out_at, raised.readings_out) == (1, 2, 3)


# --- clearing ------------------------------------------------------------------------------------


def test_hysteresis_keeps_alerting_inside_the_band_edge_then_clears() -> None:
    _, e = engine(consecutive=1, hysteresis=1)
    assert isinstance(spo2(e, 88, 0), Raised)
    assert spo2(e, 92.0, 1) is None  # normal, but not yet 1 % clear of the threshold
    assert spo2(e, 92.9, 2) is None
    assert spo2(e, 85, 3) is None  # still the same alert: no second Raised
    assert spo2(e, 93.0, 4) == Cleared(ALICE, Vital.SPO2, 4, 93.0)
    assert spo2(e, 95, 5) is None  # cleared once only


def test_hysteresis_on_the_high_side() -> None:
    _, e = engine()
    for t in range(3):
        hr(e, 120, t)
    assert hr(e, 108, 3) is None  # within 5 /min of the 110 threshold
    assert hr(e, 105, 4) == Cleared(ALICE, Vital.HEART_RATE, 4, 105)


def test_after_clearing_a_new_episode_needs_confirmation_again() -> None:
    _, e = engine()
    for t in range(3):
        spo2(e, 85, t)
    assert isinstance(spo2(e, 97, 3), Cleared)
    assert spo2(e, 85, 4) is None
    assert spo2(e, 85, 5) is None
    assert isinstance(spo2(e, 85, 6), Raised)


def test_zero_hysteresis_clears_at_the_threshold() -> None:
    _, e = engine(consecutive=1, hysteresis=0)
    spo2(e, 80, 0)
    assert spo2(e, SPO2_LOW, 1) == Cleared(ALICE, Vital.SPO2, 1, SPO2_LOW)


def test_hysteresis_wider_than_the_range_clamps_to_the_midpoint() -> None:
    _, e = engine(consecutive=1, hysteresis=100)
    spo2(e, 80, 0)
    assert spo2(e, 95.9, 1) is None
    assert spo2(e, 96.1, 2) is None  # above the midpoint 96 is not inside [96, 96] either
    assert spo2(e, 96.0, 3) == Cleared(ALICE, Vital.SPO2, 3, 96.0)


def test_the_clearing_band_uses_the_readings_own_thresholds() -> None:
    _, e = engine(consecutive=1, hysteresis=1)
    spo2(e, 80, 0)
    # The chain threshold dropped to 90 meanwhile; 91.5 is 1.5 clear of it.
    assert e.observe(ALICE, RING, Vital.SPO2, 91.5, 90, 100, 1) == Cleared(
        ALICE, Vital.SPO2, 1, 91.5
    )


# --- direction change while alerting --------------------------------------------------------------


def test_opposite_direction_while_alerting_starts_a_new_pending_episode() -> None:
    _, e = engine()
    for t in range(3):
        hr(e, 40, t)
    assert hr(e, 130, 3) is None  # no Cleared, no Raised
    assert hr(e, 130, 4) is None
    raised = hr(e, 130, 5)
    assert isinstance(raised, Raised)
    assert (raised.direction, raised.first_out_at, raised.readings_out) == (1, 3, 3)
    assert hr(e, 80, 6) == Cleared(ALICE, Vital.HEART_RATE, 6, 80)


def test_old_alert_stays_open_if_the_opposite_episode_fizzles() -> None:
    _, e = engine()
    for t in range(3):
        hr(e, 40, t)
    assert hr(e, 130, 3) is None
    assert hr(e, 52, 4) is None  # normal, inside the band edge: the low alert is still open
    assert hr(e, 40, 5) is None  # ... so another low is part of it, not a new alert
    assert hr(e, 80, 6) == Cleared(ALICE, Vital.HEART_RATE, 6, 80)


def test_a_reading_in_the_alerts_direction_breaks_an_opposite_run() -> None:
    _, e = engine()
    for t in range(3):
        hr(e, 40, t)
    hr(e, 130, 3)
    hr(e, 130, 4)
    assert hr(e, 45, 5) is None  # back to the low side: the high run is broken
    assert hr(e, 130, 6) is None
    assert hr(e, 130, 7) is None
    assert isinstance(hr(e, 130, 8), Raised)


# --- ordering, independence ----------------------------------------------------------------------


def test_out_of_order_readings_are_ignored() -> None:
    _, e = engine()
    assert spo2(e, 85, 10) is None
    assert spo2(e, 97, 5) is None  # older: must not reset the run
    assert spo2(e, 85, 11) is None
    assert isinstance(spo2(e, 85, 12), Raised)
    assert spo2(e, 97, 11.5) is None  # older: must not clear
    assert spo2(e, 85, 13) is None  # still alerting, so no second Raised
    assert isinstance(spo2(e, 97, 14), Cleared)


def test_equal_timestamps_are_processed() -> None:
    _, e = engine()
    assert [spo2(e, 85, 7) for _ in range(2)] == [None, None]
    assert isinstance(spo2(e, 85, 7), Raised)


def test_episodes_are_per_patient_and_per_vital() -> None:
    _, e = engine()
    spo2(e, 85, 0)
    spo2(e, 85, 1)
    spo2(e, 85, 2, patient=BOB)
    hr(e, 40, 3)
    assert spo2(e, 85, 4, patient=BOB) is None  # Bob has two
    assert isinstance(spo2(e, 85, 5), Raised)  # Alice's SpO2 reaches three
    assert hr(e, 40, 6) is None  # Alice's heart rate has two


def test_the_out_of_order_check_is_per_vital() -> None:
    _, e = engine()
    for t in (100, 101, 102):
        spo2(e, 85, t)
    for t in (10, 11):
        assert hr(e, 40, t) is None  # older than the SpO2 readings, yet a different vital
    assert isinstance(hr(e, 40, 12), Raised)


@pytest.mark.parametrize(
    ("value", "low", "high", "at"),
    [
        (math.nan, 92, 100, 0),
        (math.inf, 92, 100, 0),
        (95, math.nan, 100, 0),
        (95, 92, math.inf, 0),
        (95, 92, 100, math.nan),
        (95, 92, 100, -math.inf),
        (95, 100, 92, 0),
    ],
)
def test_unusable_readings_are_refused_and_change_nothing(
    value: float, low: float, high: float, at: float
) -> None:
    _, e = engine()
    spo2(e, 85, 0)
    spo2(e, 85, 1)
    with pytest.raises(RuleError) as info:
        e.observe(ALICE, RING, Vital.SPO2, value, low, high, at)
    assert info.value.code == "invalid_reading"
    assert info.value.status == 422
    assert isinstance(spo2(e, 85, 2), Raised)  # the run of two was neither reset nor extended
    assert e.check_stale(901.9) == []  # last_seen is 2, untouched by the refused reading
    assert e.check_stale(902) == [Stale(ALICE, RING, 2, 902)]


# --- rule book: overrides, reset, validation -----------------------------------------------------


def test_override_applies_to_that_patient_only() -> None:
    book, e = engine()
    book.set(BOB, Vital.SPO2, consecutive=1)
    assert isinstance(spo2(e, 85, 0, patient=BOB), Raised)
    assert spo2(e, 85, 0) is None
    assert book.rule(ALICE, Vital.SPO2) == DEFAULT_RULES[Vital.SPO2]
    assert book.rule(BOB, Vital.HEART_RATE) == DEFAULT_RULES[Vital.HEART_RATE]


def test_set_merges_onto_the_earlier_override_and_returns_it() -> None:
    book = RuleBook()
    first = book.set(ALICE, Vital.GLUCOSE, consecutive=4)
    second = book.set(ALICE, Vital.GLUCOSE, hysteresis=15.5)
    assert first == replace(DEFAULT_RULES[Vital.GLUCOSE], consecutive=4)
    assert second == replace(DEFAULT_RULES[Vital.GLUCOSE], consecutive=4, hysteresis=15.5)
    assert book.rule(ALICE, Vital.GLUCOSE) == second


def test_a_rule_change_takes_effect_mid_episode() -> None:
    book, e = engine()
    spo2(e, 85, 0)
    book.set(ALICE, Vital.SPO2, consecutive=2)
    assert isinstance(spo2(e, 85, 1), Raised)


def test_reset_returns_to_the_default() -> None:
    book, e = engine(consecutive=1)
    book.reset(ALICE, Vital.SPO2)
    assert book.rule(ALICE, Vital.SPO2) == DEFAULT_RULES[Vital.SPO2]
    assert spo2(e, 85, 0) is None  # needs three again
    book.reset(ALICE, Vital.SPO2)  # without an override: a no-op
    book.reset(BOB, Vital.GLUCOSE)
    assert book.rule(ALICE, Vital.SPO2) == DEFAULT_RULES[Vital.SPO2]


@pytest.mark.parametrize(
    "changes",
    [
        {"consecutive": 0},
        {"consecutive": 1001},
        {"consecutive": -3},
        {"consecutive": 2.5},
        {"consecutive": 3.0},
        {"consecutive": True},
        {"consecutive": "3"},
        {"sustain_s": -1},
        {"sustain_s": 86400.5},
        {"sustain_s": math.nan},
        {"sustain_s": math.inf},
        {"sustain_s": "30"},
        {"sustain_s": False},
        {"hysteresis": -0.1},
        {"hysteresis": math.inf},
        {"hysteresis": math.nan},
        {"hysteresis": None},
        {"stale_after_s": -1},
        {"stale_after_s": 86401},
        {"stale_after_s": math.nan},
        {"stale_warning_s": -1},
        {"stale_urgent_s": math.inf},
        {"stale_warning_s": 1800},  # not below the urgent level (1800)
        {"stale_warning_s": 600, "stale_urgent_s": 600},
        {"priority": "urgent"},
        {"priority": 3},
        {"priority": None},
        {"urgent_low": math.nan},
        {"urgent_high": "95"},
        {"urgent_low": 99, "urgent_high": 99},
        {"_": 1},
        {"window_s": 10},
        {"Consecutive": 3},
        {"consecutive": 5, "sustain_s": -1},  # one bad field spoils the whole change
        {"consecutive": 5, "colour": 1},
    ],
    ids=repr,
)
def test_invalid_changes_are_refused_and_change_nothing(changes: dict[str, Any]) -> None:
    book = RuleBook()
    before_default = book.rule(ALICE, Vital.SPO2)
    with pytest.raises(RuleError) as info:
        book.set(ALICE, Vital.SPO2, **changes)
    assert info.value.code == "invalid_rule"
    assert info.value.status == 422
    assert isinstance(info.value, VitalchainError)
    assert book.rule(ALICE, Vital.SPO2) == before_default

    override = book.set(BOB, Vital.SPO2, consecutive=7, hysteresis=2)
    with pytest.raises(RuleError):
        book.set(BOB, Vital.SPO2, **changes)
    assert book.rule(BOB, Vital.SPO2) == override


@pytest.mark.parametrize(
    "changes",
    [
        {"consecutive": 1},
        {"consecutive": 1000},
        {"sustain_s": 0},
        {"sustain_s": 86400},
        {"hysteresis": 0},
        {"hysteresis": 1e6},
        {"stale_warning_s": 0},
        {"stale_urgent_s": 0},
        {"stale_warning_s": 1799.9},
        {"stale_warning_s": 86400.0, "stale_urgent_s": 0},
        {"priority": Priority.HIGH},
        {"priority": Priority.LOW},
        {"urgent_low": None},
        {"urgent_low": 80.5, "urgent_high": 101},
    ],
    ids=repr,
)
def test_boundary_values_are_accepted(changes: dict[str, Any]) -> None:
    book = RuleBook()
    updated = book.set(ALICE, Vital.SPO2, **changes)
    for name, value in changes.items():
        assert getattr(updated, name) == value


def test_invalid_rules_cannot_be_constructed_either() -> None:
    with pytest.raises(RuleError):
        VitalRule(0, 30, 1)
    with pytest.raises(TypeError):  # the 4th field was stale_after_s: now keyword-only fields
        VitalRule(3, 30, 1, 300)  # type: ignore[misc]
    bad = dict(DEFAULT_RULES)
    bad[Vital.SPO2] = "3 in a row"  # type: ignore[assignment]
    with pytest.raises(RuleError):
        RuleBook(bad)


def test_stale_limits_are_the_smallest_enabled_setting_per_level() -> None:
    book = RuleBook()
    assert book.stale_limits(ALICE) == (900, 1800)
    book.set(ALICE, Vital.GLUCOSE, stale_warning_s=0, stale_urgent_s=0)
    assert book.stale_limits(ALICE) == (900, 1800)
    book.set(ALICE, Vital.SPO2, stale_warning_s=60, stale_urgent_s=120)
    assert book.stale_limits(ALICE) == (60, 120)
    for vital in Vital:
        book.set(ALICE, vital, stale_warning_s=0)
    assert book.stale_limits(ALICE) == (0, 120)
    assert book.stale_limits(BOB) == (900, 1800)


# --- stale data: a technical alarm at two levels, per device -------------------------------------


def test_stale_warns_at_15_min_and_is_urgent_at_30_each_once_per_silence() -> None:
    _, e = engine()
    spo2(e, 97, 100)
    assert e.check_stale(999.9) == []
    assert e.check_stale(1000) == [Stale(ALICE, RING, 100, 1000, "warning", Priority.LOW)]
    assert e.check_stale(1500) == []  # once per silence
    assert e.check_stale(1900) == [Stale(ALICE, RING, 100, 1900, "urgent", Priority.MEDIUM)]
    assert e.check_stale(5000) == []
    spo2(e, 97, 6000)  # the device is back: both levels re-armed
    assert e.check_stale(6899) == []
    assert [s.level for s in e.check_stale(6900)] == ["warning"]
    assert [s.level for s in e.check_stale(7800)] == ["urgent"]


def test_a_check_already_past_both_levels_reports_urgent_only() -> None:
    _, e = engine()
    spo2(e, 97, 0)
    assert e.check_stale(4000) == [Stale(ALICE, RING, 0, 4000, "urgent", Priority.MEDIUM)]
    assert e.check_stale(4001) == []


def test_a_delayed_older_reading_does_not_re_arm_stale() -> None:
    _, e = engine()
    spo2(e, 97, 100)
    assert len(e.check_stale(1000)) == 1
    e.observe(ALICE, RING, Vital.HEART_RATE, 70, HR_LOW, HR_HIGH, 50)
    assert e.check_stale(1001) == []
    assert [s.level for s in e.check_stale(1900)] == ["urgent"]


def test_stale_is_per_device_and_follows_the_patients_rules() -> None:
    book, e = engine()
    book.set(BOB, Vital.SPO2, stale_warning_s=60, stale_urgent_s=120)
    spo2(e, 97, 0)
    spo2(e, 97, 0, patient=BOB)
    e.observe(ALICE, CUFF, Vital.SYSTOLIC_BP, 120, 90, 140, 200)
    assert e.check_stale(60) == [Stale(BOB, RING, 0, 60)]
    assert e.check_stale(120) == [Stale(BOB, RING, 0, 120, "urgent", Priority.MEDIUM)]
    assert e.check_stale(900) == [Stale(ALICE, RING, 0, 900)]
    assert e.check_stale(1100) == [Stale(ALICE, CUFF, 200, 1100)]


def test_a_device_is_judged_by_the_rules_of_the_vitals_it_reports() -> None:
    book, e = engine()
    for vital in (Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP):  # a cuff used twice a day
        book.set(ALICE, vital, stale_warning_s=13 * 3600, stale_urgent_s=0)
    spo2(e, 97, 0)
    e.observe(ALICE, CUFF, Vital.SYSTOLIC_BP, 120, 90, 140, 0)
    e.observe(ALICE, CUFF, Vital.DIASTOLIC_BP, 80, 60, 90, 0)
    assert [(s.device, s.level) for s in e.check_stale(1800)] == [(RING, "urgent")]
    assert [(s.device, s.level) for s in e.check_stale(13 * 3600)] == [(CUFF, "warning")]
    # a late reading of another vital widens what the device is judged by, re-arming nothing
    e.observe(ALICE, CUFF, Vital.HEART_RATE, 70, HR_LOW, HR_HIGH, -1)
    _, devices = e.snapshot()
    cuff = next(d for d in devices if d.device == CUFF)
    assert (cuff.last_seen, cuff.stale_level) == (0, "warning")
    assert cuff.vitals == Vital.SYSTOLIC_BP.bit | Vital.DIASTOLIC_BP.bit | Vital.HEART_RATE.bit
    assert [(s.device, s.level) for s in e.check_stale(13 * 3600 + 1)] == [(CUFF, "urgent")]


def test_one_stale_level_can_be_disabled() -> None:
    book, e = engine()
    for vital in Vital:
        book.set(ALICE, vital, stale_warning_s=0)
    spo2(e, 97, 0)
    assert e.check_stale(1799) == []
    assert [s.level for s in e.check_stale(1800)] == ["urgent"]
    for vital in Vital:
        book.set(BOB, vital, stale_urgent_s=0)
    spo2(e, 97, 0, patient=BOB)
    assert [(s.patient, s.level) for s in e.check_stale(2000)] == [(BOB, "warning")]
    assert e.check_stale(1e9) == []


def test_stale_disabled_when_every_rule_says_zero() -> None:
    book, e = engine()
    for vital in Vital:
        book.set(ALICE, vital, stale_warning_s=0, stale_urgent_s=0)
    spo2(e, 97, 0)
    assert e.check_stale(1e9) == []


def test_check_stale_refuses_a_non_finite_now() -> None:
    _, e = engine()
    spo2(e, 97, 0)
    with pytest.raises(RuleError) as info:
        e.check_stale(math.nan)
    assert info.value.code == "invalid_time"
    assert len(e.check_stale(900)) == 1


# --- priorities -----------------------------------------------------------------------------------


def test_a_confirmed_excursion_has_the_rules_priority() -> None:
    _, e = engine()
    events = [spo2(e, v, t) for t, v in enumerate([88, 87, 86])]
    assert isinstance(events[-1], Raised)
    assert (events[-1].priority, events[-1].upgraded) == (Priority.MEDIUM, False)


def test_a_confirming_value_beyond_the_urgent_limit_is_high() -> None:
    _, e = engine()
    events = [spo2(e, v, t) for t, v in enumerate([89, 87, 84.9])]
    assert isinstance(events[-1], Raised)
    assert events[-1].priority is Priority.HIGH
    assert [spo2(e, 80, t) for t in range(3, 10)] == [None] * 7  # HIGH already: no upgrade


def test_the_urgent_limit_is_exclusive_like_the_band() -> None:
    _, e = engine(consecutive=1)
    raised = spo2(e, 85.0, 0)
    assert isinstance(raised, Raised)
    assert raised.priority is Priority.MEDIUM


def test_an_alerting_episode_that_goes_urgent_is_upgraded_once() -> None:
    _, e = engine()
    for t in range(3):
        spo2(e, 88, t)
    assert spo2(e, 84, 3) is None
    assert spo2(e, 84, 4) is None
    upgraded = spo2(e, 83, 5)
    assert upgraded == low_spo2(83, first_out_at=3, at=5, priority=Priority.HIGH, upgraded=True)
    assert [spo2(e, 80, t) for t in range(6, 12)] == [None] * 6  # one upgrade per episode
    assert [spo2(e, 88, t) for t in range(12, 20)] == [None] * 8  # and no downgrade
    assert spo2(e, 97, 20) == Cleared(ALICE, Vital.SPO2, 20, 97)
    events = [spo2(e, 88, t) for t in range(21, 24)]
    assert isinstance(events[-1], Raised)
    assert events[-1].priority is Priority.MEDIUM  # a new episode starts from the rule again


def test_the_urgent_run_is_broken_by_a_reading_short_of_the_limit() -> None:
    _, e = engine()
    for t in range(3):
        spo2(e, 88, t)
    assert [spo2(e, v, t) for t, v in enumerate([84, 84, 86, 84, 84, 92.5, 84, 84], 3)] == [
        None
    ] * 8
    upgraded = spo2(e, 84, 11)
    assert isinstance(upgraded, Raised)
    assert (upgraded.upgraded, upgraded.first_out_at, upgraded.readings_out) == (True, 9, 3)


def test_the_upgrade_is_also_confirmed_by_time() -> None:
    _, e = engine(consecutive=10, sustain_s=30)
    for t in (0, 20, 30):
        spo2(e, 88, t)
    assert spo2(e, 80, 40) is None
    assert spo2(e, 80, 69.9) is None
    upgraded = spo2(e, 80, 70)
    assert isinstance(upgraded, Raised)
    assert (upgraded.priority, upgraded.first_out_at, upgraded.readings_out) == (
        Priority.HIGH,
        40,
        3,
    )


def test_urgent_high_limits_and_a_rule_priority_of_high() -> None:
    book, e = engine()
    for t in range(3):
        hr(e, 120, t)
    for t in range(3, 5):
        assert hr(e, 131, t) is None
    upgraded = hr(e, 140, 5)
    assert isinstance(upgraded, Raised)
    assert (upgraded.direction, upgraded.priority) == (1, Priority.HIGH)
    book.set(BOB, Vital.HEART_RATE, priority="high", urgent_high=None)
    events = [hr(e, 120, t, patient=BOB) for t in range(3)]
    assert isinstance(events[-1], Raised)
    assert events[-1].priority is Priority.HIGH


@pytest.mark.parametrize(
    ("vital", "low", "high", "value", "priority"),
    [
        (Vital.SPO2, 92, 100, 88, Priority.MEDIUM),
        (Vital.SPO2, 92, 100, 84, Priority.HIGH),
        (Vital.HEART_RATE, 50, 110, 45, Priority.MEDIUM),
        (Vital.HEART_RATE, 50, 110, 38, Priority.HIGH),
        (Vital.HEART_RATE, 50, 110, 125, Priority.MEDIUM),
        (Vital.HEART_RATE, 50, 110, 135, Priority.HIGH),
        (Vital.SYSTOLIC_BP, 90, 140, 160, Priority.MEDIUM),
        (Vital.SYSTOLIC_BP, 90, 140, 181, Priority.HIGH),
        (Vital.SYSTOLIC_BP, 90, 140, 85, Priority.HIGH),
        (Vital.DIASTOLIC_BP, 60, 90, 100, Priority.MEDIUM),
        (Vital.DIASTOLIC_BP, 60, 90, 121, Priority.HIGH),
        (Vital.DIASTOLIC_BP, 60, 90, 45, Priority.MEDIUM),
        (Vital.BODY_TEMPERATURE, 35.5, 38, 38.5, Priority.LOW),
        (Vital.BODY_TEMPERATURE, 35.5, 38, 40.5, Priority.HIGH),
        (Vital.BODY_TEMPERATURE, 35.5, 38, 34.5, Priority.HIGH),
        (Vital.GLUCOSE, 70, 180, 60, Priority.MEDIUM),
        (Vital.GLUCOSE, 70, 180, 54, Priority.HIGH),
        (Vital.GLUCOSE, 70, 180, 200, Priority.MEDIUM),
        (Vital.GLUCOSE, 70, 180, 270, Priority.HIGH),
    ],
)
def test_default_priorities_per_vital(
    vital: Vital, low: float, high: float, value: float, priority: Priority
) -> None:
    _, e = engine()
    rule = DEFAULT_RULES[vital]
    events = [e.observe(ALICE, RING, vital, value, low, high, t) for t in range(rule.consecutive)]
    assert isinstance(events[-1], Raised)
    assert events[-1].priority is priority


def test_priority_names_parse_and_rank() -> None:
    assert Priority.parse(" High ") is Priority.HIGH
    assert Priority.HIGH.rank > Priority.MEDIUM.rank > Priority.LOW.rank
    assert VitalRule(1, 0, 0, priority="low").priority is Priority.LOW  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="high, medium, low"):
        Priority.parse("urgent")


def test_default_policies_follow_the_documented_values() -> None:
    assert DEFAULT_POLICIES[Priority.HIGH] == PriorityPolicy(60, (300, 600, 900), 60)
    assert DEFAULT_POLICIES[Priority.MEDIUM] == PriorityPolicy(300, (900, 1800, 3600), 0)
    assert DEFAULT_POLICIES[Priority.LOW] == PriorityPolicy(900, (1800, 3600, 7200), 0)
    assert DEFAULT_POLICIES[Priority.HIGH].max_snooze_s == 900
    with pytest.raises(TypeError):
        DEFAULT_POLICIES[Priority.HIGH] = PriorityPolicy(1, (1.0,), 0)  # type: ignore[index]


@pytest.mark.parametrize(
    ("after", "choices", "repeat"),
    [
        (0, (60.0,), 0),
        (math.nan, (60.0,), 0),
        (True, (60.0,), 0),
        (60, (), 0),
        (60, [60.0], 0),
        (60, (600.0, 60.0), 0),
        (60, (60.0, 60.0), 0),
        (60, (0.0, 60.0), 0),
        (60, (math.inf,), 0),
        (60, (60.0,), -1),
        (60, (60.0,), math.nan),
    ],
    ids=repr,
)
def test_invalid_policies_are_refused(after: float, choices: Any, repeat: float) -> None:
    with pytest.raises(RuleError) as info:
        PriorityPolicy(after, choices, repeat)
    assert (info.value.code, info.value.status) == ("invalid_policy", 422)


# --- durable state ------------------------------------------------------------------------------


class Recorder:
    """A RuleSink keeping the latest record per key, as the alarm store does."""

    def __init__(self) -> None:
        self.episodes: dict[tuple[str, Vital], EpisodeState] = {}
        self.devices: dict[tuple[str, str], DeviceSeen] = {}
        self.calls = 0

    def episode_changed(self, state: EpisodeState) -> None:
        self.calls += 1
        self.episodes[(state.patient, state.vital)] = state

    def device_seen(self, seen: DeviceSeen) -> None:
        self.calls += 1
        self.devices[(seen.patient, seen.device)] = seen


class StoreDown(Exception):
    pass


class Failing(Recorder):
    def episode_changed(self, state: EpisodeState) -> None:
        raise StoreDown


def test_every_change_reaches_the_sink_and_the_snapshot_agrees() -> None:
    sink = Recorder()
    e = RuleEngine(RuleBook(), sink=sink)
    spo2(e, 88, 0)
    assert sink.episodes[(ALICE, Vital.SPO2)] == EpisodeState(
        ALICE, Vital.SPO2, 0, pending=-1, count=1, first_out_at=0
    )
    assert sink.devices[(ALICE, RING)] == DeviceSeen(ALICE, RING, 0, vitals=Vital.SPO2.bit)
    spo2(e, 88, 1)
    spo2(e, 88, 2)
    assert sink.episodes[(ALICE, Vital.SPO2)] == EpisodeState(
        ALICE, Vital.SPO2, 2, raised=-1, priority=Priority.MEDIUM
    )
    calls = sink.calls
    assert spo2(e, 97, 1) is None  # older: nothing changes, nothing is written
    assert sink.calls == calls
    e.check_stale(2000)
    assert sink.devices[(ALICE, RING)].stale_level == "urgent"
    episodes, devices = e.snapshot()
    assert set(episodes) == set(sink.episodes.values())
    assert set(devices) == set(sink.devices.values())


def test_a_failing_sink_leaves_the_engine_unchanged() -> None:
    sink = Failing()
    e = RuleEngine(RuleBook(), sink=sink)
    with pytest.raises(StoreDown):
        spo2(e, 88, 0)
    assert e.snapshot() == ((), ())
    with pytest.raises(StoreDown):
        spo2(e, 88, 1)
    assert e.snapshot() == ((), ())


def test_killed_after_m_minus_1_readings_the_mth_after_the_restart_raises() -> None:
    sink = Recorder()
    e = RuleEngine(RuleBook(), sink=sink)
    assert spo2(e, 88, 0) is None
    assert spo2(e, 88, 1) is None
    again = RuleEngine(RuleBook(), episodes=sink.episodes.values(), devices=sink.devices.values())
    raised = spo2(again, 88, 2)
    assert isinstance(raised, Raised)
    assert (raised.first_out_at, raised.readings_out) == (0, 3)


def test_hysteresis_and_an_urgent_run_survive_a_restart() -> None:
    sink = Recorder()
    e = RuleEngine(RuleBook(), sink=sink)
    for t in range(3):
        spo2(e, 88, t)
    spo2(e, 84, 3)
    spo2(e, 84, 4)  # two of the three urgent readings an upgrade needs

    def restart() -> RuleEngine:
        return RuleEngine(
            RuleBook(), sink=sink, episodes=sink.episodes.values(), devices=sink.devices.values()
        )

    e = restart()
    upgraded = spo2(e, 84, 5)
    assert isinstance(upgraded, Raised)
    assert (upgraded.upgraded, upgraded.first_out_at) == (True, 3)
    assert spo2(e, 92.5, 6) is None  # in range, not yet 1 % clear: the alert stays open
    e = restart()
    assert spo2(e, 92.9, 7) is None
    assert spo2(e, 93.0, 8) == Cleared(ALICE, Vital.SPO2, 8, 93.0)
    assert restart().check_stale(908) == [Stale(ALICE, RING, 8, 908)]


@pytest.mark.parametrize(
    "record",
    [
        EpisodeState(ALICE, 99, 0.0),  # type: ignore[arg-type]
        EpisodeState(ALICE, Vital.SPO2, math.nan),
        EpisodeState(ALICE, Vital.SPO2, 0.0, raised=2, priority=Priority.LOW),
        EpisodeState(ALICE, Vital.SPO2, 0.0, raised=-1),  # an open alert needs a priority
        EpisodeState(ALICE, Vital.SPO2, 0.0, priority=Priority.LOW),
        EpisodeState(ALICE, Vital.SPO2, 0.0, raised=1, priority="urgent"),  # type: ignore[arg-type]
        EpisodeState(ALICE, Vital.SPO2, 0.0, count=-1),
        DeviceSeen(ALICE, RING, math.inf),
        DeviceSeen(ALICE, RING, 0.0, "loud"),  # type: ignore[arg-type]
        DeviceSeen(ALICE, RING, 0.0, vitals=-1),
        DeviceSeen(ALICE, RING, 0.0, vitals=1 << 20),
        "not a record",
    ],
    ids=repr,
)
def test_records_it_could_not_have_written_are_refused(record: Any) -> None:
    kwargs = {"devices": [record]} if isinstance(record, DeviceSeen) else {"episodes": [record]}
    with pytest.raises(RuleError) as info:
        RuleEngine(RuleBook(), **kwargs)
    assert info.value.code == "invalid_state"


def test_restored_records_may_hold_plain_ints_and_strings() -> None:
    stored = EpisodeState(ALICE, 4, 5.0, raised=-1, priority="medium")  # type: ignore[arg-type]
    e = RuleEngine(RuleBook(), episodes=[stored])
    (episode,), _ = e.snapshot()
    assert (episode.vital, episode.priority) == (Vital.SPO2, Priority.MEDIUM)
    assert spo2(e, 97, 6) == Cleared(ALICE, Vital.SPO2, 6, 97)


STEP = st.one_of(
    st.tuples(
        st.just("reading"),
        st.sampled_from([ALICE, BOB]),
        st.sampled_from([RING, CUFF]),
        st.sampled_from([Vital.SPO2, Vital.HEART_RATE]),
        st.sampled_from([80.0, 84.0, 88.0, 92.5, 96.0, 101.0, 45.0, 35.0, 140.0]),
        st.floats(-5, 40),
    ),
    st.tuples(st.just("stale"), st.floats(0, 2000)),
)


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(STEP, max_size=40), cut=st.integers(min_value=0, max_value=40))
def test_an_engine_rebuilt_from_its_records_continues_exactly(
    steps: list[tuple[Any, ...]], cut: int
) -> None:
    """Half the stream, kill, rebuild from the sink's records, the rest == one uninterrupted run."""

    def run(e: RuleEngine, part: list[tuple[Any, ...]], clock: list[float]) -> list[Any]:
        events: list[Any] = []
        for step in part:
            if step[0] == "reading":
                _, patient, device, vital, value, dt = step
                clock[0] += dt  # readings may go back in time: out-of-order delivery
                low, high = (SPO2_LOW, SPO2_HIGH) if vital is Vital.SPO2 else (HR_LOW, HR_HIGH)
                events.append(e.observe(patient, device, vital, value, low, high, clock[0]))
            else:
                events.append(e.check_stale(clock[0] + step[1]))
        return events

    def book() -> RuleBook:
        rules = RuleBook()
        rules.set(BOB, Vital.SPO2, consecutive=2, sustain_s=10, stale_warning_s=100)
        rules.set(BOB, Vital.HEART_RATE, stale_warning_s=0, stale_urgent_s=300)
        return rules

    whole = RuleEngine(book())
    expected = run(whole, steps, [0.0])
    sink = Recorder()
    first = RuleEngine(book(), sink=sink)
    clock = [0.0]
    got = run(first, steps[:cut], clock)
    second = RuleEngine(
        book(), sink=sink, episodes=sink.episodes.values(), devices=sink.devices.values()
    )
    got += run(second, steps[cut:], clock)
    assert got == expected
    assert sorted(map(repr, second.snapshot()[0])) == sorted(map(repr, whole.snapshot()[0]))
    assert sorted(map(repr, second.snapshot()[1])) == sorted(map(repr, whole.snapshot()[1]))


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_observers_raise_exactly_once() -> None:
    _, e = engine()
    events: list[Raised | Cleared | None] = []
    start = threading.Barrier(4)

    def feed() -> None:
        start.wait()
        mine = [spo2(e, 85, 1.0) for _ in range(500)]
        events.extend(mine)

    run_together(feed, [()] * 4)
    assert len(events) == 2000
    assert sum(isinstance(ev, Raised) for ev in events) == 1


# --- properties ----------------------------------------------------------------------------------

DIRECTION_VALUE = {-1: 85.0, 0: 96.0, 1: 101.0}


@settings(max_examples=200, deadline=None)
@given(
    m=st.integers(min_value=2, max_value=6),
    directions=st.lists(st.sampled_from([-1, 0, 1]), max_size=40),
)
def test_count_rule_raises_exactly_at_the_first_run_of_m(m: int, directions: list[int]) -> None:
    """An in-range or opposite reading between out-of-range ones never lets it raise early."""
    book = RuleBook()
    book.set(ALICE, Vital.SPO2, consecutive=m, sustain_s=0)
    e = RuleEngine(book)
    events = [spo2(e, DIRECTION_VALUE[d], t) for t, d in enumerate(directions)]
    first_run_end = next(
        (
            i
            for i in range(m - 1, len(directions))
            if directions[i] != 0 and len(set(directions[i - m + 1 : i + 1])) == 1
        ),
        None,
    )
    raised_at = next((i for i, ev in enumerate(events) if isinstance(ev, Raised)), None)
    assert raised_at == first_run_end
    if raised_at is not None:
        ev = events[raised_at]
        assert isinstance(ev, Raised)
        assert ev.direction == directions[raised_at]
        assert ev.readings_out == m


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(min_value=80, max_value=110), max_size=40),
    m=st.integers(min_value=1, max_value=4),
    h=st.floats(min_value=0, max_value=5),
)
def test_events_alternate_sensibly(values: list[float], m: int, h: float) -> None:
    """Never Cleared without an open alert; Cleared readings are in band, Raised ones are out."""
    book = RuleBook()
    book.set(ALICE, Vital.SPO2, consecutive=m, sustain_s=0, hysteresis=h)
    e = RuleEngine(book)
    open_alert = False
    for t, value in enumerate(values):
        ev = spo2(e, value, t)
        if isinstance(ev, Cleared):
            assert open_alert
            assert SPO2_LOW + min(h, 4) <= value <= SPO2_HIGH - min(h, 4)
            open_alert = False
        elif isinstance(ev, Raised):
            assert not SPO2_LOW <= value <= SPO2_HIGH
            open_alert = True


@settings(max_examples=100, deadline=None)
@given(
    values=st.lists(st.sampled_from([85.0, 96.0, 101.0]), min_size=1, max_size=30),
    late=st.lists(
        st.one_of(st.none(), st.tuples(st.floats(0.5, 50), st.sampled_from([85.0, 96.0, 101.0]))),
        max_size=30,
    ),
)
def test_older_readings_never_change_the_outcome(
    values: list[float], late: list[tuple[float, float] | None]
) -> None:
    """Interleaving late readings (older than the last one seen) yields the same events."""
    _, clean = engine()
    expected = [spo2(clean, v, t + 100) for t, v in enumerate(values)]
    _, noisy = engine()
    got = []
    for t, v in enumerate(values):
        got.append(spo2(noisy, v, t + 100))
        extra = late[t] if t < len(late) else None
        if extra is not None:
            age, late_value = extra
            assert spo2(noisy, late_value, t + 100 - age) is None
    assert got == expected


# --- docs/alarms.md stays in step with the code ----------------------------------------------------

ALARMS_MD = Path(__file__).resolve().parents[3] / "docs" / "alarms.md"


def _rows(first_cell: str) -> list[list[str]]:
    rows = []
    for line in ALARMS_MD.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.strip().startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


def _seconds(text: str) -> list[float]:
    """'5, 10, 15 min' -> [300, 600, 900]; '60 s' -> [60]."""
    unit = 60.0 if text.rstrip().endswith("min") else 1.0
    return [float(n) * unit for n in re.findall(r"\d+(?:\.\d+)?", text)]


def test_the_documented_confirmation_table_matches_the_default_rules() -> None:
    names = {
        "SpO2": [Vital.SPO2],
        "heart rate": [Vital.HEART_RATE],
        "systolic / diastolic BP": [Vital.SYSTOLIC_BP, Vital.DIASTOLIC_BP],
        "temperature": [Vital.BODY_TEMPERATURE],
        "glucose": [Vital.GLUCOSE],
        "respiratory rate": [Vital.RESPIRATORY_RATE],
        "capillary glucose": [Vital.CAPILLARY_GLUCOSE],
    }
    seen = set()
    for name, vitals in names.items():
        (row,) = [r for r in _rows(name) if r[1].isdigit()]  # the M / N / h table
        for vital in vitals:
            rule = DEFAULT_RULES[vital]
            m, n, h = int(row[1]), float(row[2]), float(row[3].split()[0])
            assert (m, n, h) == (rule.consecutive, rule.sustain_s, rule.hysteresis), vital
            seen.add(vital)
    assert seen == set(Vital)


@pytest.mark.parametrize("priority", list(Priority))
def test_the_documented_policy_table_matches_the_default_policies(priority: Priority) -> None:
    (row,) = _rows(priority.value)
    policy = DEFAULT_POLICIES[priority]
    assert _seconds(row[1]) == [policy.escalate_after_s]
    assert tuple(_seconds(row[2])) == policy.snooze_choices_s
    assert (_seconds(row[3].split(";")[0]) or [0.0]) == [policy.repeat_every_s]


def test_the_alarms_page_keeps_the_markers_for_the_measured_delays() -> None:
    text = ALARMS_MD.read_text()
    assert "## Disclosed delays (IEC 60601-1-8 §6.4)" in text
    assert text.index("<!-- delays:begin -->") < text.index("<!-- delays:end -->")
