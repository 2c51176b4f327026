"""Receipts (docs/spec/receipt.md): the gateway's signed word that it stored data messages.

A receipt is a binary object carried hex-encoded in the ``receipt`` field of a telemetry
acknowledgement.  It binds the group, the device, and for each message it covers the SHA-256
of the data message exactly as the gateway received it (the ack's ``message_id``) with the
first and last sequence number of that message; then the time the store had committed them,
and the master's address, under the master's recoverable signature.

Two versions, both read everywhere:

- **v1** (173 bytes) covers one message.  Every HTTP acknowledgement carries one, and so does
  an MQTT acknowledgement to a device that did not ask for cumulative ones (an earlier
  release), so nothing a device of that release reads has changed.
- **v2** (cumulative, ``126 + 48·N`` bytes) covers 1..:data:`MAX_COVERED` messages of one
  device with one signature: the MQTT bridge acknowledges a device's messages settled
  together in one ack, so under load the gateway signs far less than once per message.

:class:`Receipt` is one type for both (``entries``: the covered messages, exactly one in v1),
so whoever judges a receipt (``ledger.masters.receipt_signer``, the device SDK,
``vitalchain verify-receipts``) applies one rule to either.

What a device may *believe* of a receipt (whose key was the group's master, and until when)
is the chain's business: :class:`MasterTerm` is that fact as plain data, and
:func:`signer_allowed` the rule, so the device SDK and a later verifier apply one rule.  The
signature itself is the crypto layer's (``PrivateKey.sign`` / ``PublicKey.recover`` over
:meth:`Receipt.signed_part` with :data:`RECEIPT_CONTEXT`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from vitalchain.errors import DecodeError
from vitalchain.wire.address import to_checksum_address
from vitalchain.wire.framing import MAGIC, Kind, header

__all__ = [
    "COVERED_SIZE",
    "CUMULATIVE_FIXED_SIZE",
    "CUMULATIVE_HEADER",
    "CUMULATIVE_VERSION",
    "HEADER",
    "KIND",
    "MAX_COVERED",
    "RECEIPT_CONTEXT",
    "RECEIPT_SIZE",
    "SIGNED_SIZE",
    "VERSION",
    "VERSIONS",
    "Covered",
    "MasterTerm",
    "Receipt",
    "cumulative_signed_bytes",
    "cumulative_size",
    "signed_bytes",
    "signer_allowed",
]

# The master's signature over the signed part, both versions: the version byte is signed
# (it is in the header), so a v1 and a v2 signed part can never be taken for each other.
RECEIPT_CONTEXT = b"vitalchain/v1/receipt"
KIND = Kind.RECEIPT.value  # the kind byte of encoding.md
VERSION = 1  # one message
CUMULATIVE_VERSION = 2  # 1..MAX_COVERED messages of one device
VERSIONS = frozenset({VERSION, CUMULATIVE_VERSION})
HEADER = header(Kind.RECEIPT, VERSION)
CUMULATIVE_HEADER = header(Kind.RECEIPT, CUMULATIVE_VERSION)
HASH_SIZE = 32  # SHA-256
SIGNATURE_SIZE = 65  # r ‖ s ‖ v, v in {27, 28}
SIGNED_SIZE = 4 + 8 + 20 + HASH_SIZE + 8 + 8 + 8 + 20  # v1
RECEIPT_SIZE = SIGNED_SIZE + SIGNATURE_SIZE  # v1
# v2: a bound keeps a receipt small (at most 3.2 KB, well inside an MQTT ack) and a device's
# check of it short; a burst larger than this is acknowledged in several receipts.
MAX_COVERED = 64
COVERED_SIZE = HASH_SIZE + 8 + 8  # message_hash ‖ u64 first_seq ‖ u64 last_seq
CUMULATIVE_FIXED_SIZE = 4 + 8 + 20 + 8 + 20 + 1  # header, group, device, time, gateway, count
MAX_SEQ = 2**63 - 1  # as telemetry.md: seqs are kept in SQL BIGINT
MAX_U64 = 2**64 - 1
_SIGNED = struct.Struct(">4sQ20s32sQQQ20s")  # the v1 signed part, field by field
_FIXED = struct.Struct(">4sQ20sQ20sB")  # the v2 signed part before its entries
_COVERED = struct.Struct(">32sQQ")
assert _SIGNED.size == SIGNED_SIZE
assert _FIXED.size == CUMULATIVE_FIXED_SIZE
assert _COVERED.size == COVERED_SIZE


def _decode_error(reason: str, code: str = "decode_error") -> DecodeError:
    return DecodeError(f"receipt: {reason}", code=code)


def cumulative_size(count: int) -> int:
    """The bytes of a v2 receipt covering ``count`` messages, signature included."""
    return CUMULATIVE_FIXED_SIZE + COVERED_SIZE * count + SIGNATURE_SIZE


def signed_bytes(
    group_id: int,
    device: bytes,
    message_hash: bytes,
    first_seq: int,
    last_seq: int,
    stored_at_ms: int,
    gateway: bytes,
) -> bytes:
    """The v1 signed part from raw fields (addresses as 20 bytes): the gateway's hot path, one
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


def cumulative_signed_bytes(
    group_id: int,
    device: bytes,
    stored_at_ms: int,
    gateway: bytes,
    covered: Sequence[tuple[bytes, int, int]],
) -> bytes:
    """The v2 signed part from raw fields: ``covered`` is each message's (SHA-256, first
    seq, last seq), in the order acknowledged.  The MQTT bridge's path, one pack per
    cumulative acknowledgement.  Same checks as :class:`Receipt`, so the gateway never signs
    what no device could parse."""
    if not 1 <= len(covered) <= MAX_COVERED:
        raise _decode_error(f"a cumulative receipt covers 1..{MAX_COVERED} messages")
    if len(device) != 20 or len(gateway) != 20:
        raise _decode_error("a field has the wrong size")
    parts = []
    for message_hash, first_seq, last_seq in covered:
        if not 0 <= first_seq <= last_seq <= MAX_SEQ:
            raise _decode_error("seqs are 0 <= first <= last < 2**63")
        if len(message_hash) != HASH_SIZE:
            raise _decode_error("the message hash is 32 bytes")
        parts.append(_COVERED.pack(message_hash, first_seq, last_seq))
    if len({c[0] for c in covered}) != len(covered):
        raise _decode_error("a message is covered twice")
    try:
        fixed = _FIXED.pack(
            CUMULATIVE_HEADER, group_id, device, stored_at_ms, gateway, len(covered)
        )
    except struct.error:
        raise _decode_error("group or time out of range") from None
    return fixed + b"".join(parts)


def _u64(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 8], "big")


@dataclass(frozen=True, slots=True)
class Covered:
    """One data message a receipt covers: its SHA-256 as received (the ack's ``message_id``)
    and its first and last reading's seq."""

    message_hash: bytes
    first_seq: int
    last_seq: int

    def __post_init__(self) -> None:
        if not 0 <= self.first_seq <= self.last_seq <= MAX_SEQ:
            raise _decode_error("seqs are 0 <= first <= last < 2**63")
        if len(self.message_hash) != HASH_SIZE:
            raise _decode_error("the message hash is 32 bytes")

    @property
    def seqs(self) -> str:
        """``seq 4`` or ``seqs 4..7``, as a finding names them."""
        if self.first_seq == self.last_seq:
            return f"seq {self.first_seq}"
        return f"seqs {self.first_seq}..{self.last_seq}"


@dataclass(frozen=True, slots=True)
class Receipt:
    """One receipt, v1 (``entries`` holds exactly one message) or v2 (1..:data:`MAX_COVERED`
    messages of the device); ``signature`` is empty until the master signed
    :meth:`signed_part`.  Build a v1 one with :meth:`single`."""

    group_id: int
    device: str  # EIP-55
    entries: tuple[Covered, ...]  # the messages covered, in the order acknowledged
    stored_at_ms: int  # when the store had committed them all, the gateway's clock
    gateway: str  # EIP-55: the master address that signs
    signature: bytes = b""  # 65 bytes r ‖ s ‖ v
    version: int = CUMULATIVE_VERSION

    def __post_init__(self) -> None:
        # Checked on build too, so a gateway never signs what no device could parse.
        if self.version not in VERSIONS:
            raise _decode_error(f"unknown version {self.version}", code="unknown_version")
        if not 0 <= self.group_id <= MAX_U64 or not 0 <= self.stored_at_ms <= MAX_U64:
            raise _decode_error("group or time out of range")
        count = len(self.entries)
        if self.version == VERSION and count != 1:
            raise _decode_error("a v1 receipt covers exactly one message")
        if not 1 <= count <= MAX_COVERED:
            raise _decode_error(f"a cumulative receipt covers 1..{MAX_COVERED} messages")
        if len({e.message_hash for e in self.entries}) != count:
            raise _decode_error("a message is covered twice")
        if self.signature and (
            len(self.signature) != SIGNATURE_SIZE or self.signature[64] not in (27, 28)
        ):
            raise _decode_error("the signature is r ‖ s ‖ v, 65 bytes, v 27 or 28")

    @classmethod
    def single(
        cls,
        group_id: int,
        device: str,
        message_hash: bytes,
        first_seq: int,
        last_seq: int,
        stored_at_ms: int,
        gateway: str,
        signature: bytes = b"",
    ) -> Receipt:
        """A v1 receipt: one message, the fields in the order of its bytes."""
        return cls(
            group_id,
            device,
            (Covered(message_hash, first_seq, last_seq),),
            stored_at_ms,
            gateway,
            signature,
            VERSION,
        )

    @property
    def only(self) -> Covered:
        """The one message of a receipt that covers one (every v1 receipt); ValueError for
        a cumulative receipt of several, which has no single message to name."""
        if len(self.entries) != 1:
            raise ValueError(f"this receipt covers {len(self.entries)} messages")
        return self.entries[0]

    def signed_part(self) -> bytes:
        """Every byte before the signature, header included: what the master signs."""
        device, gateway = bytes.fromhex(self.device[2:]), bytes.fromhex(self.gateway[2:])
        if self.version == VERSION:
            e = self.entries[0]
            return signed_bytes(
                self.group_id,
                device,
                e.message_hash,
                e.first_seq,
                e.last_seq,
                self.stored_at_ms,
                gateway,
            )
        return cumulative_signed_bytes(
            self.group_id,
            device,
            self.stored_at_ms,
            gateway,
            [(e.message_hash, e.first_seq, e.last_seq) for e in self.entries],
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
        """A receipt's bytes, either version; DecodeError (``decode_error``,
        ``unknown_version``, ``trailing_bytes`` as encoding.md says) for anything else.  Says
        nothing of the signature: that is checked against the chain by the reader."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise _decode_error("expected bytes")
        data = bytes(data)
        if len(data) < 4:
            raise _decode_error("truncated input")
        if data[:2] != MAGIC or data[2:3] != KIND:
            raise _decode_error("not a receipt")
        if data[3] not in VERSIONS:
            raise _decode_error(f"unknown version {data[3]}", code="unknown_version")
        if data[3] == VERSION:
            return cls._parse_v1(data)
        return cls._parse_v2(data)

    @classmethod
    def _parse_v1(cls, data: bytes) -> Receipt:
        if len(data) < RECEIPT_SIZE:
            raise _decode_error("truncated input")
        if len(data) > RECEIPT_SIZE:
            raise _decode_error("trailing bytes after object", code="trailing_bytes")
        at_hash = 4 + 8 + 20
        at_seq = at_hash + HASH_SIZE
        return cls.single(
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
    def _parse_v2(cls, data: bytes) -> Receipt:
        if len(data) < CUMULATIVE_FIXED_SIZE:
            raise _decode_error("truncated input")
        _, group_id, device, stored_at_ms, gateway, count = _FIXED.unpack_from(data)
        if not 1 <= count <= MAX_COVERED:
            raise _decode_error(f"a cumulative receipt covers 1..{MAX_COVERED} messages")
        size = cumulative_size(count)
        if len(data) < size:
            raise _decode_error("truncated input")
        if len(data) > size:
            raise _decode_error("trailing bytes after object", code="trailing_bytes")
        entries = tuple(
            Covered(*_COVERED.unpack_from(data, CUMULATIVE_FIXED_SIZE + i * COVERED_SIZE))
            for i in range(count)
        )
        return cls(
            group_id,
            to_checksum_address(device),
            entries,
            stored_at_ms,
            to_checksum_address(gateway),
            data[size - SIGNATURE_SIZE :],
            CUMULATIVE_VERSION,
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
