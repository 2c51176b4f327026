"""Who hears about an alert, in which order, and when it stops: receipt, acknowledge, snooze.

An alert nobody acknowledges must reach someone else; an alert somebody handled must stop
paging people; an alert nobody's device even received is itself an alarm.  This module decides
deliveries only (sending them is the caller's job) and reads time from an injected clock, so it
is pure logic.

- Every alert has a :class:`~vitalchain.alerts.rules.Priority`; ``policies[priority]`` (a
  :class:`~vitalchain.alerts.rules.PriorityPolicy`) says how long a tier waits for an
  acknowledgement, which snooze durations are allowed and whether it repeats.
- ``providers`` is the escalation order, already filtered by the caller to those whose consent
  is valid.  ``open()`` delivers at tier 0 to the patient and to the first provider who has not
  snoozed this (patient, vital).  Snoozed recipients are skipped, the patient included, so if
  the first provider snoozed, the next one is tier 0.  Repeated addresses (and the patient in
  ``providers``) are delivered once.
- ``due()``: each unacknowledged alert whose last tier went out ``escalate_after_s`` or more
  ago goes to the next provider in order who has not snoozed it, one tier per call; the next
  timeout runs from that delivery.  While no recipient has sent a *receipt* (the SDK's "I have
  it", distinct from the clinician's acknowledgement) the tier waits only
  ``min(escalate_after_s, receipt_timeout_s)``: a notice nobody received is escalated at once.
  A provider skipped because of a snooze has had their turn and is not revisited for that
  alert.  When the list is exhausted nothing more is escalated.
- Repeats: a priority with ``repeat_every_s > 0`` (HIGH, Dexcom's urgent low) re-notifies,
  every ``repeat_every_s`` until acknowledged, everyone who has had their turn (the patient and
  the providers up to the current tier) and is not snoozed now, with ``repeat`` = 1, 2, ...
  A recipient skipped while snoozed gets the alert at the first repeat after the snooze ends:
  a HIGH alarm cannot be snoozed away for longer than its longest snooze choice.  Outside
  repeats no (alert, recipient) pair is delivered twice.
- Alarms latch (IEC 60601-1-8): escalation and repeats go on until acknowledged, even after the
  condition resolved; ``resolve()`` only records that the episode is over.
- ``undeliverable()`` returns, once each, the alerts that went out ``receipt_timeout_s`` ago or
  more with no receipt from any recipient and no acknowledgement (the caller raises a technical
  alarm).  ``receipt(alert_id, recipient)``: the recipient must have been delivered the alert;
  ``True`` the first time.
- ``acknowledge(alert_id, by)``: ``by`` must be the patient or a provider already notified of
  that alert.  The first acknowledgement wins (``True``); later ones return ``False``.  An
  acknowledged alert never escalates or repeats again.
- ``snooze(by, patient, vital, duration_s, priority)`` suppresses deliveries to ``by`` of that
  patient's alerts of ``priority`` or lower for that vital until ``clock() + duration_s``;
  ``duration_s`` must be one of ``policies[priority].snooze_choices_s`` (Nightscout's fixed
  lists), so a HIGH alert is never silenced longer than the longest HIGH choice.
  ``vital=None`` covers every vital of the patient and alerts that have no vital.  A
  vital-specific snooze does not cover an alert without a vital.  Snoozing again at the same
  priority replaces the earlier end time (so it can also shorten it).  A snooze acknowledges
  nothing.  Expired snoozes are forgotten.
- ``open()`` with an id already known is idempotent when the arguments match (a replayed event)
  and refused with ``alert_conflict`` when they do not.
- Memory is bounded: an alert is retired (forgotten, ``sink.alert_retired``) once it is both
  acknowledged and resolved.  Alerts without an episode (stale data, technical alarms) are
  opened with ``resolved=True`` (or resolved at once by the caller).
- Durable state: everything is an :class:`AlertRecord` per alert, a :class:`DeliveryRecord`
  per (alert, recipient) and a :class:`SnoozeRecord` per snooze.  Each change is reported to
  the :class:`EscalationSink` under the lock, before the method returns and before memory
  changes (a sink that raises leaves the escalator as it was).  ``Escalator(clock, policies,
  alerts=, deliveries=, snoozes=)`` continues exactly where those records left off: timers run
  from the persisted ``last_tier_at`` / ``last_repeat_at``, so a timer that was running when
  the process died fires on time after the restart.
- Addresses are compared exactly: callers pass EIP-55 checksummed strings.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from vitalchain.alerts.rules import DEFAULT_POLICIES, Priority, PriorityPolicy
from vitalchain.edge.codes import status_for
from vitalchain.errors import VitalchainError
from vitalchain.vitals import Vital

__all__ = [
    "AlertRecord",
    "AlertState",
    "Delivery",
    "DeliveryRecord",
    "EscalationError",
    "EscalationSink",
    "Escalator",
    "SnoozeRecord",
]

MAX_HIGH_SNOOZE_S = 3600.0  # no configuration may let a HIGH alarm be snoozed longer


class EscalationError(VitalchainError):
    """A refused escalation request; ``status`` is the edge's table's for ``code``, so the two
    never disagree.

    Codes: ``unknown_alert`` (404), ``not_a_recipient`` (403), ``alert_conflict`` (409),
    ``invalid_snooze`` (422, the message lists the allowed choices), ``invalid_priority``
    (422), ``invalid_config`` (500), ``invalid_state`` (500).
    """

    code = "escalation_error"

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code)

    @property
    def status(self) -> int:
        return status_for(self.code) or 500


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notice to send now."""

    alert_id: str
    recipient: str
    tier: int  # 0: the patient and the first provider; n: the n-th escalation
    at: float
    priority: Priority = Priority.MEDIUM
    repeat: int = 0  # n >= 1: the n-th re-notification of an unacknowledged (HIGH) alert


@dataclass(frozen=True, slots=True)
class AlertState:
    patient: str
    vital: Vital | None
    providers: tuple[str, ...]
    acknowledged_by: str | None
    acknowledged_at: float | None
    deliveries: tuple[Delivery, ...]  # the first delivery to each recipient, in order
    priority: Priority = Priority.MEDIUM
    receipts: tuple[str, ...] = ()  # recipients whose SDK confirmed receipt, delivery order
    resolved: bool = False


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """All the escalator knows of one alert but its deliveries; plain fields, for a store."""

    alert_id: str
    patient: str
    vital: Vital | None  # an IntEnum: stored as its int
    priority: Priority  # a StrEnum: stored as its name
    providers: tuple[str, ...]  # escalation order, de-duplicated, without the patient
    opened_at: float
    last_tier_at: float  # the escalation timer runs from here
    next_index: int = 0  # providers[next_index:] have not had their turn yet
    tier: int = 0
    first_sent_at: float | None = None  # the first delivery; the receipt timer runs from here
    last_repeat_at: float = 0.0  # the repeat timer runs from here (opened_at at first)
    repeats: int = 0  # repeat rounds so far
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    resolved_at: float | None = None
    undeliverable_at: float | None = None  # when undeliverable() reported it; None: not


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One (alert, recipient): when it first went out, its latest repeat, its receipt."""

    alert_id: str
    recipient: str
    tier: int
    at: float  # first delivery
    last_at: float  # latest delivery (a repeat); == at without repeats
    repeat: int = 0  # latest repeat number delivered; 0: none
    receipted_at: float | None = None


@dataclass(frozen=True, slots=True)
class SnoozeRecord:
    by: str
    patient: str
    vital: Vital | None  # None: every vital, and alerts without one
    priority: Priority  # covers alerts of this priority and lower
    at: float
    until: float


class EscalationSink(Protocol):
    """Where the escalator reports each changed record (the alarm store implements it)."""

    def alert_changed(self, record: AlertRecord) -> None: ...

    def alert_retired(self, alert_id: str) -> None: ...

    def delivery_changed(self, record: DeliveryRecord) -> None: ...

    def snooze_changed(self, record: SnoozeRecord) -> None: ...


def _positive_finite(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _priority(value: object) -> Priority:
    try:
        return Priority.parse(value)
    except ValueError as exc:
        raise EscalationError(str(exc), code="invalid_priority") from None


def _checked_policies(
    policies: Mapping[Priority, PriorityPolicy],
) -> dict[Priority, PriorityPolicy]:
    if not isinstance(policies, Mapping):
        raise EscalationError(
            f"policies must map each priority to a PriorityPolicy, not {policies!r}",
            code="invalid_config",
        )
    missing = [p.value for p in Priority if p not in policies]
    if missing:
        raise EscalationError(f"no policy for {', '.join(missing)}", code="invalid_config")
    checked = {p: policies[p] for p in Priority}
    for priority, policy in checked.items():
        if not isinstance(policy, PriorityPolicy):
            raise EscalationError(
                f"the {priority.value} policy is not a PriorityPolicy", code="invalid_config"
            )
    high = checked[Priority.HIGH]
    if high.repeat_every_s <= 0:
        raise EscalationError(
            "a high alarm must repeat until acknowledged (repeat_every_s > 0)",
            code="invalid_config",
        )
    if high.max_snooze_s > MAX_HIGH_SNOOZE_S:
        raise EscalationError(
            f"a high alarm may be snoozed {MAX_HIGH_SNOOZE_S:g} s at most,"
            f" not {high.max_snooze_s:g}",
            code="invalid_config",
        )
    return checked


def _opened_at(record: object) -> float:
    opened = getattr(record, "opened_at", 0.0)
    return float(opened) if isinstance(opened, int | float) else 0.0


class _Changes:
    """Records one call changes; the sink hears them before memory does."""

    __slots__ = ("alerts", "deliveries", "retired", "snoozes")

    def __init__(self) -> None:
        self.alerts: dict[str, AlertRecord] = {}
        self.deliveries: dict[tuple[str, str], DeliveryRecord] = {}
        self.retired: list[str] = []
        self.snoozes: list[SnoozeRecord] = []


def _vital_and_priority(
    vital: object, priority: object, what: str
) -> tuple[Vital | None, Priority]:
    """A record's vital and priority as restored from plain values (a store keeps ints and
    strings); anything else is a corrupt record, ``invalid_state``."""
    try:
        return (None if vital is None else Vital(vital)), Priority.parse(priority)  # type: ignore[arg-type]
    except ValueError as exc:
        raise EscalationError(f"{what}: {exc}", code="invalid_state") from None


def _snooze_order(record: SnoozeRecord) -> tuple[str, str, int, int]:
    vital = -1 if record.vital is None else int(record.vital)
    return (record.by, record.patient, vital, record.priority.rank)


class Escalator:
    """Alert deliveries with receipts, acknowledgement, snooze, repeats and timed escalation.

    Thread-safe; see the module docstring.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        policies: Mapping[Priority, PriorityPolicy] = DEFAULT_POLICIES,
        *,
        receipt_timeout_s: float = 30.0,
        sink: EscalationSink | None = None,
        alerts: Iterable[AlertRecord] = (),
        deliveries: Iterable[DeliveryRecord] = (),
        snoozes: Iterable[SnoozeRecord] = (),
    ) -> None:
        if not _positive_finite(receipt_timeout_s):
            raise EscalationError(
                f"receipt_timeout_s must be finite and > 0, not {receipt_timeout_s!r}",
                code="invalid_config",
            )
        self._clock = clock
        self._policies = _checked_policies(policies)
        self._receipt_timeout_s = float(receipt_timeout_s)
        self._sink = sink
        self._alerts: dict[str, AlertRecord] = {}
        self._deliveries: dict[str, dict[str, DeliveryRecord]] = {}  # alert -> recipient -> record
        self._active: dict[str, None] = {}  # alerts with time-driven work left; ordered set
        self._snoozes: dict[tuple[str, str, Vital | None, Priority], SnoozeRecord] = {}
        self._lock = threading.Lock()
        # Sorted by opening, stable for equal times: due() then serves alerts in the same order
        # as the process that wrote the records (pass them in the order they were opened).
        for record in sorted(alerts, key=_opened_at):
            self._restore_alert(record)
        for delivery in deliveries:
            self._restore_delivery(delivery)
        for snooze in snoozes:
            self._restore_snooze(snooze)
        for alert_id, record in self._alerts.items():
            if self._has_work(record, self._deliveries[alert_id]):
                self._active[alert_id] = None

    # --- public -----------------------------------------------------------------------------

    @property
    def policies(self) -> Mapping[Priority, PriorityPolicy]:
        return dict(self._policies)

    def snooze_choices(self, priority: Priority | str = Priority.MEDIUM) -> tuple[float, ...]:
        """The only durations ``snooze`` accepts for alerts of ``priority``."""
        return self._policies[_priority(priority)].snooze_choices_s

    def open(
        self,
        alert_id: str,
        patient: str,
        vital: Vital | None,
        providers: Sequence[str],
        priority: Priority | str = Priority.MEDIUM,
        *,
        resolved: bool = False,
    ) -> list[Delivery]:
        """Deliver tier 0; ``resolved=True`` for an alert with no episode to wait for."""
        if isinstance(providers, str):  # a str is a Sequence[str]; one address would split
            raise TypeError("providers must be a sequence of addresses, not one string")
        level = _priority(priority)
        order = tuple(dict.fromkeys(p for p in providers if p != patient))
        with self._lock:
            existing = self._alerts.get(alert_id)
            if existing is not None:
                if (existing.patient, existing.vital, existing.providers, existing.priority) == (
                    patient,
                    vital,
                    order,
                    level,
                ):
                    return []
                raise EscalationError(
                    f"alert {alert_id!r} is already open with other arguments",
                    code="alert_conflict",
                )
            now = self._clock()
            record = AlertRecord(
                alert_id=alert_id,
                patient=patient,
                vital=vital,
                priority=level,
                providers=order,
                opened_at=now,
                last_tier_at=now,
                last_repeat_at=now,
                resolved_at=now if resolved else None,
            )
            dels: dict[str, DeliveryRecord] = {}
            changes = _Changes()
            sent: list[Delivery] = []
            if not self._snoozed(patient, patient, vital, level, now):
                sent.append(self._deliver(record, dels, patient, 0, now, changes))
            provider, index = self._next_provider(record, now)
            record = replace(record, next_index=index)
            if provider is not None:
                sent.append(self._deliver(record, dels, provider, 0, now, changes))
            if sent:
                record = replace(record, first_sent_at=now)
            changes.alerts[alert_id] = record
            self._commit(changes)
            return sent

    def due(self) -> list[Delivery]:
        """Repeats and escalations that are due now; new deliveries only, one tier per call."""
        with self._lock:
            now = self._clock()
            changes = _Changes()
            sent: list[Delivery] = []
            for alert_id in self._active:
                before = self._alerts[alert_id]
                dels = dict(self._deliveries[alert_id])
                record = self._repeat(before, dels, now, changes, sent)
                record = self._escalate(record, dels, now, changes, sent)
                if record != before:
                    changes.alerts[alert_id] = record
            self._commit(changes)
            self._forget_expired_snoozes(now)
            return sent

    def undeliverable(self) -> list[str]:
        """Alerts newly ``receipt_timeout_s`` past their first delivery, unreceipted; once each."""
        with self._lock:
            now = self._clock()
            changes = _Changes()
            for alert_id in self._active:
                record = self._alerts[alert_id]
                if (
                    record.undeliverable_at is None
                    and record.acknowledged_by is None
                    and record.first_sent_at is not None
                    and now - record.first_sent_at >= self._receipt_timeout_s
                    and not self._receipted(self._deliveries[alert_id])
                ):
                    changes.alerts[alert_id] = replace(record, undeliverable_at=now)
            self._commit(changes)
            return list(changes.alerts)

    def receipt(self, alert_id: str, recipient: str) -> bool:
        """The recipient's SDK has the notice: ``True`` the first time, ``False`` after."""
        with self._lock:
            self._get(alert_id)
            delivery = self._deliveries[alert_id].get(recipient)
            if delivery is None:
                raise EscalationError(
                    f"{recipient} was not delivered alert {alert_id!r}", code="not_a_recipient"
                )
            if delivery.receipted_at is not None:
                return False
            changes = _Changes()
            changes.deliveries[(alert_id, recipient)] = replace(
                delivery, receipted_at=self._clock()
            )
            self._commit(changes)
            return True

    def acknowledge(self, alert_id: str, by: str) -> bool:
        """``True`` for the acknowledgement that stops escalation, ``False`` for any later one."""
        with self._lock:
            record = self._get(alert_id)
            if by != record.patient and by not in self._deliveries[alert_id]:
                raise EscalationError(
                    f"{by} was not notified of alert {alert_id!r}", code="not_a_recipient"
                )
            if record.acknowledged_by is not None:
                return False
            changes = _Changes()
            changes.alerts[alert_id] = replace(
                record, acknowledged_by=by, acknowledged_at=self._clock()
            )
            self._commit(changes)
            return True

    def resolve(self, alert_id: str) -> None:
        """The episode behind the alert is over (cleared, or superseded); idempotent."""
        with self._lock:
            record = self._get(alert_id)
            if record.resolved_at is not None:
                return
            changes = _Changes()
            changes.alerts[alert_id] = replace(record, resolved_at=self._clock())
            self._commit(changes)

    def snooze(
        self,
        by: str,
        patient: str,
        vital: Vital | None,
        duration_s: float,
        priority: Priority | str = Priority.MEDIUM,
    ) -> float:
        """Silence ``by`` for (patient, vital) at ``priority`` and below; returns the end time."""
        level = _priority(priority)
        choices = self._policies[level].snooze_choices_s
        if isinstance(duration_s, bool) or duration_s not in choices:
            allowed = ", ".join(f"{c:g}" for c in choices)
            raise EscalationError(
                f"a snooze of a {level.value} alarm lasts one of {allowed} s, not {duration_s!r}",
                code="invalid_snooze",
            )
        with self._lock:
            now = self._clock()
            self._forget_expired_snoozes(now)
            record = SnoozeRecord(by, patient, vital, level, now, now + float(duration_s))
            changes = _Changes()
            changes.snoozes.append(record)
            self._commit(changes)
            return record.until

    def is_snoozed(
        self,
        recipient: str,
        patient: str,
        vital: Vital | None,
        priority: Priority | str = Priority.MEDIUM,
    ) -> bool:
        level = _priority(priority)
        with self._lock:
            return self._snoozed(recipient, patient, vital, level, self._clock())

    def state(self, alert_id: str) -> AlertState:
        with self._lock:
            record = self._get(alert_id)
            dels = self._deliveries[alert_id].values()
            return AlertState(
                patient=record.patient,
                vital=record.vital,
                providers=record.providers,
                acknowledged_by=record.acknowledged_by,
                acknowledged_at=record.acknowledged_at,
                deliveries=tuple(
                    Delivery(alert_id, d.recipient, d.tier, d.at, record.priority) for d in dels
                ),
                priority=record.priority,
                receipts=tuple(d.recipient for d in dels if d.receipted_at is not None),
                resolved=record.resolved_at is not None,
            )

    def snapshot(
        self,
    ) -> tuple[tuple[AlertRecord, ...], tuple[DeliveryRecord, ...], tuple[SnoozeRecord, ...]]:
        """Every record held; ``Escalator(clock, policies, alerts=, deliveries=, snoozes=)``.

        Alerts in the order they were opened (due() serves them so); snoozes, whose order
        means nothing, sorted, so that two escalators in the same state give equal snapshots
        however their snoozes were made or restored.
        """
        with self._lock:
            return (
                tuple(self._alerts.values()),
                tuple(d for dels in self._deliveries.values() for d in dels.values()),
                tuple(sorted(self._snoozes.values(), key=_snooze_order)),
            )

    def sizes(self) -> dict[str, int]:
        """How many entries each internal table holds (memory is bounded: tests, metrics)."""
        with self._lock:
            return {
                "alerts": len(self._alerts),
                "deliveries": sum(len(d) for d in self._deliveries.values()),
                "active": len(self._active),
                "snoozes": len(self._snoozes),
            }

    # --- under the lock ---------------------------------------------------------------------

    def _get(self, alert_id: str) -> AlertRecord:
        record = self._alerts.get(alert_id)
        if record is None:
            raise EscalationError(f"no alert {alert_id!r}", code="unknown_alert")
        return record

    def _snoozed(
        self, recipient: str, patient: str, vital: Vital | None, priority: Priority, now: float
    ) -> bool:
        for level in Priority:
            if level.rank < priority.rank:
                continue
            for key in ((recipient, patient, vital, level), (recipient, patient, None, level)):
                snooze = self._snoozes.get(key)
                if snooze is not None and now < snooze.until:
                    return True
        return False

    def _next_provider(self, record: AlertRecord, now: float) -> tuple[str | None, int]:
        index = record.next_index
        while index < len(record.providers):
            provider = record.providers[index]
            index += 1
            if not self._snoozed(provider, record.patient, record.vital, record.priority, now):
                return provider, index
        return None, index

    @staticmethod
    def _receipted(dels: Mapping[str, DeliveryRecord]) -> bool:
        return any(d.receipted_at is not None for d in dels.values())

    def _deliver(
        self,
        record: AlertRecord,
        dels: dict[str, DeliveryRecord],
        recipient: str,
        repeat: int,
        now: float,
        changes: _Changes,
    ) -> Delivery:
        known = dels.get(recipient)
        if known is None:
            delivery = DeliveryRecord(record.alert_id, recipient, record.tier, now, now, repeat)
        else:
            delivery = replace(known, last_at=now, repeat=repeat)
        dels[recipient] = delivery
        changes.deliveries[(record.alert_id, recipient)] = delivery
        return Delivery(record.alert_id, recipient, delivery.tier, now, record.priority, repeat)

    def _repeat(
        self,
        record: AlertRecord,
        dels: dict[str, DeliveryRecord],
        now: float,
        changes: _Changes,
        sent: list[Delivery],
    ) -> AlertRecord:
        every = self._policies[record.priority].repeat_every_s
        if every <= 0 or record.acknowledged_by is not None or now - record.last_repeat_at < every:
            return record
        rounds = record.repeats + 1
        delivered = False
        for recipient in (record.patient, *record.providers[: record.next_index]):
            if not self._snoozed(recipient, record.patient, record.vital, record.priority, now):
                sent.append(self._deliver(record, dels, recipient, rounds, now, changes))
                delivered = True
        record = replace(record, repeats=rounds, last_repeat_at=now)
        if delivered and record.first_sent_at is None:
            record = replace(record, first_sent_at=now)
        return record

    def _escalate(
        self,
        record: AlertRecord,
        dels: dict[str, DeliveryRecord],
        now: float,
        changes: _Changes,
        sent: list[Delivery],
    ) -> AlertRecord:
        if record.acknowledged_by is not None or record.next_index >= len(record.providers):
            return record
        timeout = self._policies[record.priority].escalate_after_s
        if record.first_sent_at is not None and not self._receipted(dels):
            timeout = min(timeout, self._receipt_timeout_s)
        if now - record.last_tier_at < timeout:
            return record
        provider, index = self._next_provider(record, now)
        record = replace(record, next_index=index)
        if provider is not None:
            record = replace(record, tier=record.tier + 1, last_tier_at=now)
            sent.append(self._deliver(record, dels, provider, 0, now, changes))
            if record.first_sent_at is None:
                record = replace(record, first_sent_at=now)
        return record

    def _has_work(self, record: AlertRecord, dels: Mapping[str, DeliveryRecord]) -> bool:
        """Whether time alone can still change this alert (due() or undeliverable())."""
        if record.acknowledged_by is not None:
            return False
        if record.next_index < len(record.providers):
            return True
        if self._policies[record.priority].repeat_every_s > 0:
            return True
        return (
            record.undeliverable_at is None
            and record.first_sent_at is not None
            and not self._receipted(dels)
        )

    def _commit(self, changes: _Changes) -> None:
        """Tell the sink first (if it raises, nothing changes here), then apply."""
        retired = [
            alert_id
            for alert_id, record in changes.alerts.items()
            if record.acknowledged_by is not None and record.resolved_at is not None
        ]
        if self._sink is not None:
            for alert_id, record in changes.alerts.items():
                if alert_id not in retired:
                    self._sink.alert_changed(record)
            for (alert_id, _), delivery in changes.deliveries.items():
                if alert_id not in retired:
                    self._sink.delivery_changed(delivery)
            for snooze in changes.snoozes:
                self._sink.snooze_changed(snooze)
            for alert_id in retired:
                self._sink.alert_retired(alert_id)
        for (alert_id, recipient), delivery in changes.deliveries.items():
            self._deliveries.setdefault(alert_id, {})[recipient] = delivery
        for alert_id, record in changes.alerts.items():
            self._alerts[alert_id] = record
            self._deliveries.setdefault(alert_id, {})
        for alert_id in dict.fromkeys([*changes.alerts, *(key[0] for key in changes.deliveries)]):
            if self._has_work(self._alerts[alert_id], self._deliveries[alert_id]):
                self._active[alert_id] = None
            else:
                self._active.pop(alert_id, None)
        for snooze in changes.snoozes:
            self._snoozes[(snooze.by, snooze.patient, snooze.vital, snooze.priority)] = snooze
        for alert_id in retired:
            del self._alerts[alert_id]
            del self._deliveries[alert_id]
            self._active.pop(alert_id, None)

    def _forget_expired_snoozes(self, now: float) -> None:
        expired = [key for key, snooze in self._snoozes.items() if snooze.until <= now]
        for key in expired:
            del self._snoozes[key]

    # --- restoring --------------------------------------------------------------------------

    def _restore_alert(self, record: object) -> None:
        if not isinstance(record, AlertRecord):
            raise EscalationError(f"not an AlertRecord: {record!r}", code="invalid_state")
        vital, priority = _vital_and_priority(record.vital, record.priority, "alert record")
        times = (record.opened_at, record.last_tier_at, record.last_repeat_at)
        if not (
            all(isinstance(t, int | float) and math.isfinite(t) for t in times)
            and isinstance(record.next_index, int)
            and isinstance(record.tier, int)
            and 0 <= record.next_index <= len(record.providers)
            and record.tier >= 0
        ):
            raise EscalationError(f"inconsistent alert record {record!r}", code="invalid_state")
        if record.acknowledged_by is not None and record.resolved_at is not None:
            return  # retired: the store may not have deleted it yet
        restored = replace(
            record, vital=vital, priority=priority, providers=tuple(record.providers)
        )
        self._alerts[record.alert_id] = restored
        self._deliveries[record.alert_id] = {}

    def _restore_delivery(self, delivery: object) -> None:
        if not isinstance(delivery, DeliveryRecord):
            raise EscalationError(f"not a DeliveryRecord: {delivery!r}", code="invalid_state")
        dels = self._deliveries.get(delivery.alert_id)
        if dels is not None:  # a retired alert's leftover rows are ignored
            dels[delivery.recipient] = delivery

    def _restore_snooze(self, snooze: object) -> None:
        if not isinstance(snooze, SnoozeRecord):
            raise EscalationError(f"not a SnoozeRecord: {snooze!r}", code="invalid_state")
        vital, priority = _vital_and_priority(snooze.vital, snooze.priority, "snooze record")
        restored = replace(snooze, vital=vital, priority=priority)
        self._snoozes[(restored.by, restored.patient, restored.vital, restored.priority)] = restored
