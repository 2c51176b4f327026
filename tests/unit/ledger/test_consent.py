"""The one "who may read now" rule, and the consent view's cache, on the in-memory fake."""

from __future__ import annotations

import pytest

from tests.support.fakes import FakeChain
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import ChainUnavailable, Consent, ConsentStatus
from vitalchain.ledger.consent import EXPIRY_MARGIN_S, ConsentView, may_read
from vitalchain.ledger.watcher import ChainWatcher
from vitalchain.vitals import Vital

NOW = 1_000_000
SPO2, HR = Vital.SPO2.bit, Vital.HEART_RATE.bit
PATIENT, DOCTOR, NURSE = "0xPatient", "0xDoctor", "0xNurse"


def granted(scope: int, expires_at: int, glass: int = 0) -> Consent:
    return Consent(ConsentStatus.GRANTED, scope, expires_at, glass)


@pytest.mark.parametrize(
    ("consent", "vitals", "verdict"),
    [
        (granted(SPO2 | HR, NOW + 3600), SPO2, True),
        (granted(SPO2 | HR, NOW + 3600), SPO2 | HR, True),
        (granted(SPO2 | HR, NOW + 3600), 0, True),  # any vital
        (granted(SPO2, NOW + 3600), SPO2 | HR, False),  # out of scope
        (granted(SPO2, NOW + EXPIRY_MARGIN_S - 1), SPO2, None),  # near expiry: the contract
        (granted(SPO2, NOW - EXPIRY_MARGIN_S + 1), SPO2, None),
        (granted(SPO2, NOW - EXPIRY_MARGIN_S), SPO2, False),  # long expired
        (Consent(ConsentStatus.REVOKED, SPO2, NOW + 3600, 0), SPO2, False),
        (Consent(ConsentStatus.NONE, 0, 0, NOW + 600), SPO2, None),  # break glass
    ],
)
def test_the_rule(consent: Consent, vitals: int, verdict: bool | None) -> None:
    assert may_read(consent, vitals, NOW) is verdict


def view() -> tuple[FakeChain, ConsentView]:
    chain = FakeChain(now=NOW)
    return chain, ConsentView(chain, ChainWatcher(chain.events))


def test_readers_are_cached_until_a_consent_event_is_polled() -> None:
    chain, consents = view()
    chain.grant(PATIENT, DOCTOR, SPO2, NOW + 3600)
    chain.grant(PATIENT, NURSE, HR, NOW + 3600)
    assert consents.readers(PATIENT, SPO2) == [DOCTOR]
    assert consents.readers(PATIENT, HR, NOW) == [NURSE]
    assert chain.calls["consent_of"] == 2  # once per provider, not per question
    chain.revoke(PATIENT, DOCTOR)
    assert consents.readers(PATIENT, SPO2) == [DOCTOR]  # the event is not applied yet
    consents.refresh()
    assert consents.readers(PATIENT, SPO2) == []
    assert chain.calls["consent_of"] == 4


def test_near_expiry_the_contract_decides_and_an_outage_raises_unless_told() -> None:
    chain, consents = view()
    chain.grant(PATIENT, DOCTOR, SPO2, chain.now + 10)
    assert consents.readers(PATIENT, SPO2) == [DOCTOR]
    assert chain.calls["has_access"] == 1
    chain.down = True
    with pytest.raises(ChainUnavailable):
        consents.readers(PATIENT, SPO2, chain.now)
    assert consents.readers(PATIENT, SPO2, chain.now, outage_fallback=True) == [DOCTOR]
    assert consents.readers(PATIENT, SPO2, chain.now + 11, outage_fallback=True) == []


def test_keys_are_read_once_and_a_change_is_announced() -> None:
    chain, consents = view()
    changed: list[str] = []
    consents.on_change(changed.append)
    key = PrivateKey.generate().public_key
    assert consents.key_of(key.address) is None
    chain.publish_key(key)
    chain.grant(PATIENT, DOCTOR, SPO2, NOW + 3600)
    consents.refresh()
    assert changed == [key.address, PATIENT]
    assert consents.cached_key(key.address) is None
    assert consents.key_of(key.address) == key
    assert consents.key_of(key.address) == key
    assert chain.calls["public_key_of"] == 1
