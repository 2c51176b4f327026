"""Sealed blocks (docs/spec/block.md): a patient's messages, encrypted once, signed, hashed.

Sealing needs the gateway key and the recipients; opening needs a stanza of the key ring and
the reader's key.  The block hash, the Merkle leaf and the signature never cover the key ring,
so readers can be added to old blocks without disturbing their proofs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from vitalchain.crypto._encoding import Kind, Reader, header
from vitalchain.crypto.aead import DEFAULT_SUITE, Suite
from vitalchain.crypto.envelope import Envelope, Stanza, key_commitment, seal_for
from vitalchain.crypto.keys import (
    PrivateKey,
    PublicKey,
    Signature,
    message_digest,
    to_checksum_address,
)
from vitalchain.crypto.merkle import leaf_hash
from vitalchain.errors import DecodeError, InvalidSignature

__all__ = ["BLOCK_CONTEXT", "Block", "BlockEntry", "open_payload", "parse_payload", "seal_block"]

VERSION = 1
BLOCK_CONTEXT = b"vitalchain/v1/block"
_HEAD = header(Kind.BLOCK, VERSION)
MAX_PAYLOAD = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlockEntry:
    """One device message inside a block: its signed payload, exactly as received."""

    device: str
    payload: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Block:
    group_id: int
    patient: str
    number: int
    previous: bytes
    leaf_index: int
    sealed_at_ms: int
    readings: int
    vitals: int
    suite: Suite
    commitment: bytes
    payload: bytes
    gateway: str
    signature: bytes

    def _header(self) -> bytes:
        return b"".join(
            [
                _HEAD,
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

    def _signed_part(self) -> bytes:
        return (
            self._header()
            + len(self.payload).to_bytes(4, "big")
            + self.payload
            + bytes.fromhex(self.gateway[2:])
        )

    def to_bytes(self) -> bytes:
        return self._signed_part() + self.signature

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    @property
    def leaf(self) -> bytes:
        """The RFC 9162 leaf hash of this block in its group's log."""
        return leaf_hash(self.to_bytes())

    def verify_signature(self) -> None:
        """Raise InvalidSignature unless ``gateway`` signed exactly these bytes."""
        digest = message_digest(self._signed_part(), BLOCK_CONTEXT)
        try:
            signer = PublicKey.recover(Signature.from_rsv(self.signature), digest)
        except DecodeError:
            raise InvalidSignature("block signature is malformed") from None
        if signer.address != self.gateway:
            raise InvalidSignature("block is not signed by its gateway")

    def envelope(self, stanzas: Sequence[Stanza]) -> Envelope:
        return Envelope(self.suite, tuple(stanzas), self.commitment, self.payload)

    @classmethod
    def from_bytes(cls, data: bytes) -> Block:
        r = Reader(data, Kind.BLOCK, frozenset({VERSION}))
        group_id = r.u64()
        patient = to_checksum_address(r.take(20))
        number, previous, leaf_index = r.u64(), r.take(32), r.u64()
        sealed_at, readings, vitals = r.u64(), r.u32(), r.u32()
        try:
            suite = Suite(r.u8())
        except ValueError:
            raise DecodeError("block: unknown AEAD suite", code="unknown_suite") from None
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


def seal_block(
    gateway: PrivateKey,
    *,
    group_id: int,
    patient: str,
    number: int,
    previous: bytes,
    leaf_index: int,
    sealed_at_ms: int,
    entries: Sequence[BlockEntry],
    readings: int,
    vitals: int,
    recipients: Sequence[PublicKey],
    suite: Suite = DEFAULT_SUITE,
    random: Callable[[int], bytes] = os.urandom,
) -> tuple[Block, tuple[Stanza, ...]]:
    """Encrypt ``entries`` once, wrap the key for ``recipients``, sign; returns block and ring."""
    body = json.dumps(
        {
            "v": 1,
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
    # The commitment is in the header, and the header is the payload's associated data:
    # so the data key is drawn first and committed to before anything is encrypted.
    data_key = random(32)
    draft = Block(group_id, patient, number, previous, leaf_index, sealed_at_ms, readings, vitals,
                  suite, key_commitment(data_key), b"", gateway.address, b"")  # fmt: skip
    envelope = seal_for(
        recipients, body, draft._header(), suite=suite, random=random, data_key=data_key
    )
    unsigned = replace(draft, payload=envelope.payload)
    signature = gateway.sign(unsigned._signed_part(), BLOCK_CONTEXT).to_rsv()
    return replace(unsigned, signature=signature), envelope.stanzas


def open_payload(block: Block, stanzas: Sequence[Stanza], reader: PrivateKey) -> list[BlockEntry]:
    """Decrypt with ``reader``'s stanza; DecryptionError if it has none or anything changed."""
    plaintext = block.envelope(stanzas).open(reader, block._header())
    return parse_payload(plaintext)


def parse_payload(plaintext: bytes) -> list[BlockEntry]:
    try:
        body = json.loads(plaintext)
        if body.get("v") != 1:
            raise DecodeError("block payload: unknown version", code="unknown_version")
        return [
            BlockEntry(
                m["device"],
                base64.b64decode(m["payload"], validate=True),
                bytes.fromhex(m["signature"]),
            )
            for m in body["messages"]
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DecodeError("block payload is malformed") from None
