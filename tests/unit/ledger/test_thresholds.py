"""The threshold policy, backend-neutral: Python's evaluation and the contract's agree (issue 6).

On the in-process EVM (eth-tester + py-evm) and on anvil: the module-scoped ``ledger`` and
``admin`` are parametrised over the chains.

- Differential: random ``int32`` ranges (extremes near ±2**31 included) are set on chain, then
  ``evaluate_fixed`` and ``AlertRegistry.evaluate`` must agree on values at, beside and far
  from the bounds; ``ThresholdPolicy.evaluate`` must agree with the contract on floats.
- Refusals: an empty or inverted range, vitals 0 and 7, callers without the right, no policy.
- Freshness: after a ``setThreshold`` transaction, one ``refresh()`` (the node calls it on every
  tick) is enough for the next evaluation to use the new bounds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.ledger import funded, refused
from tests.support.policy import (
    INT32_MAX,
    INT32_MIN,
    _in_int32,
    plausible_policy_and_readings,
    policies_with_values,
)
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import AlertError, Ledger
from vitalchain.ledger.thresholds import ThresholdPolicy
from vitalchain.ledger.watcher import ChainWatcher
from vitalchain.vitals import HIGH, LOW, NORMAL, Vital, evaluate_fixed, to_fixed


@pytest.fixture(scope="module")
def ledger(any_chain: tuple[Ledger, PrivateKey]) -> Ledger:
    return any_chain[0]


@pytest.fixture(scope="module")
def admin(any_chain: tuple[Ledger, PrivateKey]) -> PrivateKey:
    return any_chain[1]


# Hypothesis examples per backend; each one sets a threshold on chain.  The arithmetic is
# covered at 40 on the embedded chain; on anvil the point is the JSON-RPC path (encoding, revert
# decoding, event logs), so fewer keep the run short (~100 ms an example on either).
MAX_POLICIES = {"embedded": 40, "rpc": 20}


class TestPolicy:
    def _run(
        self, ledger: Ledger, strategy: st.SearchStrategy[Any], check: Callable[[Any], None]
    ) -> None:
        """Run ``check`` under hypothesis with this backend's example count."""
        examples = MAX_POLICIES[ledger.backend.kind]
        given(strategy)(settings(max_examples=examples, deadline=None)(check))()

    def _provider(self, ledger: Ledger, admin: PrivateKey) -> PrivateKey:
        provider = funded(ledger)
        ledger.register_provider(admin, provider.address)
        return provider

    # -- differential -----------------------------------------------------------------------------

    def test_python_and_contract_agree_on_random_policies(self, ledger: Ledger) -> None:
        patient = funded(ledger)

        def check(case: tuple[Vital, int, int, list[int]]) -> None:
            vital, low, high, values = case
            ledger.set_threshold(patient, patient.address, vital, low, high)
            for value in values:
                ours = evaluate_fixed(low, high, value)
                chain = ledger.evaluate(patient.address, vital, value)
                assert ours == chain, (low, high, value)

        self._run(ledger, policies_with_values(), check)

    def test_threshold_policy_agrees_with_the_contract_on_floats(self, ledger: Ledger) -> None:
        patient = funded(ledger)
        policy = ThresholdPolicy(ledger, ChainWatcher(ledger.events))

        def check(case: tuple[Vital, int, int, list[float]]) -> None:
            vital, low, high, readings = case
            ledger.set_threshold(patient, patient.address, vital, low, high)
            policy.refresh()  # as the node does on every tick
            assert policy.thresholds(patient.address, vital) == (low, high)
            for reading in readings:
                chain = ledger.evaluate(patient.address, vital, to_fixed(reading))
                assert policy.evaluate(patient.address, vital, reading) == chain, (
                    low,
                    high,
                    reading,
                )

        self._run(ledger, plausible_policy_and_readings(), check)

    def test_extremes_by_hand(self, ledger: Ledger) -> None:
        """The widest and the narrowest ranges, so these cases run whatever hypothesis draws."""
        patient = funded(ledger)
        for low, high in ((INT32_MIN, INT32_MAX), (INT32_MIN, INT32_MIN + 1), (-1, 0)):
            ledger.set_threshold(patient, patient.address, Vital.GLUCOSE, low, high)
            for value in _in_int32([INT32_MIN, low - 1, low, high, high + 1, INT32_MAX]):
                assert evaluate_fixed(low, high, value) == ledger.evaluate(
                    patient.address, Vital.GLUCOSE, value
                )
        ledger.set_threshold(patient, patient.address, Vital.GLUCOSE, INT32_MAX - 1, INT32_MAX)
        assert ledger.evaluate(patient.address, Vital.GLUCOSE, INT32_MIN) == LOW
        assert ledger.evaluate(patient.address, Vital.GLUCOSE, INT32_MAX) == NORMAL

    # -- refusals ---------------------------------------------------------------------------------

    def test_empty_or_inverted_range_is_refused(self, ledger: Ledger) -> None:
        patient = funded(ledger)
        for low, high in ((100, 100), (101, 100), (INT32_MAX, INT32_MIN), (0, -1)):
            with refused(AlertError, "alert_registry.invalid_range"):
                ledger.set_threshold(patient, patient.address, Vital.SPO2, low, high)
        assert ledger.threshold_of(patient.address, Vital.SPO2) is None

    def test_unknown_vital_is_refused(self, ledger: Ledger) -> None:
        patient = funded(ledger)
        for vital in (0, 9):  # 1..8 are the vitals (vitals.py)
            with refused(AlertError, "alert_registry.invalid_vital"):
                ledger.set_threshold(patient, patient.address, vital, 1, 2)

    def test_who_may_set_a_threshold(self, ledger: Ledger, admin: PrivateKey) -> None:
        patient, stranger = funded(ledger), funded(ledger)
        doctor = self._provider(ledger, admin)
        with refused(AlertError, "alert_registry.not_authorized"):
            ledger.set_threshold(stranger, patient.address, Vital.HEART_RATE, 5000, 11000)
        with refused(AlertError, "alert_registry.not_authorized"):  # a provider, no consent yet
            ledger.set_threshold(doctor, patient.address, Vital.HEART_RATE, 5000, 11000)
        ledger.grant(patient, doctor.address, Vital.HEART_RATE.bit, ledger.timestamp() + 3600)
        ledger.set_threshold(doctor, patient.address, Vital.HEART_RATE, 5000, 11000)
        assert ledger.threshold_of(patient.address, Vital.HEART_RATE) == (5000, 11000)
        assert ledger.evaluate(patient.address, Vital.HEART_RATE, 11001) == HIGH
        event = ledger.events.query("ThresholdSet", patient=patient.address)[-1]
        assert event.args["vital"] == Vital.HEART_RATE
        assert (event.args["low"], event.args["high"]) == (5000, 11000)
        with refused(AlertError, "alert_registry.not_authorized"):  # consent is per vital
            ledger.set_threshold(doctor, patient.address, Vital.GLUCOSE, 7000, 18000)
        ledger.revoke(patient, doctor.address)
        with refused(AlertError, "alert_registry.not_authorized"):
            ledger.set_threshold(doctor, patient.address, Vital.HEART_RATE, 4000, 12000)
        assert ledger.threshold_of(patient.address, Vital.HEART_RATE) == (5000, 11000)

    def test_evaluate_without_a_policy(self, ledger: Ledger) -> None:
        """The contract refuses; the gateway's policy falls back to the vital's adult range."""
        patient = PrivateKey.generate().address
        for vital in (Vital.SPO2, 0, 7):
            with refused(AlertError, "alert_registry.no_policy"):
                ledger.evaluate(patient, vital, 9500)
        policy = ThresholdPolicy(ledger, ChainWatcher(ledger.events))
        low, high = Vital.SPO2.info.normal
        assert policy.thresholds(patient, Vital.SPO2) == (to_fixed(low), to_fixed(high))
        assert policy.evaluate(patient, Vital.SPO2, low - 0.01) == LOW
        assert policy.evaluate(patient, Vital.SPO2, low) == NORMAL

    # -- a change takes effect within one block ---------------------------------------------------

    def test_a_change_takes_effect_after_one_refresh(self, ledger: Ledger) -> None:
        patient = funded(ledger)
        vital, reading = Vital.SYSTOLIC_BP, 145.0
        ledger.set_threshold(patient, patient.address, vital, 9000, 14000)
        policy = ThresholdPolicy(ledger, ChainWatcher(ledger.events))
        policy.refresh()
        assert policy.evaluate(patient.address, vital, reading) == HIGH  # the cache is now warm

        tx = ledger.set_threshold(patient, patient.address, vital, 9000, 15000)
        assert ledger.block_number() == tx.block_number  # no block after the change
        assert ledger.evaluate(patient.address, vital, to_fixed(reading)) == NORMAL
        # Without a refresh the cache still answers with the old bounds: this test can fail.
        assert policy.thresholds(patient.address, vital) == (9000, 14000)
        assert policy.evaluate(patient.address, vital, reading) == HIGH

        policy.refresh()  # what the node does on its next tick
        assert ledger.block_number() == tx.block_number
        assert policy.thresholds(patient.address, vital) == (9000, 15000)
        assert policy.evaluate(patient.address, vital, reading) == NORMAL

    def test_one_refresh_covers_several_changes(self, ledger: Ledger) -> None:
        first, second = funded(ledger), funded(ledger)
        ledger.set_threshold(first, first.address, Vital.GLUCOSE, 7000, 18000)
        ledger.set_threshold(second, second.address, Vital.GLUCOSE, 7000, 18000)
        ledger.set_threshold(second, second.address, Vital.SPO2, 9200, 10000)
        policy = ThresholdPolicy(ledger, ChainWatcher(ledger.events))
        policy.refresh()
        assert policy.evaluate(first.address, Vital.GLUCOSE, 190.0) == HIGH  # all three cached
        assert policy.evaluate(second.address, Vital.GLUCOSE, 190.0) == HIGH
        assert policy.evaluate(second.address, Vital.SPO2, 91.0) == LOW
        ledger.set_threshold(first, first.address, Vital.GLUCOSE, 7000, 20000)
        ledger.set_threshold(second, second.address, Vital.SPO2, 9000, 10000)
        policy.refresh()  # two blocks passed: one refresh sees both
        assert policy.evaluate(first.address, Vital.GLUCOSE, 190.0) == NORMAL
        assert policy.evaluate(second.address, Vital.GLUCOSE, 190.0) == HIGH  # unchanged
        assert policy.evaluate(second.address, Vital.SPO2, 91.0) == NORMAL
