"""The provider's live alert inbox: every alarm the gateways notify this provider of, opened
with the provider's key in this process, with its state, and the buttons to act on it.

Why a background subscriber per gateway: an alarm must reach the inbox whether or not a page
is open, and each gateway has one alert stream per recipient (docs/spec/alert.md).  Each
thread runs the SDK's :class:`AlertSubscriber` (receipts, reconnection, catch-up, duplicates
dropped); the notifications are opened here (decryption stays on the user's side) and kept
in memory, and every change is pushed to the browsers on ``/inbox/ws``.

Why acknowledgements and snoozes go to the gateway first: the gateway decides escalation
and repeats, so the inbox shows a state only once the gateway has recorded it.  The snooze
durations offered are the gateway's own (it refuses any other with ``invalid_snooze`` and
names its choices; the inbox asks once per patient and vital, see :meth:`Inbox.choices`).

The page never shows an address: patients and devices appear as their pseudonyms
(:func:`vitalchain.logs.pseudonym`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, FastAPI, Form, Request, WebSocket
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.websockets import WebSocketDisconnect

from vitalchain.edge.codes import status_for
from vitalchain.errors import VitalchainError
from vitalchain.logs import pseudonym, safe_error
from vitalchain.portal.core import GatewayLink, Portal, PortalError
from vitalchain.portal.web import ALLOWED_HOSTS, HEADERS, Text, Web
from vitalchain.sdk.alert import Alert, AlertError, open_alert
from vitalchain.sdk.subscriber import (
    AlertClient,
    AlertSubscriber,
    Backoff,
    Connection,
    GatewayRefusal,
    SubscriptionClosed,
)
from vitalchain.vitals import Vital

__all__ = ["Inbox", "InboxItem", "router", "ws_url"]

log = logging.getLogger(__name__)

HISTORY_S = 24 * 3600  # what a (re)started portal lists from each gateway
MAX_ITEMS = 2000  # alarms kept in memory; the oldest acknowledged ones go first
POLICY_CLOSE = 1008  # WebSocket close code: policy violation (no session, foreign origin)
# A duration no gateway offers: a snooze of it is refused with the offered choices, before
# the challenge is spent and without changing anything (docs/spec/alert.md).
PROBE_S = 0.001
RANK = {"high": 3, "medium": 2, "low": 1}
STATE_ORDER = {"escalated": 0, "new": 0, "snoozed": 1, "acknowledged": 2}
CONDITIONS = {
    "device_stale": "No data from a device",
    "stale": "No data from a device",
    "undeliverable": "Alarm not confirmed by anyone's app",
    "chain_unreachable": "Gateway cannot reach the chain",
    "store_unreachable": "Gateway cannot reach its store",
    "unreadable": "Alarm could not be opened",
}


def ws_url(gateway_url: str) -> str:
    """The alert stream of a gateway named by its http(s) URL."""
    base = gateway_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://") :] + "/v1/alerts/ws"
    return "ws://" + base.removeprefix("http://") + "/v1/alerts/ws"


@dataclass
class InboxItem:
    """One alarm as this provider received it: what its body says, and what was done."""

    alert_id: str
    gateway: str  # the link's URL
    kind: str  # threshold, technical, stale (v1), or unreadable (it did not open)
    priority: str  # high, medium, low
    at_ms: int  # the reading's (threshold) or the condition's time
    notified_at_ms: int  # the latest notification of it
    first_notified_at_ms: int
    tier: int = 0
    repeat: int = 0
    patient: str | None = None  # an address: never rendered, only its pseudonym
    device: str | None = None
    vital: Vital | None = None
    value: float | None = None
    low: float | None = None
    high: float | None = None
    condition: str | None = None
    level: str | None = None
    upgraded: bool = False
    acknowledged_at: float | None = None
    acknowledged_first: bool = False

    @property
    def technical(self) -> bool:
        return self.kind != "threshold"

    @property
    def snooze_key(self) -> tuple[str, str, str] | None:
        """(gateway, patient, vital or ``*``) of a snooze that silences it; None: none can
        (an outage alarm names no patient)."""
        if self.patient is None:
            return None
        return (self.gateway, self.patient, self.vital.info.short if self.vital else "*")


def _priority(value: object) -> str:
    return value if isinstance(value, str) and value in RANK else "medium"


def _vital(name: object) -> Vital | None:
    if not isinstance(name, str):
        return None
    try:
        return Vital.parse(name)
    except ValueError:
        return None


def item_of(link: GatewayLink, notice: dict[str, Any], body: dict[str, Any] | None,
            error: str | None = None) -> InboxItem:  # fmt: skip
    """An inbox item from a notification and its opened body (None: it did not open)."""
    notified = int(notice["notified_at"])
    item = InboxItem(
        alert_id=str(notice["alert_id"]),
        gateway=link.url,
        kind="unreadable",
        priority=_priority(notice.get("priority")),
        at_ms=int(notice["received_at"]),
        notified_at_ms=notified,
        first_notified_at_ms=notified,
        tier=int(notice["tier"]),
        repeat=int(notice["repeat"]),
        condition=error,
    )
    if body is None:
        return item
    item.kind = str(body["kind"])
    item.priority = _priority(body.get("priority", notice.get("priority")))
    item.at_ms = int(float(body["at"]) * 1000)
    for name in ("patient", "device"):
        value = body.get(name)
        setattr(item, name, value if isinstance(value, str) else None)
    item.vital = _vital(body.get("vital"))
    if item.kind == "threshold":
        item.value, item.low, item.high = (float(body[k]) for k in ("value", "low", "high"))
        item.upgraded = bool(body.get("upgraded", False))
    else:
        item.condition = str(body.get("condition", item.kind))
        level = body.get("level")
        item.level = level if isinstance(level, str) else None
    return item


def _number(value: float) -> str:
    return f"{value:g}"


def _minutes(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"


def _state_text(item: InboxItem, state: str) -> str:
    if state == "acknowledged":
        return "Acknowledged" if item.acknowledged_first else "Acknowledged (by someone first)"
    if state == "escalated":
        return f"Escalated (tier {item.tier})" if item.tier else f"Repeated {item.repeat}\u00d7"
    return "Snoozed until" if state == "snoozed" else "New"


def _utc(ms: int) -> dict[str, Any]:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return {
        "ms": ms,
        "iso": moment.isoformat().replace("+00:00", "Z"),
        "text": moment.strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


class Inbox:
    """The alarms of every gateway for this provider, their state, and the actions on them.

    Thread-safe: subscriber threads add notifications, request threads act on them, and
    ``listen`` callbacks (the browsers' WebSockets) hear of each change.
    """

    def __init__(
        self,
        portal: Portal,
        *,
        connect: Callable[[str], Connection] | None = None,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.portal = portal
        self._connect = connect
        self._backoff = backoff
        self._items: dict[str, InboxItem] = {}
        self._snoozes: dict[tuple[str, str, str], float] = {}  # snooze key -> until
        self._choices: dict[tuple[str, str, str], tuple[float, ...]] = {}
        self._listeners: dict[int, Callable[[str], None]] = {}
        self._next_listener = 0
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._subscribers: dict[str, AlertSubscriber] = {}
        self._started = False
        self.errors: dict[str, str] = {}  # gateway URL -> why its stream is down (a code)

    # -- the subscriber threads --------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to every gateway's alert stream (once until ``close``; later calls do
        nothing)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._stop = stop = threading.Event()  # a thread left over from before has its own
            for index, link in enumerate(self.portal.gateways):
                thread = threading.Thread(
                    target=self._run, args=(link, stop), name=f"portal-inbox-{index}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the subscribers (a blocked receive ends at once) and end every browser's
        stream; returns once the threads are gone."""
        with self._lock:
            self._stop.set()
            subscribers = list(self._subscribers.values())
            listeners = list(self._listeners.values())
        for subscriber in subscribers:
            subscriber.close()
        for thread in self._threads:
            thread.join(timeout)
        for listener in listeners:
            listener("")  # the end of the stream
        with self._lock:  # an app started again (a second lifespan) subscribes again
            self._threads, self._subscribers, self._started = [], {}, False

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _run(self, link: GatewayLink, stop: threading.Event) -> None:
        from websockets.exceptions import WebSocketException

        backoff = self._backoff()
        while not stop.is_set():
            try:
                subscriber = AlertSubscriber(
                    ws_url(link.url),
                    self.portal.key,
                    http=link.http,
                    wall=self.portal.clock,
                    connect=self._connect,
                    on_event=lambda name, details: log.debug("alert stream: %s", name),
                )
            except (AlertError, OSError, TimeoutError, WebSocketException) as exc:
                self.errors[link.url] = safe_error(exc)
                log.warning("alert stream of a gateway unavailable: %s", safe_error(exc))
                stop.wait(backoff.next())
                continue
            with self._lock:
                if stop.is_set():
                    subscriber.close()
                    return
                self._subscribers[link.url] = subscriber
            self.errors.pop(link.url, None)
            backoff.reset()
            try:
                self._catch_up(link, subscriber)
                while True:
                    self.add(link, subscriber.receive(), event="notified")
            except SubscriptionClosed:
                return
            except Exception as exc:  # a refusal on reconnecting, a gateway gone wrong
                self.errors[link.url] = safe_error(exc)
                log.warning("alert stream of a gateway failed: %s", safe_error(exc))
                subscriber.close()
                stop.wait(backoff.next())

    def _catch_up(self, link: GatewayLink, subscriber: AlertSubscriber) -> None:
        """What this provider was notified of in the last :data:`HISTORY_S` (a portal that
        starts again lists them; they count as seen, so the stream does not repeat them)."""
        since_ms = int((self.portal.clock() - HISTORY_S) * 1000)
        try:
            listed = subscriber.missed(since_ms)
        except (VitalchainError, httpx.HTTPError, OSError, ValueError) as exc:
            log.warning("alert history of a gateway unavailable: %s", safe_error(exc))
            return
        for notice in listed:
            self.add(link, notice, event="history")

    # -- notifications -----------------------------------------------------------------------

    def add(self, link: GatewayLink, notice: dict[str, Any], *, event: str = "notified") -> None:
        """A notification (v2 shape) from ``link``: opened, merged with what is known of
        its alert, and told to the browsers."""
        alert_id = str(notice["alert_id"])
        with self._lock:
            known = self._items.get(alert_id)
        if known is None:
            item = self._opened(link, notice)
            with self._lock:
                known = self._items.setdefault(alert_id, item)
                self._prune()
        with self._lock:  # merging the notice it was made from changes nothing
            known.tier = max(known.tier, int(notice["tier"]))
            known.repeat = max(known.repeat, int(notice["repeat"]))
            known.notified_at_ms = max(known.notified_at_ms, int(notice["notified_at"]))
        self._publish(known, event)
        key = known.snooze_key
        if key is not None and key not in self._choices:
            with contextlib.suppress(VitalchainError, httpx.HTTPError, OSError):
                if self.choices(known):
                    self._publish(known, "changed")

    def _prune(self) -> None:
        """Bounded memory (under the lock): past :data:`MAX_ITEMS`, the oldest acknowledged
        alarms are forgotten, then the oldest of all (the gateway keeps every one)."""
        excess = len(self._items) - MAX_ITEMS
        if excess <= 0:
            return
        order = sorted(
            self._items.values(),
            key=lambda i: (i.acknowledged_at is None, i.first_notified_at_ms),
        )
        for old in order[:excess]:
            del self._items[old.alert_id]

    def _opened(self, link: GatewayLink, notice: dict[str, Any]) -> InboxItem:
        """Decrypted and checked here (the payload is the ring-signed one, the device's
        signature holds); one that does not open is still shown, as a technical alarm."""
        try:
            body = open_alert(Alert.from_json(notice["alert"]), self.portal.key)
        except (VitalchainError, ValueError, KeyError, TypeError) as exc:
            log.warning("an alarm did not open: %s", safe_error(exc))
            return item_of(link, notice, None, safe_error(exc))
        return item_of(link, notice, body)

    def listen(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """``callback(json)`` for each change from now on ("" once the inbox closes);
        returns the function that stops it."""
        with self._lock:
            key = self._next_listener
            self._next_listener += 1
            self._listeners[key] = callback

        def stop() -> None:
            with self._lock:
                self._listeners.pop(key, None)

        return stop

    def _publish(self, item: InboxItem, event: str) -> None:
        text = json.dumps({"type": "alert", "event": event, "item": self.view(item)})
        with self._lock:
            listeners = list(self._listeners.values())
        for listener in listeners:
            try:
                listener(text)
            except Exception as exc:  # one browser gone: the others still hear
                log.debug("an inbox listener failed: %s", safe_error(exc))

    # -- what the page shows -----------------------------------------------------------------

    def item(self, alert_id: str) -> InboxItem:
        with self._lock:
            found = self._items.get(alert_id)
        if found is None:
            raise PortalError("unknown_alert", "no such alarm in this inbox")
        return found

    def state(self, item: InboxItem, now: float | None = None) -> str:
        """new, escalated (paged as a later tier, or reminded), snoozed (by this provider,
        until the gateway's end time) or acknowledged (here)."""
        if item.acknowledged_at is not None:
            return "acknowledged"
        if self.snoozed_until(item, now) is not None:
            return "snoozed"
        if item.tier > 0 or item.repeat > 0:
            return "escalated"
        return "new"

    def snoozed_until(self, item: InboxItem, now: float | None = None) -> float | None:
        key = item.snooze_key
        if key is None:
            return None
        now = self.portal.clock() if now is None else now
        with self._lock:
            ends = [self._snoozes.get(key), self._snoozes.get((key[0], key[1], "*"))]
        running = [until for until in ends if until is not None and until > now]
        return max(running) if running else None

    def items(self) -> list[InboxItem]:
        """Unhandled first, then by priority, then newest first."""
        now = self.portal.clock()
        with self._lock:
            found = list(self._items.values())
        return sorted(
            found,
            key=lambda i: (
                STATE_ORDER[self.state(i, now)], -RANK[i.priority], -i.first_notified_at_ms
            ),
        )  # fmt: skip

    def view(self, item: InboxItem) -> dict[str, Any]:
        """What the page and the browser's stream show of an item (pseudonyms, no address)."""
        now = self.portal.clock()
        state = self.state(item, now)
        info = item.vital.info if item.vital is not None else None
        patient = pseudonym(item.patient) if item.patient else None
        condition = CONDITIONS.get(item.condition or "", item.condition or "")
        if item.kind == "threshold" and info is not None and item.value is not None:
            what = f"{info.display} {_number(item.value)} {info.symbol}"
        else:
            what = condition
        label = f"{what}, {patient}" if patient else what
        until = self.snoozed_until(item, now)
        state_text = _state_text(item, state)
        choices = self._choices.get(item.snooze_key) if item.snooze_key else None
        return {
            "alert_id": item.alert_id,
            "kind": item.kind,
            "technical": item.technical,
            "priority": item.priority,
            "priority_label": item.priority.capitalize(),
            "patient": patient,
            "device": pseudonym(item.device) if item.device else None,
            "vital": info.display if info else None,
            "vital_short": info.short if info else None,
            "value": f"{_number(item.value)} {info.symbol}" if info and item.value is not None
            else None,
            "range": f"{_number(item.low)}\u2013{_number(item.high)} {info.symbol}"
            if info and item.low is not None and item.high is not None else None,
            "upgraded": item.upgraded,
            "condition": condition,
            "level": item.level,
            "code": item.condition if item.kind == "unreadable" else None,
            "at": _utc(item.at_ms),
            "state": state,
            "state_text": state_text,
            "snoozed_until": _utc(int(until * 1000)) if until is not None else None,
            "tier": item.tier,
            "repeat": item.repeat,
            "label": label,
            "actionable": state != "acknowledged",
            "choices": [{"s": _number(c), "label": _minutes(c)} for c in choices or ()],
        }  # fmt: skip

    def page(self) -> dict[str, Any]:
        views = [self.view(i) for i in self.items()]
        alarm = next(
            (
                v for v in views
                if v["priority"] == "high" and v["state"] in ("new", "escalated")
            ),
            None,
        )  # fmt: skip
        return {
            "patient_alarms": [v for v in views if not v["technical"]],
            "technical_alarms": [v for v in views if v["technical"]],
            "alarm": alarm,
            "streams_down": len(self.errors),
        }

    # -- actions (through the gateway, which records them) -----------------------------------

    def _client(self, item: InboxItem) -> AlertClient:
        for link in self.portal.gateways:
            if link.url == item.gateway:
                return AlertClient(self.portal.key, link.http)
        raise PortalError("not_found", "the alarm's gateway is no longer named")

    def acknowledge(self, alert_id: str) -> InboxItem:
        """The gateway records the acknowledgement (escalation and repeats stop), then the
        inbox shows it."""
        item = self.item(alert_id)
        first = _gateway(lambda: self._client(item).acknowledge(alert_id))
        with self._lock:
            if item.acknowledged_at is None:
                item.acknowledged_at = self.portal.clock()
                item.acknowledged_first = first
        self._publish(item, "acknowledged")
        return item

    def choices(self, item: InboxItem) -> tuple[float, ...]:
        """The snooze durations the gateway accepts for the item's patient and vital (the
        choices of the highest priority such a snooze could silence, docs/alarms.md); asked
        once with a duration it never offers, which it refuses without spending anything."""
        key = item.snooze_key
        if key is None:
            return ()
        with self._lock:
            known = self._choices.get(key)
        if known is not None:
            return known
        client = self._client(item)
        try:
            client.snooze(key[1], item.vital, PROBE_S)
        except GatewayRefusal as exc:
            if exc.code != "invalid_snooze" or not exc.choices:
                raise
            with self._lock:
                self._choices[key] = exc.choices
            return exc.choices
        return ()  # it took the probe (no gateway offers it): nothing to offer

    def snooze(self, alert_id: str, duration: str) -> InboxItem:
        """Snooze the item's patient and vital (all of the patient's alarms for a technical
        one) for one of the gateway's choices: else 422 ``invalid_snooze``."""
        item = self.item(alert_id)
        key = item.snooze_key
        if key is None:
            raise PortalError("invalid_snooze", "this alarm names no patient to snooze")
        choices = _gateway(lambda: self.choices(item))
        try:
            seconds = float(duration)
        except ValueError:
            seconds = float("nan")
        if seconds not in choices:
            offered = ", ".join(_minutes(c) for c in choices) or "none"
            raise PortalError("invalid_snooze", f"choose a snooze of {offered}")
        try:
            until = _gateway(lambda: self._client(item).snooze(key[1], item.vital, seconds))
        except GatewayRefusal as exc:
            if exc.code == "invalid_snooze" and exc.choices:
                with self._lock:
                    self._choices[key] = exc.choices
            raise
        with self._lock:
            self._snoozes[key] = max(until, self._snoozes.get(key, 0.0))
            covered = [i for i in self._items.values() if _covers(key, i.snooze_key)]
        for other in covered:
            self._publish(other, "snoozed")
        return item


def _covers(snooze: tuple[str, str, str], key: tuple[str, str, str] | None) -> bool:
    """A snooze of (gateway, patient, vital) covers that vital; of ``*``, every alarm of the
    patient there."""
    if key is None:
        return False
    return key == snooze or (snooze[2] == "*" and key[:2] == snooze[:2])


def _gateway(call: Callable[[], Any]) -> Any:
    """A gateway request: its refusals as they are (their codes are the edge's), a network
    failure as 502 ``not_a_gateway`` (the portal cannot act for the user)."""
    try:
        return call()
    except httpx.HTTPError as exc:
        raise PortalError(
            "not_a_gateway", f"the gateway did not answer ({safe_error(exc)})"
        ) from None


# -- the routes ----------------------------------------------------------------------------


def own_origin(websocket: WebSocket) -> bool:
    """A loopback Host (as every page asks) and an Origin that is this very portal: no CORS
    protects a WebSocket, so a page of any other origin could otherwise open one with the
    user's cookie."""
    host = websocket.headers.get("host") or ""
    if host.rsplit(":", 1)[0] not in ALLOWED_HOSTS:
        return False
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return websocket.headers.get("origin") == f"{scheme}://{host}"


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _answer(request: Request, inbox: Inbox, item: InboxItem) -> Response:
    if _wants_json(request):
        return JSONResponse({"item": inbox.view(item)}, headers=HEADERS)
    return RedirectResponse("/inbox", status_code=303, headers=HEADERS)


def _refusal(request: Request, exc: VitalchainError) -> Response | None:
    """A refusal as JSON for the page's script; None: let the page's handler show it."""
    if not _wants_json(request):
        return None
    status = status_for(exc.code) or 500
    body = {"error": {"code": exc.code, "message": str(exc)}}
    return JSONResponse(body, status_code=status, headers=HEADERS)


def router(web: Web, inbox: Inbox | None = None) -> APIRouter:
    """The inbox routes; the subscribers start with the first visit and stop with the app."""
    inbox = inbox or Inbox(web.portal)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(inbox.close)

    routes = APIRouter(lifespan=lifespan)

    @routes.get("/inbox", include_in_schema=False)
    def inbox_page(request: Request) -> Response:
        web.session(request)
        inbox.start()
        return web.page(request, "inbox.html", inbox.page())

    def act(request: Request, csrf: str, action: Callable[[], InboxItem]) -> Response:
        """A form with its CSRF token, then the action; a refusal as JSON to the page's
        script, as a page to a plain form."""
        try:
            web.form(request, csrf)
            item = action()
        except VitalchainError as exc:
            if (answer := _refusal(request, exc)) is None:
                raise
            return answer
        return _answer(request, inbox, item)

    @routes.post("/inbox/{alert_id}/ack", include_in_schema=False)
    def acknowledge(request: Request, alert_id: str, csrf: Text = "") -> Response:
        return act(request, csrf, lambda: inbox.acknowledge(alert_id))

    @routes.post("/inbox/{alert_id}/snooze", include_in_schema=False)
    def snooze(
        request: Request,
        alert_id: str,
        csrf: Text = "",
        duration_s: Annotated[str, Form()] = "",
    ) -> Response:
        return act(request, csrf, lambda: inbox.snooze(alert_id, duration_s))

    @routes.websocket("/inbox/ws")
    async def stream(websocket: WebSocket) -> None:
        if web.sessions.of(websocket) is None or not own_origin(websocket):
            await websocket.close(code=POLICY_CLOSE)
            return
        inbox.start()
        await websocket.accept()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str] = asyncio.Queue()

        def push(text: str) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: the socket too
                loop.call_soon_threadsafe(queue.put_nowait, text)

        stop = inbox.listen(push)
        gone = asyncio.ensure_future(_until_gone(websocket))
        try:
            await websocket.send_text(json.dumps({"type": "hello"}))
            while True:
                taken = asyncio.ensure_future(queue.get())
                await asyncio.wait({taken, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not taken.done():
                    taken.cancel()
                    return
                text = taken.result()
                if not text:
                    await websocket.close(code=1001)  # going away: the portal stops
                    return
                if web.sessions.of(websocket) is None:  # signed out (or expired) meanwhile
                    await websocket.close(code=POLICY_CLOSE)
                    return
                await websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            stop()
            gone.cancel()

    return routes


async def _until_gone(websocket: WebSocket) -> None:
    """Read (and ignore) what the browser sends, until it leaves."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            await websocket.receive_text()
