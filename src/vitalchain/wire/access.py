"""Provider access (docs/spec/access.md): the signed request's bytes and context, and the two
answers a provider reads (challenge, released blocks).

The request bodies are the access API's OpenAPI schemas (``access/service.py``: they need the
ledger's address type); the answers are parsed here, strictly, on the provider's side.
"""

from __future__ import annotations

from typing import Literal

from vitalchain.wire._json import WireObject

__all__ = [
    "ACCESS_CONTEXT",
    "NONCE_TTL_S",
    "AccessResponse",
    "Challenge",
    "ReleasedBlock",
    "access_message",
]

ACCESS_CONTEXT = b"vitalchain/v1/access"  # the provider's signature over access_message
NONCE_TTL_S = 60  # a challenge's lifetime


def access_message(
    nonce: bytes, group_id: int, patient: str, after_number: int, number: int | None
) -> bytes:
    """``nonce ‖ u64 group ‖ patient (20) ‖ u64 after_number ‖ u64 number (0: all)``."""
    return (
        nonce
        + group_id.to_bytes(8, "big")
        + bytes.fromhex(patient[2:])
        + after_number.to_bytes(8, "big")
        + (number or 0).to_bytes(8, "big")
    )


class Challenge(WireObject):
    _what = "challenge"
    v: Literal[1] = 1
    nonce: str
    expires_at: int


class ReleasedBlock(WireObject):
    _what = "released block"
    group_id: int
    leaf_index: int
    number: int
    block: str  # VCb, hex
    stanza: str | None  # the provider's own key-ring entry, hex; None for a patient without one


class AccessResponse(WireObject):
    _what = "access response"
    v: Literal[1] = 1
    numbers: list[int]
    blocks: list[ReleasedBlock]
