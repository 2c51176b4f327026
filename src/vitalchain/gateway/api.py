"""Request and response bodies of the gateway's HTTP API (they become its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "Ack",
    "AdminRevocation",
    "EnrolmentRequest",
    "EnrolmentResponse",
    "ErrorBody",
    "ErrorResponse",
    "Health",
    "Ring",
    "SealedRequest",
    "SealedResponse",
    "SessionRequest",
    "SessionResponse",
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
_ADDRESS = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
_HEX = r"^[0-9a-fA-F]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class EnrolmentRequest(_Strict):
    v: Literal[1]
    patient: str = _ADDRESS
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


class SessionResponse(BaseModel):
    v: Literal[1]
    session_id: str
    group_id: int
    gateway: str
    chain_id: int
    trust_groups: str
    suite: str
    expires_at: int
    session_key: str
    signature: str


class SealedRequest(_Strict):
    v: Literal[1]
    session_id: str = Field(pattern=_HEX, min_length=32, max_length=32)
    ciphertext: str = Field(pattern=_HEX, min_length=2, max_length=8192)


class SealedResponse(BaseModel):
    v: Literal[1]
    ciphertext: str


class Ack(BaseModel):
    v: Literal[1]
    accepted: int
    last_seq: int
    message_id: str


class Health(BaseModel):
    status: Literal["ok"]
    group_id: int
    gateway: str
    chain_id: int
    block_number: int
    readings: int


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
