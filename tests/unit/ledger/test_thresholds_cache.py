"""The threshold policy's cache on the in-memory ledger fake; the contract agreement is
tests/unit/sealing/test_policy.py's, on the embedded EVM and on anvil."""

from __future__ import annotations

from tests.support.fakes import FakeChain
from vitalchain.ledger.thresholds import ThresholdPolicy
from vitalchain.ledger.watcher import ChainWatcher
from vitalchain.vitals import HIGH, NORMAL, Vital, to_fixed

PATIENT = "0xPatient"


def test_thresholds_are_cached_until_their_event_is_polled() -> None:
    chain = FakeChain()
    chain.set_threshold(PATIENT, Vital.SYSTOLIC_BP, 9000, 14000)
    watcher = ChainWatcher(chain.events)
    policy = ThresholdPolicy(chain, watcher)
    assert policy.evaluate(PATIENT, Vital.SYSTOLIC_BP, 145.0) == HIGH
    assert policy.evaluate(PATIENT, Vital.SYSTOLIC_BP, 145.0) == HIGH
    assert chain.calls["threshold_of"] == 1
    chain.set_threshold(PATIENT, Vital.SYSTOLIC_BP, 9000, 15000)
    assert policy.evaluate(PATIENT, Vital.SYSTOLIC_BP, 145.0) == HIGH
    policy.refresh()
    assert policy.evaluate(PATIENT, Vital.SYSTOLIC_BP, 145.0) == NORMAL
    assert chain.calls["threshold_of"] == 2


def test_an_unreadable_threshold_falls_back_to_the_default_uncached() -> None:
    chain = FakeChain()
    policy = ThresholdPolicy(chain, ChainWatcher(chain.events))
    low, high = Vital.SPO2.info.normal
    chain.down = True
    assert policy.thresholds(PATIENT, Vital.SPO2) == (to_fixed(low), to_fixed(high))
    assert list(policy.failing().values()) == ["chain_unavailable"]
    chain.down = False
    chain.set_threshold(PATIENT, Vital.SPO2, 9000, 10000)
    assert policy.thresholds(PATIENT, Vital.SPO2) == (9000, 10000)
    assert policy.failing() == {}
