"""bLSAG ring signatures: correctness, context-scoped linkability, and every refusal."""

from __future__ import annotations

import hashlib

import coincurve
import pytest

from vitalchain.crypto import ring as ring_module
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


def _challenge_at(
    message: bytes, ring: list[PublicKey], sig: RingSignature, context: bytes, pi: int
) -> int:
    """c_pi, recomputed from c_0 as a verifier does, with four separate coincurve
    multiplications per member (the textbook path, not ring.py's combined one)."""
    ctx = ring_module._context_prefix(context)
    prefix = ring_module._prefix(ctx, [m.compressed for m in ring], sig.key_image, message)
    image = coincurve.PublicKey(sig.key_image)
    c = sig.c0
    for i in range(pi):
        r, cb = sig.responses[i].to_bytes(32, "big"), c.to_bytes(32, "big")
        left = ring[i].raw.multiply(cb).add(r)
        base = ring_module._key_image_base(ctx, ring[i])
        right = coincurve.PublicKey.combine_keys([base.multiply(r), image.multiply(cb)])
        digest = hashlib.sha512(prefix + left.format() + right.format()).digest()
        c = int.from_bytes(digest, "big") % CURVE_ORDER
    return c


def test_constant_random_cannot_repeat_a_nonce(
    keys: list[PrivateKey], ring: list[PublicKey]
) -> None:
    """With nonces taken straight from ``random``, a constant ``random`` repeated alpha on two
    messages and gave the key away: k = (r1 - r2) / (c2 - c1).  Hedged nonces do not."""

    def constant(n: int) -> bytes:
        return b"\x42" * n

    pi, k = 3, int.from_bytes(keys[3].secret, "big")
    one = sign(b"spo2 88", ring, keys[3], CTX, random=constant)
    two = sign(b"spo2 87", ring, keys[3], CTX, random=constant)
    verify(b"spo2 88", ring, one, CTX)
    verify(b"spo2 87", ring, two, CTX)
    c1 = _challenge_at(b"spo2 88", ring, one, CTX, pi)
    c2 = _challenge_at(b"spo2 87", ring, two, CTX, pi)
    alpha1 = (one.responses[pi] + c1 * k) % CURVE_ORDER
    alpha2 = (two.responses[pi] + c2 * k) % CURVE_ORDER
    assert alpha1 != alpha2
    recovered = (one.responses[pi] - two.responses[pi]) * pow(c2 - c1, -1, CURVE_ORDER)
    assert recovered % CURVE_ORDER != k
    # The decoy responses differ too: equal decoys beside one odd response would point at
    # the signer.
    for s in (one, two):
        assert len(set(s.responses)) == len(ring)
    # Other ring order or context: other nonces as well.
    other_ctx = sign(b"spo2 88", ring, keys[3], b"alert:other", random=constant)
    assert other_ctx.responses[pi] != one.responses[pi]


def test_nonces_are_hedged_not_only_deterministic(
    keys: list[PrivateKey], ring: list[PublicKey]
) -> None:
    """Same inputs and same ``random``: the same signature; fresh randomness: a new one."""

    def constant(n: int) -> bytes:
        return b"\x07" * n

    a = sign(b"hr 130", ring, keys[0], CTX, random=constant)
    assert sign(b"hr 130", ring, keys[0], CTX, random=constant) == a
    b = sign(b"hr 130", ring, keys[0], CTX)
    verify(b"hr 130", ring, b, CTX)
    assert b != a
    assert b.links_to(a)


def test_nonce_derivation_is_keyed_and_in_range() -> None:
    prefix, fresh = bytes(32), bytes(32)
    one = ring_module._nonces(b"\x01" * 32, prefix, fresh, 0, 4)
    assert ring_module._nonces(b"\x02" * 32, prefix, fresh, 0, 4) != one  # the secret counts
    assert ring_module._nonces(b"\x01" * 32, prefix, fresh, 1, 4) != one  # and the attempt
    assert len(set(one)) == 4
    assert all(0 < x < CURVE_ORDER for x in one)
