"""Sealing and opening blocks (docs/spec/block.md): a patient's messages, encrypted once,
signed, hashed.  The bytes are :mod:`vitalchain.wire.block`'s; this is the cryptography.

Sealing needs the gateway key and the recipients; opening needs a stanza of the key ring and
the reader's key.  The block hash, the Merkle leaf and the signature never cover the key ring,
so readers can be added to old blocks without disturbing their proofs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

from vitalchain.crypto.aead import DEFAULT_SUITE, Suite
from vitalchain.crypto.envelope import Envelope, key_commitment, seal_for
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, message_digest
from vitalchain.errors import DecodeError, InvalidSignature
from vitalchain.wire.block import BLOCK_CONTEXT, Block, BlockEntry, encode_payload, parse_payload
from vitalchain.wire.envelope import Stanza

__all__ = ["block_envelope", "open_payload", "read_block", "seal_block", "verify_block_signature"]


def read_block(data: bytes) -> Block:
    """Decode a ``VCb`` object, its addresses in EIP-55 and its suite one that exists."""
    block = Block.parse(data)
    try:
        Suite(block.suite)
    except ValueError:
        raise DecodeError("block: unknown AEAD suite", code="unknown_suite") from None
    return block


def verify_block_signature(block: Block) -> None:
    """Raise InvalidSignature unless ``block.gateway`` signed exactly these bytes."""
    digest = message_digest(block.signed_part(), BLOCK_CONTEXT)
    try:
        signer = PublicKey.recover(Signature.from_rsv(block.signature), digest)
    except DecodeError:
        raise InvalidSignature("block signature is malformed") from None
    if signer.address != block.gateway:
        raise InvalidSignature("block is not signed by its gateway")


def block_envelope(block: Block, stanzas: Sequence[Stanza]) -> Envelope:
    """The block's payload as an envelope with ``stanzas`` (e.g. to wrap for one more reader)."""
    return Envelope(Suite(block.suite), tuple(stanzas), block.commitment, block.payload)


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
    body = encode_payload(entries)
    # The commitment is in the header, and the header is the payload's associated data:
    # so the data key is drawn first and committed to before anything is encrypted.
    data_key = random(32)
    draft = Block(group_id, patient, number, previous, leaf_index, sealed_at_ms, readings, vitals,
                  suite, key_commitment(data_key), b"", gateway.address, b"")  # fmt: skip
    envelope = seal_for(
        recipients, body, draft.header_bytes(), suite=suite, random=random, data_key=data_key
    )
    unsigned = replace(draft, payload=envelope.payload)
    signature = gateway.sign(unsigned.signed_part(), BLOCK_CONTEXT).to_rsv()
    return replace(unsigned, signature=signature), envelope.stanzas


def open_payload(block: Block, stanzas: Sequence[Stanza], reader: PrivateKey) -> list[BlockEntry]:
    """Decrypt with ``reader``'s stanza; DecryptionError if it has none or anything changed."""
    plaintext = block_envelope(block, stanzas).open(reader, block.header_bytes())
    return parse_payload(plaintext)
