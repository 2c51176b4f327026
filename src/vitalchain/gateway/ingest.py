"""The ingest core: one path for telemetry from HTTP and MQTT (docs/spec/telemetry.md).

Checks run in the spec's order and the first failure refuses the whole message; nothing of a
refused message is stored.  The acknowledgement is returned only after the store has
committed the readings durably.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from vitalchain.crypto.aead import Aead
from vitalchain.crypto.keys import PublicKey, Signature
from vitalchain.crypto.ring import RingProof
from vitalchain.errors import DecodeError, DecryptionError, InvalidSignature
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.ratelimit import RateLimiter
from vitalchain.gateway.registry import DeviceRegistry
from vitalchain.ledger.ledger import DeviceStatus
from vitalchain.store import MAX_SEQ, DuplicateReading, Message, Reading
from vitalchain.store.base import Store
from vitalchain.vitals import Vital

__all__ = ["MESSAGE_HEADER", "READING_CONTEXT", "Ack", "IngestCore", "LiveSession"]

MESSAGE_HEADER = b"VCm\x01"
RING_HEADER = b"VCm\x02"  # the same, with the device's ring proof first (telemetry.md)
READING_CONTEXT = b"vitalchain/v1/reading"
_SHORT = {v.info.short: v for v in Vital}
_READING_KEYS = {"seq", "vital", "value", "unit", "t"}
_PAYLOAD_KEYS = {"v", "group", "device", "sent_at", "readings"}


@dataclass(frozen=True, slots=True)
class LiveSession:
    """An active telemetry session, held in memory for the hot path."""

    session_id: bytes
    device: str
    group_id: int
    patient: str
    public_key: PublicKey
    aead: Aead
    expires_at: int  # seconds


@dataclass(frozen=True, slots=True)
class Ack:
    accepted: int
    last_seq: int
    message_id: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "accepted": self.accepted,
            "last_seq": self.last_seq,
            "message_id": self.message_id.hex(),
        }


def _refuse(status: int, code: str, message: str) -> GatewayError:
    return GatewayError(status, code, message)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_payload(
    payload: bytes, max_readings: int
) -> tuple[dict[str, Any], list[Reading], list[str]]:
    """Strict shape check of the signed JSON; returns the dict, readings and their units."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _refuse(422, "invalid_payload", "payload is not JSON") from None
    if not isinstance(body, dict) or set(body) != _PAYLOAD_KEYS or body["v"] != 1:
        raise _refuse(
            422,
            "invalid_payload",
            "payload must have exactly v=1, group, device, sent_at, readings",
        )
    items = body["readings"]
    if (
        not _is_int(body["group"])
        or not isinstance(body["device"], str)
        or not _is_int(body["sent_at"])
    ):
        raise _refuse(422, "invalid_payload", "group and sent_at are integers, device a string")
    if not isinstance(items, list) or not 1 <= len(items) <= max_readings:
        raise _refuse(422, "invalid_payload", f"a message carries 1..{max_readings} readings")
    readings: list[Reading] = []
    units: list[str] = []
    for item in items:
        if not isinstance(item, dict) or set(item) != _READING_KEYS:
            raise _refuse(
                422, "invalid_payload", "a reading has exactly seq, vital, value, unit, t"
            )
        seq, vital, value, t = item["seq"], item["vital"], item["value"], item["t"]
        if not _is_int(seq) or not 0 <= seq <= MAX_SEQ or not _is_int(t):
            raise _refuse(422, "invalid_payload", "seq and t are integers, seq below 2**63")
        if vital not in _SHORT:
            raise _refuse(422, "invalid_payload", f"unknown vital {str(vital)[:32]!r}")
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise _refuse(422, "invalid_payload", "value is a number")
        if not isinstance(item["unit"], str):
            raise _refuse(422, "invalid_payload", "unit is a string")
        readings.append(Reading(seq, _SHORT[vital], float(value), t))
        units.append(item["unit"])
    return body, readings, units


class IngestCore:
    def __init__(
        self,
        store: Store,
        registry: DeviceRegistry,
        rate: RateLimiter,
        now_ms: Callable[[], int],
        *,
        clock_skew_s: int = 300,
        max_message_bytes: int = 64 * 1024,
        max_readings: int = 100,
    ) -> None:
        self._store = store
        self._registry = registry
        self._rate = rate
        self._now_ms = now_ms
        self._skew_ms = clock_skew_s * 1000
        self._max_bytes = max_message_bytes
        self._max_readings = max_readings
        self._sessions: dict[bytes, LiveSession] = {}
        self._last_seq: dict[str, int] = store.last_seqs()
        self._device_locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._listeners: list[Callable[[Message], None]] = []
        self._stored: queue.SimpleQueue[Message | None] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None

    def on_stored(self, listener: Callable[[Message], None]) -> None:
        """Call ``listener`` with each message after it is stored, off the ingest path.

        Listeners (the threshold check, later the alert engine) run on one dispatcher thread,
        so a slow one delays its successors but never an acknowledgement.
        """
        self._listeners.append(listener)
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="stored-dispatch", daemon=True
            )
            self._dispatcher.start()

    def _dispatch(self) -> None:
        while (message := self._stored.get()) is not None:
            for listener in self._listeners:
                try:
                    listener(message)
                except Exception:
                    logging.getLogger(__name__).exception("a stored-message listener failed")

    def close(self) -> None:
        if self._dispatcher is not None:
            self._stored.put(None)
            self._dispatcher.join(timeout=10)

    def add_session(self, session: LiveSession) -> None:
        self._sessions = {
            sid: s for sid, s in self._sessions.items() if s.device != session.device
        } | {session.session_id: session}

    def _lock_for(self, device: str) -> threading.Lock:
        lock = self._device_locks.get(device)
        if lock is None:
            with self._locks_lock:
                lock = self._device_locks.setdefault(device, threading.Lock())
        return lock

    def ingest(self, data: bytes, *, topic_device: str | None = None) -> Ack:
        """Check, store durably, acknowledge: the blocking form of :meth:`submit`."""
        return self.submit(data, topic_device=topic_device).result()

    def submit(self, data: bytes, *, topic_device: str | None = None) -> Future[Ack]:
        """Run every check now (a refusal raises here); the future resolves once stored.

        The device's replay window moves on at submission, so its next message can be checked
        while this one is still being committed: that is what lets MQTT pipeline.
        """
        message = self._check(data, topic_device)
        device, first, last = message.device, message.readings[0].seq, message.readings[-1].seq
        with self._lock_for(device):
            previous = self._last_seq.get(device, -1)
            if first <= previous:
                raise _refuse(409, "replayed", "sequence number already seen")
            self._last_seq[device] = last
            stored = self._store.submit(message)
        acked: Future[Ack] = Future()

        def settle(done: Future[int]) -> None:
            error = done.exception()
            if error is None:
                acked.set_result(Ack(len(message.readings), last, message.message_id))
                if self._listeners:
                    self._stored.put(message)
                return
            with self._lock_for(device):
                if self._last_seq.get(device) == last:
                    self._last_seq[device] = previous  # not stored: the device may send it again
            if isinstance(error, DuplicateReading):
                acked.set_exception(_refuse(409, "replayed", "reading already stored"))
            else:
                acked.set_exception(_refuse(503, "store_unavailable", "the store could not write"))

        stored.add_done_callback(settle)
        return acked

    def _check(self, data: bytes, topic_device: str | None) -> Message:
        if len(data) > self._max_bytes:
            raise _refuse(
                413, "message_too_large", f"data messages are at most {self._max_bytes} bytes"
            )
        if len(data) < 20 + 4 or data[:4] not in (MESSAGE_HEADER, RING_HEADER):
            raise _refuse(400, "malformed_message", "not a data message (VCm 0x01 or 0x02)")
        now = self._now_ms()
        # 1. the session is known and active
        session = self._sessions.get(data[4:20])
        if session is None or session.expires_at * 1000 <= now:
            raise _refuse(401, "unknown_session", "unknown or expired session")
        if topic_device is not None and topic_device != session.device:
            raise _refuse(403, "wrong_device", "the topic names another device")
        if not self._rate.allow(session.device):
            raise _refuse(429, "rate_limited", "too many messages from this device")
        # 2. it decrypts under the session's key and suite
        try:
            plaintext = session.aead.open(data[20:], data[:20])
        except DecryptionError:
            raise _refuse(400, "decryption_failed", "decryption failed") from None
        # 3. the chain says the device is active
        status = self._registry.status(session.device)
        if status is DeviceStatus.REVOKED:
            raise _refuse(403, "device_revoked", "the device's association was revoked on chain")
        if status is not DeviceStatus.ACTIVE:
            raise _refuse(403, "device_not_active", "the device is not associated on chain")
        proof = None
        if data[:4] == RING_HEADER:
            try:
                proof, used = RingProof.read(plaintext)
            except DecodeError:
                raise _refuse(400, "malformed_message", "the ring proof does not decode") from None
            if session.public_key not in proof.members:
                raise _refuse(400, "invalid_ring", "the ring does not include the device")
            plaintext = plaintext[used:]
        # 4. the device signed exactly this payload, for this group
        if len(plaintext) <= 65:
            raise _refuse(400, "malformed_message", "no payload before the signature")
        payload, raw_sig = plaintext[:-65], plaintext[-65:]
        try:
            session.public_key.verify(Signature.from_rsv(raw_sig), payload, READING_CONTEXT)
        except (InvalidSignature, DecodeError):
            raise _refuse(
                401, "invalid_signature", "the device signature does not verify"
            ) from None
        body, readings, units = _parse_payload(payload, self._max_readings)
        if body["group"] != session.group_id:
            raise _refuse(401, "wrong_group", "the payload is addressed to another group")
        if body["device"] != session.device:
            raise _refuse(401, "wrong_device", "the payload names another device")
        # 5. sequence numbers only increase (checked again, authoritatively, under the lock)
        seqs = [r.seq for r in readings]
        if any(b <= a for a, b in pairwise(seqs)) or seqs[0] <= self._last_seq.get(
            session.device, -1
        ):
            raise _refuse(
                409, "replayed", "sequence numbers must increase past the last stored one"
            )
        # 6. device clocks within the window
        for stamp in (body["sent_at"], *(r.t_ms for r in readings)):
            if abs(stamp - now) > self._skew_ms:
                raise _refuse(422, "clock_skew", "a timestamp is outside the clock-skew window")
        # 7. plausible values, in the vital's unit
        for reading, unit in zip(readings, units, strict=True):
            info = reading.vital.info
            if unit != info.unit:
                raise _refuse(422, "wrong_unit", f"{info.short} is measured in {info.unit}")
            low, high = info.plausible
            if not low <= reading.value <= high:
                raise _refuse(
                    422, "implausible_value", f"{info.short} {reading.value} is not plausible"
                )
        return Message(
            hashlib.sha256(data).digest(),
            session.device,
            session.group_id,
            session.patient,
            now,
            payload,
            raw_sig,
            tuple(readings),
            proof,
        )
