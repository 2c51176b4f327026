"""The recipient's side of alert delivery (docs/spec/alert.md): :class:`AlertSubscriber` (every
notification, each once, with receipts and catch-up) and :class:`AlertClient` (signed list,
receipts, ack, snooze); the gateway's side is :mod:`vitalchain.alerts.delivery`."""

from __future__ import annotations

import collections
import contextlib
import json
import random as _random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from vitalchain.crypto.keys import PrivateKey, message_digest
from vitalchain.edge.client import refusal
from vitalchain.errors import DecodeError, VitalchainError
from vitalchain.logs import safe_error
from vitalchain.sdk.alert import AlertError
from vitalchain.vitals import Vital
from vitalchain.wire.alert import (
    ACTION_CONTEXT,
    action_message,
    read_notification,
)

if TYPE_CHECKING:
    import httpx


__all__ = [
    "AlertClient",
    "AlertSubscriber",
    "Backoff",
    "GatewayRefusal",
    "SubscriptionClosed",
    "sign_action",
]

MAX_RECEIPTS = 100  # alert ids per POST /v1/alerts/receipts
MAX_SEEN = 10_000  # (alert_id, repeat) pairs an AlertSubscriber remembers to drop duplicates


def sign_action(key: PrivateKey, action: str, nonce: bytes, *fields: str) -> str:
    """A recipient's signature over one action (subscribe, list, receipt, ack, snooze, mqtt)
    and its fresh nonce."""
    message = action_message(action, nonce, *fields)
    return key.sign_digest(message_digest(message, ACTION_CONTEXT)).to_rsv().hex()


def error_reason(exc: BaseException) -> str:
    """``safe_error`` without touching websockets' deprecated ``ConnectionClosed.code``."""
    return safe_error(exc) if isinstance(exc, VitalchainError) else type(exc).__name__


class SubscriptionClosed(VitalchainError):
    """``receive`` on a subscriber that was closed (by ``close()``, maybe from another thread)."""

    code = "subscription_closed"


class GatewayRefusal(AlertError):
    """A refusal the gateway answered (status, code, message); ``choices`` lists the snooze
    durations it offers when the code is ``invalid_snooze``."""

    @property
    def choices(self) -> tuple[float, ...]:
        listed = self.details.get("choices_s")
        if not isinstance(listed, list):
            return ()
        return tuple(float(c) for c in listed if isinstance(c, int | float))


def _refusal(response: httpx.Response) -> GatewayRefusal:
    return refusal(response, GatewayRefusal)


class AlertClient:
    """Signed alert requests over HTTP for one recipient: list, receipts, ack, snooze, mqtt.

    ``http`` is an ``httpx.Client`` with the gateway as ``base_url`` (a FastAPI TestClient
    works too).  Every refusal raises ``AlertError`` with the gateway's status and code (an
    ``invalid_snooze`` also carries ``choices``); network failures raise httpx's errors.
    """

    def __init__(self, key: PrivateKey, http: httpx.Client) -> None:
        self.key = key
        self.http = http

    def _nonce(self) -> bytes:
        response = self.http.post("/v1/alerts/challenges", json={"v": 1, "address": self.address})
        if response.status_code != 201:
            raise _refusal(response)
        return bytes.fromhex(response.json()["nonce"])

    @property
    def address(self) -> str:
        return self.key.address

    def _signed(self, action: str, *fields: str) -> dict[str, Any]:
        nonce = self._nonce()
        signature = sign_action(self.key, action, nonce, *fields)
        return {"v": 1, "by": self.address, "nonce": nonce.hex(), "signature": signature}

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        if response.status_code >= 400:
            raise _refusal(response)
        data: dict[str, Any] = response.json()
        return data

    def since(self, since_ms: int) -> list[dict[str, Any]]:
        """Notifications delivered to this recipient at or after ``since_ms`` (v2 shape)."""
        signed = self._signed("list", str(since_ms))
        params = {
            "address": self.address,
            "since": str(since_ms),
            "nonce": signed["nonce"],
            "signature": signed["signature"],
        }
        response = self.http.get("/v1/alerts", params=params)
        if response.status_code >= 400:
            raise _refusal(response)
        return [read_notification(n) for n in response.json()["alerts"]]

    def receipts(self, alert_ids: list[str]) -> list[dict[str, Any]]:
        """One result per id: ``{"alert_id", "first"}`` or ``{"alert_id", "error"}``."""
        results: list[dict[str, Any]] = []
        for at in range(0, len(alert_ids), MAX_RECEIPTS):
            chunk = alert_ids[at : at + MAX_RECEIPTS]
            body = {**self._signed("receipt", *chunk), "alert_ids": chunk}
            results.extend(self._post("/v1/alerts/receipts", body)["receipts"])
        return results

    def acknowledge(self, alert_id: str) -> bool:
        """``True`` if this acknowledgement is the one that stopped escalation."""
        body = self._signed("ack", alert_id)
        return bool(self._post(f"/v1/alerts/{alert_id}/acknowledgements", body)["first"])

    def snooze(self, patient: str, vital: Vital | None, duration_s: float) -> float:
        """Silence this recipient for (patient, vital or every vital); returns the end time."""
        duration_s = float(duration_s)
        name = vital.info.short if vital is not None else None
        body = self._signed("snooze", patient, name or "*", repr(duration_s))
        body.update({"patient": patient, "vital": name, "duration_s": duration_s})
        return float(self._post("/v1/alerts/snoozes", body)["until"])

    def mqtt_credentials(self) -> dict[str, Any]:
        return self._post("/v1/alerts/mqtt-credentials", self._signed("mqtt"))


class Backoff:
    """Exponential reconnection delays: ``initial * factor**n`` capped at ``cap``, each scaled
    by a random factor in [0.5, 1] so that many clients dropped by one gateway restart do not
    all come back in the same instant.  ``random`` is injected for tests.

    The cap is short (5 s) because this client carries alarms: after a long outage a larger
    cap would let a gateway that is back hold a high alarm for the rest of the wait, and an
    attempt costs one connection to a gateway on the hospital network.
    """

    def __init__(
        self,
        initial: float = 0.5,
        factor: float = 2.0,
        cap: float = 5.0,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self.initial, self.factor, self.cap, self.random = initial, factor, cap, random
        self.attempt = 0

    def next(self) -> float:
        base = min(self.cap, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return base * (0.5 + 0.5 * self.random())

    def reset(self) -> None:
        self.attempt = 0


class Connection(Protocol):
    """What the subscriber needs of a WebSocket (websockets' sync client has it)."""

    def send(self, message: str) -> None: ...

    def recv(self, timeout: float | None = None) -> str | bytes: ...

    def close(self) -> None: ...


def _websocket(url: str, open_timeout: float) -> Connection:
    from websockets.sync.client import connect

    # No proxy: a gateway is reached directly (a proxy from the environment would swallow
    # loopback and ward-network addresses).
    connection: Connection = connect(url, open_timeout=open_timeout, proxy=None, legacy=True)
    return connection


def http_base(url: str) -> str:
    """The gateway's http(s) base URL for its alert stream's ws(s) URL."""
    scheme, rest = url.split("://", 1)
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}"


class AlertSubscriber:
    """The patient's or provider's side: every notification of its alerts, each once.

    - Subscribes at construction (a refused subscription raises ``AlertError``; an
      unreachable gateway raises ``OSError`` or websockets' errors), then ``receive()``
      returns the next notification it has not returned before.
    - When the connection drops (a gateway restart, a network outage) ``receive()``
      reconnects with exponential backoff (``sleep``, ``clock`` and the ``Backoff`` are
      injected for tests), and with ``catch_up`` first fetches what was delivered while it was
      away (``GET /v1/alerts?since=``); the gateway also re-sends what it never got a receipt
      for.  A refusal on reconnecting (e.g. the key is no longer accepted) is raised.
    - Sends a receipt for each notification it returns (and again for a duplicate, in case
      the first receipt was lost with the connection): the gateway stops re-sending it.
    - De-duplicates by ``(alert_id, repeat)``, remembering the last ``seen`` pairs (bounded
      memory); a high-priority repeat (``repeat`` >= 1) is new and is returned.
    """

    def __init__(
        self,
        url: str,
        key: PrivateKey,
        *,
        http: httpx.Client | None = None,
        catch_up: bool = True,
        reconnect: bool = True,
        since_ms: int | None = None,
        seen: int = MAX_SEEN,
        connect: Callable[[str], Connection] | None = None,
        backoff: Backoff | None = None,
        sleep: Callable[[float], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        open_timeout: float = 10.0,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.url = url
        self.key = key
        self.catch_up = catch_up
        self.reconnect = reconnect
        self.open_timeout = open_timeout
        self.backoff = backoff or Backoff()
        self._stop = threading.Event()
        # The default sleep wakes up at close(): a reconnecting subscriber stops at once.
        self.sleep = sleep or self._stop.wait
        self.clock, self.wall = clock, wall
        self._retry_at: float | None = None
        self.on_event = on_event
        self._connect = connect or (lambda u: _websocket(u, open_timeout))
        self._http = http
        self._own_http: httpx.Client | None = None
        self._seen: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        self._seen_limit = seen
        self._ready: collections.deque[dict[str, Any]] = collections.deque()
        self._ws: Connection | None = None
        self._closed = False
        self._lock = threading.Lock()
        self.duplicates = 0
        self.reconnects = 0
        self._open()
        # What a catch-up asks for: everything since the first subscription (or the caller's
        # time), moved on by every notification returned.
        self.since_ms = since_ms if since_ms is not None else int(self.wall() * 1000)

    # -- the connection ---------------------------------------------------------------------

    def _open(self) -> None:
        ws = self._connect(self.url)
        try:
            hello = json.loads(ws.recv(timeout=self.open_timeout))
            nonce = bytes.fromhex(hello["challenge"])
            signature = sign_action(self.key, "subscribe", nonce)
            ws.send(json.dumps({"v": 1, "address": self.key.address, "signature": signature}))
            answer = json.loads(ws.recv(timeout=self.open_timeout))
        except (KeyError, TypeError, ValueError):
            ws.close()
            raise AlertError(
                "not_a_gateway", "the server does not speak the alert stream"
            ) from None
        except BaseException:
            ws.close()
            raise
        if not isinstance(answer, dict) or answer.get("subscribed") != self.key.address:
            ws.close()
            error = answer.get("error") if isinstance(answer, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
            raise AlertError(
                str(code or "subscription_refused"), "subscription refused", status=401
            )
        with self._lock:
            if self._closed:
                ws.close()
                raise SubscriptionClosed("the subscriber was closed")
            self._ws = ws

    def _drop(self) -> None:
        with self._lock:
            ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                ws.close()

    def _event(self, name: str, **details: Any) -> None:
        if self.on_event is not None:
            self.on_event(name, details)

    def _reconnect(self, deadline: float | None) -> None:
        """Back off and subscribe again until it works, the deadline passes (TimeoutError; the
        wait already spent counts for the next ``receive``) or the gateway refuses (raised)."""
        from websockets.exceptions import WebSocketException

        while True:
            if self._closed:
                raise SubscriptionClosed("the subscriber was closed")
            if self._retry_at is None:
                delay = self.backoff.next()
                self._retry_at = self.clock() + delay
                self._event("reconnecting", delay_s=delay, attempt=self.backoff.attempt)
            if deadline is not None and self._retry_at > deadline:
                self.sleep(max(0.0, deadline - self.clock()))
                raise TimeoutError("reconnecting")
            self.sleep(max(0.0, self._retry_at - self.clock()))
            if self._closed:
                raise SubscriptionClosed("the subscriber was closed")
            self._retry_at = None
            try:
                self._open()
            except (OSError, TimeoutError, WebSocketException) as exc:
                self._event("unreachable", error=error_reason(exc))
                continue
            self.backoff.reset()
            self.reconnects += 1
            self._event("subscribed", reconnects=self.reconnects)
            if self.catch_up:
                self._fetch_missed()
            return

    def _fetch_missed(self) -> None:
        """Queue what was delivered while away (beyond what the gateway re-sends)."""
        import httpx

        try:
            missed = self.missed()
        except (AlertError, DecodeError, httpx.HTTPError, OSError, ValueError) as exc:
            # The stream re-sends what was never receipted; the list is the second path.
            self._event("catch_up_failed", error=error_reason(exc))
            return
        self._ready.extend(missed)
        self._event("caught_up", count=len(missed))

    def missed(self, since_ms: int | None = None) -> list[dict[str, Any]]:
        """Notifications delivered at or after ``since_ms`` (default: the last one returned)
        that this subscriber has not returned yet; they count as seen from now on."""
        listed = self.client().since(self.since_ms if since_ms is None else since_ms)
        return [n for n in listed if self._fresh(n)]

    def client(self) -> AlertClient:
        """Signed HTTP requests to the same gateway, as the same recipient."""
        if self._http is None:
            import httpx

            self._own_http = httpx.Client(base_url=http_base(self.url), timeout=30, trust_env=False)
            self._http = self._own_http
        return AlertClient(self.key, self._http)

    # -- notifications ------------------------------------------------------------------------

    def _fresh(self, notice: dict[str, Any]) -> bool:
        key = (str(notice["alert_id"]), int(notice["repeat"]))
        if key in self._seen:
            self._seen.move_to_end(key)
            self.duplicates += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self._seen_limit:
            self._seen.popitem(last=False)
        return True

    def _receipt(self, alert_id: str) -> None:
        ws = self._ws
        if ws is None:
            return  # re-sent on the next subscribe; that copy is receipted then
        try:
            ws.send(json.dumps({"v": 1, "type": "receipt", "alert_id": alert_id}))
        except Exception:
            self._drop()

    def _hand_over(self, notice: dict[str, Any]) -> dict[str, Any]:
        self._receipt(notice["alert_id"])
        self.since_ms = max(self.since_ms, int(notice["notified_at"]))
        notice["latency_ms"] = self.wall() * 1000 - notice["received_at"]
        return notice

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next new notification (v2 shape, see ``read_notification``), with ``latency_ms`` from
        the reading's arrival at the gateway to now.  Raises ``TimeoutError`` after
        ``timeout`` seconds (reconnecting included), ``SubscriptionClosed`` once closed."""
        from websockets.exceptions import ConnectionClosed

        deadline = None if timeout is None else self.clock() + timeout
        while True:
            if self._closed:
                raise SubscriptionClosed("the subscriber was closed")
            if self._ready:
                return self._hand_over(self._ready.popleft())
            ws = self._ws
            if ws is None:
                self._reconnect(deadline)
                continue
            remaining = None if deadline is None else max(0.0, deadline - self.clock())
            try:
                text = ws.recv(timeout=remaining)
            except TimeoutError:
                raise
            except (ConnectionClosed, OSError) as exc:
                self._drop()
                if self._closed:
                    raise SubscriptionClosed("the subscriber was closed") from None
                if not self.reconnect:
                    raise
                self._event("disconnected", error=error_reason(exc))
                continue
            try:
                frame = json.loads(text)
                notice = read_notification(frame) if frame.get("type") == "alert" else None
            except (DecodeError, ValueError, AttributeError):
                self._event("bad_frame")
                continue
            if notice is None:
                continue  # receipted / error frames: informational
            if self._fresh(notice):
                return self._hand_over(notice)
            self._receipt(notice["alert_id"])  # a re-send: our receipt may have been lost

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.receive()

    def close(self) -> None:
        """Stop: a ``receive`` blocked in another thread raises ``SubscriptionClosed``."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._drop()
        if self._own_http is not None:
            self._own_http.close()

    def __enter__(self) -> AlertSubscriber:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
