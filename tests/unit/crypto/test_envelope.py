"""Hybrid envelopes (paper 000 Algorithms 1 and 3): many recipients, one payload."""

from __future__ import annotations

import pytest

from vitalchain.crypto.aead import Suite
from vitalchain.crypto.envelope import Envelope, seal_for
from vitalchain.crypto.keys import PrivateKey
from vitalchain.errors import DecodeError, DecryptionError


@pytest.fixture(scope="module")
def people() -> dict[str, PrivateKey]:
    return {name: PrivateKey.generate() for name in ("patient", "cardiologist", "gp", "stranger")}


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.name)
def test_every_recipient_opens(people: dict[str, PrivateKey], suite: Suite) -> None:
    recipients = [people["patient"].public_key, people["cardiologist"].public_key]
    env = seal_for(recipients, b"bp 120/80", b"block-1", suite=suite)
    blob = env.to_bytes()
    assert blob[:4] == b"VCe\x01"
    again = Envelope.from_bytes(blob)
    assert again == env
    for name in ("patient", "cardiologist"):
        assert again.open(people[name], b"block-1") == b"bp 120/80"
    with pytest.raises(DecryptionError):
        again.open(people["stranger"], b"block-1")
    with pytest.raises(DecryptionError):
        again.open(people["patient"], b"block-2")


def test_adding_a_recipient_keeps_the_payload(people: dict[str, PrivateKey]) -> None:
    env = seal_for([people["patient"].public_key], b"glucose 5.4")
    more = env.with_recipient(people["patient"], people["gp"].public_key)
    assert more.payload == env.payload
    assert more.commitment == env.commitment
    assert more.open(people["gp"]) == b"glucose 5.4"
    assert more.with_recipient(people["patient"], people["gp"].public_key) is more
    with pytest.raises(DecryptionError):
        env.with_recipient(people["stranger"], people["gp"].public_key)


def test_removing_a_recipient(people: dict[str, PrivateKey]) -> None:
    env = seal_for([people["patient"].public_key, people["gp"].public_key], b"hr 64")
    fewer = env.without_recipient(people["gp"].public_key.address_bytes)
    assert fewer.recipients == [people["patient"].public_key.address_bytes]
    with pytest.raises(DecryptionError):
        fewer.open(people["gp"])


def test_duplicate_recipients_are_wrapped_once(people: dict[str, PrivateKey]) -> None:
    p = people["patient"].public_key
    assert len(seal_for([p, p], b"x").stanzas) == 1


def test_every_byte_change_is_caught(people: dict[str, PrivateKey]) -> None:
    env = seal_for([people["patient"].public_key], b"temp 37.2")
    blob = env.to_bytes()
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x80
        with pytest.raises((DecryptionError, DecodeError)):
            Envelope.from_bytes(bytes(bad)).open(people["patient"])


def test_swapped_commitment_or_stanza_fails(people: dict[str, PrivateKey]) -> None:
    a = seal_for([people["patient"].public_key], b"a")
    b = seal_for([people["patient"].public_key], b"b")
    mixed = Envelope(a.suite, b.stanzas, a.commitment, a.payload)
    with pytest.raises(DecryptionError):
        mixed.open(people["patient"])
    with pytest.raises(DecryptionError):
        a.open_with_data_key(b.unwrap_key(people["patient"]))


def test_decode_refusals(people: dict[str, PrivateKey]) -> None:
    blob = seal_for([people["patient"].public_key], b"x").to_bytes()
    for bad in (
        blob[:3] + b"\x02" + blob[4:],
        b"VCa" + blob[3:],
        blob[:4] + b"\x07" + blob[5:],
        blob[:40],
        b"",
    ):
        with pytest.raises(DecodeError):
            Envelope.from_bytes(bad)


def test_seal_needs_recipients() -> None:
    with pytest.raises(ValueError, match="recipient"):
        seal_for([], b"x")
