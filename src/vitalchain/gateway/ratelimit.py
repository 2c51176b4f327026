"""Token buckets keyed by a string: per device, and per client before authentication.

Two limits use this class (docs/spec/telemetry.md, "Rate limits"):

- a device's budget, charged only once its message authenticated (the AEAD opened under the
  session key), so a stranger who copies the session ID from a header cannot spend it;
- a client's pre-authentication budget (an HTTP client address, an MQTT client), charged by
  each message that fails before authenticating, so junk is throttled where it comes from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["RateLimiter"]

# Above this many buckets, full ones are forgotten (a full bucket is the same as a new one):
# a flood from many addresses cannot grow the table without bound.
MAX_IDLE_BUCKETS = 10_000


class RateLimiter:
    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float],
        *,
        max_buckets: int = MAX_IDLE_BUCKETS,
    ) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    @property
    def clock(self) -> Callable[[], float]:
        return self._clock

    def _tokens(self, key: str, now: float) -> float:
        tokens, last = self._buckets.get(key, (self._burst, now))
        return min(self._burst, tokens + max(0.0, now - last) * self._rate)

    def allow(self, key: str) -> bool:
        """Take one token if there is one; False (and nothing taken) if the bucket is empty."""
        now = self._clock()
        with self._lock:
            tokens = self._tokens(key, now)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return False
            self._store(key, tokens - 1.0, now)
            return True

    def exhausted(self, key: str) -> bool:
        """True while ``key`` has no whole token left; takes nothing."""
        now = self._clock()
        with self._lock:
            return self._tokens(key, now) < 1.0

    def charge(self, key: str) -> None:
        """Take one token, down to zero: what a failed (unauthenticated) attempt costs."""
        now = self._clock()
        with self._lock:
            self._store(key, max(0.0, self._tokens(key, now) - 1.0), now)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        if len(self._buckets) <= self._max_buckets:
            return
        # Amortised: afterwards at most half the cap remains, so the next sweep is far off.
        # Under a flood from more clients than that, the least recently seen lose their
        # partial buckets (they start full again): the table stays bounded whatever comes.
        keep = sorted(
            (k for k in self._buckets if self._tokens(k, now) < self._burst),
            key=lambda k: self._buckets[k][1],
        )
        keep = keep[max(0, len(keep) - self._max_buckets // 2) :]
        self._buckets = {k: self._buckets[k] for k in keep}

    def __len__(self) -> int:
        return len(self._buckets)
