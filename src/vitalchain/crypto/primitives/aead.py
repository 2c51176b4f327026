"""Raw AEAD primitives with an explicit nonce, one class per algorithm.

Hazardous layer: callers choose nonces.  The recipe :class:`vitalchain.crypto.aead.Aead`
draws them and frames the result.  Every failure to decrypt raises the one
:class:`~vitalchain.errors.DecryptionError`, whatever the cause.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import ClassVar, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from vitalchain.crypto.primitives.speck import SPECK128_256, Speck
from vitalchain.errors import DecryptionError, InvalidKey

__all__ = [
    "AeadPrimitive",
    "AesGcmPrimitive",
    "ChaCha20Poly1305Primitive",
    "SpeckCtrHmacPrimitive",
    "hkdf_sha256",
]


def hkdf_sha256(ikm: bytes, length: int, *, salt: bytes | None = None, info: bytes = b"") -> bytes:
    """RFC 5869 HKDF-SHA256 (pyca); a bad length raises ValueError, as the RFC requires."""
    return HKDF(algorithm=SHA256(), length=length, salt=salt, info=info).derive(ikm)


class AeadPrimitive(Protocol):
    tag_size: int

    def encrypt(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes: ...


class _PycaPrimitive:
    """A pyca AEAD behind this module's interface: a key pyca refuses is ``InvalidKey``, and
    every failure to decrypt (a bad tag, a nonce of the wrong size) the one DecryptionError."""

    tag_size = 16
    _algorithm: ClassVar[type[ChaCha20Poly1305] | type[AESGCM]]
    _key_sizes: ClassVar[str]  # for the InvalidKey message

    def __init__(self, key: bytes) -> None:
        try:
            self._impl = self._algorithm(key)
        except ValueError as exc:
            raise InvalidKey(self._key_sizes) from exc

    def encrypt(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return self._impl.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            return self._impl.decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError):
            raise DecryptionError() from None


class ChaCha20Poly1305Primitive(_PycaPrimitive):
    """RFC 8439 via pyca; 12-byte nonces only (pyca documents no other size)."""

    _algorithm = ChaCha20Poly1305
    _key_sizes = "ChaCha20-Poly1305 needs a 32-byte key"


class AesGcmPrimitive(_PycaPrimitive):
    """AES-GCM via pyca; any AES key size here, the AES-256-GCM suite pins 32 bytes."""

    _algorithm = AESGCM
    _key_sizes = "AES-GCM needs a 16, 24 or 32-byte key"


SPECK_KEYS_INFO = b"vitalchain/v1 speck128-256-ctr hmac-sha256 keys"


class SpeckCtrHmacPrimitive:
    """Encrypt-then-MAC: Speck128/256-CTR, then HMAC-SHA256 over aad, nonce and ciphertext.

    The 32-byte input key is split by HKDF into independent cipher and MAC keys.  The MAC
    input is ``u64be(len(aad)) ‖ aad ‖ nonce ‖ ciphertext`` so no two inputs collide.
    """

    tag_size = 32
    nonce_size = 12

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise InvalidKey("SPECK128/256-CTR-HMAC-SHA256 needs a 32-byte key")
        okm = hkdf_sha256(key, 64, info=SPECK_KEYS_INFO)
        self._cipher = Speck(SPECK128_256, okm[:32])
        self._mac_key = okm[32:]

    def _tag(self, nonce: bytes, ciphertext: bytes | memoryview, aad: bytes) -> bytes:
        mac = hmac.new(self._mac_key, len(aad).to_bytes(8, "big"), hashlib.sha256)
        mac.update(aad)
        mac.update(nonce)
        mac.update(ciphertext)
        return mac.digest()

    def encrypt(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        ciphertext = self._cipher.ctr(nonce, plaintext)
        return ciphertext + self._tag(nonce, ciphertext, aad)

    def decrypt(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        if len(nonce) != self.nonce_size or len(ciphertext) < self.tag_size:
            raise DecryptionError()
        body = memoryview(ciphertext)[: -self.tag_size]
        if not hmac.compare_digest(self._tag(nonce, body, aad), ciphertext[-self.tag_size :]):
            raise DecryptionError()
        return self._cipher.ctr(nonce, body)
