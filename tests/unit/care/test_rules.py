"""Alert rules: confirmation by count or time, hysteresis, direction, ordering, staleness."""

from __future__ import annotations

import math
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalchain.care.rules import (
    DEFAULT_RULES,
    Cleared,
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


def hr(e: RuleEngine, value: float, at: float, patient: str = ALICE) -> Raised | Cleared | None:
    return e.observe(patient, RING, Vital.HEART_RATE, value, HR_LOW, HR_HIGH, at)


# --- defaults ------------------------------------------------------------------------------------


def test_defaults_cover_every_vital_with_the_documented_values() -> None:
    assert set(DEFAULT_RULES) == set(Vital)
    expected = {
        Vital.SPO2: (3, 30, 1, 300),
        Vital.HEART_RATE: (3, 30, 5, 300),
        Vital.SYSTOLIC_BP: (2, 60, 5, 300),
        Vital.DIASTOLIC_BP: (2, 60, 5, 300),
        Vital.BODY_TEMPERATURE: (2, 120, 0.2, 300),
        Vital.GLUCOSE: (2, 300, 10, 300),
    }
    for vital, (count, sustain, h, stale) in expected.items():
        assert DEFAULT_RULES[vital] == VitalRule(count, sustain, h, stale), vital


@pytest.mark.parametrize("vital", list(Vital))
def test_default_hysteresis_leaves_a_real_band_inside_the_normal_range(vital: Vital) -> None:
    low, high = vital.info.normal
    assert 0 < DEFAULT_RULES[vital].hysteresis < (high - low) / 2


def test_defaults_cannot_be_mutated_in_place() -> None:
    with pytest.raises(TypeError):
        DEFAULT_RULES[Vital.SPO2] = VitalRule(1, 0, 0, 0)  # type: ignore[index]


def test_a_rulebook_needs_a_rule_for_every_vital() -> None:
    partial: dict[Vital, VitalRule] = {v: r for v, r in DEFAULT_RULES.items() if v != Vital.GLUCOSE}
    with pytest.raises(RuleError, match="glucose") as info:
        RuleBook(partial)
    assert info.value.code == "invalid_rule"


def test_a_rulebook_copies_its_defaults() -> None:
    defaults = dict(DEFAULT_RULES)
    book = RuleBook(defaults)
    defaults[Vital.SPO2] = VitalRule(1, 0, 0, 0)
    assert book.rule(ALICE, Vital.SPO2) == DEFAULT_RULES[Vital.SPO2]


# --- raising ------------------------------------------------------------------------------------


def test_count_path_raises_on_the_mth_consecutive_reading() -> None:
    _, e = engine()
    assert spo2(e, 88, 0) is None
    assert spo2(e, 87, 1) is None
    raised = spo2(e, 86, 2)
    assert raised == Raised(
        patient=ALICE,
        device=RING,
        vital=Vital.SPO2,
        direction=-1,
        value=86,
        low=SPO2_LOW,
        high=SPO2_HIGH,
        first_out_at=0,
        at=2,
        readings_out=3,
    )


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
    assert e.check_stale(301.9) == []  # last_seen is 2, untouched by the refused reading
    assert e.check_stale(302) == [Stale(ALICE, RING, 2, 302)]


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
    assert first == VitalRule(4, 300, 10, 300)
    assert second == VitalRule(4, 300, 15.5, 300)
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
        {"stale_after_s": 0},
        {"stale_after_s": 86400.0},
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
        VitalRule(0, 30, 1, 300)
    bad = dict(DEFAULT_RULES)
    bad[Vital.SPO2] = "3 in a row"  # type: ignore[assignment]
    with pytest.raises(RuleError):
        RuleBook(bad)


def test_stale_after_is_the_smallest_enabled_setting() -> None:
    book = RuleBook()
    assert book.stale_after(ALICE) == 300
    book.set(ALICE, Vital.GLUCOSE, stale_after_s=0)
    assert book.stale_after(ALICE) == 300
    book.set(ALICE, Vital.SPO2, stale_after_s=60)
    assert book.stale_after(ALICE) == 60
    for vital in Vital:
        book.set(ALICE, vital, stale_after_s=0)
    assert book.stale_after(ALICE) == 0
    assert book.stale_after(BOB) == 300


# --- stale data ----------------------------------------------------------------------------------


def test_stale_fires_once_per_silence_and_re_arms() -> None:
    _, e = engine()
    spo2(e, 97, 100)
    assert e.check_stale(399.9) == []
    assert e.check_stale(400) == [Stale(ALICE, RING, 100, 400)]
    assert e.check_stale(500) == []  # once per silence
    spo2(e, 97, 600)
    assert e.check_stale(899) == []
    assert e.check_stale(900) == [Stale(ALICE, RING, 600, 900)]


def test_a_delayed_older_reading_does_not_re_arm_stale() -> None:
    _, e = engine()
    spo2(e, 97, 100)
    assert len(e.check_stale(400)) == 1
    e.observe(ALICE, RING, Vital.HEART_RATE, 70, HR_LOW, HR_HIGH, 50)
    assert e.check_stale(1000) == []


def test_stale_is_per_device_and_follows_the_patients_rules() -> None:
    book, e = engine()
    book.set(BOB, Vital.SPO2, stale_after_s=60)
    spo2(e, 97, 0)
    spo2(e, 97, 0, patient=BOB)
    e.observe(ALICE, CUFF, Vital.SYSTOLIC_BP, 120, 90, 140, 200)
    assert e.check_stale(60) == [Stale(BOB, RING, 0, 60)]
    assert e.check_stale(300) == [Stale(ALICE, RING, 0, 300)]
    assert e.check_stale(500) == [Stale(ALICE, CUFF, 200, 500)]


def test_stale_disabled_when_every_rule_says_zero() -> None:
    book, e = engine()
    for vital in Vital:
        book.set(ALICE, vital, stale_after_s=0)
    spo2(e, 97, 0)
    assert e.check_stale(1e9) == []


def test_check_stale_refuses_a_non_finite_now() -> None:
    _, e = engine()
    spo2(e, 97, 0)
    with pytest.raises(RuleError) as info:
        e.check_stale(math.nan)
    assert info.value.code == "invalid_time"
    assert len(e.check_stale(300)) == 1


# --- concurrency ---------------------------------------------------------------------------------


def test_concurrent_observers_raise_exactly_once() -> None:
    _, e = engine()
    events: list[Raised | Cleared | None] = []
    start = threading.Barrier(4)

    def feed() -> None:
        start.wait()
        mine = [spo2(e, 85, 1.0) for _ in range(500)]
        events.extend(mine)

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
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
