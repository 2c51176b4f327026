"""Onboarding (docs/spec/onboarding.md): every context and AAD string of the four steps and
of re-keying, and the sealed JSON bodies the device and the gateway exchange.

The HTTP request bodies (enrolment, session, sealed wrapper, re-key) are the gateway's
OpenAPI schemas (``gateway/schemas.py``); what travels *inside* the AEAD is defined here, once,
for both ends.
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal, Self

from pydantic import model_validator

from vitalchain.wire._json import WireObject

__all__ = [
    "AAD_ASSOCIATION",
    "AAD_ASSOCIATION_REQUEST",
    "AAD_SESSION_KEY",
    "AAD_TICKET",
    "AAD_TICKET_REQUEST",
    "ENROLMENT_CONTEXT",
    "ENROLMENT_REQUEST_TAG",
    "REKEY_CONTEXT",
    "REKEY_REQUEST_CONTEXT",
    "SESSION_CONTEXT",
    "AssociationReply",
    "AssociationRequest",
    "MqttGrant",
    "RekeyResponse",
    "SessionResponse",
    "TicketReply",
    "TicketRequest",
    "pairing_code_hash",
]

# Signature contexts (signature.md)
ENROLMENT_CONTEXT = b"vitalchain/v1/enrolment"  # patient: the exact enrolment body bytes
SESSION_CONTEXT = b"vitalchain/v1/session"  # master: session id ‖ keccak256(envelope)
# Re-keying (section 5) is signed, not sealed: the old key may be exhausted, and a way out of
# exhaustion must not need one more message under it.
REKEY_REQUEST_CONTEXT = b"vitalchain/v1/rekey-request"  # device: old id ‖ u64 issued_at
REKEY_CONTEXT = b"vitalchain/v1/rekey"  # master: old id ‖ new id ‖ keccak256(envelope)
# Associated data, each followed by the session id
AAD_SESSION_KEY = b"vitalchain/v1 session"  # the envelope wrapping the session key
AAD_TICKET_REQUEST = b"vitalchain/v1 ticket request"
AAD_TICKET = b"vitalchain/v1 ticket"
AAD_ASSOCIATION_REQUEST = b"vitalchain/v1 association request"
AAD_ASSOCIATION = b"vitalchain/v1 association"
# A telemetry URL (association v2): http, a host (name, IPv4 or [IPv6]) and a port, no path.
_HTTP_URL = re.compile(r"http://(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}")

# Hash domains
ENROLMENT_REQUEST_TAG = b"vitalchain/v1 enrolment request"  # ‖ signer (20) ‖ body: replay key
_PAIRING_CODE_TAG = b"vitalchain/v1 pairing code "


def pairing_code_hash(normalized: str) -> bytes:
    """What the gateway keeps of a pairing code (already normalised: upper case, no dashes)."""
    return hashlib.sha256(_PAIRING_CODE_TAG + normalized.encode()).digest()


class SessionResponse(WireObject):
    """Step 2's answer: the session key wrapped for the device key, signed by the master."""

    _what = "session"
    v: Literal[1] = 1
    session_id: str
    group_id: int
    gateway: str
    chain_id: int
    trust_groups: str
    suite: str
    expires_at: int
    session_key: str  # VCe, hex
    signature: str  # SESSION_CONTEXT over session_id ‖ keccak256(session_key)


class RekeyResponse(WireObject):
    """Section 5's answer: the new session, bound to the old one by the master's signature."""

    _what = "re-key answer"
    v: Literal[1] = 1
    previous: str
    previous_expires_at: int
    session_id: str
    suite: str
    expires_at: int
    session_key: str  # VCe, hex
    signature: str  # REKEY_CONTEXT over old id ‖ new id ‖ keccak256(session_key)


class _Sealed(WireObject):
    _code = "invalid_request"
    v: Literal[1] = 1


class TicketRequest(_Sealed):
    """Step 3, device → gateway, under ``AAD_TICKET_REQUEST ‖ session_id``."""

    _what = "ticket request"
    object_id: int
    device_key: str
    pairing_code: str


class TicketReply(_Sealed):
    """Step 3, gateway → device, under ``AAD_TICKET ‖ session_id``."""

    _what = "ticket"
    token: str
    group_id: int
    object_id: int
    device: str


class AssociationRequest(_Sealed):
    """Step 4, device → gateway, under ``AAD_ASSOCIATION_REQUEST ‖ session_id``."""

    _what = "association request"
    object_id: int
    token: str
    request: str


class MqttGrant(WireObject):
    """The device's MQTT credentials, given once at association (mqtt.md)."""

    host: str
    port: int
    username: str
    password: str
    telemetry_topic: str
    ack_topic: str


class AssociationReply(_Sealed):
    """Step 4, gateway → device, under ``AAD_ASSOCIATION ‖ session_id``.

    v2 adds ``telemetry_url``, where the gateway's ingest workers serve ``POST /v1/telemetry``
    (onboarding.md, step 4); a gateway without them answers v1, byte for byte as before, and
    a device reads both."""

    _what = "association"
    v: Literal[1, 2] = 1  # type: ignore[assignment]
    status: Literal["active"]
    device: str
    block_number: int
    tx_hash: str
    mqtt: MqttGrant | None
    telemetry_url: str | None = None

    @model_validator(mode="after")
    def _url_is_v2(self) -> Self:
        if (self.v == 2) != (self.telemetry_url is not None):
            raise ValueError("telemetry_url is in v2, and only there")
        if self.telemetry_url is not None and not _HTTP_URL.fullmatch(self.telemetry_url):
            raise ValueError("telemetry_url is an http URL of a host and port, no path")
        return self

    def encode(self) -> bytes:
        """v1 without the field it does not have (its bytes as before v2 existed)."""
        return self.model_dump_json(exclude={"telemetry_url"} if self.v == 1 else None).encode()
