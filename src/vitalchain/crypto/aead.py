"""Authenticated encryption recipe: one interface, three suites, self-describing ciphertexts.

Ciphertext v1 (docs/spec/aead.md)::

    "VC" ‖ "a" ‖ 0x01 ‖ suite (1) ‖ nonce (12) ‖ ciphertext ‖ tag

The 5-byte header is authenticated with the caller's associated data, so a suite byte cannot
be rewritten.  ChaCha20-Poly1305 is the default: ARX like the paper's SPECK, and standardised.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import IntEnum

from vitalchain.crypto._encoding import Kind, Reader, header
from vitalchain.crypto.primitives.aead import (
    AeadPrimitive,
    AesGcmPrimitive,
    ChaCha20Poly1305Primitive,
    SpeckCtrHmacPrimitive,
)
from vitalchain.errors import DecodeError, DecryptionError, InvalidKey

__all__ = ["DEFAULT_SUITE", "KEY_SIZE", "NONCE_SIZE", "Aead", "Suite", "generate_key", "primitive"]

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
    """A 32-byte key bound to one suite; build once, seal and open many messages."""

    __slots__ = ("_head", "_primitive", "suite")

    def __init__(self, key: bytes, suite: Suite = DEFAULT_SUITE) -> None:
        self.suite = Suite(suite)
        self._primitive = primitive(self.suite, key)
        self._head = _HEADER + bytes([self.suite])

    def seal(self, plaintext: bytes, aad: bytes = b"", *, random: Random = os.urandom) -> bytes:
        nonce = random(NONCE_SIZE)
        body = self._primitive.encrypt(nonce, plaintext, self._head + aad)
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
        if suite != self.suite or len(body) < self._primitive.tag_size:
            raise DecryptionError()
        return self._primitive.decrypt(nonce, body, self._head + aad)

    @staticmethod
    def suite_of(ciphertext: bytes) -> Suite:
        """Read the suite from a header without decrypting (for routing and logs)."""
        reader = Reader(ciphertext, Kind.AEAD, frozenset({VERSION}))
        try:
            return Suite(reader.u8())
        except ValueError:
            raise DecodeError("unknown AEAD suite", code="unknown_suite") from None
