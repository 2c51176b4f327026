"""Ethereum addresses as text: EIP-55, the one spelling every layer compares.

Every address is EIP-55 from the edge on: the store, the sealer, the chain, ACL topics and
dynsec usernames compare addresses as strings, so one lowercase patient address once stopped a
whole group's sealing.  All-lower or all-upper hex is normalised; mixed case must be a valid
checksum (a typo is refused).  Here, below crypto, because wire formats (blocks, MQTT topics)
spell addresses too; the keccak comes from ``sha3`` (safe-pysha3), as crypto's does.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Final

from pydantic import AfterValidator, Field
from sha3 import keccak_256

from vitalchain.errors import InvalidKey

__all__ = [
    "ADDRESS_PATTERN",
    "Address",
    "is_checksum_address",
    "parse_address",
    "to_checksum_address",
]

ADDRESS_PATTERN: Final = r"^0x[0-9a-fA-F]{40}$"
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")


def to_checksum_address(address: bytes) -> str:
    """EIP-55 mixed-case hex form of a 20-byte address."""
    if len(address) != 20:
        raise InvalidKey("an address is 20 bytes")
    hexaddr = address.hex()
    digest = keccak_256(hexaddr.encode()).hexdigest()
    return "0x" + "".join(
        c.upper() if c.isalpha() and int(digest[i], 16) >= 8 else c for i, c in enumerate(hexaddr)
    )


@functools.lru_cache(maxsize=65536)
def is_checksum_address(text: str) -> bool:
    """Cached: every MQTT telemetry topic is checked, and a keccak per message adds up."""
    if not isinstance(text, str) or not _ADDRESS_RE.fullmatch(text):
        return False  # bytes.fromhex alone would accept spaces inside the 40 digits
    return to_checksum_address(bytes.fromhex(text[2:])) == text


def parse_address(text: str) -> str:
    """A 0x-prefixed 20-byte address, in EIP-55 form; mixed case must be a valid checksum
    (so a typo in a checksummed address is refused).  Raises ``ValueError`` saying which."""
    if not _ADDRESS_RE.fullmatch(text):
        raise ValueError("not an address (0x followed by 40 hex digits)")
    hexpart = text[2:]
    raw = bytes.fromhex(hexpart)
    if hexpart not in (hexpart.lower(), hexpart.upper()) and not is_checksum_address(text):
        raise ValueError("a bad EIP-55 checksum (a typo?)")
    return to_checksum_address(raw)


# The one schema type for an address at every HTTP edge (gateway, store access, alerts); the
# pattern stays in the schema for clients and fuzzers, ``parse_address`` is the one parser.
Address = Annotated[str, Field(pattern=ADDRESS_PATTERN), AfterValidator(parse_address)]
