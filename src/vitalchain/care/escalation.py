"""Who hears about an alert, in which order, and when it stops: acknowledge, snooze, escalate.

An alert nobody acknowledges must reach someone else; an alert somebody handled must stop
paging people.  This module decides deliveries only (sending them is the caller's job) and
reads time from an injected clock, so it is pure logic.

- ``providers`` is the escalation order, already filtered by the caller to those whose consent
  is valid.  ``open()`` delivers at tier 0 to the patient and to the first provider who has not
  snoozed this (patient, vital).  Snoozed recipients are skipped, the patient included, so if
  the first provider snoozed, the next one is tier 0.  Repeated addresses (and the patient in
  ``providers``) are delivered once.
- ``due()``: each open, unacknowledged alert whose last tier went out ``ack_timeout_s`` or more
  ago goes to the next provider in order who has not snoozed it, one tier per call; the next
  timeout runs from that delivery.  A provider skipped because of a snooze has had their turn
  and is not revisited for that alert.  When the list is exhausted nothing more happens.  No
  (alert, recipient) pair is ever delivered twice.
- ``acknowledge(alert_id, by)``: ``by`` must be the patient or a provider already notified of
  that alert.  The first acknowledgement wins (``True``); later ones return ``False``.  An
  acknowledged alert never escalates again.
- ``snooze(by, patient, vital, duration_s)`` suppresses deliveries to ``by`` for that (patient,
  vital) until ``clock() + duration_s``; ``vital=None`` covers every vital of the patient and
  alerts that have no vital.  A vital-specific snooze does not cover an alert without a vital.
  Snoozing again replaces the earlier end time (so it can also shorten it).  A snooze
  acknowledges nothing.
- ``open()`` with an id already known is idempotent when the arguments match (a replayed event)
  and refused with ``alert_conflict`` when they do not.
- Addresses are compared exactly: callers pass EIP-55 checksummed strings.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from vitalchain.errors import VitalchainError
from vitalchain.vitals import Vital

__all__ = ["AlertState", "Delivery", "EscalationError", "Escalator"]

_STATUS = {
    "unknown_alert": 404,
    "not_a_recipient": 403,
    "alert_conflict": 409,
    "invalid_snooze": 422,
    "invalid_config": 500,  # a misconfigured server, never the client's fault
}


class EscalationError(VitalchainError):
    """A refused escalation request; ``status`` follows from ``code`` so the two never disagree.

    Codes: ``unknown_alert`` (404), ``not_a_recipient`` (403), ``alert_conflict`` (409),
    ``invalid_snooze`` (422), ``invalid_config`` (500).
    """

    code = "escalation_error"
    status: int

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code)
        self.status = _STATUS[code]


@dataclass(frozen=True, slots=True)
class Delivery:
    alert_id: str
    recipient: str
    tier: int  # 0: the patient and the first provider; n: the n-th escalation
    at: float


@dataclass(frozen=True, slots=True)
class AlertState:
    patient: str
    vital: Vital | None
    providers: tuple[str, ...]
    acknowledged_by: str | None
    acknowledged_at: float | None
    deliveries: tuple[Delivery, ...]


@dataclass(slots=True)
class _Alert:
    patient: str
    vital: Vital | None
    providers: tuple[str, ...]
    last_tier_at: float
    next_index: int = 0  # providers[next_index:] have not had their turn yet
    tier: int = 0
    acknowledged_by: str | None = None
    acknowledged_at: float | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    notified: set[str] = field(default_factory=set)


def _positive_finite(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


class Escalator:
    """Alert deliveries with acknowledgement, snooze and timed escalation; thread-safe."""

    def __init__(
        self,
        clock: Callable[[], float],
        ack_timeout_s: float = 120.0,
        max_snooze_s: float = 86400.0,
    ) -> None:
        if not _positive_finite(ack_timeout_s):
            raise EscalationError(
                f"ack_timeout_s must be finite and > 0, not {ack_timeout_s!r}",
                code="invalid_config",
            )
        if not _positive_finite(max_snooze_s):
            raise EscalationError(
                f"max_snooze_s must be finite and > 0, not {max_snooze_s!r}",
                code="invalid_config",
            )
        self._clock = clock
        self._ack_timeout_s = ack_timeout_s
        self._max_snooze_s = max_snooze_s
        self._alerts: dict[str, _Alert] = {}
        self._active: dict[str, None] = {}  # unacknowledged, providers left; ordered like a set
        self._snoozes: dict[tuple[str, str, Vital | None], float] = {}
        self._lock = threading.Lock()

    def open(
        self, alert_id: str, patient: str, vital: Vital | None, providers: Sequence[str]
    ) -> list[Delivery]:
        if isinstance(providers, str):  # a str is a Sequence[str]; one address would split
            raise TypeError("providers must be a sequence of addresses, not one string")
        order = tuple(dict.fromkeys(p for p in providers if p != patient))
        with self._lock:
            existing = self._alerts.get(alert_id)
            if existing is not None:
                if (existing.patient, existing.vital, existing.providers) == (
                    patient,
                    vital,
                    order,
                ):
                    return []
                raise EscalationError(
                    f"alert {alert_id!r} is already open with other arguments",
                    code="alert_conflict",
                )
            now = self._clock()
            alert = _Alert(patient, vital, order, last_tier_at=now)
            self._alerts[alert_id] = alert
            sent: list[Delivery] = []
            if not self._snoozed(patient, patient, vital, now):
                sent.append(self._deliver(alert_id, alert, patient, now))
            provider = self._next_provider(alert, now)
            if provider is not None:
                sent.append(self._deliver(alert_id, alert, provider, now))
            if alert.next_index < len(order):
                self._active[alert_id] = None
            return sent

    def due(self) -> list[Delivery]:
        """Escalate each alert whose last tier has waited ``ack_timeout_s``; new deliveries only."""
        with self._lock:
            now = self._clock()
            sent: list[Delivery] = []
            for alert_id in list(self._active):
                alert = self._alerts[alert_id]
                if now - alert.last_tier_at < self._ack_timeout_s:
                    continue
                provider = self._next_provider(alert, now)
                if provider is not None:
                    alert.tier += 1
                    alert.last_tier_at = now
                    sent.append(self._deliver(alert_id, alert, provider, now))
                if alert.next_index >= len(alert.providers):
                    del self._active[alert_id]
            self._forget_expired_snoozes(now)
            return sent

    def acknowledge(self, alert_id: str, by: str) -> bool:
        """``True`` for the acknowledgement that stops escalation, ``False`` for any later one."""
        with self._lock:
            alert = self._get(alert_id)
            if by != alert.patient and by not in alert.notified:
                raise EscalationError(
                    f"{by} was not notified of alert {alert_id!r}", code="not_a_recipient"
                )
            if alert.acknowledged_by is not None:
                return False
            alert.acknowledged_by = by
            alert.acknowledged_at = self._clock()
            self._active.pop(alert_id, None)
            return True

    def snooze(self, by: str, patient: str, vital: Vital | None, duration_s: float) -> float:
        """Silence ``by`` for (patient, vital) for ``duration_s``; returns the end time."""
        if not (_positive_finite(duration_s) and duration_s <= self._max_snooze_s):
            raise EscalationError(
                f"snooze must last more than 0 and at most {self._max_snooze_s:g} s,"
                f" not {duration_s!r}",
                code="invalid_snooze",
            )
        with self._lock:
            now = self._clock()
            self._forget_expired_snoozes(now)
            until = now + duration_s
            self._snoozes[(by, patient, vital)] = until
            return until

    def is_snoozed(self, recipient: str, patient: str, vital: Vital | None) -> bool:
        with self._lock:
            return self._snoozed(recipient, patient, vital, self._clock())

    def state(self, alert_id: str) -> AlertState:
        with self._lock:
            alert = self._get(alert_id)
            return AlertState(
                patient=alert.patient,
                vital=alert.vital,
                providers=alert.providers,
                acknowledged_by=alert.acknowledged_by,
                acknowledged_at=alert.acknowledged_at,
                deliveries=tuple(alert.deliveries),
            )

    # --- under the lock ---------------------------------------------------------------------

    def _get(self, alert_id: str) -> _Alert:
        alert = self._alerts.get(alert_id)
        if alert is None:
            raise EscalationError(f"no alert {alert_id!r}", code="unknown_alert")
        return alert

    def _snoozed(self, recipient: str, patient: str, vital: Vital | None, now: float) -> bool:
        for key in ((recipient, patient, vital), (recipient, patient, None)):
            until = self._snoozes.get(key)
            if until is not None and now < until:
                return True
        return False

    def _next_provider(self, alert: _Alert, now: float) -> str | None:
        while alert.next_index < len(alert.providers):
            provider = alert.providers[alert.next_index]
            alert.next_index += 1
            if not self._snoozed(provider, alert.patient, alert.vital, now):
                return provider
        return None

    def _deliver(self, alert_id: str, alert: _Alert, recipient: str, now: float) -> Delivery:
        delivery = Delivery(alert_id, recipient, alert.tier, now)
        alert.deliveries.append(delivery)
        if recipient != alert.patient:
            alert.notified.add(recipient)
        return delivery

    def _forget_expired_snoozes(self, now: float) -> None:
        expired = [key for key, until in self._snoozes.items() if until <= now]
        for key in expired:
            del self._snoozes[key]
