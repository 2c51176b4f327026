"""The root of vitalchain's exception tree.

Every error vitalchain raises on purpose derives from :class:`VitalchainError` and carries a
machine-readable ``code`` (stable, snake_case) next to its human message, so the CLI, the HTTP
API and logs can all report the same thing.  This module imports nothing of ours, so every
layer, ``crypto`` included, may import it.

Tree (each subpackage adds its own leaves under these)::

    VitalchainError
     ├── DecodeError            malformed bytes: bad version, kind, length, trailing data
     ├── InvalidKey             a key, point or scalar outside its valid range
     ├── InvalidSignature       ECDSA or ring signature does not verify
     ├── DecryptionError        any AEAD / envelope failure, one message for all causes
     └── InvalidProof           Merkle inclusion or consistency proof does not verify
"""

from __future__ import annotations

__all__ = [
    "DecodeError",
    "DecryptionError",
    "InvalidKey",
    "InvalidProof",
    "InvalidSignature",
    "VitalchainError",
]


class VitalchainError(Exception):
    """Base class; ``code`` is the stable identifier clients match on."""

    code: str = "vitalchain_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class DecodeError(VitalchainError):
    code = "decode_error"


class InvalidKey(VitalchainError):
    code = "invalid_key"


class InvalidSignature(VitalchainError):
    code = "invalid_signature"


class DecryptionError(VitalchainError):
    """Raised for every decryption failure with one fixed message, so it is no oracle."""

    code = "decryption_failed"
    MESSAGE = "decryption failed"

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


class InvalidProof(VitalchainError):
    code = "invalid_proof"
