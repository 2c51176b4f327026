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
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from dataclasses import dataclass

import coincurve

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


def _key_image_base(context_prefix: bytes, member: PublicKey) -> coincurve.PublicKey:
    return hash_to_curve(context_prefix + member.compressed, KEY_IMAGE_DST)


def key_image(signer: PrivateKey, context: bytes) -> bytes:
    """The signer's 33-byte key image in ``context`` (what the alert log keeps unique)."""
    base = _key_image_base(_context_prefix(context), signer.public_key)
    return base.multiply(signer.secret).format()


def _prefix(
    context_prefix: bytes, ring: Sequence[PublicKey], image: bytes, message: bytes
) -> bytes:
    h = hashlib.sha256(_CHALLENGE_TAG)
    h.update(context_prefix)
    h.update(len(ring).to_bytes(2, "big"))
    for member in ring:
        h.update(member.compressed)
    h.update(image)
    h.update(hashlib.sha256(message).digest())
    return h.digest()


def _challenge(prefix: bytes, left: coincurve.PublicKey, right: coincurve.PublicKey) -> int:
    digest = hashlib.sha512(prefix + left.format() + right.format()).digest()
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


def _check_ring(ring: Sequence[PublicKey]) -> None:
    if not MIN_RING <= len(ring) <= MAX_RING:
        raise ValueError(f"a ring has {MIN_RING}..{MAX_RING} members")
    if len({m.compressed for m in ring}) != len(ring):
        raise ValueError("ring has duplicate keys")


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
    _check_ring(ring)
    me = signer.public_key
    try:
        pi = next(i for i, member in enumerate(ring) if member == me)
    except StopIteration:
        raise ValueError("the signer's key is not in the ring") from None
    ctx = _context_prefix(context)
    bases = [_key_image_base(ctx, member) for member in ring]
    k = signer.secret
    image_point = bases[pi].multiply(k)
    image = image_point.format()
    prefix = _prefix(ctx, ring, image, message)
    n = len(ring)
    attempt = 0
    while True:  # retries only on a zero scalar, probability ~2^-256
        alpha, *decoys = _nonces(k, prefix, random(32), attempt, n)
        attempt += 1
        a = _scalar_bytes(alpha)
        responses = [0] * n
        c = [0] * n
        c[(pi + 1) % n] = _challenge(
            prefix, coincurve.PublicKey.from_secret(a), bases[pi].multiply(a)
        )
        try:
            for step in range(1, n):
                i = (pi + step) % n
                responses[i] = decoys[step - 1]
                r = _scalar_bytes(responses[i])
                left = ring[i].raw.multiply(_scalar_bytes(c[i])).add(r)
                right = coincurve.PublicKey.combine_keys(
                    [bases[i].multiply(r), image_point.multiply(_scalar_bytes(c[i]))]
                )
                c[(i + 1) % n] = _challenge(prefix, left, right)
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
        _check_ring(ring)
    except ValueError as exc:
        raise InvalidSignature(f"ring signature: {exc}") from None
    n = len(ring)
    scalars = (signature.c0, *signature.responses)
    if len(signature.responses) != n or any(not 0 < s < _N for s in scalars):
        raise InvalidSignature("ring signature does not verify")
    if len(signature.key_image) != 33 or signature.key_image[0] not in (2, 3):
        raise InvalidSignature("ring signature: key image must be compressed")
    try:
        image_point = coincurve.PublicKey(signature.key_image)
    except (ValueError, TypeError):
        raise InvalidSignature("ring signature: key image is not a curve point") from None
    ctx = _context_prefix(context)
    prefix = _prefix(ctx, ring, signature.key_image, message)
    c = signature.c0
    try:
        for i, member in enumerate(ring):
            r = _scalar_bytes(signature.responses[i])
            cb = _scalar_bytes(c)
            left = member.raw.multiply(cb).add(r)
            right = coincurve.PublicKey.combine_keys(
                [_key_image_base(ctx, member).multiply(r), image_point.multiply(cb)]
            )
            c = _challenge(prefix, left, right)
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
