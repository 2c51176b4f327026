"""RFC 9380: expand_message_xmd (K.1) and secp256k1_XMD:SHA-256_SSWU_RO_ (J.8.1), every stage.

The map runs in C (``_h2c.c``); each stage is checked against the RFC vectors, and the C map
and its field arithmetic against the pure-Python reference (``h2c_reference.py``) on random
and edge-case inputs.
"""

from __future__ import annotations

import os
import random

import pytest

from tests.support.vectors import load_vectors
from tests.unit.crypto import h2c_reference as reference
from vitalchain.crypto.primitives import _h2c
from vitalchain.crypto.primitives.h2c import (
    expand_message_xmd,
    hash_to_curve,
    hash_to_field,
    map_to_curve,
)

P = reference.P

XMD = load_vectors("rfc9380_expand_message_xmd_sha256.json")
H2C = load_vectors("rfc9380_secp256k1_sswu_ro.json")


def _pair(point: tuple[int, int]) -> list[str]:
    return [f"{point[0]:064x}", f"{point[1]:064x}"]


@pytest.mark.parametrize("v", XMD["vectors"], ids=lambda v: f"{v['msg'][:8]}-{v['len_in_bytes']}")
def test_expand_message_xmd(v: dict[str, object]) -> None:
    out = expand_message_xmd(
        str(v["msg"]).encode(), XMD["dst"].encode(), int(str(v["len_in_bytes"]))
    )
    assert out.hex() == v["uniform_bytes"]


@pytest.mark.parametrize("v", H2C["vectors"], ids=lambda v: v["msg"][:8] or "empty")
def test_hash_to_curve_every_stage(v: dict[str, list[str]]) -> None:
    msg, dst = str(v["msg"]).encode(), H2C["dst"].encode()
    u = hash_to_field(msg, dst, 2)
    assert [f"{x:064x}" for x in u] == v["u"]
    assert _pair(map_to_curve(u[0])) == v["Q0"]
    assert _pair(map_to_curve(u[1])) == v["Q1"]
    assert _pair(hash_to_curve(msg, dst).point()) == v["P"]
    # the reference agrees with the RFC too, so the comparisons below mean something
    assert _pair(reference.map_to_curve(u[0])) == v["Q0"]
    assert _pair(reference.hash_to_curve(msg, dst)) == v["P"]


def test_vector_count() -> None:
    assert len(H2C["vectors"]) == 5
    assert len(XMD["vectors"]) == 10


def test_dst_is_domain_separation() -> None:
    assert hash_to_curve(b"abc", b"A").format() != hash_to_curve(b"abc", b"B").format()


def test_oversize_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="DST"):
        expand_message_xmd(b"", b"x" * 256, 32)
    with pytest.raises(ValueError, match="too large"):
        expand_message_xmd(b"", b"dst", 255 * 32 + 1)


def test_u_zero_maps_to_a_curve_point() -> None:
    """The exceptional case tv1 = 0 of simplified SWU (u = 0) still lands on the curve."""
    x, y = map_to_curve(0)
    p = 2**256 - 2**32 - 977
    assert (y * y - x**3 - 7) % p == 0


# Field elements the 5x52 limb code is most likely to get wrong: 0, 1, p - 1, values around
# 2^52 limb edges and 2^256 - p, and all-ones patterns.
EDGES = [0, 1, 2, P - 1, P - 2, 2**52 - 1, 2**52, 2**104 - 1, 2**208, 2**255, 2**256 - 1 - P]
EDGES += [(2**256 - 1) % P, (2**32 + 977), P - (2**32 + 977), 0x1000003D1 * (2**48 - 1)]


def _field_samples(rng: random.Random, count: int) -> list[int]:
    return EDGES + [rng.randrange(P) for _ in range(count)]


def test_c_map_matches_the_reference_on_random_and_edge_inputs() -> None:
    rng = random.Random(9380)
    for u in _field_samples(rng, 300):
        assert map_to_curve(u) == reference.map_to_curve(u), hex(u)


def test_c_hash_to_curve_matches_the_reference_on_random_messages() -> None:
    rng = random.Random(1)
    for i in range(100):
        msg = rng.randbytes(rng.randrange(0, 120))
        dst = b"VITALCHAIN-TEST-%d" % i
        assert hash_to_curve(msg, dst).point() == reference.hash_to_curve(msg, dst)


def test_map_uniform_reduces_48_byte_halves_like_hash_to_field() -> None:
    """hash_to_field's OS2IP mod p happens in C: check it at the 384-bit extremes too."""
    halves = [bytes(48), b"\xff" * 48, P.to_bytes(48, "big"), (P + 1).to_bytes(48, "big")]
    halves += [os.urandom(48) for _ in range(20)]
    for a in halves:
        for b in halves[:6]:
            out = _h2c.map_uniform(a + b)
            q0 = reference.map_to_curve(int.from_bytes(a, "big") % P)
            q1 = reference.map_to_curve(int.from_bytes(b, "big") % P)
            assert out == b"".join(c.to_bytes(32, "big") for c in (*q0, *q1))


def test_field_arithmetic_against_python_integers() -> None:
    rng = random.Random(52)
    values = [*_field_samples(rng, 200), 2**512 - 1, 2**384 + 5, P, 2 * P, 2**256]
    for a in values:
        for b in rng.sample(values, 8):
            got = _h2c.field_mul(a.to_bytes(64, "big"), b.to_bytes(64, "big"))
            assert int.from_bytes(got, "big") == a * b % P, (hex(a), hex(b))
        if a % P and a < 2**256:
            inv = int.from_bytes(_h2c.field_inverse(a.to_bytes(32, "big")), "big")
            assert inv == pow(a, -1, P), hex(a)
    assert _h2c.field_inverse(bytes(32)) == bytes(32)  # inv0, as RFC 9380 defines it


def test_c_expand_message_xmd_matches_hashlib_at_every_padding_boundary() -> None:
    """The C SHA-256 pads at 55/56 and 63/64 bytes into a block: msg_prime crosses those
    boundaries as msg and DST lengths vary, and long outputs chain many blocks."""
    rng = random.Random(256)
    for msg_len in [*range(0, 140), 255, 256, 1000]:
        msg = rng.randbytes(msg_len)
        dst = rng.randbytes(rng.choice([1, 7, 54, 55, 56, 63, 64, 65, 200, 255]))
        for n in (1, 32, 33, 48, 96, 255 * 32):
            assert expand_message_xmd(msg, dst, n) == reference.expand_message_xmd(msg, dst, n)


def test_hash_to_field_matches_the_reference() -> None:
    for msg in (b"", b"abc", bytes(range(256))):
        assert hash_to_field(msg, b"D") == reference.hash_to_field(msg, b"D")


def test_c_entry_points_refuse_wrong_lengths() -> None:
    with pytest.raises(ValueError, match="96"):
        _h2c.map_uniform(bytes(95))
    with pytest.raises(ValueError, match="32-byte"):
        _h2c.map_to_curve(bytes(33))
    with pytest.raises(ValueError, match="field element"):
        map_to_curve(P)
    with pytest.raises(ValueError, match="DST"):
        hash_to_curve(b"", b"x" * 256)
    with pytest.raises(ValueError, match="too large"):
        expand_message_xmd(b"", b"dst", -1)


def test_field_multiplication_at_the_limb_bounds() -> None:
    """fe_mul and fe_sqr on raw 5x52 limbs at their documented input bounds (the weakly
    normalised values that chains of multiplications and additions produce), against Python;
    the C side also checks each output limb stays within its bound."""
    rng = random.Random(5252)
    bounds = (2**52, 2**53, 2**52, 2**52, 2**49)

    def limb(bound: int) -> int:
        return rng.choice([0, 1, bound - 1, bound - 1 - rng.randrange(16), rng.randrange(bound)])

    def value(limbs: tuple[int, ...]) -> int:
        return sum(x << (52 * i) for i, x in enumerate(limbs))

    for _ in range(3000):
        a = tuple(limb(b) for b in bounds)
        b = tuple(limb(b) for b in bounds)
        out = _h2c.field_mul_limbs(a, b)  # type: ignore[arg-type]
        assert int.from_bytes(out[:32], "big") == value(a) * value(b) % P
        assert int.from_bytes(out[32:], "big") == value(a) ** 2 % P
    top = tuple(b - 1 for b in bounds)
    out = _h2c.field_mul_limbs(top, top)  # type: ignore[arg-type]
    assert int.from_bytes(out[:32], "big") == value(top) ** 2 % P
    with pytest.raises(ValueError, match="bounds"):
        _h2c.field_mul_limbs((2**52, 0, 0, 0, 0), (0, 0, 0, 0, 0))
