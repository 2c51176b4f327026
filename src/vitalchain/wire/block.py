"""Sealed blocks (docs/spec/block.md): the ``VCb`` bytes, the parts the signature and each
section's AEAD cover, the key-ring entries (``VCk``) and the JSON inside a section.

Version 2 splits a block into sections, one per consent scope of the messages inside, each
under its own data key, so a provider is given exactly the vitals its consent covers.  The
signature and the block hash cover every section's digest, not its ciphertext: a block with
a section withheld keeps its hash, its Merkle leaf and its signature.  Version 1 (one payload
for every vital) still decodes, as a block of one section.

Sealing, opening and checking the signature are the crypto layer's
(:mod:`vitalchain.crypto.block`), and so is knowing which AEAD suites exist (aead.md): this
module carries each suite as its byte.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from vitalchain.errors import DecodeError
from vitalchain.wire._json import Strict, load_value
from vitalchain.wire.address import to_checksum_address
from vitalchain.wire.envelope import STANZA_SIZE, Stanza
from vitalchain.wire.framing import Kind, Reader, header

__all__ = [
    "BLOCK_CONTEXT",
    "MAX_PAYLOAD",
    "MAX_SECTIONS",
    "VERSION",
    "Block",
    "BlockEntry",
    "KeyEntry",
    "Section",
    "encode_payload",
    "parse_payload",
]

VERSION = 2
VERSIONS = frozenset({1, 2})
BLOCK_CONTEXT = b"vitalchain/v1/block"  # the gateway's signature over the signed part
MAX_PAYLOAD = 64 * 1024 * 1024
MAX_SECTIONS = 32  # a scope is a bitmask of at most 32 vitals
PAYLOAD_VERSION = 1
KEYS_VERSION = 1
KEYS_HEAD = header(Kind.KEYS, KEYS_VERSION)
DIGEST_SIZE = 32


@dataclass(frozen=True, slots=True)
class BlockEntry:
    """One device message inside a block: its signed payload, exactly as received."""

    device: str
    payload: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Section:
    """Messages of one consent scope, encrypted under their own data key.

    ``payload`` is None where the section is withheld (outside the reader's consent); its
    ``digest`` still stands in the signed part, so the block's proofs do not change."""

    scope: int  # vital bits (1 << vital) of every reading inside
    readings: int
    suite: int  # an AEAD suite byte (aead.md)
    commitment: bytes  # key commitment of the section's data key (envelope.md)
    digest: bytes  # SHA-256 of the payload
    payload: bytes | None  # nonce ‖ ciphertext ‖ tag

    def head(self) -> bytes:
        return b"".join(
            [
                self.scope.to_bytes(4, "big"),
                self.readings.to_bytes(4, "big"),
                bytes([self.suite]),
                self.commitment,
                self.digest,
            ]
        )


@dataclass(frozen=True, slots=True)
class Block:
    version: int
    group_id: int
    patient: str  # EIP-55
    number: int
    previous: bytes
    leaf_index: int
    sealed_at_ms: int
    readings: int
    vitals: int  # the union of the sections' scopes
    sections: tuple[Section, ...]
    gateway: str  # EIP-55
    signature: bytes

    def _fixed(self) -> bytes:
        return b"".join(
            [
                header(Kind.BLOCK, self.version),
                self.group_id.to_bytes(8, "big"),
                bytes.fromhex(self.patient[2:]),
                self.number.to_bytes(8, "big"),
                self.previous,
                self.leaf_index.to_bytes(8, "big"),
                self.sealed_at_ms.to_bytes(8, "big"),
                self.readings.to_bytes(4, "big"),
                self.vitals.to_bytes(4, "big"),
            ]
        )

    def section_aad(self, index: int) -> bytes:
        """The associated data of section ``index``'s payload: the block's fixed fields and
        the section's own (not its digest, which is taken over the ciphertext)."""
        s = self.sections[index]
        if self.version == 1:  # v1: the whole header, up to the commitment
            return self._fixed() + bytes([s.suite]) + s.commitment
        return b"".join(
            [
                self._fixed(),
                bytes([index]),
                s.scope.to_bytes(4, "big"),
                s.readings.to_bytes(4, "big"),
                bytes([s.suite]),
                s.commitment,
            ]
        )

    def signed_part(self) -> bytes:
        """What the gateway signs: v2, every field and each section's digest, never a
        payload (so a section can be withheld); v1, every byte but the signature."""
        gateway = bytes.fromhex(self.gateway[2:])
        if self.version == 1:
            (s,) = self.sections
            payload = s.payload or b""
            return self.section_aad(0) + len(payload).to_bytes(4, "big") + payload + gateway
        heads = b"".join(s.head() for s in self.sections)
        return self._fixed() + bytes([len(self.sections)]) + heads + gateway

    def encode(self) -> bytes:
        """The block's bytes; a withheld v2 section has an empty payload."""
        sealed = self.signed_part() + self.signature
        if self.version == 1:
            return sealed
        bodies = (s.payload or b"" for s in self.sections)
        return sealed + b"".join(len(p).to_bytes(4, "big") + p for p in bodies)

    @property
    def _hashed(self) -> bytes:
        if self.version == 1:
            return self.encode()
        return self.signed_part() + self.signature

    @property
    def hash(self) -> bytes:
        """SHA-256 of the block (v2: of its signed part and signature, not the payloads):
        what the next block's ``previous`` names."""
        return hashlib.sha256(self._hashed).digest()

    @property
    def leaf(self) -> bytes:
        """The RFC 9162 leaf hash of this block in its group's log: SHA-256(0x00 ‖ block)."""
        return hashlib.sha256(b"\x00" + self._hashed).digest()

    def withheld(self) -> list[int]:
        """The indexes of the sections whose payload is not here."""
        return [i for i, s in enumerate(self.sections) if s.payload is None]

    def redacted(self, keep: Iterable[int]) -> Block:
        """The same block with only the ``keep`` sections' payloads (v2 only)."""
        if self.version == 1:
            raise ValueError("a version-1 block has one payload and cannot be redacted")
        kept = set(keep)
        return replace(
            self,
            sections=tuple(
                s if i in kept else replace(s, payload=None) for i, s in enumerate(self.sections)
            ),
        )

    @classmethod
    def parse(cls, data: bytes) -> Block:
        """Decode either version; both addresses come back in EIP-55.  Digests are checked
        with the signature (crypto.block), so a changed payload fails as a forgery."""
        r = Reader(data, Kind.BLOCK, VERSIONS)
        group_id = r.u64()
        patient = to_checksum_address(r.take(20))
        number, previous, leaf_index = r.u64(), r.take(32), r.u64()
        sealed_at, readings, vitals = r.u64(), r.u32(), r.u32()
        if r.version == 1:
            suite, commitment = r.u8(), r.take(32)
            payload = _sized(r)
            if payload is None:
                raise DecodeError("block: empty payload")
            only = Section(
                vitals, readings, suite, commitment, hashlib.sha256(payload).digest(), payload
            )
            sections: tuple[Section, ...] = (only,)
            gateway, signature = to_checksum_address(r.take(20)), r.take(65)
        else:
            count = r.u8()
            if not 1 <= count <= MAX_SECTIONS:
                raise DecodeError("block: 1 to 32 sections")
            heads = [
                (r.u32(), r.u32(), r.u8(), r.take(32), r.take(DIGEST_SIZE)) for _ in range(count)
            ]
            gateway, signature = to_checksum_address(r.take(20)), r.take(65)
            sections = tuple(Section(*head, _sized(r)) for head in heads)
            _check_sections(sections, readings, vitals)
        r.done()
        if number < 1:
            raise DecodeError("block: numbers start at 1")
        return cls(
            r.version, group_id, patient, number, previous, leaf_index, sealed_at, readings,
            vitals, sections, gateway, signature,
        )  # fmt: skip


def _sized(r: Reader) -> bytes | None:
    size = r.u32()
    if size > MAX_PAYLOAD:
        raise DecodeError("block: payload too large")
    return r.take(size) if size else None


def _check_sections(sections: Sequence[Section], readings: int, vitals: int) -> None:
    """Structure only: distinct non-empty scopes whose union and counts are the block's."""
    scopes = [s.scope for s in sections]
    union = 0
    for scope in scopes:
        union |= scope
    if 0 in scopes or len(set(scopes)) != len(scopes):
        raise DecodeError("block: section scopes must be distinct and non-empty")
    if union != vitals or sum(s.readings for s in sections) != readings:
        raise DecodeError("block: sections do not add up to the header's readings and vitals")


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One reader's keys to one block, kept beside it (never hashed): for each section the
    reader may open, that section's data key wrapped for the reader (an envelope stanza).

    Encoded as ``VCk`` v1; a bare 101-byte stanza, as a version-1 block's key ring holds,
    reads as the entry for section 0."""

    recipient: bytes  # 20-byte address
    stanzas: tuple[tuple[int, Stanza], ...]  # (section index, stanza), ascending

    def stanza(self, index: int) -> Stanza | None:
        return next((s for i, s in self.stanzas if i == index), None)

    @property
    def sections(self) -> list[int]:
        return [i for i, _ in self.stanzas]

    def encode(self) -> bytes:
        return b"".join(
            [
                KEYS_HEAD,
                self.recipient,
                bytes([len(self.stanzas)]),
                *(bytes([i]) + s.ephemeral + s.wrapped for i, s in self.stanzas),
            ]
        )

    @classmethod
    def parse(cls, data: bytes) -> KeyEntry:
        if len(data) == STANZA_SIZE:  # a version-1 block's ring: one stanza
            stanza = Stanza.parse(data)
            return cls(stanza.recipient, ((0, stanza),))
        r = Reader(data, Kind.KEYS, frozenset({KEYS_VERSION}))
        recipient = r.take(20)
        count = r.u8()
        if not 1 <= count <= MAX_SECTIONS:
            raise DecodeError("key entry: 1 to 32 sections")
        size = STANZA_SIZE - 20
        stanzas = []
        for _ in range(count):
            index = r.u8()
            stanzas.append((index, Stanza.parse(recipient + r.take(size))))
        r.done()
        indexes = [i for i, _ in stanzas]
        if indexes != sorted(set(indexes)) or indexes[-1] >= MAX_SECTIONS:
            raise DecodeError("key entry: sections must ascend, each once")
        return cls(recipient, tuple(stanzas))


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
