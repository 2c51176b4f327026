"""Authenticated encryption recipe: one interface, three suites, self-describing ciphertexts.

Ciphertext v1 (docs/spec/aead.md)::

    "VC" ‖ "a" ‖ 0x01 ‖ suite (1) ‖ nonce (12) ‖ ciphertext ‖ tag

The 5-byte header is authenticated with the caller's associated data, so a suite byte cannot
be rewritten.  ChaCha20-Poly1305 is the default: ARX like the paper's SPECK, and standardised.

One :class:`Aead` counts what it seals and refuses (:class:`KeyExhausted`, code
``key_exhausted``) past its suite's :data:`USAGE_LIMITS`: random 96-bit nonces collide, and
128-bit block ciphers reach their birthday bound, long before a key wears out otherwise.  The
owner of the key then re-keys; the count lives in the object, so an owner that rebuilds one
for the same key passes the count it persisted (``used=``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from vitalchain.crypto.primitives.aead import (
    AeadPrimitive,
    AesGcmPrimitive,
    ChaCha20Poly1305Primitive,
    SpeckCtrHmacPrimitive,
)
from vitalchain.errors import DecodeError, DecryptionError, InvalidKey, VitalchainError
from vitalchain.wire.framing import Kind, Reader, header

__all__ = [
    "DEFAULT_SUITE",
    "KEY_SIZE",
    "NONCE_SIZE",
    "USAGE_LIMITS",
    "Aead",
    "KeyExhausted",
    "Suite",
    "Usage",
    "UsageLimit",
    "generate_key",
    "primitive",
]

VERSION = 1
KEY_SIZE = 32
NONCE_SIZE = 12
_HEADER = header(Kind.AEAD, VERSION)

Random = Callable[[int], bytes]


class Suite(IntEnum):
    CHACHA20_POLY1305 = 1
    AES_256_GCM = 2
    SPECK128_256_CTR_HMAC_SHA256 = 3

    @property
    def label(self) -> str:
        return {
            Suite.CHACHA20_POLY1305: "ChaCha20-Poly1305",
            Suite.AES_256_GCM: "AES-256-GCM",
            Suite.SPECK128_256_CTR_HMAC_SHA256: "SPECK128/256-CTR+HMAC-SHA256",
        }[self]

    @classmethod
    def parse(cls, name: str) -> Suite:
        """Accept ``chacha20-poly1305``, ``aes-256-gcm``, ``speck`` and the enum names."""
        key = name.strip().lower().replace("_", "-")
        aliases = {
            "chacha20-poly1305": cls.CHACHA20_POLY1305,
            "chacha": cls.CHACHA20_POLY1305,
            "aes-256-gcm": cls.AES_256_GCM,
            "aes": cls.AES_256_GCM,
            "speck": cls.SPECK128_256_CTR_HMAC_SHA256,
            "speck128-256-ctr-hmac-sha256": cls.SPECK128_256_CTR_HMAC_SHA256,
        }
        try:
            return aliases[key]
        except KeyError:
            raise ValueError(
                f"unknown AEAD suite {name!r}; choose one of {sorted(aliases)}"
            ) from None


DEFAULT_SUITE = Suite.CHACHA20_POLY1305


class KeyExhausted(VitalchainError):
    """This key has sealed all it may: seal nothing more under it, agree a new one."""

    code = "key_exhausted"


@dataclass(frozen=True, slots=True)
class Usage:
    """What one key has sealed: messages, and 16-byte blocks (each message counts its
    plaintext blocks plus one, for the counter or tag block the suite spends on it)."""

    messages: int = 0
    blocks: int = 0

    def __post_init__(self) -> None:
        if self.messages < 0 or self.blocks < 0:
            raise ValueError("usage counts are not negative")


@dataclass(frozen=True, slots=True)
class UsageLimit:
    """The most one key may seal; ``blocks=None``: no block bound (a stream cipher's PRF)."""

    messages: int
    blocks: int | None = None


def _blocks(length: int) -> int:
    return (length + 15) // 16 + 1


# Why these numbers (docs/spec/aead.md, "Per-key limits"): every suite draws 96-bit random
# nonces, and q messages collide with probability about q^2 / 2^97, so 2^32 messages keep it
# near 2^-33 (NIST SP 800-38D §8.3 sets the same cap for random-IV GCM).  AES and Speck128 are
# 128-bit block ciphers: sigma blocks under one key are distinguishable from random with
# advantage about sigma^2 / 2^129 (draft-irtf-cfrg-aead-limits), so 2^48 blocks (4 PiB) keep
# that near 2^-33 too.  ChaCha20 is a PRF-based stream cipher with no such block bound.
USAGE_LIMITS: dict[Suite, UsageLimit] = {
    Suite.CHACHA20_POLY1305: UsageLimit(messages=2**32),
    Suite.AES_256_GCM: UsageLimit(messages=2**32, blocks=2**48),
    Suite.SPECK128_256_CTR_HMAC_SHA256: UsageLimit(messages=2**32, blocks=2**48),
}

_PRIMITIVES: dict[Suite, Callable[[bytes], AeadPrimitive]] = {
    Suite.CHACHA20_POLY1305: ChaCha20Poly1305Primitive,
    Suite.AES_256_GCM: AesGcmPrimitive,
    Suite.SPECK128_256_CTR_HMAC_SHA256: SpeckCtrHmacPrimitive,
}


def generate_key(random: Random = os.urandom) -> bytes:
    return random(KEY_SIZE)


def primitive(suite: Suite, key: bytes) -> AeadPrimitive:
    """The suite's raw explicit-nonce primitive, for formats that frame nonces themselves."""
    if len(key) != KEY_SIZE:
        raise InvalidKey(f"AEAD keys are {KEY_SIZE} bytes")
    return _PRIMITIVES[Suite(suite)](key)


class Aead:
    """A 32-byte key bound to one suite; build once, seal and open many messages.

    ``limit`` defaults to the suite's entry in :data:`USAGE_LIMITS` (tests inject a small
    one); ``used`` restores the count of an object rebuilt for a key that already sealed.
    Keep one object per key: two objects for one key count separately.  Thread-safe.
    """

    __slots__ = ("_blocks", "_head", "_key", "_lock", "_messages", "_primitive", "limit", "suite")

    def __init__(
        self,
        key: bytes,
        suite: Suite = DEFAULT_SUITE,
        *,
        limit: UsageLimit | None = None,
        used: Usage = Usage(),  # frozen, so one shared default is safe
    ) -> None:
        self.suite = Suite(suite)
        if len(key) != KEY_SIZE:
            raise InvalidKey(f"AEAD keys are {KEY_SIZE} bytes")
        self._key = bytes(key)
        self._primitive: AeadPrimitive | None = None  # built at first use: see _cipher
        self._head = _HEADER + bytes([self.suite])
        self.limit = USAGE_LIMITS[self.suite] if limit is None else limit
        self._messages, self._blocks = used.messages, used.blocks
        self._lock = threading.Lock()

    def _cipher(self) -> AeadPrimitive:
        """The suite's primitive, built at the first seal or open.  A gateway keeps an Aead for
        every enrolled device's live session, and the library's pre-built cipher contexts
        (about 2.5 KB each, benchmarks/scale.py) were most of a device's memory there; a
        device that has not sent since the gateway started needs none.  Two threads racing
        here build two equal primitives, and one is kept: harmless."""
        cipher = self._primitive
        if cipher is None:
            cipher = self._primitive = primitive(self.suite, self._key)
        return cipher

    def material(self) -> tuple[bytes, Suite]:
        """The key and its suite, for handing a session to a gateway's ingest worker process
        over a local pipe (gateway/workers.py), which builds its own object to open with."""
        return self._key, self.suite

    @property
    def used(self) -> Usage:
        """What this key has sealed so far (persist it with the key to survive a restart)."""
        with self._lock:
            return Usage(self._messages, self._blocks)

    @property
    def remaining(self) -> int:
        """Messages this key may still seal (fewer if large ones hit the block bound first)."""
        return max(0, self.limit.messages - self._messages)

    def _charge(self, length: int) -> None:
        """Count one seal of ``length`` bytes, or refuse it, before any nonce is drawn."""
        limit = self.limit
        with self._lock:
            blocks = self._blocks + _blocks(length)
            over_blocks = limit.blocks is not None and blocks > limit.blocks
            if self._messages >= limit.messages or over_blocks:
                raise KeyExhausted(
                    f"this {self.suite.label} key has sealed its limit "
                    f"({limit.messages} messages, {limit.blocks or 'no'} block bound); re-key",
                )
            self._messages += 1
            self._blocks = blocks

    def seal(self, plaintext: bytes, aad: bytes = b"", *, random: Random = os.urandom) -> bytes:
        """Encrypt under a fresh random nonce; KeyExhausted once the key's limit is reached."""
        self._charge(len(plaintext))
        nonce = random(NONCE_SIZE)
        body = self._cipher().encrypt(nonce, plaintext, self._head + aad)
        return self._head + nonce + body

    def open(self, ciphertext: bytes, aad: bytes = b"") -> bytes:
        """Decrypt; wrong key, suite, aad, version or any changed byte: DecryptionError."""
        try:
            reader = Reader(ciphertext, Kind.AEAD, frozenset({VERSION}))
            suite = reader.u8()
            nonce = reader.take(NONCE_SIZE)
            body = reader.rest()
        except DecodeError:
            raise DecryptionError() from None
        cipher = self._cipher()
        if suite != self.suite or len(body) < cipher.tag_size:
            raise DecryptionError()
        return cipher.decrypt(nonce, body, self._head + aad)

    @staticmethod
    def suite_of(ciphertext: bytes) -> Suite:
        """Read the suite from a header without decrypting (for routing and logs)."""
        reader = Reader(ciphertext, Kind.AEAD, frozenset({VERSION}))
        try:
            return Suite(reader.u8())
        except ValueError:
            raise DecodeError("unknown AEAD suite", code="unknown_suite") from None
