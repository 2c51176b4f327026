"""Store errors (under :class:`vitalchain.errors.VitalchainError`)."""

from __future__ import annotations

from vitalchain.errors import VitalchainError

__all__ = ["DuplicateReading", "StoreError", "StoreUnavailable"]


class StoreError(VitalchainError):
    code = "store_error"


class DuplicateReading(StoreError):
    """A (device, seq) pair already stored: the message is a replay."""

    code = "replayed"


class StoreUnavailable(StoreError):
    """The database could not be reached or failed under us (server gone, connection lost,
    disk I/O): nothing was stored, and the same request may succeed later (HTTP 503)."""

    code = "store_unavailable"
