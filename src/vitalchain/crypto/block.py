"""Sealing and opening blocks (docs/spec/block.md): a patient's messages, one section per
consent scope, each encrypted once under its own data key, signed, hashed.  The bytes are
:mod:`vitalchain.wire.block`'s; this is the cryptography.

Sealing needs the gateway key and each section's readers; opening needs the reader's entry
of the key ring and the reader's key.  The block hash, the Merkle leaf and the signature
never cover the key ring, nor (version 2) a section's ciphertext, only its digest: readers
can be added to old blocks, and sections withheld from a reader, without disturbing the
proofs.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from vitalchain.crypto.aead import DEFAULT_SUITE, Suite
from vitalchain.crypto.envelope import Envelope, key_commitment, seal_for
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, message_digest
from vitalchain.errors import DecodeError, DecryptionError, InvalidSignature
from vitalchain.wire.block import (
    BLOCK_CONTEXT,
    MAX_SECTIONS,
    VERSION,
    Block,
    BlockEntry,
    KeyEntry,
    Section,
    encode_payload,
    parse_payload,
)
from vitalchain.wire.envelope import Stanza

__all__ = [
    "SectionPlan",
    "open_payload",
    "open_sections",
    "read_block",
    "seal_block",
    "share_block",
    "verify_block_signature",
]


@dataclass(frozen=True, slots=True)
class SectionPlan:
    """What one section of a block to be sealed holds, and who may open it."""

    scope: int  # the vital bits of every reading in ``entries``
    readings: int
    entries: Sequence[BlockEntry]
    readers: Sequence[PublicKey]


def read_block(data: bytes) -> Block:
    """Decode a ``VCb`` object, its addresses in EIP-55 and every suite one that exists."""
    block = Block.parse(data)
    try:
        for section in block.sections:
            Suite(section.suite)
    except ValueError:
        raise DecodeError("block: unknown AEAD suite", code="unknown_suite") from None
    return block


def verify_block_signature(block: Block) -> None:
    """Raise InvalidSignature unless ``block.gateway`` signed exactly these bytes, and every
    section payload present is the one whose digest it signed."""
    digest = message_digest(block.signed_part(), BLOCK_CONTEXT)
    try:
        signer = PublicKey.recover(Signature.from_rsv(block.signature), digest)
    except DecodeError:
        raise InvalidSignature("block signature is malformed") from None
    if signer.address != block.gateway:
        raise InvalidSignature("block is not signed by its gateway")
    for i, section in enumerate(block.sections):
        if section.payload is not None and not hmac.compare_digest(
            hashlib.sha256(section.payload).digest(), section.digest
        ):
            raise InvalidSignature(f"block section {i} is not the one its gateway signed")


def seal_block(
    gateway: PrivateKey,
    *,
    group_id: int,
    patient: str,
    number: int,
    previous: bytes,
    leaf_index: int,
    sealed_at_ms: int,
    sections: Sequence[SectionPlan],
    suite: Suite = DEFAULT_SUITE,
    random: Callable[[int], bytes] = os.urandom,
) -> tuple[Block, tuple[KeyEntry, ...]]:
    """Encrypt each section once under its own key, wrap that key for the section's readers,
    sign; returns the block and its key ring (one entry per reader)."""
    if not 1 <= len(sections) <= MAX_SECTIONS:
        raise ValueError(f"a block has 1 to {MAX_SECTIONS} sections")
    # Each commitment is in the section's associated data: so each data key is drawn first
    # and committed to before anything is encrypted.
    keys = [random(32) for _ in sections]
    vitals = 0
    for plan in sections:
        vitals |= plan.scope
    draft = Block(
        VERSION, group_id, patient, number, previous, leaf_index, sealed_at_ms,
        sum(p.readings for p in sections), vitals,
        tuple(Section(p.scope, p.readings, suite, key_commitment(k), b"", None)
              for p, k in zip(sections, keys, strict=True)),
        gateway.address, b"",
    )  # fmt: skip
    sealed: list[Section] = []
    ring: dict[bytes, list[tuple[int, Stanza]]] = {}
    for i, (plan, key) in enumerate(zip(sections, keys, strict=True)):
        envelope = seal_for(
            plan.readers,
            encode_payload(plan.entries),
            draft.section_aad(i),
            suite=suite,
            random=random,
            data_key=key,
        )
        payload = envelope.payload
        sealed.append(replace(draft.sections[i], digest=hashlib.sha256(payload).digest(),
                              payload=payload))  # fmt: skip
        for stanza in envelope.stanzas:
            ring.setdefault(stanza.recipient, []).append((i, stanza))
    unsigned = replace(draft, sections=tuple(sealed))
    signature = gateway.sign(unsigned.signed_part(), BLOCK_CONTEXT).to_rsv()
    entries = tuple(KeyEntry(r, tuple(s)) for r, s in ring.items())
    return replace(unsigned, signature=signature), entries


def _envelope(block: Block, index: int, stanza: Stanza) -> Envelope:
    section = block.sections[index]
    assert section.payload is not None
    return Envelope(Suite(section.suite), (stanza,), section.commitment, section.payload)


def _mine(ring: Sequence[KeyEntry], reader: PrivateKey) -> KeyEntry:
    me = reader.public_key.address_bytes
    for entry in ring:
        if entry.recipient == me:
            return entry
    raise DecryptionError()


def open_sections(
    block: Block, ring: Sequence[KeyEntry], reader: PrivateKey
) -> dict[int, list[BlockEntry]]:
    """Decrypt every section here that ``reader``'s entry opens, by section index;
    DecryptionError if it opens none, or if anything it opens was changed."""
    entry = _mine(ring, reader)
    opened: dict[int, list[BlockEntry]] = {}
    for index, stanza in entry.stanzas:
        if index >= len(block.sections) or block.sections[index].payload is None:
            continue
        plaintext = _envelope(block, index, stanza).open(reader, block.section_aad(index))
        opened[index] = parse_payload(plaintext)
    if not opened:
        raise DecryptionError()
    return opened


def open_payload(block: Block, ring: Sequence[KeyEntry], reader: PrivateKey) -> list[BlockEntry]:
    """Every message ``reader`` may open, in section order (see :func:`open_sections`)."""
    return [e for _, entries in sorted(open_sections(block, ring, reader).items()) for e in entries]


def share_block(
    block: Block,
    ring: Sequence[KeyEntry],
    holder: PrivateKey,
    recipient: PublicKey,
    scope: int,
    *,
    random: Callable[[int], bytes] = os.urandom,
) -> KeyEntry:
    """``recipient``'s entry for the sections whose scope is inside ``scope`` and that
    ``holder`` (the patient) can open: a patient sharing an older block with a newly
    consented provider.  Nothing is re-encrypted; DecryptionError if none qualifies."""
    mine = _mine(ring, holder)
    stanzas = []
    for index, stanza in mine.stanzas:
        section = block.sections[index]
        if section.scope & ~scope:
            continue
        envelope = Envelope(Suite(section.suite), (stanza,), section.commitment, b"")
        shared = envelope.with_recipient(holder, recipient, random=random).stanzas[-1]
        stanzas.append((index, shared))
    if not stanzas:
        raise DecryptionError()
    return KeyEntry(recipient.address_bytes, tuple(stanzas))
