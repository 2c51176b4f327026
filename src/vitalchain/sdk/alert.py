"""The public alert object (docs/spec/alert.md): checking it against the chain without a key,
and opening it as a recipient.  Raising and recording it is the gateway's
(:mod:`vitalchain.alerts.service`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from vitalchain.crypto import ring as blsag
from vitalchain.crypto.envelope import Envelope
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, keccak256, message_digest
from vitalchain.crypto.ring import RingProof
from vitalchain.edge.codes import Refused
from vitalchain.errors import DecodeError, InvalidProof, InvalidSignature
from vitalchain.ledger import Ledger
from vitalchain.ledger.ledger import DeviceStatus
from vitalchain.wire.alert import (
    ALERT_VERSION,
    RELAY_CONTEXT,
    AlertObject,
    ThresholdBody,
    ThresholdBodyV1,
    alert_context,
    parse_body,
    signed_bytes,
)
from vitalchain.wire.telemetry import READING_CONTEXT

__all__ = ["Alert", "AlertError", "open_alert", "recipients_of", "verify_alert"]


class AlertError(Refused):
    """A refused alert request (its status is the edge's table's), or, raised by the
    recipient's SDK (:mod:`vitalchain.sdk.subscriber`), the gateway's refusal as received."""

    code = "alert_error"


@dataclass(frozen=True, slots=True)
class Alert:
    """The public alert object: what the store keeps, recipients receive and anyone verifies."""

    alert_id: bytes  # 16 random bytes; the on-chain locator is it, zero-padded to 32
    group_id: int
    kind: str
    raised_at_ms: int
    received_at_ms: int  # arrival of the reading that raised it (raised_at for technical ones)
    envelope: bytes  # VCe: the alert body, encrypted for the patient and the providers
    digest: bytes  # SHA-256 of the device payload (threshold); 32 zero bytes otherwise
    ring: RingProof | None
    gateway: str
    signature: bytes  # the gateway's, over everything above (context alert-relay)
    version: int = ALERT_VERSION  # of the object: 1 (threshold, stale) or 2 (+ technical)

    @property
    def ciphertext_hash(self) -> bytes:
        return keccak256(self.envelope)

    @property
    def locator(self) -> bytes:
        return self.alert_id.ljust(32, b"\0")

    @property
    def key_image(self) -> bytes | None:
        return self.ring.signature.key_image if self.ring else None

    def signed_bytes(self) -> bytes:
        return signed_bytes(
            self.version, self.alert_id, self.group_id, self.kind, self.raised_at_ms,
            self.received_at_ms, self.digest, self.envelope,
            self.ring.to_bytes() if self.ring else b"",
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return AlertObject(
            v=self.version,
            alert_id=self.alert_id.hex(),
            group_id=self.group_id,
            kind=self.kind,
            raised_at=self.raised_at_ms,
            received_at=self.received_at_ms,
            envelope=self.envelope.hex(),
            digest=self.digest.hex(),
            ring=self.ring.to_bytes().hex() if self.ring else None,
            gateway=self.gateway,
            signature=self.signature.hex(),
        ).to_json()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        """Strict (wire's ``AlertObject``), then the ring proof read as crypto reads it."""
        obj = AlertObject.parse_value(data).check()
        try:
            ring = None
            if obj.ring is not None:
                raw = bytes.fromhex(obj.ring)
                ring, used = RingProof.read(raw)
                if used != len(raw):
                    raise DecodeError("alert: trailing bytes after the ring proof")
            return cls(
                bytes.fromhex(obj.alert_id), obj.group_id, obj.kind, obj.raised_at,
                obj.received_at, bytes.fromhex(obj.envelope), bytes.fromhex(obj.digest), ring,
                obj.gateway, bytes.fromhex(obj.signature), obj.v,
            )  # fmt: skip
        except ValueError as exc:
            raise DecodeError(f"alert: malformed ({type(exc).__name__})") from None


def _relay_signer(alert: Alert) -> str:
    digest = message_digest(alert.signed_bytes(), RELAY_CONTEXT)
    return PublicKey.recover(Signature.from_rsv(alert.signature), digest).address


def verify_alert(alert: Alert, ledger: Ledger, *, min_ring: int = 2) -> None:
    """Check an alert without any key: relay signature, ring against the chain, chain record.

    Raises ``InvalidSignature`` or ``InvalidProof`` naming what failed; returns None if sound.
    """
    group = ledger.group(alert.group_id)
    if group is None:
        raise InvalidProof(f"group {alert.group_id} does not exist on chain")
    rotations = ledger.events.query("MasterRotated", groupId=alert.group_id)
    masters = {group.master} | {e.args["oldMaster"] for e in rotations}
    try:
        signer = _relay_signer(alert)
    except (InvalidSignature, DecodeError):
        raise InvalidSignature("alert: the relay signature does not verify") from None
    if signer != alert.gateway or signer not in masters:
        raise InvalidSignature("alert: not relayed by the group's master")
    if alert.kind != "threshold":  # stale and technical alarms: the gateway's word alone
        return
    if alert.ring is None:
        raise InvalidProof("alert: a threshold alert needs a ring proof")
    if len(alert.ring.members) < min_ring:
        raise InvalidProof(f"alert: ring of {len(alert.ring.members)} is below {min_ring}")
    for member in alert.ring.members:
        record = ledger.device(member.address)
        if record.group_id != alert.group_id or record.status is DeviceStatus.NONE:
            raise InvalidProof(f"alert: ring member {member.address} is not a device of the group")
    blsag.verify(
        alert.digest,
        alert.ring.members,
        alert.ring.signature,
        alert_context(alert.group_id, alert.digest),
    )
    image_hash = keccak256(alert.ring.signature.key_image)
    records = ledger.events.query("AlertRecorded", groupId=alert.group_id, keyImageHash=image_hash)
    if not records:
        raise InvalidProof("alert: not in the chain's alert log")
    entry = records[0].args
    if entry["ciphertextHash"] != alert.ciphertext_hash or entry["locator"] != alert.locator:
        raise InvalidProof("alert: the chain's record is for another ciphertext")


def open_alert(alert: Alert, key: PrivateKey) -> dict[str, Any]:
    """Decrypt as a recipient, and check that the device payload inside is the signed one.

    Bodies v1 (no priority: read it as ``medium``) and v2 open alike; the body is read by
    :func:`vitalchain.wire.alert.parse_body`, so a malformed one is a ``DecodeError``.
    """
    body = parse_body(Envelope.from_bytes(alert.envelope).open(key, alert.alert_id))
    if alert.kind == "threshold":
        if not isinstance(body, ThresholdBody | ThresholdBodyV1):
            raise DecodeError("alert body: a threshold alert needs a threshold body")
        payload = body.payload_bytes
        if hashlib.sha256(payload).digest() != alert.digest:
            raise InvalidProof("alert: the payload inside is not the one ring-signed")
        device = PublicKey.recover(
            Signature.from_rsv(body.signature_bytes), message_digest(payload, READING_CONTEXT)
        )
        if device.address != body.device:
            raise InvalidSignature("alert: the device signature does not verify")
        if alert.ring is not None and device not in alert.ring.members:
            raise InvalidProof("alert: the device is not in the ring")
    return body.to_json()


def recipients_of(alert: Alert) -> list[bytes]:
    """The recipients' addresses (20 bytes each), as the envelope's key ring names them."""
    return Envelope.from_bytes(alert.envelope).recipients
