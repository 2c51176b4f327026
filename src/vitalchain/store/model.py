"""What the store keeps: signed device messages and the readings inside them."""

from __future__ import annotations

from dataclasses import dataclass

from vitalchain.crypto.ring import RingProof
from vitalchain.vitals import Vital

__all__ = ["MAX_SEQ", "Message", "Reading", "StoredMessage"]

MAX_SEQ = 2**63 - 1  # sequence numbers live in SQL BIGINT


@dataclass(frozen=True, slots=True)
class Reading:
    seq: int
    vital: Vital
    value: float
    t_ms: int  # device clock, ms since the epoch


@dataclass(frozen=True, slots=True)
class Message:
    """One verified data message: the device's signed payload and what it contains."""

    message_id: bytes  # SHA-256 of the data message as received
    device: str
    group_id: int
    patient: str
    received_at_ms: int
    payload: bytes  # the exact bytes the device signed
    signature: bytes  # 65-byte r‖s‖v
    readings: tuple[Reading, ...]
    # The device's ring proof over this payload (v2 messages); kept in memory for alerts only.
    ring: RingProof | None = None


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int  # arrival order in this store
    message: Message
