"""secp256k1 identities: Ethereum addresses, ECDSA (low-S, recoverable) and ECDH, on coincurve.

Every actor (device, gateway, patient, provider) is one secp256k1 key; its Ethereum address is
its identity on the ledger.  Application messages are signed hash-then-sign with a context tag
(docs/spec/signature.md)::

    digest = keccak256(0x19 ‖ "vitalchain" ‖ u8(len(context)) ‖ context ‖ message)

The 0x19 prefix keeps a digest from ever being a valid RLP transaction (EIP-191's argument).
Raw digests (EIP-712 tokens the contracts check) use :meth:`PrivateKey.sign_digest`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import coincurve
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT
from sha3 import keccak_256

from vitalchain.errors import DecodeError, InvalidKey, InvalidSignature
from vitalchain.wire.address import to_checksum_address
from vitalchain.wire.framing import Kind, Reader, header

__all__ = [
    "CURVE_ORDER",
    "PrivateKey",
    "PublicKey",
    "Signature",
    "keccak256",
    "message_digest",
]

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_ORDER = CURVE_ORDER // 2
SIGNATURE_VERSION = 1
_SIG_HEADER = header(Kind.SIGNATURE, SIGNATURE_VERSION)
_CTX = GLOBAL_CONTEXT.ctx

Random = Callable[[int], bytes]


def keccak256(data: bytes) -> bytes:
    """Ethereum's Keccak-256 (not FIPS SHA3-256: the padding differs)."""
    digest: bytes = keccak_256(data).digest()
    return digest


def message_digest(message: bytes, context: bytes) -> bytes:
    if not 0 < len(context) < 256:
        raise ValueError("signature context must be 1..255 bytes")
    return keccak256(b"\x19vitalchain" + bytes([len(context)]) + context + message)


@dataclass(frozen=True, slots=True)
class Signature:
    """ECDSA signature ``r ‖ s`` (64 bytes) plus the recovery id (0 or 1)."""

    compact: bytes
    recovery_id: int

    def __post_init__(self) -> None:
        if len(self.compact) != 64 or self.recovery_id not in (0, 1):
            raise DecodeError("signature is r(32) ‖ s(32) with a recovery id of 0 or 1")

    @property
    def r(self) -> int:
        return int.from_bytes(self.compact[:32], "big")

    @property
    def s(self) -> int:
        return int.from_bytes(self.compact[32:], "big")

    def to_bytes(self) -> bytes:
        return _SIG_HEADER + self.compact + bytes([self.recovery_id])

    @classmethod
    def from_bytes(cls, data: bytes) -> Signature:
        reader = Reader(data, Kind.SIGNATURE, frozenset({SIGNATURE_VERSION}))
        compact = reader.take(64)
        recid = reader.u8()
        reader.done()
        return cls(compact, recid)

    def to_rsv(self) -> bytes:
        """The 65-byte ``r ‖ s ‖ v`` form (v = 27 + recovery id) that ecrecover and OZ take."""
        return self.compact + bytes([27 + self.recovery_id])

    @classmethod
    def from_rsv(cls, data: bytes) -> Signature:
        if len(data) != 65 or data[64] not in (0, 1, 27, 28):
            raise DecodeError("an r‖s‖v signature is 65 bytes with v in {0, 1, 27, 28}")
        return cls(data[:64], data[64] % 27)


class PublicKey:
    """A validated secp256k1 point; parsing rejects anything off the curve."""

    __slots__ = ("_address", "_pk")

    def __init__(self, pk: coincurve.PublicKey) -> None:
        self._pk = pk
        self._address: bytes | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        """Accept SEC1 compressed (33), uncompressed (65) or raw ``x ‖ y`` (64) bytes.

        The SEC1 "hybrid" forms (0x06/0x07 ‖ x ‖ y), which libsecp256k1 still parses, are
        refused: nothing we speak emits them, and accepting a second spelling of one key
        lets two byte strings name the same identity.
        """
        if len(data) == 64:
            data = b"\x04" + data
        if len(data) not in (33, 65):
            raise InvalidKey("a public key is 33, 64 or 65 bytes")
        if data[0] not in ((2, 3) if len(data) == 33 else (4,)):
            raise InvalidKey("a public key starts 0x02/0x03 (33 bytes) or 0x04 (65 bytes)")
        try:
            return cls(coincurve.PublicKey(data))
        except ValueError:
            raise InvalidKey("not a point on secp256k1") from None

    @property
    def raw(self) -> coincurve.PublicKey:
        """The coincurve object, for primitives in this package."""
        return self._pk

    @property
    def compressed(self) -> bytes:
        return self._pk.format(compressed=True)

    @property
    def uncompressed(self) -> bytes:
        return self._pk.format(compressed=False)

    @property
    def xy(self) -> bytes:
        """64-byte ``x ‖ y``: the form contracts hash into an address."""
        return self.uncompressed[1:]

    @property
    def address_bytes(self) -> bytes:
        if self._address is None:
            self._address = keccak256(self.xy)[12:]
        return self._address

    @property
    def address(self) -> str:
        return to_checksum_address(self.address_bytes)

    def verify_digest(self, signature: Signature, digest: bytes) -> None:
        """Raise InvalidSignature unless ``signature`` is a low-S signature of ``digest``."""
        if len(digest) != 32:
            raise InvalidSignature("digest must be 32 bytes")
        sig = ffi.new("secp256k1_ecdsa_signature *")
        if not lib.secp256k1_ecdsa_signature_parse_compact(_CTX, sig, signature.compact):
            raise InvalidSignature("signature does not verify")
        if not lib.secp256k1_ecdsa_verify(_CTX, sig, digest, self._pk.public_key):
            raise InvalidSignature("signature does not verify")

    def verify(self, signature: Signature, message: bytes, context: bytes) -> None:
        self.verify_digest(signature, message_digest(message, context))

    def verify_der(self, der_signature: bytes, digest: bytes) -> None:
        """Strict-DER ECDSA verification (libsecp256k1 rules, low-S), for interop and vectors."""
        if len(digest) != 32:
            raise InvalidSignature("digest must be 32 bytes")
        sig = ffi.new("secp256k1_ecdsa_signature *")
        if not lib.secp256k1_ecdsa_signature_parse_der(
            _CTX, sig, der_signature, len(der_signature)
        ):
            raise InvalidSignature("signature does not verify")
        if not lib.secp256k1_ecdsa_verify(_CTX, sig, digest, self._pk.public_key):
            raise InvalidSignature("signature does not verify")

    @classmethod
    def recover(cls, signature: Signature, digest: bytes) -> PublicKey:
        if len(digest) != 32 or signature.s > _HALF_ORDER:
            raise InvalidSignature("signature does not verify")
        try:
            pk = coincurve.PublicKey.from_signature_and_message(
                signature.compact + bytes([signature.recovery_id]), digest, hasher=None
            )
        except ValueError:
            raise InvalidSignature("signature does not verify") from None
        return cls(pk)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and self.compressed == other.compressed

    def __hash__(self) -> int:
        return hash(self.compressed)

    def __repr__(self) -> str:
        return f"PublicKey({self.address})"


class PrivateKey:
    """A secp256k1 secret scalar in [1, n-1].  ``repr`` never shows the secret."""

    __slots__ = ("_public", "_sk")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != 32 or not 0 < int.from_bytes(secret, "big") < CURVE_ORDER:
            raise InvalidKey("a private key is a 32-byte scalar in [1, n-1]")
        self._sk = coincurve.PrivateKey(secret)
        self._public = PublicKey(self._sk.public_key)

    @classmethod
    def generate(cls, random: Random = os.urandom) -> PrivateKey:
        while True:
            secret = random(32)
            if 0 < int.from_bytes(secret, "big") < CURVE_ORDER:
                return cls(secret)

    @property
    def secret(self) -> bytes:
        return bytes(self._sk.secret)

    @property
    def public_key(self) -> PublicKey:
        return self._public

    @property
    def address(self) -> str:
        return self._public.address

    def sign_digest(self, digest: bytes) -> Signature:
        """RFC 6979 deterministic ECDSA over a 32-byte digest; libsecp256k1 emits low-S."""
        if len(digest) != 32:
            raise ValueError("digest must be 32 bytes")
        raw = self._sk.sign_recoverable(digest, hasher=None)
        return Signature(raw[:64], raw[64])

    def sign(self, message: bytes, context: bytes) -> Signature:
        return self.sign_digest(message_digest(message, context))

    def ecdh(self, peer: PublicKey) -> bytes:
        """32-byte shared secret: SHA-256 of the compressed shared point (libsecp256k1's)."""
        return self._sk.ecdh(peer.compressed)

    def __repr__(self) -> str:
        return f"PrivateKey(<secret>, address={self.address})"
