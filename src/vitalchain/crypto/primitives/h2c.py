"""RFC 9380 hash-to-curve, suite ``secp256k1_XMD:SHA-256_SSWU_RO_``.

Hazardous primitive used by the ring signatures for key images.  No maintained library offers
this suite, so it is written here, straight from the RFC, in C (``_h2c.c``): expand_message_xmd
(5.3.1, SHA-256), hash_to_field (5.2), simplified SWU onto the 3-isogenous curve E' (6.6.2, the
straight-line form of Appendix F.2) and the isogeny map (Appendix E.1).  The point addition
``Q0 + Q1`` is libsecp256k1's (coincurve), never ours.

Why C: the ring signature hashes every ring member to the curve, and the map is three 256-bit
exponentiations (two square roots, one inversion shared by both maps).  In Python with gmpy2 it
cost 50 to 150 us per member, more than an ECDSA verification; in C it is a fraction of one.
Not constant time: only public keys are hashed here.  ``tests/unit/crypto/h2c_reference.py``
keeps the pure-Python map the tests compare the C one against.
"""

from __future__ import annotations

import coincurve
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from vitalchain.crypto.primitives import _h2c

__all__ = ["expand_message_xmd", "hash_to_curve", "hash_to_field", "map_to_curve"]

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
_L = 48  # ceil((ceil(log2(p)) + k) / 8) with k = 128


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """RFC 9380 5.3.1 with SHA-256 (in C, ``_h2c.c``; the Python reference is in the tests)."""
    return _h2c.expand_message_xmd(msg, dst, len_in_bytes)


def hash_to_field(msg: bytes, dst: bytes, count: int = 2) -> list[int]:
    uniform = expand_message_xmd(msg, dst, count * _L)
    return [int.from_bytes(uniform[i * _L : (i + 1) * _L], "big") % P for i in range(count)]


def map_to_curve(u: int) -> tuple[int, int]:
    """Simplified SWU onto E' then the 3-isogeny onto secp256k1; affine (x, y)."""
    if not 0 <= u < P:
        raise ValueError("u must be a field element")
    xy = _h2c.map_to_curve(u.to_bytes(32, "big"))
    return int.from_bytes(xy[:32], "big"), int.from_bytes(xy[32:], "big")


_CTX = GLOBAL_CONTEXT.ctx


def hash_to_curve(msg: bytes, dst: bytes) -> coincurve.PublicKey:
    """RFC 9380 3: hash_to_field(count=2), map both, add (cofactor 1, so no clearing).

    One C call does expand_message_xmd, hash_to_field and both maps (one shared inversion);
    libsecp256k1 parses the two affine points (checking they are on the curve) and adds them.
    """
    xy = _h2c.hash_to_curve_xy(msg, dst)
    q = ffi.new("secp256k1_pubkey[2]")
    if not (
        lib.secp256k1_ec_pubkey_parse(_CTX, q, b"\x04" + xy[:64], 65)
        and lib.secp256k1_ec_pubkey_parse(_CTX, q + 1, b"\x04" + xy[64:], 65)
    ):
        raise ValueError("hash_to_curve: mapped point not on the curve")  # a bug, never input
    out = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_combine(
        _CTX, out, ffi.new("secp256k1_pubkey *[2]", [q, q + 1]), 2
    ):
        raise ValueError("hash_to_curve: Q0 + Q1 is the point at infinity")  # probability 2^-256
    return coincurve.PublicKey(out)
