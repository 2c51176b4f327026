"""Gateway refusals: each carries a machine-readable code; its HTTP status is the edge's table.

The codes are the contract with devices and clients (docs/spec/onboarding.md and
telemetry.md list them); the messages are for people and never include secrets.
"""

from __future__ import annotations

from vitalchain.edge.codes import Refused

__all__ = ["GatewayError"]


class GatewayError(Refused):
    code = "gateway_error"
