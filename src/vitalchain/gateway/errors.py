"""Gateway refusals: each carries an HTTP status and a machine-readable code.

The codes are the contract with devices and clients (docs/spec/onboarding.md and
telemetry.md list them); the messages are for people and never include secrets.
"""

from __future__ import annotations

from vitalchain.errors import VitalchainError

__all__ = ["GatewayError"]


class GatewayError(VitalchainError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status
