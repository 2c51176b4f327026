"""Pure-Python RFC 9380 map for secp256k1 (simplified SWU + 3-isogeny), straight from the RFC.

The runtime is C (``vitalchain.crypto.primitives._h2c``: SHA-256, expand_message_xmd and the
map); this is the readable reference the tests hold it to, on the RFC vectors and on random
inputs.  Plain ``int`` and ``pow``: slow
and variable time, which is fine in a test.  (It is the implementation ``h2c.py`` shipped
before the C port, with gmpy2 replaced by built-ins.)
"""

from __future__ import annotations

import hashlib

import coincurve

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
_A = 0x3F8731ABDD661ADCA08A5558F0F5D272E953D363CB6F0E5D405447C01A444533
_B = 1771
_Z = P - 11
_SQRT_EXP = (P + 1) // 4  # p = 3 mod 4
# sqrt(-Z^3): turns sqrt(-g(x1)) into sqrt(g(x2)), since g(x2) = Z^3 u^6 g(x1).
_C_SQRT_NEG_Z3 = pow(1331, _SQRT_EXP, P)
_MINUS_B_OVER_A = (-_B * pow(_A, -1, P)) % P
_B_OVER_ZA = (_B * pow(_Z * _A, -1, P)) % P

# Appendix E.1: 3-isogeny map constants k_(i,j), lowest degree first.
_XNUM = (
    0x8E38E38E38E38E38E38E38E38E38E38E38E38E38E38E38E38E38E38DAAAAA8C7,
    0x07D3D4C80BC321D5B9F315CEA7FD44C5D595D2FC0BF63B92DFFF1044F17C6581,
    0x534C328D23F234E6E2A413DECA25CAECE4506144037C40314ECBD0B53D9DD262,
    0x8E38E38E38E38E38E38E38E38E38E38E38E38E38E38E38E38E38E38DAAAAA88C,
)
_XDEN = (
    0xD35771193D94918A9CA34CCBB7B640DD86CD409542F8487D9FE6B745781EB49B,
    0xEDADC6F64383DC1DF7C4B2D51B54225406D36B641F5E41BBC52A56612A8C6D14,
    1,
)
_YNUM = (
    0x4BDA12F684BDA12F684BDA12F684BDA12F684BDA12F684BDA12F684B8E38E23C,
    0xC75E0C32D5CB7C0FA9D0A54B12A0A6D5647AB046D686DA6FDFFC90FC201D71A3,
    0x29A6194691F91A73715209EF6512E576722830A201BE2018A765E85A9ECEE931,
    0x2F684BDA12F684BDA12F684BDA12F684BDA12F684BDA12F684BDA12F38E38D84,
)
_YDEN = (
    0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFF93B,
    0x7A06534BB8BDB49FD5E9E6632722C2989467C1BFC8E8D978DFB425D2685C2573,
    0x6484AA716545CA2CF3A70C3FA8FE337E0A3D21162F0D6299A7BF8192BFD2A76F,
    1,
)


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 5.3.1 with SHA-256, on hashlib."""
    ell = -(-len_in_bytes // 32)
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(64) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha256(msg_prime).digest()
    b0_int = int.from_bytes(b0, "big")
    bi = hashlib.sha256(b0 + b"\x01" + dst_prime).digest()
    out = [bi]
    for i in range(2, ell + 1):
        mixed = (b0_int ^ int.from_bytes(bi, "big")).to_bytes(32, "big")
        bi = hashlib.sha256(mixed + bytes([i]) + dst_prime).digest()
        out.append(bi)
    return b"".join(out)[:len_in_bytes]


def hash_to_field(msg: bytes, dst: bytes, count: int = 2) -> list[int]:
    """RFC 9380 5.2 with L = 48."""
    uniform = expand_message_xmd(msg, dst, count * 48)
    return [int.from_bytes(uniform[i * 48 : (i + 1) * 48], "big") % P for i in range(count)]


def _poly(coeffs: tuple[int, ...], x: int) -> int:
    acc = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        acc = (acc * x + c) % P
    return acc


def map_to_curve(u: int) -> tuple[int, int]:
    """Simplified SWU onto E' (6.6.2) then the 3-isogeny onto secp256k1; affine (x, y)."""
    u2 = u * u % P
    zu2 = _Z * u2 % P
    denom = (zu2 * zu2 + zu2) % P
    x1 = _B_OVER_ZA if denom == 0 else _MINUS_B_OVER_A * (1 + pow(denom, -1, P)) % P
    gx1 = (x1 * x1 * x1 + _A * x1 + _B) % P
    y = pow(gx1, _SQRT_EXP, P)
    if y * y % P == gx1:
        x = x1
    else:
        # gx1 is not a square, so y^2 = -gx1 and sqrt(g(x2)) = u^3 * sqrt(-Z^3) * y.
        x = zu2 * x1 % P
        y = u2 * u % P * _C_SQRT_NEG_Z3 % P * y % P
    if (u & 1) != (y & 1):
        y = P - y
    xd, yd = _poly(_XDEN, x), _poly(_YDEN, x)
    inv = pow(xd * yd % P, -1, P)
    x_out = _poly(_XNUM, x) * yd % P * inv % P
    y_out = y * _poly(_YNUM, x) % P * xd % P * inv % P
    return x_out, y_out


def hash_to_curve(msg: bytes, dst: bytes) -> tuple[int, int]:
    """RFC 9380 3, affine (x, y): both maps, added by libsecp256k1."""
    points = [
        coincurve.PublicKey(b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big"))
        for x, y in (map_to_curve(u) for u in hash_to_field(msg, dst, 2))
    ]
    return coincurve.PublicKey.combine_keys(points).point()
