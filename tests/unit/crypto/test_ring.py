"""bLSAG ring signatures: correctness, context-scoped linkability, and every refusal."""

from __future__ import annotations

import coincurve
import pytest

from vitalchain.crypto.keys import CURVE_ORDER, PrivateKey, PublicKey
from vitalchain.crypto.ring import RingSignature, key_image, sign, verify
from vitalchain.errors import DecodeError, InvalidSignature

CTX = b"alert:group-7:episode-1"


@pytest.fixture(scope="module")
def keys() -> list[PrivateKey]:
    return [PrivateKey.generate() for _ in range(5)]


@pytest.fixture(scope="module")
def ring(keys: list[PrivateKey]) -> list[PublicKey]:
    return [k.public_key for k in keys]


@pytest.fixture(scope="module")
def sig(keys: list[PrivateKey], ring: list[PublicKey]) -> RingSignature:
    return sign(b"spo2 low", ring, keys[3], CTX)


@pytest.mark.parametrize("size", [2, 3, 8])
def test_every_position_signs_and_verifies(size: int) -> None:
    keys = [PrivateKey.generate() for _ in range(size)]
    ring = [k.public_key for k in keys]
    for signer in keys:
        verify(b"m", ring, sign(b"m", ring, signer, CTX), CTX)


def test_key_image_is_the_signers(keys: list[PrivateKey], sig: RingSignature) -> None:
    assert sig.key_image == key_image(keys[3], CTX)
    assert sig.key_image != key_image(keys[2], CTX)


def test_same_context_links_other_context_does_not(
    keys: list[PrivateKey], ring: list[PublicKey]
) -> None:
    a = sign(b"first", ring, keys[1], CTX)
    b = sign(b"second", list(reversed(ring)), keys[1], CTX)  # even in another ring order
    c = sign(b"first", ring, keys[1], b"alert:group-7:episode-2")
    d = sign(b"first", ring, keys[2], CTX)
    for s, ctx, r in ((a, CTX, ring), (b, CTX, list(reversed(ring)))):
        verify(b"first" if s is a else b"second", r, s, ctx)
    assert a.links_to(b)
    assert not a.links_to(c)
    assert not a.links_to(d)


def test_encoding_roundtrip(sig: RingSignature) -> None:
    blob = sig.to_bytes()
    assert blob[:4] == b"VCr\x01"
    assert len(blob) == 4 + 2 + 33 + 32 * 6
    assert RingSignature.from_bytes(blob) == sig


def test_decoder_refusals(sig: RingSignature) -> None:
    blob = sig.to_bytes()
    zero_c0 = blob[:39] + bytes(32) + blob[71:]
    big_r = blob[:71] + CURVE_ORDER.to_bytes(32, "big") + blob[103:]
    cases = {
        "trailing byte": blob + b"\x00",
        "truncated": blob[:-1],
        "unknown version": blob[:3] + b"\x09" + blob[4:],
        "wrong kind": b"VCs" + blob[3:],
        "ring size 1": blob[:4] + (1).to_bytes(2, "big") + blob[6:],
        "zero challenge": zero_c0,
        "response = n": big_r,
    }
    for desc, bad in cases.items():
        with pytest.raises(DecodeError):
            RingSignature.from_bytes(bad)
        assert desc


def test_verify_refusals(keys: list[PrivateKey], ring: list[PublicKey], sig: RingSignature) -> None:
    outsider = PrivateKey.generate().public_key
    swapped = [ring[1], ring[0], *ring[2:]]
    bad_point = b"\x02" + b"\xff" * 32
    cases: dict[str, tuple[bytes, list[PublicKey], RingSignature, bytes]] = {
        "changed message": (b"spo2 LOW", ring, sig, CTX),
        "changed ring order": (b"spo2 low", swapped, sig, CTX),
        "changed context": (b"spo2 low", ring, sig, b"other"),
        "member replaced": (b"spo2 low", [*ring[:4], outsider], sig, CTX),
        "ring shorter": (b"spo2 low", ring[:4], sig, CTX),
        "duplicate keys": (b"spo2 low", [*ring[:4], ring[0]], sig, CTX),
        "key image off curve": (
            b"spo2 low",
            ring,
            RingSignature(bad_point, sig.c0, sig.responses),
            CTX,
        ),
        "key image uncompressed": (
            b"spo2 low",
            ring,
            RingSignature(coincurve.PublicKey(sig.key_image).format(False), sig.c0, sig.responses),
            CTX,
        ),
        "other key image": (
            b"spo2 low",
            ring,
            RingSignature(key_image(keys[0], CTX), sig.c0, sig.responses),
            CTX,
        ),
        "zero scalar": (b"spo2 low", ring, RingSignature(sig.key_image, 0, sig.responses), CTX),
        "scalar >= n": (
            b"spo2 low",
            ring,
            RingSignature(sig.key_image, sig.c0, (CURVE_ORDER, *sig.responses[1:])),
            CTX,
        ),
        "response changed": (
            b"spo2 low",
            ring,
            RingSignature(
                sig.key_image, sig.c0, ((sig.responses[0] + 1) % CURVE_ORDER, *sig.responses[1:])
            ),
            CTX,
        ),
    }
    for desc, (msg, r, s, ctx) in cases.items():
        with pytest.raises(InvalidSignature):
            verify(msg, r, s, ctx)
        assert desc


def test_non_member_cannot_sign(ring: list[PublicKey]) -> None:
    with pytest.raises(ValueError, match="not in the ring"):
        sign(b"m", ring, PrivateKey.generate(), CTX)


def test_sign_refuses_bad_rings(keys: list[PrivateKey], ring: list[PublicKey]) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        sign(b"m", [*ring, ring[0]], keys[0], CTX)
    with pytest.raises(ValueError, match="members"):
        sign(b"m", ring[:1], keys[0], CTX)
    with pytest.raises(ValueError, match="context"):
        sign(b"m", ring, keys[0], b"")


def test_forged_signature_from_outsider_fails(ring: list[PublicKey]) -> None:
    """An outsider who signs in a ring containing its own key cannot pass it off on ours."""
    outsider = PrivateKey.generate()
    theirs = [*ring[:4], outsider.public_key]
    forged = sign(b"m", theirs, outsider, CTX)
    verify(b"m", theirs, forged, CTX)
    with pytest.raises(InvalidSignature):
        verify(b"m", ring, forged, CTX)
