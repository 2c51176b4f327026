"""Sealed blocks (docs/spec/block.md): the ``VCb`` bytes, the header the signature and the
payload's AEAD cover, and the JSON inside the payload.

Sealing, opening and checking the signature are the crypto layer's
(:mod:`vitalchain.crypto.block`), and so is knowing which AEAD suites exist (aead.md): this
module carries the suite as its byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from vitalchain.errors import DecodeError
from vitalchain.wire._json import Strict, load_value
from vitalchain.wire.address import to_checksum_address
from vitalchain.wire.framing import Kind, Reader, header

__all__ = [
    "BLOCK_CONTEXT",
    "MAX_PAYLOAD",
    "VERSION",
    "Block",
    "BlockEntry",
    "encode_payload",
    "parse_payload",
]

VERSION = 1
BLOCK_CONTEXT = b"vitalchain/v1/block"  # the gateway's signature over the signed part
HEAD = header(Kind.BLOCK, VERSION)
MAX_PAYLOAD = 64 * 1024 * 1024
PAYLOAD_VERSION = 1


@dataclass(frozen=True, slots=True)
class BlockEntry:
    """One device message inside a block: its signed payload, exactly as received."""

    device: str
    payload: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Block:
    group_id: int
    patient: str  # EIP-55
    number: int
    previous: bytes
    leaf_index: int
    sealed_at_ms: int
    readings: int
    vitals: int
    suite: int  # an AEAD suite byte (aead.md)
    commitment: bytes
    payload: bytes
    gateway: str  # EIP-55
    signature: bytes

    def header_bytes(self) -> bytes:
        """Everything before the payload: the payload's associated data."""
        return b"".join(
            [
                HEAD,
                self.group_id.to_bytes(8, "big"),
                bytes.fromhex(self.patient[2:]),
                self.number.to_bytes(8, "big"),
                self.previous,
                self.leaf_index.to_bytes(8, "big"),
                self.sealed_at_ms.to_bytes(8, "big"),
                self.readings.to_bytes(4, "big"),
                self.vitals.to_bytes(4, "big"),
                bytes([self.suite]),
                self.commitment,
            ]
        )

    def signed_part(self) -> bytes:
        """What the gateway signs: every byte but the signature (never the key ring)."""
        return (
            self.header_bytes()
            + len(self.payload).to_bytes(4, "big")
            + self.payload
            + bytes.fromhex(self.gateway[2:])
        )

    def encode(self) -> bytes:
        return self.signed_part() + self.signature

    @property
    def hash(self) -> bytes:
        """SHA-256 of the block: what the next block's ``previous`` names."""
        return hashlib.sha256(self.encode()).digest()

    @property
    def leaf(self) -> bytes:
        """The RFC 9162 leaf hash of this block in its group's log: SHA-256(0x00 ‖ block)."""
        return hashlib.sha256(b"\x00" + self.encode()).digest()

    @classmethod
    def parse(cls, data: bytes) -> Block:
        """Decode; both addresses come back in EIP-55."""
        r = Reader(data, Kind.BLOCK, frozenset({VERSION}))
        group_id = r.u64()
        patient = to_checksum_address(r.take(20))
        number, previous, leaf_index = r.u64(), r.take(32), r.u64()
        sealed_at, readings, vitals = r.u64(), r.u32(), r.u32()
        suite = r.u8()
        commitment = r.take(32)
        size = r.u32()
        if size > MAX_PAYLOAD:
            raise DecodeError("block: payload too large")
        payload = r.take(size)
        gateway = to_checksum_address(r.take(20))
        signature = r.take(65)
        r.done()
        if number < 1:
            raise DecodeError("block: numbers start at 1")
        return cls(
            group_id, patient, number, previous, leaf_index, sealed_at, readings, vitals, suite,
            commitment, payload, gateway, signature,
        )  # fmt: skip


class _Message(Strict):
    device: str
    payload: str  # base64
    signature: str  # hex


class _Payload(Strict):
    v: int
    messages: list[_Message]


def encode_payload(entries: Sequence[BlockEntry]) -> bytes:
    """The plaintext of a block's payload: compact JSON, messages in sealing order."""
    return json.dumps(
        {
            "v": PAYLOAD_VERSION,
            "messages": [
                {
                    "device": e.device,
                    "payload": base64.b64encode(e.payload).decode(),
                    "signature": e.signature.hex(),
                }
                for e in entries
            ],
        },
        separators=(",", ":"),
    ).encode()


def parse_payload(plaintext: bytes) -> list[BlockEntry]:
    """The messages of an opened payload; the version is judged before the shape."""
    try:
        value = json.loads(plaintext)
    except ValueError:
        raise DecodeError("block payload is malformed") from None
    if not isinstance(value, dict):
        raise DecodeError("block payload is malformed")
    if value.get("v") != PAYLOAD_VERSION:
        raise DecodeError("block payload: unknown version", code="unknown_version")
    body = load_value(_Payload, value, what="block payload is malformed")
    try:
        return [
            BlockEntry(
                m.device,
                base64.b64decode(m.payload, validate=True),
                bytes.fromhex(m.signature),
            )
            for m in body.messages
        ]
    except (binascii.Error, ValueError):
        raise DecodeError("block payload is malformed") from None
