"""Liveness and readiness from cached state, and one log line per outage edge.

``/v1/health`` must answer while the chain node hangs or PostgreSQL is gone: a health check
that waits on the thing it checks tells an operator nothing (and holds a worker).  So health
is served from a cache that background probes keep: one thread per component (the chain, the
store, the broker, and in a node the chain outbox's backlog), each checking every
``interval_s`` and recording the outcome in the component's :class:`OutageTracker`.  The
request paths report failures to the same trackers, so an outage is visible at once and not
only at the next probe.

A tracker logs exactly one line when its component goes down and one when it comes back,
however many requests and probes fail in between: an outage is an event, not a stream of
tracebacks.  Times come from an injected ``clock`` (tests move it by hand).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from vitalchain.errors import VitalchainError
from vitalchain.ledger import ChainOutbox
from vitalchain.ledger.ports import ChainBasics
from vitalchain.store.base import Store

__all__ = [
    "BrokerUnavailable",
    "ChainProbe",
    "ComponentHealth",
    "ComponentProbe",
    "HealthMonitor",
    "OutageTracker",
    "OutboxProbe",
    "SocketProbe",
    "StoreProbe",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class ComponentProbe(Protocol):
    """One cheap check of a component: returns if it works, raises if not."""

    def check(self) -> None: ...


class BrokerUnavailable(VitalchainError):
    code = "broker_unavailable"


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """What health reports for one component; times are the injected clock's (Unix seconds)."""

    name: str
    up: bool
    last_success: float | None
    age_s: float | None  # seconds since the last success; None before the first
    down_since: float | None
    error: str | None  # the failure's machine-readable code while down

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "up" if self.up else "down",
            "last_success": self.last_success,
            "age_s": None if self.age_s is None else round(self.age_s, 3),
            "down_since": self.down_since,
            "error": self.error,
        }


def _code(error: BaseException) -> str:
    """A failure's stable code, never its message (which may carry a DSN or an address)."""
    if isinstance(error, VitalchainError):
        return error.code
    return type(error).__name__


class OutageTracker:
    """One component's up/down state; logs one line as an outage starts and one as it ends.

    Unknown until the first report: a component never checked is not claimed to be up.
    """

    def __init__(self, name: str, clock: Clock = time.time) -> None:
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._up: bool | None = None
        self._last_success: float | None = None
        self._down_since: float | None = None
        self._error: str | None = None

    def succeeded(self) -> None:
        now = self._clock()
        with self._lock:
            ended = self._down_since
            self._up, self._last_success, self._down_since, self._error = True, now, None, None
        if ended is not None:
            log.warning("%s outage ended after %.1f s", self.name, now - ended)

    def failed(self, error: BaseException) -> None:
        now, code = self._clock(), _code(error)
        with self._lock:
            started = self._down_since is None
            if started:
                self._down_since = now
            self._up, self._error = False, code
        if started:
            log.warning("%s outage started: %s", self.name, code)

    def snapshot(self) -> ComponentHealth:
        now = self._clock()
        with self._lock:
            last = self._last_success
            return ComponentHealth(
                self.name,
                self._up is True,
                last,
                None if last is None else max(0.0, now - last),
                self._down_since,
                self._error if self._up is not None else "not_checked",
            )


class ChainProbe:
    """``block_number()`` with a short timeout of its own; keeps the last number seen."""

    def __init__(self, ledger: ChainBasics, timeout_s: float = 1.0) -> None:
        self.ledger = ledger
        self.timeout_s = timeout_s
        self.block_number: int | None = None

    def check(self) -> None:
        self.block_number = self.ledger.ping(self.timeout_s)


class StoreProbe:
    """Two cheap queries: the journal's reading count (which health reports anyway) and the
    block store's next leaf index, since the block store may be a PostgreSQL of its own."""

    def __init__(self, store: Store, group_id: int) -> None:
        self.store = store
        self.group_id = group_id
        self.readings: int | None = None

    def check(self) -> None:
        self.readings = self.store.count_readings()
        self.store.next_leaf_index(self.group_id)


class OutboxProbe:
    """The chain outbox's backlog, from its own bookkeeping (never the chain): ``backlog`` is
    what is ``queued``, what is ``in_flight`` (sent, not mined), and while the chain does not
    take writes, the code (``waiting``) and since when (``waiting_since``, Unix seconds).

    The outbox itself is up while it answers: a chain outage is the chain component's (one
    outage, logged once); here it shows as a backlog that grows, and drains when it ends.
    """

    def __init__(self, outbox: ChainOutbox, clock: Clock = time.time) -> None:
        self.outbox = outbox
        self.clock = clock
        self.backlog: dict[str, Any] | None = None

    def check(self) -> None:
        status = self.outbox.status()
        waiting = status["waiting"]
        self.backlog = {
            "queued": status["queued"],
            "in_flight": status["in_flight"],
            "waiting": waiting,
            "waiting_since": self.clock() - status["waiting_s"] if waiting else None,
        }


class SocketProbe:
    """A TCP connection to a service (the MQTT broker): refused or timed out means down."""

    def __init__(self, host: str, port: int, timeout_s: float = 1.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s

    def check(self) -> None:
        try:
            with contextlib.closing(
                socket.create_connection((self.host, self.port), timeout=self.timeout_s)
            ):
                pass
        except OSError as exc:
            raise BrokerUnavailable(f"nothing accepts on {self.host}:{self.port}") from exc


class HealthMonitor:
    """Background probes feeding one tracker per component; health reads only the cache.

    ``hung_after_s``: a check still running after this long counts as down (a probe that
    hangs must not leave the last success standing as "up").  ``sealing``: the sealer's
    in-memory status (per-patient sealing failures), reported as it is; it never blocks.
    """

    def __init__(
        self,
        probes: Mapping[str, ComponentProbe],
        *,
        interval_s: float = 2.0,
        hung_after_s: float | None = None,
        clock: Clock = time.time,
        sealing: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.probes = dict(probes)
        self.sealing = sealing
        self.interval_s = interval_s
        self.hung_after_s = hung_after_s if hung_after_s is not None else 2 * interval_s + 5
        self.clock = clock
        self.trackers = {name: OutageTracker(name, clock) for name in self.probes}
        self._checking: dict[str, float] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def check(self, name: str) -> None:
        """Run one component's probe now and record the outcome (never raises)."""
        self._checking[name] = self.clock()
        try:
            self.probes[name].check()
        except Exception as exc:  # a probe's whole point is to turn failures into state
            self.trackers[name].failed(exc)
        else:
            self.trackers[name].succeeded()
        finally:
            self._checking.pop(name, None)

    def probe_once(self) -> None:
        for name in self.probes:
            self.check(name)

    def report_failure(self, name: str, error: BaseException) -> None:
        """A request path met this component down: record it now, before the next probe."""
        tracker = self.trackers.get(name)
        if tracker is not None:
            tracker.failed(error)

    def start(self) -> None:
        """One daemon thread per component, so a slow check never delays the others."""
        if self._threads:
            return
        self._stop.clear()
        for name in self.probes:
            thread = threading.Thread(
                target=self._run, args=(name,), name=f"health-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _run(self, name: str) -> None:
        while not self._stop.is_set():
            self.check(name)
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.interval_s + 5)
        self._threads = []

    def components(self) -> dict[str, ComponentHealth]:
        now = self.clock()
        result = {}
        for name, tracker in self.trackers.items():
            health = tracker.snapshot()
            started = self._checking.get(name)
            if health.up and started is not None and now - started > self.hung_after_s:
                health = ComponentHealth(
                    name, False, health.last_success, health.age_s, started, "check_hung"
                )
            result[name] = health
        return result

    def failing(self) -> list[str]:
        return [name for name, health in self.components().items() if not health.up]
