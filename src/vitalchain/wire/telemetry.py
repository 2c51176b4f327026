"""Telemetry (docs/spec/telemetry.md): the data message ``VCm`` v1/v2 and the acknowledgement.

The device builds a :class:`Payload` and signs its :meth:`~Payload.encode` bytes under
:data:`READING_CONTEXT`; the gateway, the verifier and the provider read it back with
:meth:`Payload.parse`, the one parser of the reading JSON.  The sealing and the signature
are the crypto layer's; this module holds the bytes around them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from vitalchain.errors import DecodeError
from vitalchain.vitals import Vital
from vitalchain.wire._json import Strict, load
from vitalchain.wire.framing import Kind, header
from vitalchain.wire.receipt import MAX_COVERED, RECEIPT_SIZE

__all__ = [
    "HEADER_SIZE",
    "MAX_MESSAGE_BYTES",
    "MAX_READINGS",
    "MAX_SEQ",
    "MESSAGE_HEADER",
    "READING_CONTEXT",
    "RING_HEADER",
    "SIGNATURE_SIZE",
    "Ack",
    "AckBody",
    "CumulativeAck",
    "CumulativeAckBody",
    "Payload",
    "ReadingItem",
    "Refusal",
    "parse_answer",
    "split_signed",
]

READING_CONTEXT = b"vitalchain/v1/reading"  # the device's signature over the payload
MESSAGE_HEADER = header(Kind.MESSAGE, 1)
RING_HEADER = header(Kind.MESSAGE, 2)  # the same, with the device's ring proof first
SESSION_ID_SIZE = 16
HEADER_SIZE = 4 + SESSION_ID_SIZE  # the AEAD's associated data
SIGNATURE_SIZE = 65  # r ‖ s ‖ v
MAX_MESSAGE_BYTES = 64 * 1024
MAX_READINGS = 100
MAX_SEQ = 2**63 - 1  # a uint64 on the wire; stores keep seqs in SQL BIGINT
_SHORT = {v.info.short: v for v in Vital}
_CODE = "invalid_payload"


class _ReadingModel(Strict):
    seq: int
    vital: str
    value: float
    unit: str
    t: int


class _PayloadModel(Strict):
    v: Literal[1]
    group: int
    device: str
    sent_at: int
    readings: list[_ReadingModel]


@dataclass(frozen=True, slots=True)
class ReadingItem:
    """One reading as the device stated it (the unit is checked against the vital later)."""

    seq: int
    vital: Vital
    value: float
    unit: str
    t: int


@dataclass(frozen=True, slots=True)
class Payload:
    """The signed JSON of a data message: what a device says, in its own words."""

    group: int
    device: str
    sent_at: int
    readings: tuple[ReadingItem, ...]

    def encode(self) -> bytes:
        """The compact JSON a device signs (keys in the spec's order)."""
        return json.dumps(
            {
                "v": 1,
                "group": self.group,
                "device": self.device,
                "sent_at": self.sent_at,
                "readings": [
                    {
                        "seq": r.seq,
                        "vital": r.vital.info.short,
                        "value": r.value,
                        "unit": r.unit,
                        "t": r.t,
                    }
                    for r in self.readings
                ],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def parse(cls, data: bytes, *, max_readings: int | None = MAX_READINGS) -> Payload:
        """Strict shape check of the signed JSON; DecodeError ``invalid_payload``.

        ``max_readings`` is the gateway's limit on what it accepts; a reader of stored
        messages passes None (whatever limit the gateway had, it is not the reader's)."""
        try:
            text = data.decode()
        except UnicodeDecodeError:
            raise DecodeError("payload is not JSON", code=_CODE) from None
        model = load(_PayloadModel, text, what="payload", code=_CODE)
        if not model.readings or (max_readings is not None and len(model.readings) > max_readings):
            raise DecodeError(f"a message carries 1..{max_readings} readings", code=_CODE)
        items = []
        for r in model.readings:
            if not 0 <= r.seq <= MAX_SEQ:
                raise DecodeError("seq is an integer below 2**63", code=_CODE)
            vital = _SHORT.get(r.vital)
            if vital is None:
                raise DecodeError(f"unknown vital {r.vital[:32]!r}", code=_CODE)
            if r.value != r.value:
                raise DecodeError("value is a number", code=_CODE)
            items.append(ReadingItem(r.seq, vital, r.value, r.unit, r.t))
        return cls(model.group, model.device, model.sent_at, tuple(items))


def split_signed(plaintext: bytes) -> tuple[bytes, bytes]:
    """``payload ‖ signature`` (the sealed part of a v1 message) into its two parts."""
    if len(plaintext) <= SIGNATURE_SIZE:
        raise DecodeError("no payload before the signature", code="malformed_message")
    return plaintext[:-SIGNATURE_SIZE], plaintext[-SIGNATURE_SIZE:]


class AckBody(Strict):
    """The acknowledgement's JSON (also the HTTP route's response model)."""

    v: Literal[1]
    accepted: int
    last_seq: int
    message_id: str
    # The master's signed receipt (receipt.md), hex; a field added in v1, so a client of an
    # earlier release, which reads only the others, keeps working.
    receipt: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]*$",
        min_length=2 * RECEIPT_SIZE,
        max_length=2 * RECEIPT_SIZE,
        description="The receipt (docs/spec/receipt.md), hex: the master's signature over "
        "group, device, SHA-256 of the message as received, seqs covered and commit time.",
    )
    # Added in v1 (issue 16) like the receipt; absent (the gateway sends it only when true)
    # means false.
    prove: bool | None = Field(
        default=None,
        description="True when a reading of the message is outside the patient's band and it "
        "carried no ring proof: learn the bands again (docs/spec/telemetry.md, Bands).",
    )


@dataclass(frozen=True, slots=True)
class Ack:
    """The acknowledgement: sent only once the message's readings are stored durably."""

    accepted: int
    last_seq: int
    message_id: bytes  # SHA-256 of the data message
    receipt: bytes | None = None  # the encoded receipt (receipt.md); kept encoded on the hot path
    # The message's first seq: what a cumulative receipt's entry needs besides the others.  Not
    # in the v1 JSON (the receipt carries it), so None once parsed from one.
    first_seq: int | None = None
    # The gateway found a reading outside the patient's band in a message without a ring
    # proof: the device's bands are out of date (telemetry.md, "Who ring-signs").
    prove: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": 1,
            "accepted": self.accepted,
            "last_seq": self.last_seq,
            "message_id": self.message_id.hex(),
        }
        if self.receipt is not None:
            body["receipt"] = self.receipt.hex()
        if self.prove:
            body["prove"] = True
        return body

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: bytes | str) -> Ack:
        model = load(AckBody, data, what="acknowledgement")
        receipt = None if model.receipt is None else bytes.fromhex(model.receipt)
        return cls(
            model.accepted, model.last_seq, _message_id(model.message_id), receipt,
            prove=model.prove is True,
        )  # fmt: skip


class _CoveredModel(Strict):
    message_id: str
    accepted: int
    last_seq: int
    prove: bool = False


class CumulativeAckBody(Strict):
    """The cumulative acknowledgement's JSON (``"v": 2``, MQTT only, to a device that asked
    for it): one entry per message, and one receipt covering them all.  No top-level
    ``message_id``, so a reader of v1 acks, which matches answers by it, never takes this for
    the answer to one message."""

    v: Literal[2]
    acks: list[_CoveredModel] = Field(min_length=1, max_length=MAX_COVERED)
    receipt: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]*$")


@dataclass(frozen=True, slots=True)
class CumulativeAck:
    """One MQTT acknowledgement of several messages of one device, settled together, with one
    v2 receipt whose entries are these messages in this order (docs/spec/telemetry.md)."""

    acks: tuple[Ack, ...]
    receipt: bytes | None  # None only from a gateway without a master key (benchmarks)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "v": 2,
            "acks": [
                {
                    "message_id": a.message_id.hex(),
                    "accepted": a.accepted,
                    "last_seq": a.last_seq,
                    **({"prove": True} if a.prove else {}),
                }
                for a in self.acks
            ],
        }
        if self.receipt is not None:
            body["receipt"] = self.receipt.hex()
        return body

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: bytes | str) -> CumulativeAck:
        model = load(CumulativeAckBody, data, what="cumulative acknowledgement")
        receipt = None if model.receipt is None else bytes.fromhex(model.receipt)
        acks = tuple(
            Ack(a.accepted, a.last_seq, _message_id(a.message_id), receipt, prove=a.prove)
            for a in model.acks
        )
        return cls(acks, receipt)


class _ErrorModel(Strict):
    code: str
    message: str


class _RefusalModel(Strict):
    v: Literal[1]
    error: _ErrorModel
    message_id: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused data message, as MQTT answers it on the ack topic (HTTP answers a status)."""

    code: str
    message: str
    message_id: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "error": {"code": self.code, "message": self.message},
            "message_id": self.message_id.hex(),
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: bytes | str) -> Refusal:
        model = load(_RefusalModel, data, what="refusal")
        return cls(model.error.code, model.error.message, _message_id(model.message_id))


def parse_answer(data: bytes | str) -> Ack | CumulativeAck | Refusal:
    """What arrives on a device's ack topic: an acknowledgement (of one message, or
    cumulative), or a refusal."""
    try:
        return Ack.parse(data)
    except DecodeError:
        pass
    try:
        return CumulativeAck.parse(data)
    except DecodeError:
        return Refusal.parse(data)


def _message_id(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise DecodeError("message_id is not hex") from None
