"""Hybrid envelopes (paper 000 Algorithms 1 and 3): many recipients, one payload."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from vitalchain.crypto import envelope as envelope_module
from vitalchain.crypto.aead import Suite
from vitalchain.crypto.envelope import Envelope, seal_for
from vitalchain.crypto.keys import PrivateKey
from vitalchain.errors import DecodeError, DecryptionError
from vitalchain.wire.envelope import Stanza


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


def _constant(n: int) -> bytes:
    return b"\x5a" * n


def test_a_constant_random_never_wraps_two_keys_under_one_key_and_nonce(
    people: dict[str, PrivateKey],
) -> None:
    """With the ephemeral key drawn from ``random`` alone, a stuck ``random`` gave two
    envelopes one wrap key and the zero nonce, and the XOR of the two wrapped fields was the
    XOR of the two data keys.  Hedged ephemerals differ whenever the data keys do."""
    patient = people["patient"]
    k1, k2 = bytes(range(32)), bytes(range(1, 33))
    a = seal_for([patient.public_key], b"hr 61", data_key=k1, random=_constant)
    b = seal_for([patient.public_key], b"hr 62", data_key=k2, random=_constant)
    assert a.stanzas[0].ephemeral != b.stanzas[0].ephemeral
    xor_wrapped = bytes(
        x ^ y for x, y in zip(a.stanzas[0].wrapped, b.stanzas[0].wrapped, strict=True)
    )
    assert xor_wrapped[:32] != bytes(x ^ y for x, y in zip(k1, k2, strict=True))
    assert a.open(patient) == b"hr 61"
    assert b.open(patient) == b"hr 62"
    # Per recipient too: one envelope, two recipients, two ephemeral keys.
    both = seal_for([patient.public_key, people["gp"].public_key], b"x", random=_constant)
    assert both.stanzas[0].ephemeral != both.stanzas[1].ephemeral


def test_a_repeated_ephemeral_only_repeats_the_same_stanza(people: dict[str, PrivateKey]) -> None:
    """Same data key, recipient and ``random``: the same stanza, byte for byte (harmless)."""
    key, patient = bytes(32), people["patient"].public_key
    one = envelope_module._stanza(key, patient, _constant)
    assert envelope_module._stanza(key, patient, _constant) == one
    assert envelope_module._stanza(key, patient, lambda n: b"\x01" * n) != one


def test_envelopes_with_a_randomly_drawn_ephemeral_still_open(
    people: dict[str, PrivateKey],
) -> None:
    """The derivation is the sealer's business: stanzas made the old way (e = random) open,
    so stored v1 envelopes stay readable and the format version stays 1."""
    patient = people["patient"]
    env = seal_for([patient.public_key], b"spo2 95")
    data_key = env.unwrap_key(patient)
    e = PrivateKey.generate()
    eph = e.public_key.compressed
    wrap = envelope_module._wrap_key(e.ecdh(patient.public_key), eph, patient.public_key.compressed)
    address = patient.public_key.address_bytes
    wrapped = ChaCha20Poly1305(wrap).encrypt(bytes(12), data_key, address)
    old_style = Envelope(env.suite, (Stanza(address, eph, wrapped),), env.commitment, env.payload)
    again = Envelope.from_bytes(old_style.to_bytes())
    assert again.to_bytes()[:4] == b"VCe\x01"
    assert again.open(patient) == b"spo2 95"


def test_a_caller_supplied_data_key_links_envelopes(people: dict[str, PrivateKey]) -> None:
    """Documented, not hidden: one ``data_key`` for two envelopes gives one commitment, and a
    recipient of either opens both.  Only crypto/block.py passes one, fresh per block."""
    key = bytes(range(32))
    a = seal_for([people["patient"].public_key], b"a", data_key=key)
    b = seal_for([people["gp"].public_key], b"b", data_key=key)
    assert a.commitment == b.commitment
    assert b.open_with_data_key(a.unwrap_key(people["patient"])) == b"b"
