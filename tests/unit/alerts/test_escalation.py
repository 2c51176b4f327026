"""Escalation: tier 0, timed escalation, acknowledgement, snooze, exhaustion; priorities,
repeats, receipts, bounded memory and rebuilding from the durable records."""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.threads import run_together
from vitalchain.alerts.escalation import (
    AlertRecord,
    AlertState,
    Delivery,
    DeliveryRecord,
    EscalationError,
    Escalator,
    SnoozeRecord,
)
from vitalchain.alerts.rules import Priority, PriorityPolicy
from vitalchain.errors import VitalchainError
from vitalchain.vitals import Vital

PATIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
DR_A = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
DR_B = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"
DR_C = "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"
STRANGER = "0x52908400098527886E0F7030069857D2E4169EE7"
PROVIDERS = (DR_A, DR_B, DR_C)
TIMEOUT = 120.0
HIGH, MEDIUM, LOW = Priority.HIGH, Priority.MEDIUM, Priority.LOW
# Medium alerts (the default) escalate after TIMEOUT; the snooze choices cover the durations the
# older tests use.  Receipts are left out of those tests by a receipt timeout nobody reaches.
POLICIES = {
    HIGH: PriorityPolicy(60.0, (300.0, 600.0, 900.0), 60.0),
    MEDIUM: PriorityPolicy(TIMEOUT, (10.0, 60.0, 600.0, 3600.0, 86400.0), 0.0),
    LOW: PriorityPolicy(900.0, (1800.0, 3600.0, 7200.0), 0.0),
}
NO_RECEIPTS = 1e9


class FakeClock:
    """Injected time: tests move ``now`` by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def esc(clock: FakeClock) -> Escalator:
    return Escalator(clock, POLICIES, receipt_timeout_s=NO_RECEIPTS)


def recipients(deliveries: list[Delivery]) -> list[str]:
    return [d.recipient for d in deliveries]


# --- tier 0 --------------------------------------------------------------------------------------


def test_open_delivers_to_the_patient_and_the_first_provider(esc: Escalator) -> None:
    sent = esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    assert sent == [Delivery("a1", PATIENT, 0, 1000.0), Delivery("a1", DR_A, 0, 1000.0)]
    assert esc.state("a1") == AlertState(
        patient=PATIENT,
        vital=Vital.SPO2,
        providers=PROVIDERS,
        acknowledged_by=None,
        acknowledged_at=None,
        deliveries=tuple(sent),
    )


def test_open_without_providers_reaches_the_patient_only(esc: Escalator, clock: FakeClock) -> None:
    assert recipients(esc.open("a1", PATIENT, None, [])) == [PATIENT]
    clock.now += 10 * TIMEOUT
    assert esc.due() == []


def test_repeated_addresses_are_delivered_once(esc: Escalator, clock: FakeClock) -> None:
    sent = esc.open("a1", PATIENT, Vital.SPO2, [DR_A, PATIENT, DR_A, DR_B])
    assert recipients(sent) == [PATIENT, DR_A]
    assert esc.state("a1").providers == (DR_A, DR_B)
    clock.now += TIMEOUT
    assert recipients(esc.due()) == [DR_B]
    clock.now += TIMEOUT
    assert esc.due() == []


def test_one_string_is_not_a_provider_list(esc: Escalator) -> None:
    with pytest.raises(TypeError):
        esc.open("a1", PATIENT, Vital.SPO2, DR_A)


def test_reopening_with_the_same_arguments_is_idempotent(esc: Escalator) -> None:
    first = esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    assert esc.open("a1", PATIENT, Vital.SPO2, list(PROVIDERS)) == []
    assert esc.state("a1").deliveries == tuple(first)


@pytest.mark.parametrize(
    ("patient", "vital", "providers"),
    [
        (DR_C, Vital.SPO2, PROVIDERS),
        (PATIENT, Vital.GLUCOSE, PROVIDERS),
        (PATIENT, None, PROVIDERS),
        (PATIENT, Vital.SPO2, (DR_B, DR_A, DR_C)),
    ],
)
def test_reopening_with_other_arguments_is_refused(
    esc: Escalator, patient: str, vital: Vital | None, providers: tuple[str, ...]
) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    before = esc.state("a1")
    with pytest.raises(EscalationError) as info:
        esc.open("a1", patient, vital, providers)
    assert (info.value.code, info.value.status) == ("alert_conflict", 409)
    assert esc.state("a1") == before


# --- escalation ----------------------------------------------------------------------------------


def test_escalates_to_the_next_provider_after_the_timeout(esc: Escalator, clock: FakeClock) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    clock.now += TIMEOUT - 0.001
    assert esc.due() == []
    clock.now = 1000 + TIMEOUT
    assert esc.due() == [Delivery("a1", DR_B, 1, 1000 + TIMEOUT)]
    assert esc.due() == []  # never the same delivery twice
    clock.now += TIMEOUT
    assert esc.due() == [Delivery("a1", DR_C, 2, 1000 + 2 * TIMEOUT)]


def test_exhausted_provider_list_stops_escalation(esc: Escalator, clock: FakeClock) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    seen = []
    for _ in range(10):
        clock.now += TIMEOUT
        seen += esc.due()
    assert recipients(seen) == [DR_B, DR_C]
    assert [d.recipient for d in esc.state("a1").deliveries] == [PATIENT, DR_A, DR_B, DR_C]


def test_the_timeout_runs_from_the_actual_delivery(esc: Escalator, clock: FakeClock) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    clock.now += 5 * TIMEOUT  # due() was not called for a while
    assert recipients(esc.due()) == [DR_B]  # one tier per call, not a burst
    assert esc.due() == []
    clock.now += TIMEOUT - 1
    assert esc.due() == []  # Dr B gets a full timeout to answer
    clock.now += 1
    assert recipients(esc.due()) == [DR_C]


def test_alerts_escalate_independently(esc: Escalator, clock: FakeClock) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    clock.now += 60
    esc.open("a2", PATIENT, Vital.HEART_RATE, (DR_C, DR_A))
    clock.now += 60
    assert esc.due() == [Delivery("a1", DR_B, 1, clock.now)]
    clock.now += 60
    assert esc.due() == [Delivery("a2", DR_A, 1, clock.now)]


# --- acknowledgement -----------------------------------------------------------------------------


def test_no_escalation_after_an_acknowledgement(esc: Escalator, clock: FakeClock) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    clock.now += 30
    assert esc.acknowledge("a1", DR_A) is True
    for _ in range(5):
        clock.now += TIMEOUT
        assert esc.due() == []
    state = esc.state("a1")
    assert (state.acknowledged_by, state.acknowledged_at) == (DR_A, 1030)


def test_acknowledging_mid_chain_stops_later_tiers(esc: Escalator, clock: FakeClock) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    clock.now += TIMEOUT
    esc.due()
    assert esc.acknowledge("a1", DR_B) is True
    clock.now += TIMEOUT
    assert esc.due() == []
    assert DR_C not in [d.recipient for d in esc.state("a1").deliveries]


def test_acknowledge_is_idempotent_and_the_first_wins(esc: Escalator, clock: FakeClock) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    assert esc.acknowledge("a1", DR_A) is True
    clock.now += 5
    assert esc.acknowledge("a1", DR_A) is False
    assert esc.acknowledge("a1", PATIENT) is False
    state = esc.state("a1")
    assert (state.acknowledged_by, state.acknowledged_at) == (DR_A, 1000)


def test_the_patient_may_acknowledge_even_when_snoozed(esc: Escalator) -> None:
    esc.snooze(PATIENT, PATIENT, Vital.SPO2, 600)
    sent = esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    assert PATIENT not in recipients(sent)
    assert esc.acknowledge("a1", PATIENT) is True


@pytest.mark.parametrize(
    "by",
    [
        STRANGER,
        DR_B,  # listed, but not notified yet
        DR_A.lower(),  # addresses are compared exactly
    ],
)
def test_acknowledge_by_a_non_recipient_is_refused(
    esc: Escalator, clock: FakeClock, by: str
) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    with pytest.raises(EscalationError) as info:
        esc.acknowledge("a1", by)
    assert (info.value.code, info.value.status) == ("not_a_recipient", 403)
    assert esc.state("a1").acknowledged_by is None
    clock.now += TIMEOUT
    assert recipients(esc.due()) == [DR_B]  # the refusal stopped nothing


def test_a_provider_may_acknowledge_once_notified(esc: Escalator, clock: FakeClock) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    clock.now += TIMEOUT
    esc.due()
    assert esc.acknowledge("a1", DR_B) is True


def test_unknown_alerts(esc: Escalator) -> None:
    for call in (lambda: esc.acknowledge("nope", PATIENT), lambda: esc.state("nope")):
        with pytest.raises(EscalationError) as info:
            call()
        assert (info.value.code, info.value.status) == ("unknown_alert", 404)
        assert isinstance(info.value, VitalchainError)


# --- snooze --------------------------------------------------------------------------------------


def test_a_snoozed_primary_is_skipped_so_the_next_is_tier_0(
    esc: Escalator, clock: FakeClock
) -> None:
    esc.snooze(DR_A, PATIENT, Vital.SPO2, 3600)
    sent = esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    assert sent == [Delivery("a1", PATIENT, 0, 1000), Delivery("a1", DR_B, 0, 1000)]
    clock.now += TIMEOUT
    assert esc.due() == [Delivery("a1", DR_C, 1, clock.now)]
    clock.now += TIMEOUT
    assert esc.due() == []  # Dr A had their turn while snoozed


def test_a_snooze_for_another_vital_or_patient_does_not_apply(esc: Escalator) -> None:
    esc.snooze(DR_A, PATIENT, Vital.GLUCOSE, 3600)
    esc.snooze(DR_A, STRANGER, None, 3600)
    assert recipients(esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)) == [PATIENT, DR_A]


def test_a_snoozed_patient_is_not_notified(esc: Escalator) -> None:
    esc.snooze(PATIENT, PATIENT, Vital.SPO2, 60)
    assert esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS) == [Delivery("a1", DR_A, 0, 1000)]


def test_everyone_snoozed_reaches_the_patient_only(esc: Escalator, clock: FakeClock) -> None:
    for provider in PROVIDERS:
        esc.snooze(provider, PATIENT, None, 3600)
    assert recipients(esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)) == [PATIENT]
    clock.now += 3600 + TIMEOUT  # even after the snoozes ended: their turns are past
    assert esc.due() == []


def test_a_provider_who_snoozes_after_open_is_skipped_in_escalation(
    esc: Escalator, clock: FakeClock
) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    esc.snooze(DR_B, PATIENT, Vital.SPO2, 600)
    clock.now += TIMEOUT
    assert esc.due() == [Delivery("a1", DR_C, 1, clock.now)]


def test_snooze_expires_by_time(esc: Escalator, clock: FakeClock) -> None:
    assert esc.snooze(DR_A, PATIENT, Vital.SPO2, 60) == 1060
    clock.now = 1059.999
    assert esc.is_snoozed(DR_A, PATIENT, Vital.SPO2)
    assert recipients(esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)) == [PATIENT, DR_B]
    clock.now = 1060
    assert not esc.is_snoozed(DR_A, PATIENT, Vital.SPO2)
    assert recipients(esc.open("a2", PATIENT, Vital.SPO2, PROVIDERS)) == [PATIENT, DR_A]


def test_snoozing_again_replaces_the_end_time(esc: Escalator, clock: FakeClock) -> None:
    esc.snooze(DR_A, PATIENT, Vital.SPO2, 600)
    assert esc.snooze(DR_A, PATIENT, Vital.SPO2, 10) == 1010
    clock.now = 1010
    assert not esc.is_snoozed(DR_A, PATIENT, Vital.SPO2)


def test_a_snooze_without_a_vital_covers_every_vital(esc: Escalator) -> None:
    esc.snooze(DR_A, PATIENT, None, 600)
    for vital in [*Vital, None]:
        assert esc.is_snoozed(DR_A, PATIENT, vital), vital
    assert recipients(esc.open("a1", PATIENT, Vital.HEART_RATE, PROVIDERS)) == [PATIENT, DR_B]
    assert recipients(esc.open("a2", PATIENT, None, PROVIDERS)) == [PATIENT, DR_B]
    assert not esc.is_snoozed(DR_B, PATIENT, Vital.SPO2)
    assert not esc.is_snoozed(DR_A, STRANGER, Vital.SPO2)


def test_a_vital_snooze_does_not_cover_alerts_without_a_vital(esc: Escalator) -> None:
    esc.snooze(DR_A, PATIENT, Vital.SPO2, 600)
    assert not esc.is_snoozed(DR_A, PATIENT, None)
    assert recipients(esc.open("a1", PATIENT, None, PROVIDERS)) == [PATIENT, DR_A]


def test_snooze_acknowledges_nothing(esc: Escalator, clock: FakeClock) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    esc.snooze(DR_A, PATIENT, Vital.SPO2, 600)
    assert esc.state("a1").acknowledged_by is None
    clock.now += TIMEOUT
    assert recipients(esc.due()) == [DR_B]


@pytest.mark.parametrize(
    "duration",
    [0, 0.0, -1, -math.inf, math.inf, math.nan, 3600.001, 1e12, True, 59.999, 120, "60"],
    ids=repr,
)
def test_invalid_snooze_durations_are_refused(esc: Escalator, duration: float) -> None:
    with pytest.raises(EscalationError) as info:
        esc.snooze(DR_A, PATIENT, Vital.SPO2, duration)
    assert (info.value.code, info.value.status) == ("invalid_snooze", 422)
    assert "10, 60, 600, 3600, 86400 s" in info.value.message  # the allowed choices
    assert not esc.is_snoozed(DR_A, PATIENT, Vital.SPO2)


def test_the_longest_snooze_is_accepted(esc: Escalator, clock: FakeClock) -> None:
    assert esc.snooze(DR_A, PATIENT, Vital.SPO2, 3600) == 4600
    clock.now = 4599
    assert esc.is_snoozed(DR_A, PATIENT, Vital.SPO2)


def test_an_invalid_snooze_keeps_the_earlier_one(esc: Escalator, clock: FakeClock) -> None:
    esc.snooze(DR_A, PATIENT, Vital.SPO2, 600)
    with pytest.raises(EscalationError):
        esc.snooze(DR_A, PATIENT, Vital.SPO2, -1)
    clock.now += 599
    assert esc.is_snoozed(DR_A, PATIENT, Vital.SPO2)


@pytest.mark.parametrize(
    ("policies", "receipt_timeout"),
    [
        (0, 30),
        (-1, 30),
        (math.nan, 30),
        (POLICIES, 0),
        (POLICIES, math.inf),
        (POLICIES, True),
        ({HIGH: POLICIES[HIGH], MEDIUM: POLICIES[MEDIUM]}, 30),  # no LOW policy
        ({**POLICIES, LOW: (900, (1800,), 0)}, 30),  # not a PriorityPolicy
        ({**POLICIES, HIGH: PriorityPolicy(60, (300,), 0)}, 30),  # a HIGH alarm must repeat
        ({**POLICIES, HIGH: PriorityPolicy(60, (300, 7200), 60)}, 30),  # snoozed past 1 h
    ],
    ids=repr,
)
def test_invalid_configuration_is_refused(policies: Any, receipt_timeout: float) -> None:
    with pytest.raises(EscalationError) as info:
        Escalator(FakeClock(), policies, receipt_timeout_s=receipt_timeout)
    assert (info.value.code, info.value.status) == ("invalid_config", 500)


# --- concurrency and properties ------------------------------------------------------------------


def test_concurrent_acknowledgements_have_one_winner(esc: Escalator) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    results: list[bool] = []
    start = threading.Barrier(8)

    def ack(by: str) -> None:
        start.wait()
        results.append(esc.acknowledge("a1", by))

    run_together(ack, [(who,) for who in [PATIENT, DR_A] * 4])
    assert sorted(results) == [False] * 7 + [True]


ADDRESSES = [DR_A, DR_B, DR_C, STRANGER, PATIENT]


@settings(max_examples=150, deadline=None)
@given(
    providers=st.lists(st.sampled_from(ADDRESSES), max_size=8),
    snoozed=st.sets(st.sampled_from(ADDRESSES)),
    steps=st.lists(st.floats(min_value=0, max_value=3 * TIMEOUT), max_size=12),
)
def test_deliveries_follow_the_order_and_never_repeat(
    providers: list[str], snoozed: set[str], steps: list[float]
) -> None:
    clock = FakeClock()
    esc = Escalator(clock, POLICIES, receipt_timeout_s=NO_RECEIPTS)
    for address in snoozed:
        esc.snooze(address, PATIENT, None, 86400)
    sent = esc.open("a1", PATIENT, Vital.SPO2, providers)
    for step in steps:
        clock.now += step
        sent += esc.due()
    who = recipients(sent)
    assert len(who) == len(set(who))
    assert not set(who) & snoozed
    expected = [p for p in dict.fromkeys(providers) if p != PATIENT and p not in snoozed]
    provider_deliveries = [d for d in sent if d.recipient != PATIENT]
    assert [d.recipient for d in provider_deliveries] == expected[: len(provider_deliveries)]
    assert [d.tier for d in provider_deliveries] == list(range(len(provider_deliveries)))
    for earlier, later in itertools.pairwise(provider_deliveries):
        assert later.at - earlier.at >= TIMEOUT


# --- priorities: per-priority escalation, snooze choices ---------------------------------------


@pytest.fixture
def real(clock: FakeClock) -> Escalator:
    """The shipped defaults: HIGH 60 s, MEDIUM 300 s, LOW 900 s; receipts after 30 s."""
    return Escalator(clock)


@pytest.mark.parametrize(("priority", "after"), [(HIGH, 60), (MEDIUM, 300), (LOW, 900)])
def test_escalation_timeouts_are_per_priority(
    real: Escalator, clock: FakeClock, priority: Priority, after: float
) -> None:
    sent = real.open("a1", PATIENT, Vital.SPO2, PROVIDERS, priority)
    assert {d.priority for d in sent} == {priority}
    real.receipt("a1", DR_A)  # delivered: the acknowledgement timeout applies
    clock.now += after - 0.001
    assert [d for d in real.due() if d.repeat == 0] == []
    clock.now = 1000 + after
    assert [d for d in real.due() if d.repeat == 0] == [
        Delivery("a1", DR_B, 1, clock.now, priority)
    ]


def test_snooze_choices_are_a_fixed_list_per_priority(real: Escalator) -> None:
    assert real.snooze_choices(HIGH) == (300, 600, 900)
    assert real.snooze_choices("medium") == (900, 1800, 3600)
    assert real.snooze_choices(LOW) == (1800, 3600, 7200)
    assert real.snooze(DR_A, PATIENT, Vital.SPO2, 900, HIGH) == 1900
    with pytest.raises(EscalationError) as info:
        real.snooze(DR_A, PATIENT, Vital.SPO2, 1800, HIGH)  # fine for medium, not for high
    assert (info.value.code, info.value.status) == ("invalid_snooze", 422)
    assert "high alarm lasts one of 300, 600, 900 s" in info.value.message


@pytest.mark.parametrize("priority", ["urgent", "", None, 3, Vital.SPO2])
def test_an_unknown_priority_is_refused(real: Escalator, priority: Any) -> None:
    for call in (
        lambda: real.open("a1", PATIENT, Vital.SPO2, PROVIDERS, priority),
        lambda: real.snooze(DR_A, PATIENT, Vital.SPO2, 900, priority),
        lambda: real.snooze_choices(priority),
        lambda: real.is_snoozed(DR_A, PATIENT, Vital.SPO2, priority),
    ):
        with pytest.raises(EscalationError) as info:
            call()
        assert (info.value.code, info.value.status) == ("invalid_priority", 422)
    assert real.sizes() == {"alerts": 0, "deliveries": 0, "active": 0, "snoozes": 0}


def test_a_snooze_covers_its_priority_and_lower_only(real: Escalator) -> None:
    real.snooze(DR_A, PATIENT, Vital.SPO2, 900, MEDIUM)
    assert real.is_snoozed(DR_A, PATIENT, Vital.SPO2, LOW)
    assert real.is_snoozed(DR_A, PATIENT, Vital.SPO2, MEDIUM)
    assert not real.is_snoozed(DR_A, PATIENT, Vital.SPO2, HIGH)
    assert recipients(real.open("h", PATIENT, Vital.SPO2, PROVIDERS, HIGH)) == [PATIENT, DR_A]
    assert recipients(real.open("m", PATIENT, Vital.SPO2, PROVIDERS, MEDIUM)) == [PATIENT, DR_B]
    real.snooze(DR_B, PATIENT, None, 300, HIGH)
    assert all(real.is_snoozed(DR_B, PATIENT, Vital.GLUCOSE, p) for p in Priority)


def test_the_reopen_check_includes_the_priority(real: Escalator) -> None:
    real.open("a1", PATIENT, Vital.SPO2, PROVIDERS, MEDIUM)
    assert real.open("a1", PATIENT, Vital.SPO2, PROVIDERS, "medium") == []
    with pytest.raises(EscalationError) as info:
        real.open("a1", PATIENT, Vital.SPO2, PROVIDERS, HIGH)
    assert info.value.code == "alert_conflict"


# --- HIGH: repeats until acknowledged, snoozed at most 15 min ---------------------------------


def test_a_high_alert_repeats_until_acknowledged(esc: Escalator, clock: FakeClock) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, (DR_A, DR_B), HIGH)
    clock.now += 60
    assert esc.due() == [
        Delivery("a1", PATIENT, 0, 1060, HIGH, 1),
        Delivery("a1", DR_A, 0, 1060, HIGH, 1),
        Delivery("a1", DR_B, 1, 1060, HIGH, 0),  # and the next tier
    ]
    assert esc.due() == []
    clock.now += 59
    assert esc.due() == []
    clock.now += 1
    assert esc.due() == [
        Delivery("a1", PATIENT, 0, 1120, HIGH, 2),
        Delivery("a1", DR_A, 0, 1120, HIGH, 2),
        Delivery("a1", DR_B, 1, 1120, HIGH, 2),
    ]
    esc.resolve("a1")  # the condition ended, but the alarm latches until acknowledged
    clock.now += 60
    assert [d.repeat for d in esc.due()] == [3, 3, 3]
    assert esc.acknowledge("a1", DR_B) is True
    for _ in range(5):
        clock.now += 60
        assert esc.due() == []
    assert esc.sizes()["alerts"] == 0  # acknowledged and resolved: retired


def test_medium_and_low_alerts_do_not_repeat(esc: Escalator, clock: FakeClock) -> None:
    esc.open("m", PATIENT, Vital.SPO2, (), MEDIUM)
    esc.open("l", PATIENT, Vital.SPO2, (), LOW)
    for _ in range(10):
        clock.now += 600
        assert esc.due() == []


def test_a_high_alert_reaches_a_snoozed_recipient_once_the_snooze_ends(
    esc: Escalator, clock: FakeClock
) -> None:
    esc.snooze(DR_A, PATIENT, Vital.SPO2, 300, HIGH)
    assert recipients(esc.open("a1", PATIENT, Vital.SPO2, (DR_A, DR_B), HIGH)) == [PATIENT, DR_B]
    with pytest.raises(EscalationError):
        esc.receipt("a1", DR_A)  # not delivered yet
    for _ in range(4):
        clock.now += 60
        assert DR_A not in recipients(esc.due())
    clock.now = 1300  # the longest HIGH snooze is over: the alarm reaches Dr A too
    repeated = esc.due()
    assert Delivery("a1", DR_A, 0, 1300, HIGH, 5) in repeated
    assert esc.acknowledge("a1", DR_A) is True


def test_a_high_alert_that_everyone_snoozed_still_goes_out_after_the_snooze(
    esc: Escalator, clock: FakeClock
) -> None:
    esc.snooze(PATIENT, PATIENT, None, 900, HIGH)
    esc.snooze(DR_A, PATIENT, None, 900, HIGH)
    assert esc.open("a1", PATIENT, Vital.SPO2, (DR_A,), HIGH) == []
    clock.now += 900
    assert recipients(esc.due()) == [PATIENT, DR_A]


# --- receipts and undeliverable alerts --------------------------------------------------------


def test_receipts_are_distinct_from_acknowledgements(real: Escalator) -> None:
    real.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    assert real.receipt("a1", DR_A) is True
    assert real.receipt("a1", DR_A) is False
    assert real.receipt("a1", PATIENT) is True
    state = real.state("a1")
    assert (state.receipts, state.acknowledged_by) == ((PATIENT, DR_A), None)  # delivery order


@pytest.mark.parametrize(
    ("alert_id", "recipient", "code", "status"),
    [
        ("nope", DR_A, "unknown_alert", 404),
        ("a1", DR_B, "not_a_recipient", 403),  # listed, not delivered yet
        ("a1", STRANGER, "not_a_recipient", 403),
        ("a1", DR_A.lower(), "not_a_recipient", 403),
    ],
)
def test_receipt_refusals(
    real: Escalator, alert_id: str, recipient: str, code: str, status: int
) -> None:
    real.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    with pytest.raises(EscalationError) as info:
        real.receipt(alert_id, recipient)
    assert (info.value.code, info.value.status) == (code, status)
    assert real.state("a1").receipts == ()


def test_an_alert_nobody_receipted_escalates_at_once_and_is_reported_once(
    real: Escalator, clock: FakeClock
) -> None:
    real.open("a1", PATIENT, Vital.SPO2, PROVIDERS)  # MEDIUM: 300 s to acknowledge
    clock.now += 29.9
    assert (real.due(), real.undeliverable()) == ([], [])
    clock.now = 1030
    assert real.due() == [Delivery("a1", DR_B, 1, 1030)]
    assert real.undeliverable() == ["a1"]
    assert real.undeliverable() == []  # once
    clock.now += 30
    assert recipients(real.due()) == [DR_C]  # still nobody: next tier after 30 s again
    assert real.receipt("a1", DR_C) is True
    clock.now += 1000
    assert real.due() == []
    assert real.undeliverable() == []


def test_a_receipt_in_time_keeps_the_acknowledgement_timeout(
    real: Escalator, clock: FakeClock
) -> None:
    real.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    clock.now += 10
    real.receipt("a1", PATIENT)  # any recipient's receipt counts
    clock.now = 1299
    assert (real.due(), real.undeliverable()) == ([], [])
    clock.now = 1300
    assert recipients(real.due()) == [DR_B]
    assert real.undeliverable() == []


def test_an_acknowledged_or_unsent_alert_is_not_undeliverable(
    real: Escalator, clock: FakeClock
) -> None:
    real.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    real.acknowledge("a1", PATIENT)
    real.snooze(PATIENT, PATIENT, None, 900)
    assert real.open("a2", PATIENT, Vital.SPO2, ()) == []  # snoozed on purpose: nobody to ask
    clock.now += 600
    assert (real.due(), real.undeliverable()) == ([], [])


def test_undeliverable_does_not_need_due(real: Escalator, clock: FakeClock) -> None:
    real.open("a1", PATIENT, None, (), resolved=True)
    clock.now += 30
    assert real.undeliverable() == ["a1"]
    assert real.state("a1").resolved


# --- resolve, retirement, bounded memory ------------------------------------------------------


def test_resolve_is_idempotent_and_refuses_unknown_alerts(esc: Escalator) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    esc.resolve("a1")
    esc.resolve("a1")
    assert esc.state("a1").resolved
    with pytest.raises(EscalationError) as info:
        esc.resolve("nope")
    assert (info.value.code, info.value.status) == ("unknown_alert", 404)


@pytest.mark.parametrize("resolve_first", [True, False])
def test_an_acknowledged_resolved_alert_is_retired(esc: Escalator, resolve_first: bool) -> None:
    sink = Recorder()
    esc = Escalator(FakeClock(), POLICIES, sink=sink)
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    if resolve_first:
        esc.resolve("a1")
        esc.acknowledge("a1", DR_A)
    else:
        esc.acknowledge("a1", DR_A)
        esc.resolve("a1")
    assert sink.retired == ["a1"]
    assert "a1" not in sink.alerts
    assert not [key for key in sink.deliveries if key[0] == "a1"]
    with pytest.raises(EscalationError) as info:
        esc.state("a1")
    assert info.value.code == "unknown_alert"
    assert esc.sizes() == {"alerts": 0, "deliveries": 0, "active": 0, "snoozes": 0}


def test_ten_thousand_alerts_opened_and_retired_leave_nothing_behind(clock: FakeClock) -> None:
    esc = Escalator(clock)  # the defaults, receipts included
    for n in range(10_000):
        alert_id = f"a{n}"
        technical = n % 3 == 0
        priority = list(Priority)[n % 3]
        esc.open(alert_id, PATIENT, None if technical else Vital.SPO2, PROVIDERS, priority,
                 resolved=technical)  # fmt: skip
        if n % 2:
            esc.receipt(alert_id, DR_A)
        if n % 100 == 0:
            esc.snooze(DR_C, PATIENT, Vital.SPO2, 300, HIGH)
            clock.now += 61
            esc.due()
            esc.undeliverable()
        esc.acknowledge(alert_id, DR_A)
        if not technical:
            esc.resolve(alert_id)
    clock.now += 900
    esc.due()  # expired snoozes are forgotten too
    assert esc.sizes() == {"alerts": 0, "deliveries": 0, "active": 0, "snoozes": 0}
    assert esc.snapshot() == ((), (), ())


def test_unacknowledged_alerts_without_time_work_leave_the_active_set(esc: Escalator) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, ())  # MEDIUM, no providers
    assert esc.sizes()["active"] == 1  # until it is receipted, or reported undeliverable
    esc.receipt("a1", PATIENT)
    assert esc.sizes()["active"] == 0  # nothing left to do in time
    esc.open("a2", PATIENT, Vital.SPO2, (), HIGH)  # repeats until acknowledged
    assert esc.sizes()["active"] == 1


# --- durable state: the sink, and rebuilding from it -------------------------------------------


class Recorder:
    """An EscalationSink keeping the latest record per key, as the alarm store does."""

    def __init__(self) -> None:
        self.alerts: dict[str, AlertRecord] = {}
        self.deliveries: dict[tuple[str, str], DeliveryRecord] = {}
        self.snoozes: dict[tuple[Any, ...], SnoozeRecord] = {}
        self.retired: list[str] = []

    def alert_changed(self, record: AlertRecord) -> None:
        self.alerts[record.alert_id] = record

    def alert_retired(self, alert_id: str) -> None:
        self.retired.append(alert_id)
        del self.alerts[alert_id]
        for key in [k for k in self.deliveries if k[0] == alert_id]:
            del self.deliveries[key]

    def delivery_changed(self, record: DeliveryRecord) -> None:
        assert record.alert_id in self.alerts  # the alert's row is written first
        self.deliveries[(record.alert_id, record.recipient)] = record

    def snooze_changed(self, record: SnoozeRecord) -> None:
        self.snoozes[(record.by, record.patient, record.vital, record.priority)] = record

    def rebuild(self, clock: FakeClock, **kwargs: Any) -> Escalator:
        return Escalator(
            clock,
            alerts=list(self.alerts.values()),
            deliveries=list(self.deliveries.values()),
            snoozes=list(self.snoozes.values()),
            sink=self,
            **kwargs,
        )


class StoreDown(Exception):
    pass


class Failing(Recorder):
    def delivery_changed(self, record: DeliveryRecord) -> None:
        raise StoreDown


def test_a_running_escalation_timer_fires_on_time_after_a_restart(clock: FakeClock) -> None:
    sink = Recorder()
    Escalator(clock, sink=sink).open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    clock.now += 10
    Escalator(clock, sink=sink)  # (a fresh one, as a crashed process leaves it: no records)
    restarted = sink.rebuild(clock)
    restarted.receipt("a1", DR_A)
    clock.now = 1299
    assert restarted.due() == []
    clock.now = 1300  # 300 s after the open, not after the restart
    assert restarted.due() == [Delivery("a1", DR_B, 1, 1300)]


def test_a_snooze_is_honoured_after_a_restart(clock: FakeClock) -> None:
    sink = Recorder()
    Escalator(clock, sink=sink).snooze(DR_A, PATIENT, Vital.SPO2, 900)
    restarted = sink.rebuild(clock)
    assert recipients(restarted.open("a1", PATIENT, Vital.SPO2, PROVIDERS)) == [PATIENT, DR_B]


def test_a_failing_sink_leaves_the_escalator_unchanged(clock: FakeClock) -> None:
    esc = Escalator(clock, sink=Failing())
    with pytest.raises(StoreDown):
        esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    assert esc.snapshot() == ((), (), ())
    with pytest.raises(EscalationError):
        esc.state("a1")


def test_restored_records_may_hold_plain_ints_and_strings(clock: FakeClock) -> None:
    alert = AlertRecord("a1", PATIENT, 4, "high", (DR_A,), 1000.0, 1000.0, 1, 0, 1000.0, 1000.0)  # type: ignore[arg-type]
    esc = Escalator(clock, alerts=[alert], deliveries=[DeliveryRecord("a1", DR_A, 0, 1000, 1000)])
    assert esc.state("a1").vital is Vital.SPO2
    assert esc.state("a1").priority is HIGH
    clock.now += 60
    assert recipients(esc.due()) == [PATIENT, DR_A]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alerts": ["a1"]},
        {"alerts": [AlertRecord("a1", PATIENT, 99, MEDIUM, (), 0.0, 0.0)]},  # type: ignore[arg-type]
        {"alerts": [AlertRecord("a1", PATIENT, None, "urgent", (), 0.0, 0.0)]},  # type: ignore[arg-type]
        {"alerts": [AlertRecord("a1", PATIENT, None, MEDIUM, (DR_A,), 0.0, 0.0, next_index=2)]},
        {"deliveries": [("a1", DR_A)]},
        {"snoozes": [SnoozeRecord(DR_A, PATIENT, None, "loud", 0.0, 1.0)]},  # type: ignore[arg-type]
        {"snoozes": [{"by": DR_A}]},
    ],
    ids=repr,
)
def test_records_it_could_not_have_written_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(EscalationError) as info:
        Escalator(FakeClock(), **kwargs)
    assert (info.value.code, info.value.status) == ("invalid_state", 500)


def test_leftover_rows_of_retired_alerts_are_ignored(clock: FakeClock) -> None:
    retired = AlertRecord("a1", PATIENT, None, MEDIUM, (), 0.0, 0.0, acknowledged_by=PATIENT,
                          acknowledged_at=1.0, resolved_at=1.0)  # fmt: skip
    orphan = DeliveryRecord("a2", PATIENT, 0, 0.0, 0.0)
    esc = Escalator(clock, alerts=[retired], deliveries=[orphan])
    assert esc.sizes() == {"alerts": 0, "deliveries": 0, "active": 0, "snoozes": 0}


OPS = st.one_of(
    st.tuples(
        st.just("open"),
        st.sampled_from(["a1", "a2", "a3", "a4"]),
        st.sampled_from(list(Priority)),
        st.sampled_from([(), (DR_A,), PROVIDERS, (DR_B, DR_C)]),
        st.booleans(),
    ),
    st.tuples(st.just("wait"), st.sampled_from([1.0, 20.0, 30.0, 59.0, 60.0, 120.0, 301.0])),
    st.tuples(st.just("due")),
    st.tuples(st.just("undeliverable")),
    st.tuples(st.just("receipt"), st.sampled_from(["a1", "a2", "a3"]), st.sampled_from(ADDRESSES)),
    st.tuples(st.just("ack"), st.sampled_from(["a1", "a2", "a3"]), st.sampled_from(ADDRESSES)),
    st.tuples(st.just("resolve"), st.sampled_from(["a1", "a2", "a3"])),
    st.tuples(
        st.just("snooze"),
        st.sampled_from(ADDRESSES),
        st.sampled_from([Vital.SPO2, None]),
        st.sampled_from([(HIGH, 300.0), (HIGH, 900.0), (MEDIUM, 900.0), (LOW, 1800.0)]),
    ),
)


def apply(esc: Escalator, clock: FakeClock, op: tuple[Any, ...]) -> Any:
    """One operation; a refusal is an outcome too (its code), so both runs must agree on it."""
    kind = op[0]
    try:
        if kind == "open":
            _, alert_id, priority, providers, resolved = op
            return esc.open(alert_id, PATIENT, Vital.SPO2, providers, priority, resolved=resolved)
        if kind == "wait":
            clock.now += op[1]
            return None
        if kind == "due":
            return esc.due()
        if kind == "undeliverable":
            return esc.undeliverable()
        if kind == "receipt":
            return esc.receipt(op[1], op[2])
        if kind == "ack":
            return esc.acknowledge(op[1], op[2])
        if kind == "resolve":
            return esc.resolve(op[1])
        _, by, vital, (priority, duration) = op
        return esc.snooze(by, PATIENT, vital, duration, priority)
    except EscalationError as exc:
        return exc.code


def states(esc: Escalator) -> dict[str, AlertState]:
    found = {}
    for alert_id in ("a1", "a2", "a3", "a4"):
        with contextlib.suppress(EscalationError):
            found[alert_id] = esc.state(alert_id)
    return found


@settings(max_examples=200, deadline=None)
@given(ops=st.lists(OPS, max_size=40), cut=st.integers(min_value=0, max_value=40))
def test_an_escalator_rebuilt_from_its_records_continues_exactly(
    ops: list[tuple[Any, ...]], cut: int
) -> None:
    """Half the operations, kill, rebuild from the sink's records: the rest == one whole run.

    Covers escalation timers, receipts and the receipt timeout, acknowledgements, snoozes,
    HIGH repeats, resolution and retirement.
    """
    whole_clock = FakeClock()
    whole = Escalator(whole_clock)
    expected = [apply(whole, whole_clock, op) for op in ops]
    clock = FakeClock()
    sink = Recorder()
    first = Escalator(clock, sink=sink)
    got = [apply(first, clock, op) for op in ops[:cut]]
    second = sink.rebuild(clock)
    assert states(second) == states(first)
    got += [apply(second, clock, op) for op in ops[cut:]]
    assert got == expected
    assert states(second) == states(whole)
    second.due()
    whole.due()
    assert second.snapshot() == whole.snapshot()
    alerts, deliveries, snoozes = whole.snapshot()
    assert set(alerts) == set(sink.alerts.values())
    assert set(deliveries) == set(sink.deliveries.values())
    assert set(snoozes) <= set(sink.snoozes.values())  # the store may keep expired ones


def test_a_high_repeat_and_a_receipt_resume_on_time_after_a_restart(clock: FakeClock) -> None:
    sink = Recorder()
    esc = Escalator(clock, sink=sink)
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS, HIGH)
    esc.receipt("a1", PATIENT)
    clock.now += 30
    restarted = sink.rebuild(clock)
    assert restarted.receipt("a1", PATIENT) is False  # the receipt survived
    assert restarted.undeliverable() == []
    clock.now = 1059
    assert restarted.due() == []
    clock.now = 1060  # 60 s after the open: the repeat and the next tier, on time
    assert restarted.due() == [
        Delivery("a1", PATIENT, 0, 1060, HIGH, 1),
        Delivery("a1", DR_A, 0, 1060, HIGH, 1),
        Delivery("a1", DR_B, 1, 1060, HIGH, 0),
    ]


def test_an_acknowledgement_survives_a_restart(clock: FakeClock) -> None:
    sink = Recorder()
    esc = Escalator(clock, sink=sink)
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS, HIGH)
    assert esc.acknowledge("a1", DR_A) is True
    restarted = sink.rebuild(clock)
    assert restarted.acknowledge("a1", PATIENT) is False
    clock.now += 3600
    assert (restarted.due(), restarted.undeliverable()) == ([], [])
    restarted.resolve("a1")
    assert sink.retired == ["a1"]
    assert sink.rebuild(clock).sizes()["alerts"] == 0
