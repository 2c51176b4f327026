"""Escalation: tier 0, timed escalation, acknowledgement, snooze, exhaustion."""

from __future__ import annotations

import itertools
import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vitalchain.care.escalation import AlertState, Delivery, EscalationError, Escalator
from vitalchain.errors import VitalchainError
from vitalchain.vitals import Vital

PATIENT = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
DR_A = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
DR_B = "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"
DR_C = "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"
STRANGER = "0x52908400098527886E0F7030069857D2E4169EE7"
PROVIDERS = (DR_A, DR_B, DR_C)
TIMEOUT = 120.0


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
    return Escalator(clock, ack_timeout_s=TIMEOUT, max_snooze_s=3600)


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
    "duration", [0, 0.0, -1, -math.inf, math.inf, math.nan, 3600.001, 1e12, True], ids=repr
)
def test_invalid_snooze_durations_are_refused(esc: Escalator, duration: float) -> None:
    with pytest.raises(EscalationError) as info:
        esc.snooze(DR_A, PATIENT, Vital.SPO2, duration)
    assert (info.value.code, info.value.status) == ("invalid_snooze", 422)
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
    ("timeout", "max_snooze"), [(0, 60), (-1, 60), (math.nan, 60), (60, math.inf), (60, 0)]
)
def test_invalid_configuration_is_refused(timeout: float, max_snooze: float) -> None:
    with pytest.raises(EscalationError) as info:
        Escalator(FakeClock(), ack_timeout_s=timeout, max_snooze_s=max_snooze)
    assert info.value.code == "invalid_config"


# --- concurrency and properties ------------------------------------------------------------------


def test_concurrent_acknowledgements_have_one_winner(esc: Escalator) -> None:
    esc.open("a1", PATIENT, Vital.SPO2, PROVIDERS)
    results: list[bool] = []
    start = threading.Barrier(8)

    def ack(by: str) -> None:
        start.wait()
        results.append(esc.acknowledge("a1", by))

    threads = [threading.Thread(target=ack, args=(who,)) for who in [PATIENT, DR_A] * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
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
    esc = Escalator(clock, ack_timeout_s=TIMEOUT)
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
