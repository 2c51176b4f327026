"""``vitalchain.logs``: the pseudonym logged instead of an address, and once-per-change logging."""

from __future__ import annotations

import logging

import pytest

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


def test_http_requests_are_not_logged_with_their_urls(caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs "HTTP Request: GET <url>" at INFO, and our URLs name recipients and devices
    (``/v1/alerts?address=…``): importing vitalchain.logs keeps that line out, even when
    every logger is captured at DEBUG."""
    import httpx

    import vitalchain.logs  # noqa: F401  (what every layer imports)

    address = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=[]))
    with caplog.at_level(logging.DEBUG), httpx.Client(transport=transport) as http:
        assert http.get(f"http://gateway.test/v1/alerts?address={address}").status_code == 200
    assert all(address not in record.getMessage() for record in caplog.records)
