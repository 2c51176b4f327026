"""One follower of the chain's events per process, fanning them out by (contract, event).

Before, the sealer, the device registry, the threshold policy and the alarm service each kept
a cursor of their own into the event index and filtered what it returned by strings.  Now a
:class:`ChainWatcher` keeps the one cursor; a consumer subscribes to the
:class:`~vitalchain.ledger.events.EventName` s it cares about with a callback, and each event
reaches each subscriber once, in chain order.

Who drives it: :meth:`ChainWatcher.start` runs one thread that polls every ``poll_s`` (a
gateway node's revocation interval, so a revocation takes effect within a block, as it did
when the device registry polled for itself), and any consumer may call :meth:`poll` to catch
up at once where it must be current (the sealer before each block, so a revoke applies to the
next block sealed after its transaction; tests).  Polls are serialised, so callbacks never run
concurrently with each other; they run on whichever thread polled, and must be quick and must
not poll themselves.  A callback that raises is logged and does not stop the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from vitalchain.ledger.events import Event, EventName
from vitalchain.ledger.ports import EventLog
from vitalchain.logs import safe_error

__all__ = ["ChainWatcher", "Subscription"]

log = logging.getLogger(__name__)

Callback = Callable[[Event], None]


@dataclass(eq=False)
class Subscription:
    """One consumer's interest in some events; :meth:`cancel` ends it."""

    names: frozenset[EventName]
    callback: Callback
    _watcher: ChainWatcher = field(repr=False)

    def cancel(self) -> None:
        self._watcher._remove(self)


class ChainWatcher:
    def __init__(self, events: EventLog, *, poll_s: float = 0.25) -> None:
        self._events = events
        self._poll_s = poll_s
        self._cursor = 0  # position in the event index up to which every subscriber was told
        self._by_name: dict[EventName, list[Subscription]] = {}
        self._lock = threading.RLock()  # one poll at a time; subscribing waits for it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def subscribe(
        self, names: EventName | Iterable[EventName], callback: Callback, *, replay: bool = False
    ) -> Subscription:
        """Call ``callback`` with every event named in ``names`` that the watcher has not
        passed on yet (from the deployment on, before its first poll), at each poll.
        ``replay``: first with those it passed on already, too (a consumer that builds its
        state from the chain's whole history, such as the set of a group's devices)."""
        wanted = frozenset([names] if isinstance(names, EventName) else names)
        subscription = Subscription(wanted, callback, self)
        with self._lock:
            if replay:
                self.poll()  # the others are told up to the same point first
                past, _ = self._events.since(0)
                for event in past[: self._cursor]:
                    if event.key in wanted:
                        self._tell(subscription, event)
            for name in wanted:
                self._by_name.setdefault(name, []).append(subscription)
        return subscription

    def _remove(self, subscription: Subscription) -> None:
        with self._lock:
            for name in subscription.names:
                subscribers = self._by_name.get(name, [])
                if subscription in subscribers:
                    subscribers.remove(subscription)

    def poll(self) -> int:
        """Read the events of blocks not seen yet and tell each subscriber; how many events
        were new.  A chain that does not answer raises (the caller decides how loudly)."""
        with self._lock:
            new, self._cursor = self._events.since(self._cursor)
            for event in new:
                for subscription in tuple(self._by_name.get(event.key, ())):
                    self._tell(subscription, event)
            return len(new)

    @staticmethod
    def _tell(subscription: Subscription, event: Event) -> None:
        try:
            subscription.callback(event)
        except Exception as exc:  # one consumer's bug must not starve the others
            log.error(
                "a subscriber of %s.%s failed: %s", event.contract, event.name, safe_error(exc)
            )

    # -- the one thread ---------------------------------------------------------------------------

    def start(self) -> None:
        """Poll every ``poll_s`` on a thread of its own (again: no-op)."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="chain-watcher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.poll()
            except Exception as exc:  # the health monitor reports an outage; try again
                if not self._failing:
                    log.debug("chain watcher waits for the chain: %s", safe_error(exc))
                self._failing = True
            else:
                self._failing = False

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)
