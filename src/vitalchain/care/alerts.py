"""Anonymous, encrypted alerts (docs/spec/alert.md): raising, recording, verifying, opening.

Who signs, and when: a device with anonymity on ring-signs every data message at send time
(telemetry v2), among members the chain lists for its group, with the key image scoped to that
payload.  When a rule raises an alert on a message, the gateway reuses that ring proof: no
round trip to the device delays the alert.  The gateway checks the proof, encrypts the alert
body for the patient and the consented providers, delivers it, and records
``(key image, ciphertext hash, locator)`` in the chain's alert log.  Anyone can check the ring
signature against the chain's device list; only recipients learn which device, patient and
reading raised it.  A stale-data alarm has no device message to sign, so the gateway raises
it under its own signature and does not write it to the chain's alert log.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vitalchain.care.escalation import Delivery, Escalator
from vitalchain.care.rules import Raised, RuleBook, RuleEngine, Stale
from vitalchain.care.verify import READING_CONTEXT
from vitalchain.crypto import ring as blsag
from vitalchain.crypto.envelope import Envelope, seal_for
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, keccak256, message_digest
from vitalchain.crypto.ring import RingProof, alert_context
from vitalchain.errors import DecodeError, InvalidProof, InvalidSignature, VitalchainError
from vitalchain.ledger import ConsentStatus, Ledger
from vitalchain.ledger.ledger import DeviceStatus
from vitalchain.logs import Transitions, pseudonym, safe_error
from vitalchain.store.files import private_database
from vitalchain.store.model import Message
from vitalchain.vitals import Vital

__all__ = [
    "Alert",
    "AlertError",
    "AlertService",
    "Notifier",
    "open_alert",
    "verify_alert",
]

log = logging.getLogger(__name__)

RELAY_CONTEXT = b"vitalchain/v1/alert-relay"
KINDS = ("threshold", "stale")


class AlertError(VitalchainError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


@dataclass(frozen=True, slots=True)
class Alert:
    """The public alert object: what the store keeps, recipients receive and anyone verifies."""

    alert_id: bytes  # 16 random bytes; the on-chain locator is it, zero-padded to 32
    group_id: int
    kind: str
    raised_at_ms: int
    received_at_ms: int  # arrival of the reading that raised it (raised_at for stale alarms)
    envelope: bytes  # VCe: the alert body, encrypted for the patient and the providers
    digest: bytes  # SHA-256 of the device payload (threshold); 32 zero bytes for stale
    ring: RingProof | None
    gateway: str
    signature: bytes  # the gateway's, over everything above (context alert-relay)

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
        return b"".join(
            [
                b"VCA\x01",
                self.alert_id,
                self.group_id.to_bytes(8, "big"),
                KINDS.index(self.kind).to_bytes(1, "big"),
                self.raised_at_ms.to_bytes(8, "big"),
                self.received_at_ms.to_bytes(8, "big"),
                self.digest,
                hashlib.sha256(self.envelope).digest(),
                hashlib.sha256(self.ring.to_bytes() if self.ring else b"").digest(),
            ]
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "alert_id": self.alert_id.hex(),
            "group_id": self.group_id,
            "kind": self.kind,
            "raised_at": self.raised_at_ms,
            "received_at": self.received_at_ms,
            "envelope": self.envelope.hex(),
            "digest": self.digest.hex(),
            "ring": self.ring.to_bytes().hex() if self.ring else None,
            "gateway": self.gateway,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Alert:
        try:
            if data["v"] != 1 or data["kind"] not in KINDS:
                raise DecodeError("alert: unknown version or kind")
            ring = None
            if data["ring"] is not None:
                raw = bytes.fromhex(data["ring"])
                ring, used = RingProof.read(raw)
                if used != len(raw):
                    raise DecodeError("alert: trailing bytes after the ring proof")
            alert = cls(
                bytes.fromhex(data["alert_id"]),
                int(data["group_id"]),
                data["kind"],
                int(data["raised_at"]),
                int(data["received_at"]),
                bytes.fromhex(data["envelope"]),
                bytes.fromhex(data["digest"]),
                ring,
                str(data["gateway"]),
                bytes.fromhex(data["signature"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"alert: malformed ({type(exc).__name__})") from None
        if len(alert.alert_id) != 16 or len(alert.digest) != 32 or len(alert.signature) != 65:
            raise DecodeError("alert: a field has the wrong size")
        return alert


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
    if alert.kind == "stale":
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
    """Decrypt as a recipient, and check that the device payload inside is the signed one."""
    body: dict[str, Any] = json.loads(Envelope.from_bytes(alert.envelope).open(key, alert.alert_id))
    if alert.kind == "threshold":
        payload = base64.b64decode(body["payload"])
        if hashlib.sha256(payload).digest() != alert.digest:
            raise InvalidProof("alert: the payload inside is not the one ring-signed")
        device = PublicKey.recover(
            Signature.from_rsv(bytes.fromhex(body["signature"])),
            message_digest(payload, READING_CONTEXT),
        )
        if device.address != body["device"]:
            raise InvalidSignature("alert: the device signature does not verify")
        if alert.ring is not None and device not in alert.ring.members:
            raise InvalidProof("alert: the device is not in the ring")
    return body


# -- the gateway side ------------------------------------------------------------------------


class Notifier(Protocol):
    """Where deliveries go (WebSocket and MQTT, care/delivery.py)."""

    def deliver(self, alert: Alert, delivery: Delivery) -> None: ...


class _AlertLog:
    """Alerts this gateway raised, durably; a key image can be used once (replays refused)."""

    def __init__(self, path: Path) -> None:
        private_database(path)  # 0600, its -wal and -shm too: it names patients
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS alerts (alert_id BLOB PRIMARY KEY, key_image BLOB UNIQUE,"
            " patient TEXT NOT NULL, body TEXT NOT NULL, recorded_tx BLOB)"
        )
        self._lock = threading.Lock()

    def add(self, alert: Alert, patient: str) -> bool:
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO alerts (alert_id, key_image, patient, body) VALUES (?, ?, ?, ?)",
                    (alert.alert_id, alert.key_image, patient, json.dumps(alert.to_json())),
                )
            except sqlite3.IntegrityError:
                return False
            return True

    def recorded(self, alert_id: bytes, tx: bytes) -> None:
        with self._lock:
            self._db.execute("UPDATE alerts SET recorded_tx = ? WHERE alert_id = ?", (tx, alert_id))

    def get(self, alert_id: bytes) -> tuple[Alert, str, bytes | None] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body, patient, recorded_tx FROM alerts WHERE alert_id = ?", (alert_id,)
            ).fetchone()
        if row is None:
            return None
        return Alert.from_json(json.loads(row[0])), row[1], row[2]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class AlertService:
    """Rules → alerts → recipients, for one gateway's group.

    ``on_message`` runs for every stored message (the ingest core's listener thread); chain
    writes happen on a recorder thread, so delivery never waits for a block.  Recipients
    (consents, keys) are read from the chain on a warm-up thread when a patient is first seen
    and again when a consent or key event changes them, so raising an alert makes no chain
    call in the common case.
    """

    def __init__(
        self,
        ledger: Ledger,
        master: PrivateKey,
        group_id: int,
        thresholds: Callable[[str, Vital], tuple[float, float]],
        notifier: Notifier,
        data_dir: Path,
        *,
        rules: RuleBook | None = None,
        ring_k: int = 8,
        ack_timeout_s: float = 120.0,
        member_status: Callable[[str], DeviceStatus] | None = None,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.ledger = ledger
        self.master = master
        self.group_id = group_id
        self.thresholds = thresholds
        self.notifier = notifier
        self.rules = rules or RuleBook()
        self.engine = RuleEngine(self.rules)
        self.escalator = Escalator(clock, ack_timeout_s)
        self.ring_k = ring_k
        # The gateway's device registry follows the chain's events; asking the chain for every
        # ring member of every alert would cost nine contract calls per alert.
        self.member_status = member_status or self._member_status
        self.clock = clock
        self.random = random
        self.log = _AlertLog(data_dir / "alerts.db")
        self.raised: list[Alert] = []
        self.refused: list[tuple[str, str]] = []  # (code, why) of alerts not recorded on chain
        self._providers: dict[str, list[str]] = {}
        self._consents: dict[tuple[str, str], tuple[int, int] | None] = {}
        self._keys: dict[str, PublicKey] = {}
        self._cursor = 0
        self._generation = 0  # bumped when events invalidate the caches (see _cache_put)
        self._seen: set[str] = set()
        self._failing = Transitions()  # patient pseudonym → why its alerts fail
        self._warm_failing = Transitions()  # patient pseudonym → why its warm-up failed
        self._lock = threading.Lock()
        self._warm: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._warmer = threading.Thread(target=self._warm_up, name="alert-warm", daemon=True)
        self._warmer.start()
        self._chain: queue.Queue[Alert | None] = queue.Queue()
        self._recorder = threading.Thread(target=self._record, name="alert-recorder", daemon=True)
        self._recorder.start()

    # -- recipients (cached; a consent or key event drops the patient's entry) -----------------

    def providers(self, patient: str, vital: Vital | None) -> list[str]:
        """Providers whose consent is granted, unexpired and covers ``vital``, in grant order."""
        with self._lock:
            cached = self._providers.get(patient)
            generation = self._generation
        if cached is None:
            cached = self.ledger.providers_of(patient)
            self._cache_put(self._providers, patient, cached, generation)
        now = self.clock()
        chosen = []
        for provider in cached:
            consent = self._consent(patient, provider)
            if consent is None:
                continue
            scope, expires_at = consent
            if expires_at > now and (vital is None or scope & vital.bit):
                chosen.append(provider)
        return chosen

    def _consent(self, patient: str, provider: str) -> tuple[int, int] | None:
        """(scope, expires_at) of a granted consent, else None."""
        key = (patient, provider)
        with self._lock:
            if key in self._consents:
                return self._consents[key]
            generation = self._generation
        consent = self.ledger.consent_of(patient, provider)
        found = None
        if consent.status is ConsentStatus.GRANTED:
            found = (consent.scope, consent.expires_at)
        self._cache_put(self._consents, key, found, generation)
        return found

    def _key(self, address: str) -> PublicKey:
        with self._lock:
            key = self._keys.get(address)
            generation = self._generation
        if key is None:
            key = self.ledger.public_key_of(address)
            self._cache_put(self._keys, address, key, generation)
        return key

    def _cache_put(self, cache: dict[Any, Any], key: Any, value: Any, generation: int) -> None:
        """Keep a chain read unless a refresh ran meanwhile (the value may predate its event)."""
        with self._lock:
            if generation == self._generation:
                cache[key] = value

    def _warm_up(self) -> None:
        while (patient := self._warm.get()) is not None:
            try:
                self._key(patient)
                for provider in self.providers(patient, None):
                    self._key(provider)
            except Exception as exc:  # a cold cache only costs the next alert a chain read
                if self._warm_failing.change(pseudonym(patient), safe_error(exc)) is not None:
                    log.warning(
                        "could not read the recipients of %s ahead of time: %s",
                        pseudonym(patient),
                        safe_error(exc),
                    )
            else:
                self._warm_failing.change(pseudonym(patient), None)

    def refresh(self) -> None:
        """Forget consent and keys the chain changed since the last refresh (within a block),
        and read them again ahead of the next alert."""
        events, self._cursor = self.ledger.events.since(self._cursor)
        changed: set[str] = set()
        with self._lock:
            for event in events:
                if event.contract == "ConsentRegistry" and "patient" in event.args:
                    patient = event.args["patient"]
                    self._providers.pop(patient, None)
                    for key in [k for k in self._consents if k[0] == patient]:
                        del self._consents[key]
                    changed.add(patient)
                elif event.contract == "KeyDirectory" and "account" in event.args:
                    account = event.args["account"]
                    self._keys.pop(account, None)  # read again when next needed
                    changed.add(account)
                else:
                    continue
                self._generation += 1
        for patient in changed & self._seen:
            self._warm.put(patient)

    # -- raising ---------------------------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        """Run the rules on a stored message; raise what they raise.

        A patient whose messages cannot be handled (an address the chain refuses, a key that
        cannot be read) is that patient's problem only: it is logged by pseudonym once when it
        starts and once when it ends, and this listener does not raise, so neither the other
        patients nor the next listener are held up.
        """
        try:
            self._on_message(message)
        except Exception as exc:
            self._failed(message.patient, exc)

    def _failed(self, patient: str, exc: BaseException) -> None:
        tag = pseudonym(patient)
        if self._failing.change(tag, safe_error(exc)) is not None:
            log.error("alerts for %s fail: %s", tag, safe_error(exc))

    def failing(self) -> dict[str, str]:
        """Patient pseudonyms whose last alert could not be raised, with a code (cleared by
        the next alert raised for that patient)."""
        return self._failing.current()

    def _on_message(self, message: Message) -> None:
        if message.patient not in self._seen:
            self._seen.add(message.patient)
            self._warm.put(message.patient)
        for reading in message.readings:
            low, high = self.thresholds(message.patient, reading.vital)
            event = self.engine.observe(
                message.patient,
                message.device,
                reading.vital,
                reading.value,
                low,
                high,
                reading.t_ms / 1000,
            )
            if isinstance(event, Raised):
                try:
                    self.raise_threshold(message, event)
                except AlertError as exc:
                    log.warning("alert not raised: %s", exc.code)

    def raise_threshold(self, message: Message, raised: Raised) -> Alert:
        patient = message.patient
        body = {
            "v": 1,
            "kind": "threshold",
            "patient": patient,
            "device": message.device,
            "vital": raised.vital.info.short,
            "unit": raised.vital.info.unit,
            "direction": raised.direction,
            "value": raised.value,
            "low": raised.low,
            "high": raised.high,
            "first_out_at": raised.first_out_at,
            "at": raised.at,
            "readings_out": raised.readings_out,
            "payload": base64.b64encode(message.payload).decode(),
            "signature": message.signature.hex(),
        }
        digest = hashlib.sha256(message.payload).digest()
        return self._build(
            "threshold", patient, raised.vital, body, message.received_at_ms, digest, message.ring
        )

    def raise_stale(self, stale: Stale) -> Alert:
        body = {
            "v": 1,
            "kind": "stale",
            "patient": stale.patient,
            "device": stale.device,
            "last_seen": stale.last_seen,
            "at": stale.at,
        }
        now_ms = int(self.clock() * 1000)
        return self._build("stale", stale.patient, None, body, now_ms, bytes(32), None)

    def _build(
        self,
        kind: str,
        patient: str,
        vital: Vital | None,
        body: dict[str, Any],
        received_at_ms: int,
        digest: bytes,
        ring: RingProof | None,
    ) -> Alert:
        providers = self.providers(patient, vital)
        recipients = [self._key(patient), *(self._key(p) for p in providers)]
        alert_id = self.random(16)
        envelope = seal_for(
            recipients, json.dumps(body).encode(), alert_id, random=self.random
        ).to_bytes()
        unsigned = Alert(
            alert_id,
            self.group_id,
            kind,
            int(self.clock() * 1000),
            received_at_ms,
            envelope,
            digest,
            ring,
            self.master.address,
            bytes(65),
        )
        signature = self.master.sign(unsigned.signed_bytes(), RELAY_CONTEXT).to_rsv()
        alert = dataclasses.replace(unsigned, signature=signature)
        if not self.log.add(alert, patient):
            raise AlertError(409, "alert_replayed", "this alert's key image was already used")
        if self._failing.change(pseudonym(patient), None) is not None:
            log.info("alerts for %s work again", pseudonym(patient))
        with self._lock:
            self.raised.append(alert)
        for delivery in self.escalator.open(alert.alert_id.hex(), patient, vital, providers):
            self.notifier.deliver(alert, delivery)
        if kind == "threshold":
            self._chain.put(alert)
        return alert

    def _ring_problem(self, alert: Alert) -> str | None:
        """Why the ring cannot go on chain, or None: size, membership, signature."""
        proof = alert.ring
        if proof is None:
            return "no_ring"
        if len(proof.members) < self.ring_k + 1:
            return "ring_too_small"
        for member in proof.members:
            if self.member_status(member.address) is not DeviceStatus.ACTIVE:
                return "ring_member_not_active"
        try:
            blsag.verify(
                alert.digest,
                proof.members,
                proof.signature,
                alert_context(self.group_id, alert.digest),
            )
        except InvalidSignature:
            return "invalid_ring_signature"
        return None

    def _member_status(self, address: str) -> DeviceStatus:
        record = self.ledger.device(address)
        return record.status if record.group_id == self.group_id else DeviceStatus.NONE

    def _record(self) -> None:
        while (alert := self._chain.get()) is not None:
            try:
                self.record(alert)
            except Exception as exc:  # the recorder must outlive one bad write
                log.error("alert %s: recording failed: %s", alert.alert_id.hex(), safe_error(exc))
            finally:
                self._chain.task_done()

    def record(self, alert: Alert) -> bool:
        """Put a threshold alert in the chain's alert log, if its ring proof holds."""
        problem = self._ring_problem(alert)
        if problem is None:
            key_image = alert.key_image
            assert key_image is not None
            try:
                result = self.ledger.record_alert(
                    self.master, self.group_id, key_image, alert.ciphertext_hash, alert.locator
                )
            except VitalchainError as exc:
                problem = exc.code
            else:
                self.log.recorded(alert.alert_id, result.tx_hash)
                return True
        # Safety first: the care team has the alert already; only the public record is skipped.
        log.warning("alert %s not recorded on chain: %s", alert.alert_id.hex(), problem)
        with self._lock:
            self.refused.append((problem, alert.alert_id.hex()))
        return False

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued chain record is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._chain.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    # -- time-driven -----------------------------------------------------------------------------

    def tick(self) -> None:
        """Stale-data alarms and escalations; the node calls this about once a second."""
        self.refresh()
        for stale in self.engine.check_stale(self.clock()):
            try:
                self.raise_stale(stale)
            except VitalchainError as exc:
                log.warning("stale alarm not raised: %s", exc.code)
            except Exception as exc:  # one patient's problem: the other alarms still go out
                self._failed(stale.patient, exc)
        for delivery in self.escalator.due():
            found = self.log.get(bytes.fromhex(delivery.alert_id))
            if found is not None:
                self.notifier.deliver(found[0], delivery)

    def public(self, alert_id: bytes) -> Alert:
        found = self.log.get(alert_id)
        if found is None:
            raise AlertError(404, "unknown_alert", "no such alert")
        return found[0]

    def close(self) -> None:
        self._chain.put(None)
        self._warm.put(None)
        self._recorder.join(timeout=10)
        self._warmer.join(timeout=10)
        self.log.close()


def recipients_of(alert: Alert) -> list[bytes]:
    """The recipients' addresses (20 bytes each), as the envelope's key ring names them."""
    return Envelope.from_bytes(alert.envelope).recipients
