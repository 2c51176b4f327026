"""ring.py's point helpers: the ECDSA-recovery form of c*K + r*G, the constant-time secret
multiplication, and the Hp cache, each held to the plain coincurve operations they replace."""

from __future__ import annotations

import hashlib
import os
import random

import coincurve
import pytest

from vitalchain.crypto import ring as ring_module
from vitalchain.crypto.keys import CURVE_ORDER, PrivateKey, PublicKey
from vitalchain.crypto.primitives.h2c import hash_to_curve
from vitalchain.errors import InvalidSignature

N = CURVE_ORDER
P = 2**256 - 2**32 - 977
CTX = b"alert:group-1:episode-9"


def _separate(key: PublicKey, c: int, r: int) -> bytes:
    """c*K + r*G the textbook way: one multiplication, then an addition of r*G."""
    return key.raw.multiply(c.to_bytes(32, "big")).add(r.to_bytes(32, "big")).format()


def _combined(key: PublicKey, c: int, r: int) -> bytes:
    return ring_module._serialize(ring_module._mul_add_g(ring_module._Member.of(key), c, r))


def _point_with_x(x: int, odd: bool) -> PublicKey:
    """The curve point with this x (which must be on the curve) and y parity."""
    y = pow(x**3 + 7, (P + 1) // 4, P)
    assert y * y % P == (x**3 + 7) % P, "x is not on the curve"
    return PublicKey.from_bytes(bytes([3 if odd else 2]) + x.to_bytes(32, "big"))


def _xs_at_least_n(count: int) -> list[int]:
    """x-coordinates in [n, p): the recovery ids 2 and 3 ("x = r + n") path."""
    found, x = [], N + 1
    while len(found) < count:
        if pow(x**3 + 7, (P - 1) // 2, P) == 1:
            found.append(x)
        x += 1
    return found


def _scalars(rng: random.Random) -> list[int]:
    return [1, 2, N - 1, N - 2, 2**128, rng.randrange(1, N), rng.randrange(1, N)]


def test_recovery_identity_matches_separate_operations_on_random_keys() -> None:
    rng = random.Random(16)
    parities = set()
    for _ in range(24):
        key = PrivateKey.generate().public_key
        parities.add(key.compressed[0])
        for c, r in zip(_scalars(rng), reversed(_scalars(rng)), strict=True):
            assert _combined(key, c, r) == _separate(key, c, r)
    assert parities == {2, 3}  # both recovery-id parities were exercised


def test_recovery_identity_with_x_at_least_n() -> None:
    """Points with n <= x < p exist (about 2^-128 of them): recovery ids 2 and 3."""
    rng = random.Random(2)
    for x in _xs_at_least_n(3):
        for odd in (False, True):
            key = _point_with_x(x, odd)
            member = ring_module._Member.of(key)
            assert member.recid & 2
            assert member.rx == x - N
            for c, r in zip(_scalars(rng), _scalars(rng), strict=True):
                assert _combined(key, c, r) == _separate(key, c, r)


def test_x_equal_to_n_takes_the_separate_path() -> None:
    """x = n is on the curve; then x mod n = 0 cannot be an ECDSA r: the fallback runs."""
    rng = random.Random(3)
    for odd in (False, True):
        key = _point_with_x(N, odd)
        assert ring_module._Member.of(key).rx == 0
        for c, r in zip(_scalars(rng), _scalars(rng), strict=True):
            assert _combined(key, c, r) == _separate(key, c, r)


def test_edge_cases_raise_value_error_as_the_separate_path_does() -> None:
    secret = PrivateKey.generate()
    key = secret.public_key
    k = int.from_bytes(secret.secret, "big")
    c = random.Random(4).randrange(1, N)
    with pytest.raises(ValueError, match="zero"):
        _combined(key, 0, 5)  # c = 0: s = 0 is no ECDSA signature
    with pytest.raises(ValueError, match="greater than 0"):
        _separate(key, 0, 5)
    with pytest.raises(ValueError, match="infinity"):
        _combined(key, c, (-c * k) % N)  # c*K + r*G = O
    with pytest.raises(ValueError, match="resulting public key is invalid"):
        _separate(key, c, (-c * k) % N)
    minus_key = key.raw.multiply((N - 1).to_bytes(32, "big"))
    with pytest.raises(ValueError, match="infinity"):
        ring_module._add(key.raw.public_key, minus_key.public_key)  # K + (-K)
    fallback = _point_with_x(N, True)  # the separate path's own zero checks
    with pytest.raises(ValueError, match="zero"):
        _combined(fallback, 0, 5)


def test_a_zero_challenge_inside_verify_is_an_invalid_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If a link ever lands on c = 0 (or the point at infinity), verify raises its own error."""
    keys = [PrivateKey.generate() for _ in range(3)]
    ring = [k.public_key for k in keys]
    sig = ring_module.sign(b"m", ring, keys[1], CTX)
    monkeypatch.setattr(ring_module, "_challenge", lambda prefix, left, right: 0)
    with pytest.raises(InvalidSignature):
        ring_module.verify(b"m", ring, sig, CTX)


def test_secret_multiplication_is_the_same_point() -> None:
    base = hash_to_curve(b"some member", b"DST")
    for _ in range(10):
        s = os.urandom(32)
        if not 0 < int.from_bytes(s, "big") < N:
            continue
        assert ring_module._serialize(ring_module._mul_secret(base.public_key, s)) == (
            base.multiply(s).format()
        )
    with pytest.raises(ValueError, match="secret scalar"):
        ring_module._mul_secret(base.public_key, bytes(32))
    with pytest.raises(ValueError, match="secret scalar"):
        ring_module._mul_secret(base.public_key, N.to_bytes(32, "big"))


def test_hash_point_cache_is_bounded_and_transparent() -> None:
    ring_module._hash_point.cache_clear()
    keys = [PrivateKey.generate() for _ in range(4)]
    ring = [k.public_key for k in keys]
    sig = ring_module.sign(b"m", ring, keys[0], CTX)
    ring_module.verify(b"m", ring, sig, CTX)
    info = ring_module._hash_point.cache_info()
    assert info.maxsize == ring_module.KEY_IMAGE_BASE_CACHE
    assert info.currsize == 4
    assert info.hits >= 4  # verify reused what sign hashed
    ctx = ring_module._context_prefix(CTX)
    for key in ring:
        cached = ring_module._key_image_base(ctx, key).format()
        assert cached == hash_to_curve(ctx + key.compressed, ring_module.KEY_IMAGE_DST).format()
    ring_module._hash_point.cache_clear()  # cold: same result
    ring_module.verify(b"m", ring, sig, CTX)
    assert coincurve.PublicKey(sig.key_image).format() == ring_module.key_image(keys[0], CTX)


# Produced by ring.py as it was before issue 16 (four separate multiplications, gmpy2
# hash-to-curve): the faster code must sign the same bytes from the same inputs.
GOLDEN = (
    "56437201000402a74664500c6f6bda28b0296afe075cdb244eca7a0cc4c40c94a7f39866efa9968bf7aa79f1"
    "87ee85a2afc55e276b152b2186a2f84f256218692a3b04e136bbb620a013b6c23b88659768313a3582e8cf85"
    "46ccf9c556a44a710ebd40f0a10873aad898a5d71ed860847274a8d5f4573aa6073271cbd8fefbf3713c88ce"
    "a903ea929cadbf4c4011a9959ba9711840a861f87d125fd8b4b755ad5d832c1e80927f350c05364b01431860"
    "dacebfac346ada3525bb30a21d97bb2ee7b6dcaba48b8c"
)


def test_signature_bytes_unchanged_from_before_the_speed_up() -> None:
    keys = [PrivateKey(hashlib.sha256(b"vitalchain ring golden %d" % i).digest()) for i in range(4)]
    ring = [k.public_key for k in keys]
    sig = ring_module.sign(b"spo2 84", ring, keys[2], b"alert:golden", random=lambda n: b"\x5a" * n)
    assert sig.to_bytes().hex() == GOLDEN
    ring_module.verify(
        b"spo2 84",
        ring,
        ring_module.RingSignature.from_bytes(bytes.fromhex(GOLDEN)),
        b"alert:golden",
    )
    assert sig.key_image == ring_module.key_image(keys[2], b"alert:golden")
