"""Store errors (under :class:`vitalchain.errors.VitalchainError`)."""

from __future__ import annotations

from vitalchain.errors import VitalchainError

__all__ = ["DuplicateReading", "StoreError"]


class StoreError(VitalchainError):
    code = "store_error"


class DuplicateReading(StoreError):
    """A (device, seq) pair already stored: the message is a replay."""

    code = "replayed"
