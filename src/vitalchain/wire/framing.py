"""Framing shared by every binary object: a 4-byte header, then fixed-order fields.

Header = ``b"VC"`` ‖ kind (1 ASCII byte) ‖ version (1 byte).  The kind stops one object
type being parsed as another; the version lets a decoder refuse what it does not know.
See docs/spec/encoding.md.
"""

from __future__ import annotations

from enum import Enum

from vitalchain.errors import DecodeError

__all__ = ["MAGIC", "Kind", "Reader", "header"]

MAGIC = b"VC"


class Kind(bytes, Enum):
    AEAD = b"a"
    ENVELOPE = b"e"
    SIGNATURE = b"s"
    RING_SIGNATURE = b"r"
    INCLUSION_PROOF = b"i"
    CONSISTENCY_PROOF = b"c"
    BLOCK = b"b"
    KEYS = b"k"  # a reader's key-ring entry for one block
    MESSAGE = b"m"
    RECEIPT = b"t"  # the gateway's signed receipt of a stored message


def header(kind: Kind, version: int) -> bytes:
    return MAGIC + kind.value + bytes([version])


class Reader:
    """Cursor over an encoded object; every short read or leftover byte is a DecodeError."""

    __slots__ = ("_data", "_pos", "version")

    def __init__(self, data: bytes, kind: Kind, versions: frozenset[int]) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"{kind.name.lower()}: expected bytes")
        self._data = bytes(data)
        self._pos = 0
        head = self.take(4)
        if head[:2] != MAGIC:
            raise DecodeError(f"{kind.name.lower()}: not a vitalchain object")
        if head[2:3] != kind.value:
            raise DecodeError(f"{kind.name.lower()}: wrong object kind {head[2:3]!r}")
        if head[3] not in versions:
            raise DecodeError(
                f"{kind.name.lower()}: unknown version {head[3]}",
                code="unknown_version",
            )
        self.version = head[3]

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if n < 0 or end > len(self._data):
            raise DecodeError("truncated input")
        out = self._data[self._pos : end]
        self._pos = end
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "big")

    def rest(self) -> bytes:
        return self.take(len(self._data) - self._pos)

    def done(self) -> None:
        if self._pos != len(self._data):
            raise DecodeError("trailing bytes after object", code="trailing_bytes")
