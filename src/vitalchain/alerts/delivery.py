"""Alert delivery: WebSocket, MQTT, receipts, catch-up (docs/spec/alert.md).

An alarm system is trusted only if it never drops an alarm silently, so delivery is
at-least-once with an end-to-end confirmation:

- the gateway persists every (alert, recipient) delivery (alerts/service.py); the hub here pushes
  it to the recipient's live WebSocket connections and MQTT topic as a *notification* (v2);
- the recipient's SDK (:class:`AlertSubscriber`) answers each notification with a *receipt*
  (over the WebSocket, or ``POST /v1/alerts/receipts``): the SDK has it.  A receipt is not an
  acknowledgement: only a clinician acknowledges, and only that stops escalation;
- on every WebSocket subscribe the server first re-sends what the recipient has not receipted
  (oldest first), then live notifications; ``GET /v1/alerts?since=`` lists everything
  delivered to it since a time, for a client that was away or reads MQTT;
- so a notification can arrive twice (a re-send racing the live one, a list overlapping the
  stream): the SDK de-duplicates by ``(alert_id, repeat)``; ``repeat`` n >= 1 is a deliberate
  re-notification of an unacknowledged high-priority alarm, shown again.

Every request that names a recipient is signed by it over a one-time challenge, so nobody can
list, receipt, acknowledge or snooze another's alerts; a provider without consent is never a
recipient, so it receives nothing.  Routes only parse and call :class:`AlertApi`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vitalchain.alerts.escalation import Delivery, EscalationError
from vitalchain.alerts.service import AlertService
from vitalchain.crypto.keys import PublicKey, Signature, message_digest
from vitalchain.edge.codes import openapi_refusals
from vitalchain.errors import DecodeError, InvalidSignature, VitalchainError
from vitalchain.sdk.alert import Alert, AlertError
from vitalchain.sdk.subscriber import MAX_RECEIPTS, error_reason
from vitalchain.store.base import BlockStore
from vitalchain.vitals import Vital
from vitalchain.wire.address import Address
from vitalchain.wire.alert import (
    ACTION_CONTEXT,
    Notification,
    action_message,
)
from vitalchain.wire.mqtt import alerts_topic

if TYPE_CHECKING:
    pass


__all__ = [
    "ALERT_REFUSALS",
    "AlertApi",
    "AlertHub",
    "mount_alerts",
    "notice_of",
]

NONCE_TTL_S = 60
LIST_LIMIT = 500  # notices per GET /v1/alerts answer; page on with since = the last notified_at
_ALERT_ID = r"^[0-9a-f]{32}$"

# Every refusal of the alert routes, by status; each route documents all of them (and the
# schemathesis run checks that nothing else is answered).
ALERT_REFUSALS = openapi_refusals(
    400,
    "invalid_signature",
    "challenge_invalid",
    "not_a_recipient",
    "unknown_alert",
    "mqtt_unavailable",
    "invalid_request",
    "unknown_vital",
    "invalid_snooze",
    "too_many_requests",
    "chain_unavailable",
    "store_unavailable",
    notes={
        400: "a malformed request line",
        "invalid_signature": "not signed by the address it names",
        "challenge_invalid": "unknown, used or expired challenge",
        "not_a_recipient": "not the patient or a notified provider",
        "unknown_alert": "no such alert",
        "mqtt_unavailable": "this gateway runs no MQTT broker",
        "invalid_request": "a field out of range or malformed, e.g. a negative `since`",
        "invalid_snooze": "a duration that is not one of the choices; `error.choices_s` lists them",
    },
)


def _signer(action: str, nonce: bytes, signature: str, *fields: str) -> str | None:
    message = action_message(action, nonce, *fields)
    try:
        sig = Signature.from_rsv(bytes.fromhex(signature))
        return PublicKey.recover(sig, message_digest(message, ACTION_CONTEXT)).address
    except (InvalidSignature, DecodeError, ValueError):
        return None


log = logging.getLogger(__name__)


# -- the notification (docs/spec/alert.md, Delivery) -------------------------------------------


def notice_of(alert: Alert, delivery: Delivery) -> dict[str, Any]:
    """Notification v2 of one delivery: the same object live, re-sent and listed.

    ``notified_at`` is when the delivery was made (``Delivery.at``), not when these bytes left:
    a re-sent or listed notice keeps it, so it names the delivery and is what ``since``
    compares.  Priority rides here and in the encrypted body, never on chain.
    """
    return Notification(
        alert_id=alert.alert_id.hex(),
        recipient=delivery.recipient,
        tier=delivery.tier,
        priority=str(delivery.priority),
        repeat=delivery.repeat,
        received_at=alert.received_at_ms,
        notified_at=int(delivery.at * 1000),  # floor: since=notified_at includes it
        alert=alert.to_json(),
    ).to_json()


class AlertHub:
    """Fan-out of deliveries; called from any thread, writes to WebSockets on their loop."""

    def __init__(self, group_id: int, publish: Callable[[str, bytes], None] | None = None) -> None:
        self.group_id = group_id
        self.publish = publish  # MQTT: (topic, payload); None when no broker runs
        self._subscribers: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[str]]]]
        self._subscribers = {}
        self._lock = threading.Lock()
        self.delivered = 0

    def subscribe(self, address: str, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str]:
        inbox: asyncio.Queue[str] = asyncio.Queue()
        with self._lock:
            self._subscribers.setdefault(address, []).append((loop, inbox))
        return inbox

    def unsubscribe(self, address: str, inbox: asyncio.Queue[str]) -> None:
        with self._lock:
            live = [s for s in self._subscribers.get(address, []) if s[1] is not inbox]
            if live:
                self._subscribers[address] = live
            else:
                self._subscribers.pop(address, None)  # bounded by live connections

    def subscribers(self, address: str) -> int:
        """Live connections of ``address``."""
        with self._lock:
            return len(self._subscribers.get(address, []))

    def pending(self, address: str) -> int:
        """Notices queued and not yet written to ``address``'s live connections."""
        with self._lock:
            return sum(inbox.qsize() for _, inbox in self._subscribers.get(address, []))

    def deliver(self, alert: Alert, delivery: Delivery) -> None:
        notice = json.dumps(notice_of(alert, delivery))
        with self._lock:
            targets = list(self._subscribers.get(delivery.recipient, []))
            self.delivered += 1
        for loop, inbox in targets:
            with contextlib.suppress(RuntimeError):  # that connection's loop has just closed
                loop.call_soon_threadsafe(inbox.put_nowait, notice)
        if self.publish is not None:
            self.publish(alerts_topic(self.group_id, delivery.recipient), notice.encode())


# -- requests ------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


_NONCE = Field(pattern=r"^[0-9a-f]{64}$")
_SIGNATURE = Field(pattern=r"^[0-9a-fA-F]{130}$")
AlertId = Annotated[str, Field(pattern=_ALERT_ID)]


class ChallengeRequest(_Strict):
    v: Literal[1]
    address: Address


class AckRequest(_Strict):
    v: Literal[1]
    by: Address
    nonce: str = _NONCE
    signature: str = _SIGNATURE


class ReceiptRequest(_Strict):
    v: Literal[1]
    by: Address
    alert_ids: list[AlertId] = Field(min_length=1, max_length=MAX_RECEIPTS)
    nonce: str = _NONCE
    signature: str = _SIGNATURE


class SnoozeRequest(_Strict):
    v: Literal[1]
    by: Address
    patient: Address
    vital: str | None = None
    # Any positive number parses; only the offered choices pass (invalid_snooze lists them).
    duration_s: float = Field(gt=0, allow_inf_nan=False)
    nonce: str = _NONCE
    signature: str = _SIGNATURE


class SnoozeRefused(AlertError):
    """``invalid_snooze`` (422) with the durations that would have been accepted."""

    def __init__(self, duration_s: float, choices: tuple[float, ...]) -> None:
        listed = ", ".join(f"{c:g}" for c in choices)
        super().__init__(
            "invalid_snooze",
            f"a snooze of {duration_s:g} s is not offered; choose {listed} s",
            details={"choices_s": list(choices)},  # in the error body
        )
        self.choices = choices


@dataclass(eq=False)  # compared and hashed by identity, as one per node
class AlertApi:
    """What the alert routes call: challenges, lists, receipts, acknowledgements, snoozes."""

    service: AlertService
    hub: AlertHub
    store: BlockStore
    _: KW_ONLY
    mqtt_credentials: Callable[[str], dict[str, Any]] | None = None
    clock: Callable[[], float] = time.time
    random: Callable[[int], bytes] = os.urandom

    def challenge(self, address: str) -> dict[str, Any]:
        nonce = self.random(32)
        expires_at = int(self.clock()) + NONCE_TTL_S
        self.store.add_nonce(nonce, address, expires_at * 1000)
        return {"v": 1, "nonce": nonce.hex(), "expires_at": expires_at}

    def authenticate(self, by: str, action: str, nonce: str, signature: str, *fields: str) -> None:
        """``by`` signed ``action`` and ``fields`` over a challenge it had and nobody used:
        the challenge is spent."""
        if _signer(action, bytes.fromhex(nonce), signature, *fields) != by:
            raise AlertError("invalid_signature", "the request is not signed by its sender")
        if not self.store.consume_nonce(bytes.fromhex(nonce), by, int(self.clock() * 1000)):
            raise AlertError("challenge_invalid", "unknown, used or expired challenge")

    def listing(self, address: str, since_ms: int) -> dict[str, Any]:
        """What was delivered to ``address`` (authenticated) at or after ``since_ms``, oldest
        first."""
        notices = self.service.since(address, since_ms, LIST_LIMIT)
        return {"v": 1, "alerts": [notice_of(n.alert, n.delivery) for n in notices]}

    def pending(self, address: str) -> list[str]:
        """The notifications ``address`` has not receipted, oldest first (re-sent on subscribe)."""
        return [
            json.dumps(notice_of(n.alert, n.delivery)) for n in self.service.pending_for(address)
        ]

    def receipt(self, address: str, alert_id: str) -> bool:
        """The recipient's SDK has the notification; ``True`` the first time."""
        return self.service.receipt(alert_id, address)

    def receipts(self, body: ReceiptRequest) -> dict[str, Any]:
        """Receipts for several alerts at once (MQTT and list users); one result per id;
        ``body.by`` is authenticated."""
        results: list[dict[str, Any]] = []
        for alert_id in dict.fromkeys(body.alert_ids):
            try:
                results.append({"alert_id": alert_id, "first": self.receipt(body.by, alert_id)})
            except (AlertError, EscalationError) as exc:
                error = {"code": exc.code, "message": exc.message}
                results.append({"alert_id": alert_id, "error": error})
        return {"v": 1, "receipts": results}

    def acknowledge(self, alert_id: str, body: AckRequest) -> dict[str, Any]:
        """``body.by`` (authenticated) acknowledges: escalation stops."""
        first = self.service.acknowledge(alert_id, body.by)
        return {"v": 1, "alert_id": alert_id, "acknowledged": True, "first": first}

    def mqtt(self, body: AckRequest) -> dict[str, Any]:
        """Broker credentials that can read only the sender's own alert topic."""
        if self.mqtt_credentials is None:
            raise AlertError("mqtt_unavailable", "this gateway runs no MQTT broker")
        self.authenticate(body.by, "mqtt", body.nonce, body.signature)
        return {"v": 1, **self.mqtt_credentials(body.by)}

    def snooze(self, body: SnoozeRequest) -> dict[str, Any]:
        """Checked before the challenge is spent: a refused snooze changes nothing."""
        vital = None
        if body.vital is not None:
            try:
                vital = Vital.parse(body.vital)
            except (ValueError, KeyError):
                raise AlertError("unknown_vital", f"unknown vital {body.vital!r}") from None
        choices = self.service.snooze_choices(body.patient, vital)
        if body.duration_s not in choices:
            raise SnoozeRefused(body.duration_s, choices)
        fields = (body.patient, body.vital or "*", repr(body.duration_s))
        self.authenticate(body.by, "snooze", body.nonce, body.signature, *fields)
        if body.by != body.patient and body.by not in self.service.providers(body.patient, vital):
            raise AlertError("not_a_recipient", "only the patient or a consented provider")
        until = self.service.snooze(body.by, body.patient, vital, body.duration_s)
        return {"v": 1, "until": until}


async def _api(request: Request) -> AlertApi:
    api: AlertApi = request.app.state.alerts
    return api


ApiDep = Annotated[AlertApi, Depends(_api)]
# Challenge auth for the routes whose only check before it is the request's shape (snooze
# and mqtt refuse what they can first, unspent, so they authenticate in the service).


def _signed_list(
    api: ApiDep,
    address: Annotated[Address, Query(description="The recipient, who signed.")],
    since: Annotated[int, Query(ge=0, lt=2**63, description="Unix time, ms.")],
    nonce: Annotated[str, Query(pattern=r"^[0-9a-f]{64}$")],
    signature: Annotated[str, Query(pattern=r"^[0-9a-fA-F]{130}$")],
) -> tuple[str, int]:
    api.authenticate(address, "list", nonce, signature, str(since))
    return address, since


def _signed_receipts(body: ReceiptRequest, api: ApiDep) -> ReceiptRequest:
    api.authenticate(body.by, "receipt", body.nonce, body.signature, *body.alert_ids)
    return body


def _signed_ack(alert_id: str, body: AckRequest, api: ApiDep) -> AckRequest:
    api.authenticate(body.by, "ack", body.nonce, body.signature, alert_id)
    return body


SignedList = Annotated[tuple[str, int], Depends(_signed_list)]
SignedReceipts = Annotated[ReceiptRequest, Depends(_signed_receipts)]
SignedAck = Annotated[AckRequest, Depends(_signed_ack)]


def create_alert_router() -> APIRouter:
    router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

    @router.post("/challenges", status_code=201, responses=ALERT_REFUSALS)
    def challenge(body: ChallengeRequest, api: ApiDep) -> dict[str, Any]:
        """A one-time nonce for the sender's next signed request (60 s)."""
        return api.challenge(body.address)

    @router.get("", responses=ALERT_REFUSALS)
    def listing(api: ApiDep, signed: SignedList) -> dict[str, Any]:
        """Notifications delivered to the signer at or after ``since`` (oldest first, at most
        500): what a recipient missed while it was away."""
        address, since = signed
        return api.listing(address, since)

    @router.post("/receipts", responses=ALERT_REFUSALS)
    def receipts(body: SignedReceipts, api: ApiDep) -> dict[str, Any]:
        """The recipient has these notifications: they are not re-sent.  Not an acknowledgement."""
        return api.receipts(body)

    @router.post("/snoozes", responses=ALERT_REFUSALS)
    def snooze(body: SnoozeRequest, api: ApiDep) -> dict[str, Any]:
        """Suppress deliveries of a patient's alerts (one vital, or all) to the sender."""
        return api.snooze(body)

    @router.post("/mqtt-credentials", status_code=201, responses=ALERT_REFUSALS)
    def mqtt(body: AckRequest, api: ApiDep) -> dict[str, Any]:
        """MQTT credentials for ``vitalchain/v1/<group>/alerts/<address>``, read-only."""
        return api.mqtt(body)

    @router.get("/{alert_id}", responses=ALERT_REFUSALS)
    def public(alert_id: str, api: ApiDep) -> dict[str, Any]:
        """The public alert object: ciphertext, ring proof, relay signature."""
        try:
            raw = bytes.fromhex(alert_id)
        except ValueError:
            raise AlertError("unknown_alert", "no such alert") from None
        return api.service.public(raw).to_json()

    @router.post("/{alert_id}/acknowledgements", responses=ALERT_REFUSALS)
    def acknowledge(alert_id: str, body: SignedAck, api: ApiDep) -> dict[str, Any]:
        """A recipient acknowledges: escalation (and repetition) stops."""
        return api.acknowledge(alert_id, body)

    return router


def _receipt_frame(text: str) -> str:
    """The alert id of a client frame ``{"v":1,"type":"receipt","alert_id"}``, or ValueError."""
    frame = json.loads(text)
    if not isinstance(frame, dict) or frame.get("v") != 1 or frame.get("type") != "receipt":
        raise ValueError("not a receipt")
    alert_id = frame.get("alert_id")
    if not isinstance(alert_id, str) or len(alert_id) != 32 or alert_id != alert_id.lower():
        raise ValueError("alert_id: 32 lowercase hex digits")
    bytes.fromhex(alert_id)
    return alert_id


def mount_alerts(app: FastAPI, api: AlertApi) -> None:
    """Serve the alert API from ``app`` (built with the edge's error handlers installed, as
    gateway.app.create_app does: they answer every refusal, ``choices_s`` included)."""
    app.state.alerts = api
    app.include_router(create_alert_router())

    @app.websocket("/v1/alerts/ws")
    async def stream(ws: WebSocket) -> None:
        """Unreceipted, then live notifications for the address that signs the challenge."""
        await ws.accept()
        nonce = api.random(32)
        await ws.send_json({"v": 1, "challenge": nonce.hex()})
        try:
            hello = await asyncio.wait_for(ws.receive_json(), timeout=30)
            address = str(hello["address"])
            signer = _signer("subscribe", nonce, str(hello["signature"]))
        except (TimeoutError, KeyError, TypeError, ValueError, WebSocketDisconnect):
            await ws.close(code=4400)
            return
        if signer != address:
            await ws.send_json({"v": 1, "error": {"code": "invalid_signature"}})
            await ws.close(code=4401)
            return
        # Live first, then the backlog: a delivery made in between is in both (the SDK drops
        # the duplicate), never in neither.
        inbox = api.hub.subscribe(address, asyncio.get_running_loop())

        async def forward() -> None:
            await ws.send_json({"v": 1, "subscribed": address})
            for text in await run_in_threadpool(api.pending, address):
                await ws.send_text(text)
            while True:
                await ws.send_text(await inbox.get())

        async def read() -> None:
            # Receipts come this way; watching the socket is also what lets a closed
            # connection (or a server shutting down) end this handler between alerts.
            while (message := await ws.receive())["type"] != "websocket.disconnect":
                text = message.get("text")
                try:
                    alert_id = _receipt_frame(text if text is not None else "")
                except ValueError as exc:
                    error = {"code": "invalid_request", "message": str(exc)[:200]}
                    inbox.put_nowait(json.dumps({"v": 1, "type": "error", "error": error}))
                    continue
                try:
                    first = await run_in_threadpool(api.receipt, address, alert_id)
                except VitalchainError as exc:
                    error = {"code": exc.code, "message": exc.message}
                    frame = {"v": 1, "type": "error", "alert_id": alert_id, "error": error}
                else:
                    frame = {"v": 1, "type": "receipted", "alert_id": alert_id, "first": first}
                inbox.put_nowait(json.dumps(frame))  # one writer: the forward task

        try:
            tasks = {asyncio.ensure_future(forward()), asyncio.ensure_future(read())}
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and (error := task.exception()) is not None:
                    log.debug("alert stream ended: %s", error_reason(error))  # no address
        except WebSocketDisconnect:
            pass
        finally:
            api.hub.unsubscribe(address, inbox)
