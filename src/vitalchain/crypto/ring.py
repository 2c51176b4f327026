"""Linkable ring signatures: bLSAG ("Zero to Monero" 2nd ed., section 3.4) on secp256k1.

A member of a ring of public keys signs without revealing which one.  The key image
``I = k * Hp(context ‖ K)`` is deterministic per (key, context): two signatures by one key in
one context carry the same image and link; across contexts they do not.  ``Hp`` is RFC 9380
hash-to-curve.  All point arithmetic is libsecp256k1's (coincurve).  Format and challenge
hashing: docs/spec/ring-signature.md.

Signing::

    I = k_pi * H_pi,   H_i = Hp(ctx ‖ K_i)
    c_{pi+1} = Hn(prefix, a*G, a*H_pi)
    c_{i+1}  = Hn(prefix, r_i*G + c_i*K_i, r_i*H_i + c_i*I)    for i != pi
    r_pi     = a - c_pi * k_pi  (mod n)

where ``prefix`` commits to the context, the ordered ring, the key image and the message.

Nonces are hedged (``_nonces``): alpha and the decoy responses come from HMAC-SHA512 keyed with
the signer's secret over ``prefix`` and 32 fresh bytes of ``random``.  A repeated alpha on two
messages would reveal ``k_pi = (r_pi - r'_pi) / (c'_pi - c_pi)``; hedging means a broken or
constant ``random`` can only make signing deterministic (as RFC 6979), never repeat alpha across
messages, rings or contexts, while good randomness keeps fault and side-channel attacks on a
purely deterministic nonce away.

Speed (issue 16).  Per member a verifier pays ``Hp`` and two double-scalar multiplications.
``r*G + c*K`` is one libsecp256k1 call through the ECDSA public-key recovery identity
(``_mul_add_g``); ``r*H + c*I`` has no such form in libsecp256k1's public API (no call takes two
arbitrary bases), so it stays two ``tweak_mul`` and an addition.  ``Hp`` is C
(``primitives/_h2c.c``) and cached per (context, member).  Points stay parsed libsecp256k1
structs through the loop.  The signer's secret scalars (k, alpha) go through constant-time
calls only (``_mul_secret``, ``_base_mul``); everything variable time sees public values.
Measured figures: docs/benchmarks.md, section "ring" (``benchmarks/crypto.py``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import coincurve
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT
from coincurve.flags import EC_COMPRESSED

from vitalchain.crypto.keys import CURVE_ORDER, PrivateKey, PublicKey, Random
from vitalchain.crypto.primitives.h2c import hash_to_curve
from vitalchain.errors import DecodeError, InvalidSignature
from vitalchain.wire.framing import Kind, Reader, header

__all__ = [
    "MAX_RING",
    "MIN_RING",
    "RingProof",
    "RingSignature",
    "key_image",
    "sign",
    "verify",
]

VERSION = 1
_HEADER = header(Kind.RING_SIGNATURE, VERSION)
MIN_RING = 2
MAX_RING = 1024
KEY_IMAGE_DST = b"VITALCHAIN-V01-CS01-with-secp256k1_XMD:SHA-256_SSWU_RO_BLSAG_KEY_IMAGE_"
_CHALLENGE_TAG = b"vitalchain/v1 blsag challenge"
_NONCE_TAG = b"vitalchain/v1 blsag nonce"
_N = CURVE_ORDER


def _scalar_bytes(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _context_prefix(context: bytes) -> bytes:
    if not 0 < len(context) <= 1024:
        raise ValueError("ring-signature context must be 1..1024 bytes")
    return len(context).to_bytes(2, "big") + context


# --- point operations: libsecp256k1 through coincurve's cffi handle -------------------------
#
# A ring of n costs n hash-to-curve calls and 2n double-scalar multiplications, so the loop
# works on libsecp256k1's parsed ``secp256k1_pubkey`` structs directly: no re-parsing, no
# coincurve wrapper per intermediate point.  Every curve operation is still libsecp256k1's.

_CTX = GLOBAL_CONTEXT.ctx
Point = Any  # a cffi ``secp256k1_pubkey *``; never mutated once made


def _serialize(point: Point) -> bytes:
    out = ffi.new("unsigned char[33]")
    lib.secp256k1_ec_pubkey_serialize(_CTX, out, ffi.new("size_t *", 33), point, EC_COMPRESSED)
    return bytes(ffi.buffer(out, 33))


def _mul(point: Point, scalar: bytes) -> Point:
    """``scalar * point``, variable time: for public scalars only.  ValueError on 0 or >= n."""
    out = ffi.new("secp256k1_pubkey *", point[0])
    if not lib.secp256k1_ec_pubkey_tweak_mul(_CTX, out, scalar):
        raise ValueError("scalar is zero or not below the group order")
    return out


def _xy_copy(output: Any, x32: Any, y32: Any, data: Any) -> int:
    """ECDH "hash" that returns the shared point itself, x || y."""
    ffi.memmove(output, x32, 32)
    ffi.memmove(output + 32, y32, 32)
    return 1


_XY_COPY: Any = ffi.callback(
    "int(unsigned char *, const unsigned char *, const unsigned char *, void *)", _xy_copy
)


def _mul_secret(point: Point, secret: bytes) -> Point:
    """``secret * point`` in constant time (libsecp256k1's ECDH ladder), for k and alpha.

    ``tweak_mul`` is variable time; the signer's key and nonce go through ``secp256k1_ecdh``
    with a hash function that hands back the point, then are parsed again (64 bytes).
    """
    xy = ffi.new("unsigned char[65]")
    xy[0] = 4
    if not lib.secp256k1_ecdh(_CTX, xy + 1, point, secret, _XY_COPY, ffi.NULL):
        raise ValueError("secret scalar is zero or not below the group order")
    out = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_parse(_CTX, out, xy, 65):
        raise ValueError("ECDH output is not a point")  # never: it came from libsecp256k1
    return out


def _add(a: Point, b: Point) -> Point:
    out = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_combine(_CTX, out, [a, b], 2):
        raise ValueError("sum is the point at infinity")
    return out


def _base_mul(scalar: bytes) -> Point:
    """``scalar * G``, constant time (secret nonces go through here)."""
    out = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_create(_CTX, out, scalar):
        raise ValueError("scalar is zero or not below the group order")
    return out


@dataclass(frozen=True, slots=True)
class _Member:
    """A ring member as the inner loop needs it, parsed once per call."""

    compressed: bytes
    point: Point
    # The ECDSA-recovery form of the point (see _mul_add_g): r = x mod n and the recovery id.
    rx: int
    rx_bytes: bytes
    recid: int

    @classmethod
    def of(cls, key: PublicKey) -> _Member:
        compressed = key.compressed
        x = int.from_bytes(compressed[1:], "big")
        overflow = x >= _N  # x in [n, p): recovery ids 2 and 3 mean "x = r + n"
        rx = x - _N if overflow else x
        return cls(
            compressed,
            key.raw.public_key,
            rx,
            rx.to_bytes(32, "big"),
            (compressed[0] & 1) | (2 if overflow else 0),
        )


def _mul_add_g(member: _Member, c: int, r: int) -> Point:
    """``c * K + r * G`` in one libsecp256k1 double-scalar multiplication.

    ECDSA public-key recovery computes ``Q = rx^-1 * (s * R - z * G)`` for the point R whose
    x is ``rx`` (plus n when the recovery id says so) and whose y parity is in the id.  With
    R = K, s = c * rx and z = -r * rx (mod n) that is exactly ``c * K + r * G``: one Strauss
    pass over both scalars instead of a multiplication plus a ``tweak_add`` (itself a full
    multiplication pass), about a third less time here.  Raises ValueError where the separate
    operations would (c = 0, a result at infinity); the one point family this cannot express
    (x = n, so rx = 0: two points, both on the curve) takes the separate path.
    """
    if member.rx == 0:
        return _add(_mul(member.point, c.to_bytes(32, "big")), _base_mul(r.to_bytes(32, "big")))
    compact = member.rx_bytes + (c * member.rx % _N).to_bytes(32, "big")
    sig = ffi.new("secp256k1_ecdsa_recoverable_signature *")
    if not lib.secp256k1_ecdsa_recoverable_signature_parse_compact(
        _CTX, sig, compact, member.recid
    ):
        raise ValueError("scalar not below the group order")
    out = ffi.new("secp256k1_pubkey *")
    z = (-r * member.rx) % _N
    if not lib.secp256k1_ecdsa_recover(_CTX, out, sig, z.to_bytes(32, "big")):
        raise ValueError("c is zero or c*K + r*G is the point at infinity")
    return out


# Hp(ctx || K) per (context, member), bounded LRU (4096 entries of a few hundred bytes).  It
# serves whoever handles one signature more than once in a process: the signer's own key image
# and ring, a verifier checking an alert again (the portal's list, a re-check after a restart),
# tests and benchmarks.  It does not make the first verification cheap: alert contexts are per
# payload (wire.alert.alert_context), so a new alert is always cold, and the cold cost is the
# one the benchmarks hold to the target.
KEY_IMAGE_BASE_CACHE = 4096


@functools.lru_cache(maxsize=KEY_IMAGE_BASE_CACHE)
def _hash_point(context_prefix: bytes, compressed: bytes) -> coincurve.PublicKey:
    return hash_to_curve(context_prefix + compressed, KEY_IMAGE_DST)


def _key_image_base(context_prefix: bytes, member: PublicKey) -> coincurve.PublicKey:
    return _hash_point(context_prefix, member.compressed)


def key_image(signer: PrivateKey, context: bytes) -> bytes:
    """The signer's 33-byte key image in ``context`` (what the alert log keeps unique)."""
    base = _key_image_base(_context_prefix(context), signer.public_key)
    return _serialize(_mul_secret(base.public_key, signer.secret))


def _prefix(context_prefix: bytes, ring: Sequence[bytes], image: bytes, message: bytes) -> bytes:
    """``ring``: the members' compressed encodings, in ring order."""
    h = hashlib.sha256(_CHALLENGE_TAG)
    h.update(context_prefix)
    h.update(len(ring).to_bytes(2, "big"))
    for member in ring:
        h.update(member)
    h.update(image)
    h.update(hashlib.sha256(message).digest())
    return h.digest()


def _challenge(prefix: bytes, left: Point, right: Point) -> int:
    digest = hashlib.sha512(prefix + _serialize(left) + _serialize(right)).digest()
    return int.from_bytes(digest, "big") % _N


def _nonces(secret: bytes, prefix: bytes, fresh: bytes, attempt: int, count: int) -> list[int]:
    """``count`` hedged scalars in [1, n-1]: alpha first, then the decoy responses in ring order.

    ``seed = HMAC-SHA512(k, tag ‖ u8(len(fresh)) ‖ fresh ‖ u32(attempt) ‖ prefix)`` and
    ``x_j = 1 + (HMAC-SHA512(seed, u16(j)) mod (n - 1))``.  The secret key makes the nonces
    unpredictable to anyone else even when ``fresh`` is not random; ``prefix`` (context, ring,
    key image, message hash) makes them differ per signature; 512 bits reduced mod n - 1 are
    within 2^-256 of uniform (the RFC 9380 hash_to_field argument), so no bias to exploit.
    """
    seed = hmac.new(
        secret,
        _NONCE_TAG + bytes([len(fresh)]) + fresh + attempt.to_bytes(4, "big") + prefix,
        hashlib.sha512,
    ).digest()
    blocks = (hmac.new(seed, j.to_bytes(2, "big"), hashlib.sha512).digest() for j in range(count))
    return [1 + int.from_bytes(block, "big") % (_N - 1) for block in blocks]


def _check_ring(ring: Sequence[PublicKey]) -> list[_Member]:
    if not MIN_RING <= len(ring) <= MAX_RING:
        raise ValueError(f"a ring has {MIN_RING}..{MAX_RING} members")
    members = [_Member.of(m) for m in ring]
    if len({m.compressed for m in members}) != len(members):
        raise ValueError("ring has duplicate keys")
    return members


def _step(prefix: bytes, member: _Member, base: Point, image: Point, c: int, r: int) -> int:
    """One link of the ring: ``Hn(prefix, r*G + c*K, r*H + c*I)``, public scalars only."""
    left = _mul_add_g(member, c, r)
    right = _add(_mul(base, r.to_bytes(32, "big")), _mul(image, c.to_bytes(32, "big")))
    return _challenge(prefix, left, right)


@dataclass(frozen=True, slots=True)
class RingSignature:
    key_image: bytes  # 33-byte compressed point
    c0: int
    responses: tuple[int, ...]

    def links_to(self, other: RingSignature) -> bool:
        """Same signer in the same context (verify both first: an image alone proves nothing)."""
        return self.key_image == other.key_image

    def to_bytes(self) -> bytes:
        return b"".join(
            [
                _HEADER,
                len(self.responses).to_bytes(2, "big"),
                self.key_image,
                _scalar_bytes(self.c0),
                *(_scalar_bytes(r) for r in self.responses),
            ]
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> RingSignature:
        reader = Reader(data, Kind.RING_SIGNATURE, frozenset({VERSION}))
        n = reader.u16()
        if not MIN_RING <= n <= MAX_RING:
            raise DecodeError("ring signature: ring size out of range")
        image = reader.take(33)
        scalars = [int.from_bytes(reader.take(32), "big") for _ in range(n + 1)]
        reader.done()
        if any(not 0 < s < _N for s in scalars):
            raise DecodeError("ring signature: scalar is zero or not below the group order")
        return cls(image, scalars[0], tuple(scalars[1:]))


def sign(
    message: bytes,
    ring: Sequence[PublicKey],
    signer: PrivateKey,
    context: bytes,
    *,
    random: Random = os.urandom,
) -> RingSignature:
    members = _check_ring(ring)
    me = signer.public_key.compressed
    try:
        pi = next(i for i, member in enumerate(members) if member.compressed == me)
    except StopIteration:
        raise ValueError("the signer's key is not in the ring") from None
    ctx = _context_prefix(context)
    bases = [_hash_point(ctx, member.compressed).public_key for member in members]
    k = signer.secret
    image_point = _mul_secret(bases[pi], k)
    image = _serialize(image_point)
    prefix = _prefix(ctx, [m.compressed for m in members], image, message)
    n = len(ring)
    attempt = 0
    while True:  # retries only on a zero scalar, probability ~2^-256
        alpha, *decoys = _nonces(k, prefix, random(32), attempt, n)
        attempt += 1
        a = _scalar_bytes(alpha)
        responses = [0] * n
        c = [0] * n
        c[(pi + 1) % n] = _challenge(prefix, _base_mul(a), _mul_secret(bases[pi], a))
        try:
            for step in range(1, n):
                i = (pi + step) % n
                responses[i] = decoys[step - 1]
                c[(i + 1) % n] = _step(
                    prefix, members[i], bases[i], image_point, c[i], responses[i]
                )
        except ValueError:
            continue  # a zero challenge; derive again with the next attempt number
        responses[pi] = (alpha - c[pi] * int.from_bytes(k, "big")) % _N
        if responses[pi] != 0 and c[0] != 0:
            return RingSignature(image, c[0], tuple(responses))


def verify(
    message: bytes, ring: Sequence[PublicKey], signature: RingSignature, context: bytes
) -> None:
    """Raise InvalidSignature unless ``signature`` is a ring signature by a member of ``ring``."""
    try:
        members = _check_ring(ring)
    except ValueError as exc:
        raise InvalidSignature(f"ring signature: {exc}") from None
    n = len(ring)
    scalars = (signature.c0, *signature.responses)
    if len(signature.responses) != n or any(not 0 < s < _N for s in scalars):
        raise InvalidSignature("ring signature does not verify")
    if len(signature.key_image) != 33 or signature.key_image[0] not in (2, 3):
        raise InvalidSignature("ring signature: key image must be compressed")
    image_point = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_parse(_CTX, image_point, signature.key_image, 33):
        raise InvalidSignature("ring signature: key image is not a curve point")
    ctx = _context_prefix(context)
    prefix = _prefix(ctx, [m.compressed for m in members], signature.key_image, message)
    c = signature.c0
    try:
        for member, r in zip(members, signature.responses, strict=True):
            base = _hash_point(ctx, member.compressed).public_key
            c = _step(prefix, member, base, image_point, c, r)
    except ValueError:
        raise InvalidSignature("ring signature does not verify") from None
    if c != signature.c0:
        raise InvalidSignature("ring signature does not verify")


@dataclass(frozen=True, slots=True)
class RingProof:
    """A ring signature with its ring: ``u16(n) ‖ n compressed keys ‖ VCr`` (telemetry.md)."""

    members: tuple[PublicKey, ...]
    signature: RingSignature

    def to_bytes(self) -> bytes:
        keys = b"".join(member.compressed for member in self.members)
        return len(self.members).to_bytes(2, "big") + keys + self.signature.to_bytes()

    @classmethod
    def read(cls, data: bytes) -> tuple[RingProof, int]:
        """Decode a proof at the start of ``data``; return it and the bytes it took."""
        if len(data) < 2:
            raise DecodeError("ring proof: truncated")
        n = int.from_bytes(data[:2], "big")
        if not MIN_RING <= n <= MAX_RING:
            raise DecodeError("ring proof: ring size out of range")
        end_keys = 2 + 33 * n
        end = end_keys + 4 + 2 + 33 + 32 * (n + 1)
        if len(data) < end:
            raise DecodeError("ring proof: truncated")
        if any(data[i] not in (2, 3) for i in range(2, end_keys, 33)):
            raise DecodeError("ring proof: members must be compressed keys")
        try:
            members = tuple(PublicKey.from_bytes(data[i : i + 33]) for i in range(2, end_keys, 33))
        except (ValueError, DecodeError):
            raise DecodeError("ring proof: a member is not a curve point") from None
        signature = RingSignature.from_bytes(data[end_keys:end])
        if len(signature.responses) != n:
            raise DecodeError("ring proof: signature and ring sizes differ")
        return cls(members, signature), end
