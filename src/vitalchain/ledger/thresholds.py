"""The on-chain threshold policy, evaluated at the gateway for every reading.

Thresholds live in ``AlertRegistry`` (set by the patient or a consented provider).  Asking the
chain per reading would cost a call each time, so values are cached per (patient, vital) and
dropped when the process's :class:`~vitalchain.ledger.watcher.ChainWatcher` reports a
``ThresholdSet`` event for them: a change takes effect within one block.
Where a patient has no threshold yet, the vital's adult default range applies; so it does,
uncached, while the patient's threshold cannot be read (an address the chain refuses, the
chain away), so that checking one patient's readings never raises for every message.  Such a
failure is logged by pseudonym once when it starts and once when it ends.
"""

from __future__ import annotations

import logging
import threading

from vitalchain.ledger.events import THRESHOLD_SET, Event
from vitalchain.ledger.ports import AlertRegistryView
from vitalchain.ledger.watcher import ChainWatcher
from vitalchain.logs import Transitions, pseudonym, safe_error
from vitalchain.vitals import Vital, evaluate_fixed, to_fixed

__all__ = ["ThresholdPolicy"]

log = logging.getLogger(__name__)


class ThresholdPolicy:
    def __init__(self, ledger: AlertRegistryView, watcher: ChainWatcher) -> None:
        self._ledger = ledger
        self._watcher = watcher
        self._cache: dict[tuple[str, Vital], tuple[int, int] | None] = {}
        self._generation = 0  # bumped by every ThresholdSet: a read it overtook is not kept
        self._lock = threading.Lock()
        self._failing = Transitions()  # patient pseudonym → why its thresholds are unread
        watcher.subscribe(THRESHOLD_SET, self._forget)

    def thresholds(self, patient: str, vital: Vital) -> tuple[int, int]:
        """(low, high) in fixed point: the patient's on-chain policy, else the vital's default."""
        key = (patient, vital)
        with self._lock:
            cached = self._cache.get(key, ...)
        if cached is ...:
            with self._lock:
                generation = self._generation
            try:
                cached = self._ledger.threshold_of(patient, int(vital))
            except Exception as exc:
                self._note(patient, safe_error(exc))
                low, high = vital.info.normal
                return to_fixed(low), to_fixed(high)
            self._note(patient, None)
            with self._lock:
                # A refresh that ran during the read may have dropped a newer value: keep none.
                if generation == self._generation:
                    self._cache[key] = cached
        if cached is None:
            low, high = vital.info.normal
            return to_fixed(low), to_fixed(high)
        return cached

    def _note(self, patient: str, problem: str | None) -> None:
        tag = pseudonym(patient)
        if self._failing.change(tag, problem) is None:
            return
        if problem is None:
            log.info("thresholds of %s read again", tag)
        else:
            log.warning("thresholds of %s unreadable (%s): using the defaults", tag, problem)

    def failing(self) -> dict[str, str]:
        """Patient pseudonyms whose thresholds could not be read, with a code."""
        return self._failing.current()

    def evaluate(self, patient: str, vital: Vital, value: float) -> int:
        low, high = self.thresholds(patient, vital)
        return evaluate_fixed(low, high, to_fixed(value))

    def refresh(self) -> None:
        """Forget thresholds the chain changed since the last refresh (the watcher's poll)."""
        self._watcher.poll()

    def _forget(self, event: Event) -> None:
        with self._lock:
            self._generation += 1
            self._cache.pop((event.args["patient"], Vital(event.args["vital"])), None)
