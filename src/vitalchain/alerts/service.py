"""Anonymous, encrypted alerts (docs/spec/alert.md): raising, recording, verifying, opening.

Who signs, and when: a device with anonymity on ring-signs every data message at send time
(telemetry v2), among members the chain lists for its group, with the key image scoped to that
payload.  When a rule raises an alert on a message, the gateway reuses that ring proof: no
round trip to the device delays the alert.  The gateway checks the proof, encrypts the alert
body for the patient and the consented providers, delivers it, and records
``(key image, ciphertext hash, locator)`` in the chain's alert log.  Anyone can check the ring
signature against the chain's device list; only recipients learn which device, patient and
reading raised it.  A technical alarm (a stale device, an undeliverable alert, the chain or
the store out of reach) has no device message to sign, so the gateway raises it under its own
signature and does not write it to the chain's alert log.

Durability (issue 13): the rule engine's and the escalator's state, every delivery and the
journal cursor live in ``alarms.db`` (alerts/alarmdb.py).  The effects of one stored message are
committed in one transaction before any notification goes out, and at start the service
rebuilds the engine and the escalator from that file and replays the journal's messages after
the cursor, so a kill -9 at any point loses no alarm and raises none twice.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram

from vitalchain.alerts import alarmdb
from vitalchain.alerts.alarmdb import AlarmDb, NoticeRow
from vitalchain.alerts.escalation import (
    AlertRecord,
    Delivery,
    DeliveryRecord,
    EscalationError,
    Escalator,
    SnoozeRecord,
)
from vitalchain.alerts.rules import (
    DEFAULT_POLICIES,
    Cleared,
    DeviceSeen,
    EpisodeState,
    Priority,
    PriorityPolicy,
    Raised,
    RuleBook,
    RuleEngine,
    Stale,
)
from vitalchain.crypto import ring as blsag
from vitalchain.crypto.envelope import seal_for
from vitalchain.crypto.keys import PrivateKey, PublicKey
from vitalchain.crypto.ring import RingProof
from vitalchain.errors import InvalidSignature, VitalchainError
from vitalchain.ledger import ChainWriter, ConsentStatus, Outcome
from vitalchain.ledger.consent import ConsentView
from vitalchain.ledger.errors import KeyDirectoryError
from vitalchain.ledger.ledger import DeviceStatus
from vitalchain.ledger.ports import TrustGroupsView
from vitalchain.logs import Transitions, pseudonym, safe_error
from vitalchain.sdk.alert import Alert, AlertError
from vitalchain.store.model import Message, StoredMessage
from vitalchain.vitals import Vital
from vitalchain.wire.alert import (
    RELAY_CONTEXT,
    alert_context,
)

__all__ = ["AlertService", "Notice", "Notifier"]

log = logging.getLogger(__name__)

# Technical alarm conditions (body field "condition").
DEVICE_STALE = "device_stale"
UNDELIVERABLE = "undeliverable"
CHAIN_UNREACHABLE = "chain_unreachable"
STORE_UNREACHABLE = "store_unreachable"
OUTAGE_CONDITIONS: Mapping[str, tuple[str, Priority]] = {
    # component of the health monitor -> condition, priority.  The chain down delays only the
    # public record (notifications go on): LOW.  The store down stops what providers read
    # (and, for the journal, new readings): MEDIUM.
    "chain": (CHAIN_UNREACHABLE, Priority.LOW),
    "store": (STORE_UNREACHABLE, Priority.MEDIUM),
}
RECENT = 256  # alerts and refusals kept in memory for inspection (bounded; counters count all)


class Notifier(Protocol):
    """Where deliveries go (WebSocket and MQTT, alerts/delivery.py)."""

    def deliver(self, alert: Alert, delivery: Delivery) -> None: ...


@dataclass(frozen=True, slots=True)
class Notice:
    """One delivery of one alert, as a recipient gets it (live, on reconnect, or listed)."""

    alert: Alert
    delivery: Delivery


class AlertService:
    """Rules → alerts → recipients, for one gateway's group.

    ``on_stored`` runs for every stored message (the ingest core's listener thread); chain
    writes go through the chain outbox from a recorder thread (the ring check too), so
    delivery never waits for a block.  Recipients (consents, keys) are read from the chain on
    a warm-up thread when a patient is first seen and again when a consent or key event
    changes them, so raising an alert makes no chain call in the common case.  Time-driven
    work (stale devices, escalation, HIGH repeats, receipt timeouts, outages) runs on the
    "alarm-clock" thread (:meth:`start`), or by calling :meth:`tick`.

    ``journal(after_id, limit)``: the journal's stored messages after a row id, for the
    replay at :meth:`start`.  ``outages()``: per health component ("chain", "store"), since
    when it is down (None: up).  ``outbox``: the master's chain outbox, the one way an alert
    record reaches the chain.  ``consent``: who may read now, and the keys (the node's one
    :class:`~vitalchain.ledger.consent.ConsentView`, shared with the sealer).
    """

    def __init__(
        self,
        *,
        ledger: TrustGroupsView,
        master: PrivateKey,
        group_id: int,
        thresholds: Callable[[str, Vital], tuple[float, float]],
        notifier: Notifier,
        data_dir: Path,
        outbox: ChainWriter,
        consent: ConsentView,
        rules: RuleBook | None = None,
        ring_k: int = 8,
        policies: Mapping[Priority, PriorityPolicy] = DEFAULT_POLICIES,
        receipt_timeout_s: float = 30.0,
        outage_after_s: float = 60.0,
        journal: Callable[[int, int], list[StoredMessage]] | None = None,
        outages: Callable[[], Mapping[str, float | None]] | None = None,
        member_status: Callable[[str], DeviceStatus] | None = None,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
        tick_s: float = 0.5,
        flush_every_s: float = 1.0,
        notice_retention_s: float = 7 * 86400.0,
    ) -> None:
        self.ledger = ledger
        self.consent = consent
        self.master = master
        self.group_id = group_id
        self.thresholds = thresholds
        self.notifier = notifier
        self.rules = rules or RuleBook()
        self.ring_k = ring_k
        self.outbox = outbox
        self.journal = journal
        self.outages = outages
        self.outage_after_s = outage_after_s
        # The gateway's device registry follows the chain's events; asking the chain for every
        # ring member of every alert would cost nine contract calls per alert.
        self.member_status = member_status or self._member_status
        self.clock = clock
        self.random = random
        self.tick_s = tick_s
        self.flush_every_s = flush_every_s
        self.notice_retention_s = notice_retention_s
        self.db = AlarmDb(data_dir / "alarms.db", legacy=data_dir / "alerts.db")
        self.engine = RuleEngine(
            self.rules,
            sink=self.db,
            episodes=self.db.load(alarmdb.EPISODE, EpisodeState),
            devices=self.db.load(alarmdb.DEVICE, DeviceSeen),
        )
        records = self._restorable_alerts()
        self.escalator = Escalator(
            clock,
            policies,
            receipt_timeout_s=receipt_timeout_s,
            sink=self.db,
            alerts=records,
            deliveries=self.db.load(alarmdb.DELIVERY, DeliveryRecord),
            snoozes=self.db.load(alarmdb.SNOOZE, SnoozeRecord),
        )
        # The open (unresolved) threshold alert of each episode, resolved when it clears.
        self._episode_alert: dict[tuple[str, Vital], str] = {}
        for record in records:
            if record.vital is not None and record.resolved_at is None:
                self._episode_alert[(record.patient, Vital(record.vital))] = record.alert_id
        # Bounded: the last few alerts and refusals for inspection, counters for the rest.
        self.raised: collections.deque[Alert] = collections.deque(maxlen=RECENT)
        self.refused: collections.deque[tuple[str, str]] = collections.deque(maxlen=RECENT)
        self.raised_total = 0
        self.refused_total = 0
        # /metrics (the node adds this registry to the gateway's): from a reading's arrival to
        # its threshold alert committed and handed to the care team's connections.
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "vitalchain_alert_latency_seconds",
            "From the confirming reading's arrival to its threshold alert notified.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self._recent: collections.OrderedDict[bytes, tuple[Alert, str]] = collections.OrderedDict()
        # The care team as last read, kept through cache refreshes: a gateway-wide alarm is
        # raised when the chain may be what is down.  (patient, provider) -> consent expiry.
        self._team: dict[tuple[str, str], int] = {}
        self._known_keys: dict[str, PublicKey] = {}
        self._seen: set[str] = set()
        self._outage_raised: dict[str, float] = {}  # component -> down_since already alarmed
        self._failing = Transitions()  # patient pseudonym → why its alerts fail
        self._warm_failing = Transitions()  # patient pseudonym → why its warm-up failed
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()
        self._last_flush = self._last_purge = clock()
        self._warm: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._warmer = threading.Thread(target=self._warm_up, name="alert-warm", daemon=True)
        self._warmer.start()
        consent.on_change(self._changed)
        self._chain: queue.Queue[Alert | None] = queue.Queue()
        self._in_flight = 0  # submitted to the outbox, outcome not yet known
        self._recorder = threading.Thread(target=self._record, name="alert-recorder", daemon=True)
        self._recorder.start()
        self._stop = threading.Event()
        self._clock_thread: threading.Thread | None = None
        self._started = False

    def _restorable_alerts(self) -> list[AlertRecord]:
        """The escalator's records, less any whose public alert never reached the disk (the
        kill came between a timer's write and the alert's own commit: replay raises it anew)."""
        records = self.db.load(alarmdb.ALERT, AlertRecord)
        orphans = [r for r in records if not self.db.has_alert(bytes.fromhex(r.alert_id))]
        if orphans:
            self.db.drop(alarmdb.ALERT, [(r.alert_id,) for r in orphans])
        return [r for r in records if r not in orphans]

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, *, clock: bool = True) -> None:
        """Replay the journal after the cursor, queue unrecorded alerts for the chain, and (if
        ``clock``) start the "alarm-clock" thread.  Call before messages flow."""
        if self._started:
            return
        self._started = True
        self.replay()
        self._escalate()  # timers that ran out while the gateway was down: before serving
        for body in self.db.unrecorded():
            self._chain.put(Alert.from_json(json.loads(body)))
        if clock:
            self._clock_thread = threading.Thread(
                target=self._run_clock, name="alarm-clock", daemon=True
            )
            self._clock_thread.start()

    def replay(self) -> int:
        """Run the journal's messages the cursor says are not processed; returns how many.

        The fast path: the journal still holds the cursor's own message, so everything after
        it (less the few processed out of order) is new.  Otherwise the cursor's row was
        pruned, or its id was given to a newer message: the journal is read whole and a
        message is new if its id is above the cursor or it arrived after the newest processed.
        """
        if self.journal is None:
            return 0
        cursor = self.db.cursor()
        ahead = dict(cursor.ahead)
        at_cursor = self.journal(cursor.row_id - 1, 1) if cursor.row_id else []
        fast = cursor.row_id == 0 or (
            bool(at_cursor)
            and at_cursor[0].id == cursor.row_id
            and at_cursor[0].message.message_id == cursor.message_id
        )
        after = cursor.row_id if fast else 0
        count = 0
        while batch := self.journal(after, 500):
            for entry in batch:
                after = entry.id
                if ahead.get(entry.id) == entry.message.message_id:
                    continue
                newer = entry.message.received_at_ms > cursor.max_received_ms
                if fast or entry.id > cursor.row_id or newer:
                    self.on_stored(entry)
                    count += 1
        if count:
            log.info("replayed %d stored message(s) through the alarm rules", count)
        return count

    def _run_clock(self) -> None:
        while True:
            try:
                self.tick()
            except Exception as exc:  # the clock must outlive one bad tick
                log.error("alarm clock tick failed: %s", safe_error(exc))
            if self._stop.wait(self.tick_s):
                return

    def close(self) -> None:
        self._stop.set()
        if self._clock_thread is not None:
            self._clock_thread.join(timeout=10)
        self._chain.put(None)
        self._warm.put(None)
        self._recorder.join(timeout=10)
        self._warmer.join(timeout=10)
        self.db.close()

    # -- recipients (the shared ConsentView; a consent or key event drops its entries) --------

    def providers(self, patient: str, vital: Vital | None) -> list[str]:
        """Providers who may read ``vital`` (None: any) now, in grant order: the one rule of
        ledger/consent.py, by this service's clock; where the contract would decide but
        cannot be asked, a covering unexpired consent still gets the alarm."""
        consents = self.consent.consents(patient)
        with self._lock:
            for provider, consent in consents.items():
                if consent.status is ConsentStatus.GRANTED:
                    self._team[(patient, provider)] = consent.expires_at
                else:
                    self._team.pop((patient, provider), None)
        vitals = 0 if vital is None else vital.bit
        return self.consent.readers(patient, vitals, self.clock(), outage_fallback=True)

    def care_team(self) -> list[str]:
        """Providers with a valid consent of any patient this gateway has seen, from the
        caches only (it is asked when the chain may be the thing that is down)."""
        now = self.clock()
        with self._lock:
            team = {
                provider: None
                for (patient, provider), expires_at in sorted(self._team.items())
                if expires_at > now and patient in self._seen and provider in self._known_keys
            }
        return list(team)

    def _key(self, address: str) -> PublicKey:
        if address == self.master.address:
            return self.master.public_key
        key = self.consent.cached_key(address)
        if key is None and self._chain_down():
            with self._lock:
                key = self._known_keys.get(address)
        if key is None:
            key = self.consent.key_of(address)
        if key is None:
            raise KeyDirectoryError("KeyDirectory", "NoKey", {"account": address})
        with self._lock:
            self._known_keys[address] = key
        return key

    def _chain_down(self) -> bool:
        if self.outages is None:
            return False
        return self.outages().get("chain") is not None

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
        """Apply the chain's events up to now (within a block): the consent view forgets the
        consents and keys they change, and :meth:`_changed` reads them again ahead of the
        next alert."""
        self.consent.refresh()

    def _changed(self, address: str) -> None:
        if address in self._seen:
            self._warm.put(address)

    # -- raising ---------------------------------------------------------------------------------

    def on_stored(self, entry: StoredMessage) -> None:
        """Run the rules on a stored message (with its journal row id); raise what they raise.

        The message's effects and "row ``entry.id`` is processed" are committed together,
        before any notification.  A patient whose messages cannot be handled (an address the
        chain refuses, a key that cannot be read) is that patient's problem only: it is logged
        by pseudonym once when it starts and once when it ends, and this listener does not
        raise, so neither the other patients nor the next listener are held up.
        """
        if self._stop.is_set():
            return  # shutting down: the journal has it, the next start replays it
        message = entry.message
        sent: list[tuple[Alert, list[Delivery]]] = []
        with self.db.processing(entry.id, message.message_id, message.received_at_ms):
            try:
                self._on_message(message, sent)
            except Exception as exc:
                self._failed(message.patient, exc)
        if sent or self.db.urgent():
            self._flush_and_notify(sent)
        for _ in sent:
            self.latency.observe(max(0.0, self.clock() - message.received_at_ms / 1000))

    def on_message(self, message: Message) -> None:
        """:meth:`on_stored` without a journal id (no cursor: nothing to replay from)."""
        sent: list[tuple[Alert, list[Delivery]]] = []
        try:
            self._on_message(message, sent)
        except Exception as exc:
            self._failed(message.patient, exc)
        if sent:
            self._flush_and_notify(sent)

    def _failed(self, patient: str, exc: BaseException) -> None:
        tag = pseudonym(patient)
        if self._failing.change(tag, safe_error(exc)) is not None:
            log.error("alerts for %s fail: %s", tag, safe_error(exc))

    def failing(self) -> dict[str, str]:
        """Patient pseudonyms whose last alert could not be raised, with a code (cleared by
        the next alert raised for that patient)."""
        return self._failing.current()

    def _on_message(self, message: Message, sent: list[tuple[Alert, list[Delivery]]]) -> None:
        if message.patient not in self._seen:
            with self._lock:
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
                    sent.append(self._raise_threshold(message, event))
                except AlertError as exc:
                    log.warning("alert not raised: %s", exc.code)
            elif isinstance(event, Cleared):
                self._resolve_episode(event.patient, event.vital)

    def _resolve_episode(self, patient: str, vital: Vital) -> None:
        alert_id = self._episode_alert.pop((patient, vital), None)
        if alert_id is not None:
            with contextlib.suppress(EscalationError):  # retired meanwhile: nothing to do
                self.escalator.resolve(alert_id)

    def raise_threshold(self, message: Message, raised: Raised) -> Alert:
        """Raise, commit and notify one threshold alert (outside the ingest path: tests)."""
        alert, deliveries = self._raise_threshold(message, raised)
        self._flush_and_notify([(alert, deliveries)])
        return alert

    def _raise_threshold(self, message: Message, raised: Raised) -> tuple[Alert, list[Delivery]]:
        patient = message.patient
        body = {
            "v": 2,
            "kind": "threshold",
            "priority": Priority(raised.priority).value,
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
            "upgraded": raised.upgraded,
            "payload": base64.b64encode(message.payload).decode(),
            "signature": message.signature.hex(),
        }
        digest = hashlib.sha256(message.payload).digest()
        built = self._build(
            "threshold",
            patient,
            raised.vital,
            body,
            message.received_at_ms,
            digest,
            message.ring,
            priority=Priority(raised.priority),
        )
        # A new alert of the episode (upgraded, or the other direction) supersedes the open one.
        self._resolve_episode(patient, raised.vital)
        self._episode_alert[(patient, raised.vital)] = built[0].alert_id.hex()
        return built

    def raise_stale(self, stale: Stale) -> Alert:
        """A technical alarm: a device silent past a stale level (docs/alarms.md)."""
        body = {
            "v": 2,
            "kind": "technical",
            "condition": DEVICE_STALE,
            "priority": Priority(stale.priority).value,
            "level": stale.level,
            "patient": stale.patient,
            "device": stale.device,
            "last_seen": stale.last_seen,
            "at": stale.at,
        }
        return self._raise_technical(stale.patient, body, Priority(stale.priority))

    def raise_undeliverable(self, alert_id: str) -> Alert | None:
        """A technical alarm: nobody receipted ``alert_id`` in time (the escalator has sent it
        to the next tier already).  None for an alert that is itself gateway-wide or about
        delivery (an alarm about an alarm that cannot be delivered would only loop)."""
        found = self.db.alert(bytes.fromhex(alert_id))
        if found is None or found.condition not in (None, DEVICE_STALE):
            return None
        priority = Priority(found.priority)
        body = {
            "v": 2,
            "kind": "technical",
            "condition": UNDELIVERABLE,
            "priority": priority.value,
            "patient": found.patient,
            "alert_id": alert_id,
            "vital": found.vital,
            "at": self.clock(),
        }
        return self._raise_technical(found.patient, body, priority)

    def raise_outage(self, component: str, down_since: float) -> Alert:
        """A technical alarm: the chain or the store out of reach for longer than
        ``outage_after_s``, to the care team of every patient seen (:meth:`care_team`)."""
        condition, priority = OUTAGE_CONDITIONS[component]
        body = {
            "v": 2,
            "kind": "technical",
            "condition": condition,
            "priority": priority.value,
            "component": component,
            "down_since": down_since,
            "gateway": self.master.address,
            "at": self.clock(),
        }
        return self._raise_technical(
            self.master.address, body, priority, providers=self.care_team()
        )

    def _raise_technical(
        self,
        patient: str,
        body: dict[str, Any],
        priority: Priority,
        *,
        providers: list[str] | None = None,
    ) -> Alert:
        now_ms = int(self.clock() * 1000)
        alert, deliveries = self._build(
            "technical",
            patient,
            None,
            body,
            now_ms,
            bytes(32),
            None,
            priority=priority,
            providers=providers,
            technical=body["condition"],
        )
        self._flush_and_notify([(alert, deliveries)])
        return alert

    def _build(
        self,
        kind: str,
        patient: str,
        vital: Vital | None,
        body: dict[str, Any],
        received_at_ms: int,
        digest: bytes,
        ring: RingProof | None,
        *,
        priority: Priority,
        providers: list[str] | None = None,
        technical: str | None = None,
    ) -> tuple[Alert, list[Delivery]]:
        """Encrypt, sign, stage the alert and its first deliveries (committed by the caller's
        flush, before it notifies)."""
        if providers is None:
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
        added = self.db.add_alert(
            alert_id,
            alert.key_image,
            patient,
            json.dumps(alert.to_json()),
            kind=kind,
            priority=priority.value,
            vital=vital.info.short if vital is not None else None,
            chain=None if kind == "threshold" else "none",
            raised_at=alert.raised_at_ms / 1000,
            condition=body.get("condition"),
        )
        if not added:
            raise AlertError("alert_replayed", "this alert's key image was already used")
        if self._failing.change(pseudonym(patient), None) is not None:
            log.info("alerts for %s work again", pseudonym(patient))
        self._remember(alert, patient)
        with self._lock:
            self.raised.append(alert)
            self.raised_total += 1
        # A technical alarm has no episode to wait for: resolved at once, an ack retires it.
        deliveries = self.escalator.open(
            alert_id.hex(), patient, vital, providers, priority, resolved=technical is not None
        )
        deliveries = self._persist(deliveries)
        if kind == "threshold":
            self._chain.put(alert)
        return alert, deliveries

    def _persist(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        """Stage each delivery's row; the gateway's own address (the addressee of its
        gateway-wide alarms) is nobody to notify."""
        kept = []
        for d in deliveries:
            if d.recipient == self.master.address:
                continue
            priority = Priority(d.priority).value
            self.db.delivered(bytes.fromhex(d.alert_id), d.recipient, d.tier, d.repeat, priority,
                              d.at)  # fmt: skip
            kept.append(d)
        return kept

    def _flush_and_notify(self, sent: list[tuple[Alert, list[Delivery]]]) -> None:
        """Commit first: a notification the disk does not know of could be sent twice."""
        self.db.flush()
        self._last_flush = self.clock()
        for alert, deliveries in sent:
            for delivery in deliveries:
                self._notify(alert, delivery)

    def _notify(self, alert: Alert, delivery: Delivery) -> None:
        try:
            self.notifier.deliver(alert, delivery)
        except Exception as exc:  # persisted: the recipient gets it on reconnect (pending_for)
            log.warning("alert %s: notification failed: %s", alert.alert_id.hex(), safe_error(exc))

    def _remember(self, alert: Alert, patient: str) -> None:
        with self._lock:
            self._recent[alert.alert_id] = (alert, patient)
            self._recent.move_to_end(alert.alert_id)
            while len(self._recent) > 4 * RECENT:
                self._recent.popitem(last=False)

    def _alert(self, alert_id: bytes) -> Alert | None:
        with self._lock:
            found = self._recent.get(alert_id)
        if found is not None:
            return found[0]
        stored = self.db.alert(alert_id)
        if stored is None:
            return None
        alert = Alert.from_json(json.loads(stored.body))
        self._remember(alert, stored.patient)
        return alert

    # -- the chain record ----------------------------------------------------------------------

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
        """Queue a threshold alert for the chain's alert log in the outbox, if its ring proof
        holds (True: submitted; the outcome is noted when it is mined or refused)."""
        problem = self._ring_problem(alert)
        if problem is not None:
            self._not_recorded(alert, problem)
            return False
        key_image = alert.key_image
        assert key_image is not None
        with self._lock:
            self._in_flight += 1
        self.outbox.submit(
            f"alert:{alert.alert_id.hex()}",
            "AlertRegistry", "recordAlert",
            self.group_id, key_image, alert.ciphertext_hash, alert.locator,
            on_done=lambda outcome: self._recorded(alert, outcome),
        )  # fmt: skip
        return True

    def _recorded(self, alert: Alert, outcome: Outcome) -> None:
        try:
            if outcome.error is not None:
                self._not_recorded(alert, str(getattr(outcome.error, "code", "chain_error")))
            else:
                tx = outcome.tx
                self.db.recorded(alert.alert_id, tx.tx_hash if tx is not None else None)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _not_recorded(self, alert: Alert, problem: str) -> None:
        # Safety first: the care team has the alert already; only the public record is skipped.
        log.warning("alert %s not recorded on chain: %s", alert.alert_id.hex(), problem)
        self.db.not_recorded(alert.alert_id, problem)
        with self._lock:
            self.refused.append((problem, alert.alert_id.hex()))
            self.refused_total += 1

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued chain record is written or refused (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while (self._chain.unfinished_tasks or self._in_flight) and time.monotonic() < deadline:
            time.sleep(0.01)

    # -- time-driven -----------------------------------------------------------------------------

    def tick(self) -> None:
        """Stale devices, escalations and HIGH repeats, receipt timeouts, outages; lazy writes.

        The "alarm-clock" thread calls this every ``tick_s``; tests call it directly.
        """
        with self._tick_lock:
            try:
                self.refresh()
            except Exception as exc:  # the chain may be what is down: alarms go on regardless
                log.debug("consent refresh failed: %s", safe_error(exc))
            now = self.clock()
            for stale in self.engine.check_stale(now):
                try:
                    self.raise_stale(stale)
                except VitalchainError as exc:
                    log.warning("stale alarm not raised: %s", exc.code)
                except Exception as exc:  # one patient's problem: the other alarms still go out
                    self._failed(stale.patient, exc)
            self._escalate()
            for alert_id in self.escalator.undeliverable():
                try:
                    self.raise_undeliverable(alert_id)
                except Exception as exc:
                    log.warning("undeliverable alarm not raised: %s", safe_error(exc))
            self._check_outages(now)
            if now - self._last_flush >= self.flush_every_s:
                self.db.flush()
                self._last_flush = now
            if now - self._last_purge >= 3600:
                self.db.purge(notices_before=now - self.notice_retention_s)
                self._last_purge = now

    def _escalate(self) -> None:
        """Escalations and HIGH repeats that are due: committed, then notified."""
        due = self._persist(self.escalator.due())
        if due:
            sent = []
            for delivery in due:
                alert = self._alert(bytes.fromhex(delivery.alert_id))
                if alert is not None:
                    sent.append((alert, [delivery]))
            self._flush_and_notify(sent)

    def _check_outages(self, now: float) -> None:
        if self.outages is None:
            return
        for component, down_since in self.outages().items():
            if component not in OUTAGE_CONDITIONS:
                continue
            if down_since is None:
                self._outage_raised.pop(component, None)
                continue
            if now - down_since < self.outage_after_s:
                continue
            if self._outage_raised.get(component) == down_since:
                continue  # once per outage
            self._outage_raised[component] = down_since
            try:
                self.raise_outage(component, down_since)
            except Exception as exc:
                log.warning("%s outage alarm not raised: %s", component, safe_error(exc))

    # -- what recipients ask for (alerts/delivery.py) --------------------------------------------

    def _notice(self, row: NoticeRow) -> Notice | None:
        alert = self._alert(row.alert_id)
        if alert is None:
            return None
        delivery = Delivery(
            row.alert_id.hex(), row.recipient, row.tier, row.at, Priority(row.priority),
            row.repeat,
        )  # fmt: skip
        return Notice(alert, delivery)

    def pending_for(self, recipient: str) -> list[Notice]:
        """Deliveries to ``recipient`` its SDK has not receipted, oldest first."""
        self.db.flush()
        return [n for row in self.db.pending_for(recipient) if (n := self._notice(row))]

    def since(self, recipient: str, since_ms: int, limit: int = 500) -> list[Notice]:
        """Deliveries to ``recipient`` made at or after ``since_ms`` (Unix ms), oldest first."""
        self.db.flush()
        rows = self.db.since(recipient, since_ms / 1000, limit)
        return [n for row in rows if (n := self._notice(row))]

    def receipt(self, alert_id: str, recipient: str) -> bool:
        """The recipient's SDK has the notice: True the first time.  Not an acknowledgement."""
        raw = self._alert_id(alert_id)
        self.db.flush()
        row = self.db.notice(raw, recipient)
        if row is None:
            if not self.db.has_alert(raw):
                raise AlertError("unknown_alert", "no such alert")
            raise AlertError("not_a_recipient", f"{recipient} was not notified of it")
        try:
            self.escalator.receipt(alert_id, recipient)
        except EscalationError as exc:
            if exc.code != "unknown_alert":  # retired (acknowledged and resolved): fine
                raise
        if row.receipted_at is not None:
            return False
        self.db.receipted(raw, recipient, self.clock())
        self.db.flush()
        return True

    def acknowledge(self, alert_id: str, by: str) -> bool:
        """The clinician's acknowledgement: True for the one that stops escalation."""
        raw = self._alert_id(alert_id)
        try:
            first = self.escalator.acknowledge(alert_id, by)
        except EscalationError as exc:
            if exc.code != "unknown_alert" or not self.db.has_alert(raw):
                raise
            # Retired from memory: it was acknowledged and resolved; a recipient may say so.
            if self.db.notice(raw, by) is None:
                raise EscalationError(
                    f"{by} was not notified of alert {alert_id!r}", code="not_a_recipient"
                ) from None
            return False
        self.db.flush()
        return first

    def snooze(self, by: str, patient: str, vital: Vital | None, duration_s: float) -> float:
        """Silence ``by`` for (patient, vital); ``duration_s`` must be one of
        :meth:`snooze_choices` (else ``invalid_snooze``).  Durable before it returns."""
        until = self.escalator.snooze(
            by, patient, vital, duration_s, self.snooze_priority(patient, vital)
        )
        self.db.flush()
        return until

    def snooze_choices(self, patient: str, vital: Vital | None) -> tuple[float, ...]:
        return tuple(self.escalator.snooze_choices(self.snooze_priority(patient, vital)))

    def snooze_priority(self, patient: str, vital: Vital | None) -> Priority:
        """The highest priority a snooze of (patient, vital) can silence: its choices are that
        priority's (a HIGH alarm is never snoozed past HIGH's longest choice)."""
        vitals = list(Vital) if vital is None else [vital]
        best = Priority.LOW if vital is not None else Priority.MEDIUM  # technical alarms
        for v in vitals:
            rule = self.rules.rule(patient, v)
            found = Priority(rule.priority)
            if rule.urgent_low is not None or rule.urgent_high is not None:
                found = Priority.HIGH
            if found.rank > best.rank:
                best = found
        return best

    def public(self, alert_id: bytes) -> Alert:
        found = self._alert(alert_id)
        if found is None:
            raise AlertError("unknown_alert", "no such alert")
        return found

    @staticmethod
    def _alert_id(alert_id: str) -> bytes:
        try:
            raw = bytes.fromhex(alert_id)
        except ValueError:
            raw = b""
        if len(raw) != 16:
            raise AlertError("unknown_alert", "no such alert")
        return raw
