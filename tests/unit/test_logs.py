"""``vitalchain.logs``: the pseudonym logged instead of an address, and once-per-change logging."""

from __future__ import annotations

from vitalchain.crypto import PrivateKey
from vitalchain.logs import Transitions, pseudonym, safe_error


def test_a_pseudonym_is_short_stable_case_blind_and_not_the_address() -> None:
    address = PrivateKey.generate().address
    tag = pseudonym(address)
    assert tag.startswith("p:")
    assert len(tag) == 10
    assert pseudonym(address.lower()) == tag == pseudonym(address)  # EIP-55 or not: one tag
    assert pseudonym(PrivateKey.generate().address) != tag
    assert address[2:10].lower() not in tag


def test_safe_error_names_the_code_never_the_message() -> None:
    from vitalchain.errors import VitalchainError

    class InvalidAddress(Exception):
        pass

    address = PrivateKey.generate().address
    coded = VitalchainError(f"bad {address}")
    coded.code = "bad_thing"
    assert safe_error(coded) == "bad_thing"
    assert safe_error(InvalidAddress(f"not checksummed: {address}")) == "invalid_address"
    assert safe_error(ValueError(address)) == "value_error"


def test_transitions_report_only_changes() -> None:
    states = Transitions()
    assert states.change("p:1", None) is None  # fine and never seen: nothing to say
    assert states.change("p:1", "no_key") == ""  # started failing (was fine)
    assert states.change("p:1", "no_key") is None  # the same again: quiet
    assert states.change("p:1", "invalid_address") == "no_key"  # failing otherwise
    assert states.current() == {"p:1": "invalid_address"}
    assert states.change("p:1", None) == "invalid_address"  # recovered
    assert states.current() == {}
