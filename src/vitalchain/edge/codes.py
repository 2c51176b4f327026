"""The one table from error code to HTTP status, and the refusal type that uses it.

The codes are the contract with devices, providers and recipients (docs/spec/onboarding.md,
telemetry.md, access.md and alert.md list them).  A code maps to one status everywhere: a
service raises ``Refused(code, message)`` and never picks a status itself, and a route's
OpenAPI names its refusals by code too (:func:`openapi_refusals`).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from types import MappingProxyType
from typing import Any

from vitalchain.errors import VitalchainError

__all__ = [
    "BY_STATUS",
    "COMPONENTS",
    "CONTRACT_STATUS",
    "OUTAGE_MESSAGES",
    "STATUS",
    "Refused",
    "openapi_refusals",
    "status_for",
]

# Each code under exactly one status (tests/unit/edge/test_codes.py checks it, and that every
# code a route raises is here).
BY_STATUS: Mapping[int, tuple[str, ...]] = MappingProxyType(
    {
        400: (
            "decryption_failed",
            "invalid_ring",
            "malformed_message",
            "session_mismatch",
        ),
        401: (
            "challenge_invalid",
            "invalid_signature",
            "unauthorized",
            "unknown_session",
            "wrong_device",  # over MQTT the ack carries the code only
            "wrong_group",
        ),
        403: (
            "consent_expired",
            "csrf_failed",  # a status-page form without its session's CSRF token
            "device_not_active",
            "device_revoked",
            "no_consent",
            "not_a_recipient",
            "out_of_scope",
            "pairing_code_expired",
            "pairing_code_invalid",
            "pairing_code_used",
        ),
        404: ("not_found", "unknown_alert", "unknown_block"),
        405: ("method_not_allowed",),
        409: (
            "alert_conflict",
            "alert_replayed",
            "device_known",
            "enrolment_replayed",
            "key_exhausted",
            "mqtt_unavailable",
            "no_ticket",
            "not_group_master",
            "object_id_taken",
            "replayed",
            "ring_unavailable",
            "seq_conflict",
            "session_used",
        ),
        413: ("message_too_large",),
        415: ("unsupported_media_type",),
        422: (
            "clock_skew",
            "decode_error",
            "implausible_value",
            "invalid_key",
            "invalid_payload",
            "invalid_policy",
            "invalid_priority",
            "invalid_receipt",  # a gateway's receipt that does not verify: content, not auth
            "invalid_reading",
            "invalid_request",
            "invalid_rule",
            "invalid_snooze",
            "invalid_time",
            "unknown_version",  # an encoded object or file of a version this release cannot read
            "unknown_vital",
            "wrong_unit",
        ),
        429: ("rate_limited", "too_many_attempts", "too_many_requests"),
        500: (
            "internal_error",
            "invalid_config",  # a misconfigured server, never the client's fault
            "invalid_state",  # a record given to restore an engine that it could not have written
        ),
        502: ("not_a_gateway",),  # a client's own verdict on what answered it
        503: ("broker_unavailable", "chain_unavailable", "store_unavailable"),
    }
)
STATUS: Mapping[str, int] = MappingProxyType(
    {code: status for status, codes in BY_STATUS.items() for code in codes}
)
# A contract's refusal (``trust_groups.object_id_taken``: the ABI's custom error, decoded by
# vitalchain.ledger.errors) relayed by a route: the request conflicts with chain state.
CONTRACT_STATUS = 409
# An outage code -> the health monitor's component it reports to (a failure seen on a route
# is news the probes may not have yet), and what the client is told instead of the cause.
COMPONENTS: Mapping[str, str] = MappingProxyType(
    {"chain_unavailable": "chain", "store_unavailable": "store"}
)
OUTAGE_MESSAGES: Mapping[str, str] = MappingProxyType(
    {
        "chain_unavailable": "the chain node is unavailable; retry later",
        "store_unavailable": "the store is unavailable; retry later",
    }
)


def status_for(code: str) -> int | None:
    """The HTTP status of ``code``; ``None`` for a code no route may answer (a 500 then)."""
    status = STATUS.get(code)
    if status is None and "." in code:
        return CONTRACT_STATUS
    return status


def openapi_refusals(
    *refusals: str | int,
    notes: Mapping[str | int, str] | None = None,
    model: type | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a FastAPI route for the refusals it may answer, by status.

    Each refusal is a code (its status is this table's, so the documented status can never
    disagree with the one answered) or a bare status, documented without naming its codes (a
    malformed request line has none of ours; a route family may answer too many to list).
    A status's description names its codes in the order given, each with its note (``notes``,
    keyed by code or by status); ``model`` is the error body's schema, where the app documents
    one.  An unknown code or status raises, so a typo fails at import rather than documenting
    nothing.
    """
    notes = notes or {}
    codes: dict[int, list[str]] = {}
    for refusal in refusals:
        if isinstance(refusal, str):
            if refusal not in STATUS:
                raise ValueError(f"{refusal!r} is not a code of vitalchain.edge.codes")
            codes.setdefault(STATUS[refusal], []).append(refusal)
        elif refusal in BY_STATUS:
            codes.setdefault(refusal, [])
        else:
            raise ValueError(f"{refusal!r} is not a status of vitalchain.edge.codes")
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted(codes):
        named = [f"`{c}` ({notes[c]})" if c in notes else f"`{c}`" for c in codes[status]]
        if named:
            description = f"refused: {', '.join(named)}"
        else:  # FastAPI's own description of a status, and the body it comes with
            description = f"{HTTPStatus(status).phrase}: refused with {{error: {{code, message}}}}"
        if status in notes:
            description += f"; {notes[status]}"
        responses[status] = {"description": description}
        if model is not None:
            responses[status]["model"] = model
    return responses


class Refused(VitalchainError):
    """A refusal a route answers with: a code from the table and a message for people.

    The status follows from the code, so the two never disagree; only a client that decoded
    a response (:func:`vitalchain.edge.client.refusal`) records the status it actually got.
    ``details`` are extra members of the error body (``choices_s`` of ``invalid_snooze``).
    """

    code = "refused"

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self._status = status
        self.details: Mapping[str, Any] = MappingProxyType(dict(details or {}))

    @property
    def status(self) -> int:
        if self._status is not None:
            return self._status
        return status_for(self.code) or 500
