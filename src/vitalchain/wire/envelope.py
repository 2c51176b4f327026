"""The hybrid envelope's bytes (docs/spec/envelope.md): header, stanzas, commitment, payload.

Only the framing lives here; wrapping, unwrapping and the key commitment are cryptography and
stay in :mod:`vitalchain.crypto.envelope`, which builds on these.  The suite is carried as its
byte: which suites exist is aead.md's business, so the crypto layer turns it into a ``Suite``.
"""

from __future__ import annotations

from dataclasses import dataclass

from vitalchain.errors import DecodeError
from vitalchain.wire.framing import Kind, Reader, header

__all__ = [
    "HEADER",
    "MAX_RECIPIENTS",
    "STANZA_SIZE",
    "VERSION",
    "EnvelopeFrame",
    "Stanza",
]

VERSION = 1
HEADER = header(Kind.ENVELOPE, VERSION)
RECIPIENT_SIZE = 20  # an Ethereum address
EPHEMERAL_SIZE = 33  # a compressed secp256k1 point
WRAPPED_SIZE = 32 + 16  # the data key and its ChaCha20-Poly1305 tag
STANZA_SIZE = RECIPIENT_SIZE + EPHEMERAL_SIZE + WRAPPED_SIZE
COMMITMENT_SIZE = 32
MIN_PAYLOAD = 12 + 16  # nonce and tag, around an empty ciphertext
MAX_RECIPIENTS = 1024


@dataclass(frozen=True, slots=True)
class Stanza:
    """The data key wrapped for one recipient, found by the recipient's address."""

    recipient: bytes  # 20-byte address
    ephemeral: bytes  # 33-byte compressed point
    wrapped: bytes  # ChaCha20-Poly1305(data key) with its tag

    def encode(self) -> bytes:
        return self.recipient + self.ephemeral + self.wrapped

    @classmethod
    def parse(cls, data: bytes) -> Stanza:
        if len(data) != STANZA_SIZE:
            raise DecodeError("stanza: wrong length")
        ephemeral = RECIPIENT_SIZE + EPHEMERAL_SIZE
        return cls(data[:RECIPIENT_SIZE], data[RECIPIENT_SIZE:ephemeral], data[ephemeral:])


@dataclass(frozen=True, slots=True)
class EnvelopeFrame:
    """A ``VCe`` object as bytes on the wire, before any key touches it."""

    suite: int
    stanzas: tuple[Stanza, ...]
    commitment: bytes
    payload: bytes  # nonce ‖ ciphertext ‖ tag under the data key

    def encode(self) -> bytes:
        return b"".join(
            [
                HEADER,
                bytes([self.suite]),
                len(self.stanzas).to_bytes(2, "big"),
                *(s.encode() for s in self.stanzas),
                self.commitment,
                self.payload,
            ]
        )

    @classmethod
    def parse(cls, data: bytes) -> EnvelopeFrame:
        reader = Reader(data, Kind.ENVELOPE, frozenset({VERSION}))
        suite = reader.u8()
        count = reader.u16()
        if count > MAX_RECIPIENTS:
            raise DecodeError("envelope: too many recipients")
        stanzas = tuple(Stanza.parse(reader.take(STANZA_SIZE)) for _ in range(count))
        commitment = reader.take(COMMITMENT_SIZE)
        payload = reader.rest()
        if len(payload) < MIN_PAYLOAD:
            raise DecodeError("envelope: payload too short")
        return cls(suite, stanzas, commitment, payload)
