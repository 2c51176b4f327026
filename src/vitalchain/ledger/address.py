"""The one schema type for an Ethereum address at every HTTP edge (gateway, store access, alerts).

Every address is EIP-55 from the edge on: the store, the sealer and the chain compare them as
strings, so one lowercase patient address once stopped a whole group's sealing.  All-lower or
all-upper hex is normalised; mixed case must be a valid checksum (a typo is refused, 422).
The pattern stays in the schema (for clients and fuzzers); ``parse_address`` is the one parser.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from vitalchain.crypto.keys import parse_address

__all__ = ["ADDRESS_PATTERN", "Address"]

ADDRESS_PATTERN = r"^0x[0-9a-fA-F]{40}$"
Address = Annotated[str, Field(pattern=ADDRESS_PATTERN), AfterValidator(parse_address)]
