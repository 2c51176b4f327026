"""Request and response bodies of the gateway's HTTP API (they become its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from vitalchain.wire.address import ADDRESS_PATTERN, Address

__all__ = [
    "ADDRESS_PATTERN",
    "Address",
    "AdminRevocation",
    "ComponentStatus",
    "EnrolmentRequest",
    "EnrolmentResponse",
    "ErrorBody",
    "ErrorResponse",
    "Health",
    "OutboxBacklog",
    "Readiness",
    "RekeyRequest",
    "Ring",
    "SealedRequest",
    "SealedResponse",
    "SealingStatus",
    "SessionRequest",
]


def _integral(value: object) -> object:
    """JSON Schema's integer includes 5.0; strict pydantic alone would refuse it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# JSON integers: 5 and 5.0, never "5" or true.  The Field must come before the validator, or
# pydantic writes its constraints into the OpenAPI as non-standard keys.
U64 = Annotated[int, Field(ge=0, lt=2**64), BeforeValidator(_integral)]
Timestamp = Annotated[int, Field(ge=0, le=2**53), BeforeValidator(_integral)]  # exact in a double
TtlSeconds = Annotated[int, Field(ge=60, le=86400), BeforeValidator(_integral)]
_HEX = r"^[0-9a-fA-F]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EnrolmentRequest(_Strict):
    v: Literal[1]
    patient: Address
    label: str = Field("", max_length=100)
    ttl_seconds: TtlSeconds = 900
    issued_at: Timestamp | None = None


class EnrolmentResponse(BaseModel):
    v: Literal[1]
    pairing_code: str
    patient: str
    expires_at: int


class SessionRequest(_Strict):
    v: Literal[1]
    device_key: str = Field(pattern=_HEX, min_length=66, max_length=130)
    object_id: U64
    suite: str = Field("chacha20-poly1305", max_length=40)


class SealedRequest(_Strict):
    v: Literal[1]
    session_id: str = Field(pattern=_HEX, min_length=32, max_length=32)
    ciphertext: str = Field(pattern=_HEX, min_length=2, max_length=8192)


class SealedResponse(BaseModel):
    v: Literal[1]
    ciphertext: str


class RekeyRequest(_Strict):
    """A device asks for a new session key (docs/spec/onboarding.md, section 5)."""

    v: Literal[1]
    session_id: str = Field(pattern=_HEX, min_length=32, max_length=32)
    issued_at: Timestamp
    signature: str = Field(pattern=_HEX, min_length=130, max_length=130)


class OutboxBacklog(BaseModel):
    """The chain outbox's writes not yet mined: they grow while the chain is away."""

    queued: int
    in_flight: int  # sent, not yet mined
    waiting: str | None  # while the chain does not take writes: why (e.g. chain_unavailable)
    waiting_since: float | None  # and since when (Unix seconds)


class ComponentStatus(BaseModel):
    """One dependency as the background probes last saw it (times in Unix seconds)."""

    status: Literal["up", "down"]
    last_success: float | None
    age_s: float | None  # seconds since the last success
    down_since: float | None
    error: str | None  # a machine-readable code while down, e.g. chain_unavailable
    backlog: OutboxBacklog | None = None  # the "outbox" component's (a node); else null


class SealingStatus(BaseModel):
    """The sealer's own view: what is not being sealed, and when it last sealed and anchored."""

    failing: dict[str, str]  # patient pseudonym → code (e.g. no_reader_key)
    errors: dict[str, str]  # round-wide step (anchor, seal_due, job …) → code
    last_seal_at_ms: int | None
    last_anchor_at_ms: int | None


class Health(BaseModel):
    """Liveness, from cached state: answers at once even while the chain or store is down.
    ``status`` is ``degraded`` while a component is down or some readings are not sealed."""

    status: Literal["ok", "degraded"]
    group_id: int
    gateway: str
    chain_id: int
    block_number: int | None  # the latest block the chain probe saw
    readings: int | None  # the reading count the store probe saw
    components: dict[str, ComponentStatus]  # chain, store, (a node) outbox, (MQTT) broker
    sealing: SealingStatus | None = None  # present when the node runs a sealer


class Readiness(BaseModel):
    """200 when every component is up, else 503 naming the ones that are not."""

    status: Literal["ready", "not_ready"]
    failing: list[str]
    components: dict[str, ComponentStatus]


class Ring(BaseModel):
    v: Literal[1]
    group_id: int
    members: list[str]  # compressed public keys, hex


class AdminRevocation(BaseModel):
    v: Literal[1]
    device: str
    block_number: int
    tx_hash: str


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
