"""Receipts (docs/spec/receipt.md): the gateway's signed word that it stored a data message.

A receipt is a fixed-size binary object (173 bytes in version 1) carried hex-encoded in the
``receipt`` field of every telemetry acknowledgement, over HTTP and MQTT.  It binds the group,
the device, the SHA-256 of the data message exactly as the gateway received it (the ack's
``message_id``), the first and last sequence number it covers, the time the message was
committed, and the master's address, under the master's recoverable signature.

What a device may *believe* of a receipt (whose key was the group's master, and until when)
is the chain's business: :class:`MasterTerm` is that fact as plain data, and
:func:`signer_allowed` the rule, so the device SDK and a later verifier apply one rule.  The
signature itself is the crypto layer's (``PrivateKey.sign`` / ``PublicKey.recover`` over
:meth:`Receipt.signed_part` with :data:`RECEIPT_CONTEXT`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, replace

from vitalchain.errors import DecodeError
from vitalchain.wire.address import to_checksum_address
from vitalchain.wire.framing import MAGIC, Kind, header

__all__ = [
    "HEADER",
    "KIND",
    "RECEIPT_CONTEXT",
    "RECEIPT_SIZE",
    "SIGNED_SIZE",
    "VERSION",
    "MasterTerm",
    "Receipt",
    "signed_bytes",
    "signer_allowed",
]

RECEIPT_CONTEXT = b"vitalchain/v1/receipt"  # the master's signature over the signed part
KIND = Kind.RECEIPT.value  # the kind byte of encoding.md
VERSION = 1
VERSIONS = frozenset({VERSION})
HEADER = header(Kind.RECEIPT, VERSION)
HASH_SIZE = 32  # SHA-256
SIGNATURE_SIZE = 65  # r ‖ s ‖ v, v in {27, 28}
SIGNED_SIZE = 4 + 8 + 20 + HASH_SIZE + 8 + 8 + 8 + 20
RECEIPT_SIZE = SIGNED_SIZE + SIGNATURE_SIZE
MAX_SEQ = 2**63 - 1  # as telemetry.md: seqs are kept in SQL BIGINT
MAX_U64 = 2**64 - 1
_SIGNED = struct.Struct(">4sQ20s32sQQQ20s")  # the signed part, field by field
assert _SIGNED.size == SIGNED_SIZE


def _decode_error(reason: str, code: str = "decode_error") -> DecodeError:
    return DecodeError(f"receipt: {reason}", code=code)


def signed_bytes(
    group_id: int,
    device: bytes,
    message_hash: bytes,
    first_seq: int,
    last_seq: int,
    stored_at_ms: int,
    gateway: bytes,
) -> bytes:
    """The signed part from raw fields (addresses as 20 bytes): the gateway's hot path, one
    ``struct`` pack per acknowledgement, no object built.  Same checks as :class:`Receipt`."""
    if not 0 <= first_seq <= last_seq <= MAX_SEQ:
        raise _decode_error("seqs are 0 <= first <= last < 2**63")
    if len(message_hash) != HASH_SIZE or len(device) != 20 or len(gateway) != 20:
        raise _decode_error("a field has the wrong size")
    try:
        return _SIGNED.pack(
            HEADER, group_id, device, message_hash, first_seq, last_seq, stored_at_ms, gateway
        )
    except struct.error:
        raise _decode_error("group or time out of range") from None


def _u64(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 8], "big")


@dataclass(frozen=True, slots=True)
class Receipt:
    """One receipt; ``signature`` is empty until the master signed :meth:`signed_part`."""

    group_id: int
    device: str  # EIP-55
    message_hash: bytes  # SHA-256 of the data message as received
    first_seq: int
    last_seq: int
    stored_at_ms: int  # when the store committed it, the gateway's clock
    gateway: str  # EIP-55: the master address that signs
    signature: bytes = b""  # 65 bytes r ‖ s ‖ v

    def __post_init__(self) -> None:
        # Checked on build too, so a gateway never signs what no device could parse.
        if not 0 <= self.group_id <= MAX_U64 or not 0 <= self.stored_at_ms <= MAX_U64:
            raise _decode_error("group or time out of range")
        if not 0 <= self.first_seq <= self.last_seq <= MAX_SEQ:
            raise _decode_error("seqs are 0 <= first <= last < 2**63")
        if len(self.message_hash) != HASH_SIZE:
            raise _decode_error("the message hash is 32 bytes")
        if self.signature and (
            len(self.signature) != SIGNATURE_SIZE or self.signature[64] not in (27, 28)
        ):
            raise _decode_error("the signature is r ‖ s ‖ v, 65 bytes, v 27 or 28")

    def signed_part(self) -> bytes:
        """Every byte before the signature, header included: what the master signs."""
        return signed_bytes(
            self.group_id,
            bytes.fromhex(self.device[2:]),
            self.message_hash,
            self.first_seq,
            self.last_seq,
            self.stored_at_ms,
            bytes.fromhex(self.gateway[2:]),
        )

    def signed(self, signature: bytes) -> Receipt:
        """This receipt with the master's 65-byte ``r ‖ s ‖ v`` over :meth:`signed_part`."""
        return replace(self, signature=signature)

    def encode(self) -> bytes:
        if not self.signature:
            raise ValueError("an unsigned receipt has no encoding")
        return self.signed_part() + self.signature

    def hex(self) -> str:
        """The form an acknowledgement carries (its ``receipt`` field)."""
        return self.encode().hex()

    @classmethod
    def parse(cls, data: bytes) -> Receipt:
        """A receipt's bytes; DecodeError (``decode_error``, ``unknown_version``,
        ``trailing_bytes`` as encoding.md says) for anything else.  Says nothing of the
        signature: that is checked against the chain by the reader."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise _decode_error("expected bytes")
        data = bytes(data)
        if len(data) < 4:
            raise _decode_error("truncated input")
        if data[:2] != MAGIC or data[2:3] != KIND:
            raise _decode_error("not a receipt")
        if data[3] not in VERSIONS:
            raise _decode_error(f"unknown version {data[3]}", code="unknown_version")
        if len(data) < RECEIPT_SIZE:
            raise _decode_error("truncated input")
        if len(data) > RECEIPT_SIZE:
            raise _decode_error("trailing bytes after object", code="trailing_bytes")
        at_hash = 4 + 8 + 20
        at_seq = at_hash + HASH_SIZE
        return cls(
            group_id=_u64(data, 4),
            device=to_checksum_address(data[12:at_hash]),
            message_hash=data[at_hash:at_seq],
            first_seq=_u64(data, at_seq),
            last_seq=_u64(data, at_seq + 8),
            stored_at_ms=_u64(data, at_seq + 16),
            gateway=to_checksum_address(data[at_seq + 24 : SIGNED_SIZE]),
            signature=data[SIGNED_SIZE:],
        )

    @classmethod
    def from_hex(cls, text: object) -> Receipt:
        """The ``receipt`` field of an acknowledgement (lowercase or uppercase hex)."""
        if not isinstance(text, str):
            raise _decode_error("the receipt field is a hex string")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise _decode_error("the receipt field is not hex") from None
        return cls.parse(raw)


@dataclass(frozen=True, slots=True)
class MasterTerm:
    """One address's time as a group's master, as the chain records it: from its
    ``GroupCreated`` or ``MasterRotated`` event until the ``MasterRotated`` event that
    replaced it (``until_s``: that block's timestamp, Unix seconds; None while it is master)."""

    address: str
    until_s: int | None


def signer_allowed(terms: Iterable[MasterTerm], signer: str, stored_at_ms: int) -> bool:
    """May ``signer`` have signed a receipt stored at ``stored_at_ms``: was it the group's
    master then?  A master rotated out at block time T (seconds) still vouches for what it
    stored up to the end of second T, since block times have one-second resolution; a
    receipt it dated later is refused.  (An address that was master twice has two terms.)"""
    return any(
        t.address == signer and (t.until_s is None or stored_at_ms // 1000 <= t.until_s)
        for t in terms
    )
