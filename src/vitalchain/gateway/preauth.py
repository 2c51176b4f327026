"""Limits on what anyone may create before authenticating: per client address, per route.

An enrolment request, a session and a challenge each create a row (and a session costs two
chain calls) before the caller has proved anything.  A token bucket per (route, client
address) caps that rate; state already created expires and is purged
(``Gateway.purge_expired``), so what an unauthenticated client can hold is bounded by its
rate times that lifetime.

The limit is an ASGI middleware so that it covers the routes of every router mounted on the
gateway's app (the access API's and the alert API's challenges included) without those
layers knowing the gateway, and so that a refused request costs no body parsing and no
threadpool hop.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["PREAUTH_ROUTES", "PreAuthLimit", "PreAuthLimiter"]

# POST routes that create state for an unauthenticated caller, or (a re-key) cost a
# signature check before the caller is known.
PREAUTH_ROUTES = frozenset(
    {
        "/v1/enrolments",
        "/v1/sessions",
        "/v1/sessions/rekey",
        "/v1/store/challenges",
        "/v1/alerts/challenges",
    }
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class PreAuthLimiter:
    """Token buckets keyed by (route, client address), on an injected clock.

    A bucket left alone for ``burst / rate`` seconds is full again, the same as a new one, so
    :meth:`sweep` drops it: the table holds only recently active clients.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # -> (tokens, last)
        self._lock = threading.Lock()

    def allow(self, route: str, client: str) -> bool:
        now = self._clock()
        key = (route, client)
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
        return allowed

    def sweep(self) -> int:
        """Forget buckets that have refilled; returns how many were dropped."""
        now = self._clock()
        refill_s = self.burst / self.rate
        with self._lock:
            full = [k for k, (_, last) in self._buckets.items() if now - last >= refill_s]
            for key in full:
                del self._buckets[key]
        return len(full)

    def __len__(self) -> int:
        return len(self._buckets)


class PreAuthLimit:
    """ASGI middleware: 429 ``too_many_requests`` for a client over its budget on a pre-auth
    route (the same code as telemetry's pre-authentication limit; ``rate_limited`` is a
    device's own budget, after authentication)."""

    def __init__(self, app: Asgi, limiter: PreAuthLimiter) -> None:
        self.app = app
        self.limiter = limiter
        body = {
            "error": {
                "code": "too_many_requests",
                "message": "too many unauthenticated requests from this client; retry later",
            }
        }
        self._body = json.dumps(body).encode()
        self._retry_after = str(max(1, math.ceil(1.0 / limiter.rate))).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] in PREAUTH_ROUTES
        ):
            client = scope.get("client")
            address = str(client[0]) if client else "unknown"
            if not self.limiter.allow(scope["path"], address):
                await send(
                    {
                        "type": "http.response.start",
                        "status": 429,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(self._body)).encode()),
                            (b"retry-after", self._retry_after),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": self._body})
                return
        await self.app(scope, receive, send)
