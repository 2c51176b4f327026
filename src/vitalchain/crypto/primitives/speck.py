"""SPECK block ciphers (Beaulieu et al., ePrint 2013/404) and Speck128 CTR mode.

Hazardous primitive: raw block operations with no authentication.  Application code uses the
``SPECK128_256_CTR_HMAC_SHA256`` AEAD suite in :mod:`vitalchain.crypto.aead` instead.

Byte order is the designers' implementation-guide order (as the former Linux crypto/speck.c):
each word little-endian, ``y`` at the lower address, key word ``k0`` first.  That makes a byte
string the paper's printed hex reversed.  No library implements SPECK, so this module does; the
block functions are the readable reference and the C kernel (``_speck``) only does CTR bulk work.
"""

from __future__ import annotations

from dataclasses import dataclass

from vitalchain.crypto.primitives import _speck
from vitalchain.errors import InvalidKey

__all__ = ["SPECK64_128", "SPECK128_128", "SPECK128_192", "SPECK128_256", "Speck", "Variant"]

ALPHA = 8
BETA = 3


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    word_bits: int
    key_words: int
    rounds: int

    @property
    def block_size(self) -> int:
        return 2 * self.word_bits // 8

    @property
    def key_size(self) -> int:
        return self.key_words * self.word_bits // 8


SPECK64_128 = Variant("Speck64/128", 32, 4, 27)
SPECK128_128 = Variant("Speck128/128", 64, 2, 32)
SPECK128_192 = Variant("Speck128/192", 64, 3, 33)
SPECK128_256 = Variant("Speck128/256", 64, 4, 34)


class Speck:
    """One keyed instance: the round keys are expanded once."""

    __slots__ = ("_mask", "_packed", "_round_keys", "_w", "variant")

    def __init__(self, variant: Variant, key: bytes) -> None:
        if len(key) != variant.key_size:
            raise InvalidKey(f"{variant.name} needs a {variant.key_size}-byte key")
        self.variant = variant
        w = variant.word_bits
        self._w = w
        self._mask = (1 << w) - 1
        nbytes = w // 8
        words = [int.from_bytes(key[i : i + nbytes], "little") for i in range(0, len(key), nbytes)]
        k = words[0]
        ells = words[1:]
        round_keys = [k]
        for i in range(variant.rounds - 1):
            ell = ((k + self._ror(ells[i], ALPHA)) & self._mask) ^ i
            ells.append(ell)
            k = self._rol(k, BETA) ^ ell
            round_keys.append(k)
        self._round_keys = tuple(round_keys)
        self._packed = b"".join(rk.to_bytes(nbytes, "little") for rk in round_keys)

    def _ror(self, v: int, r: int) -> int:
        return ((v >> r) | (v << (self._w - r))) & self._mask

    def _rol(self, v: int, r: int) -> int:
        return ((v << r) | (v >> (self._w - r))) & self._mask

    def _split(self, block: bytes) -> tuple[int, int]:
        if len(block) != self.variant.block_size:
            raise ValueError(f"{self.variant.name} blocks are {self.variant.block_size} bytes")
        half = self.variant.block_size // 2
        return int.from_bytes(block[half:], "little"), int.from_bytes(block[:half], "little")

    def _join(self, x: int, y: int) -> bytes:
        half = self.variant.block_size // 2
        return y.to_bytes(half, "little") + x.to_bytes(half, "little")

    def encrypt_block(self, block: bytes) -> bytes:
        x, y = self._split(block)
        for k in self._round_keys:
            x = ((self._ror(x, ALPHA) + y) & self._mask) ^ k
            y = self._rol(y, BETA) ^ x
        return self._join(x, y)

    def decrypt_block(self, block: bytes) -> bytes:
        x, y = self._split(block)
        for k in reversed(self._round_keys):
            y = self._ror(y ^ x, BETA)
            x = self._rol(((x ^ k) - y) & self._mask, ALPHA)
        return self._join(x, y)

    def ctr(self, nonce: bytes, data: bytes | memoryview, counter: int = 0) -> bytes:
        """XOR ``data`` with the CTR keystream; counter block i = nonce(12) ‖ u32le(counter+i).

        Encryption and decryption are the same call.  Only 128-bit-block variants run in CTR
        mode here; a 64-bit block is too small for a per-message counter space.
        """
        if self.variant.word_bits != 64:
            raise ValueError("CTR mode is only offered for Speck128 variants")
        if len(nonce) != 12:
            raise ValueError("Speck128-CTR nonce must be 12 bytes")
        blocks = (len(data) + 15) // 16
        if not 0 <= counter < 1 << 32 or counter + blocks > 1 << 32:
            raise ValueError("CTR counter would wrap")
        return _speck.ctr_xor(self._packed, nonce, counter, data)  # the C kernel re-checks

    def ctr_reference(self, nonce: bytes, data: bytes, counter: int = 0) -> bytes:
        """The same keystream block by block in Python; the C kernel is tested against it."""
        out = bytearray()
        for i in range(0, len(data), 16):
            block = nonce + ((counter + i // 16) & 0xFFFFFFFF).to_bytes(4, "little")
            ks = self.encrypt_block(block)
            out += bytes(a ^ b for a, b in zip(data[i : i + 16], ks, strict=False))
        return bytes(out)
