"""Real-time alert delivery to patients and providers: WebSocket and MQTT (docs/spec/alert.md).

Routes parse and call :class:`AlertApi`; the hub pushes each delivery to the recipient's live
WebSocket connections and to its MQTT topic.  A subscriber proves its address by signing a
fresh challenge, and receives only alerts it is a recipient of: a provider without consent
is never a recipient, so it receives nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from vitalchain.care.access import REFUSALS
from vitalchain.care.alerts import Alert, AlertError, AlertService
from vitalchain.care.escalation import Delivery, EscalationError
from vitalchain.care.rules import RuleError
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature, message_digest
from vitalchain.errors import DecodeError, InvalidSignature
from vitalchain.ledger.address import Address
from vitalchain.logs import safe_error
from vitalchain.store.base import BlockStore
from vitalchain.vitals import Vital

__all__ = ["AlertApi", "AlertHub", "AlertSubscriber", "mount_alerts", "sign_action"]

ACTION_CONTEXT = b"vitalchain/v1/alert-action"
NONCE_TTL_S = 60


def alerts_topic(group_id: int, recipient: str) -> str:
    return f"vitalchain/v1/{group_id}/alerts/{recipient}"


def sign_action(key: PrivateKey, action: str, nonce: bytes, *fields: str) -> str:
    """A recipient's signature over one action (subscribe, ack, snooze) and its fresh nonce."""
    message = "\n".join([action, nonce.hex(), *fields]).encode()
    return key.sign_digest(message_digest(message, ACTION_CONTEXT)).to_rsv().hex()


def _signer(action: str, nonce: bytes, signature: str, *fields: str) -> str | None:
    message = "\n".join([action, nonce.hex(), *fields]).encode()
    try:
        sig = Signature.from_rsv(bytes.fromhex(signature))
        return PublicKey.recover(sig, message_digest(message, ACTION_CONTEXT)).address
    except (InvalidSignature, DecodeError, ValueError):
        return None


log = logging.getLogger(__name__)


class AlertHub:
    """Fan-out of deliveries; called from any thread, writes to WebSockets on their loop."""

    def __init__(
        self,
        group_id: int,
        publish: Callable[[str, bytes], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.group_id = group_id
        self.publish = publish  # MQTT: (topic, payload); None when no broker runs
        self.clock = clock
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
            self._subscribers[address] = live

    def subscribers(self, address: str) -> int:
        """Live connections of ``address``."""
        with self._lock:
            return len(self._subscribers.get(address, []))

    def pending(self, address: str) -> int:
        """Notices queued and not yet written to ``address``'s live connections."""
        with self._lock:
            return sum(inbox.qsize() for _, inbox in self._subscribers.get(address, []))

    def deliver(self, alert: Alert, delivery: Delivery) -> None:
        notice = json.dumps(
            {
                "v": 1,
                "type": "alert",
                "recipient": delivery.recipient,
                "tier": delivery.tier,
                "received_at": alert.received_at_ms,
                "notified_at": int(self.clock() * 1000),
                "alert": alert.to_json(),
            }
        )
        with self._lock:
            targets = list(self._subscribers.get(delivery.recipient, []))
            self.delivered += 1
        for loop, inbox in targets:
            loop.call_soon_threadsafe(inbox.put_nowait, notice)
        if self.publish is not None:
            self.publish(alerts_topic(self.group_id, delivery.recipient), notice.encode())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


_NONCE = Field(pattern=r"^[0-9a-f]{64}$")
_SIGNATURE = Field(pattern=r"^[0-9a-fA-F]{130}$")


class ChallengeRequest(_Strict):
    v: Literal[1]
    address: Address


class AckRequest(_Strict):
    v: Literal[1]
    by: Address
    nonce: str = _NONCE
    signature: str = _SIGNATURE


class SnoozeRequest(_Strict):
    v: Literal[1]
    by: Address
    patient: Address
    vital: str | None = None
    duration_s: float = Field(gt=0, le=86400)
    nonce: str = _NONCE
    signature: str = _SIGNATURE


class AlertApi:
    """What the alert routes call: challenges, signed acknowledgements and snoozes."""

    def __init__(
        self,
        service: AlertService,
        hub: AlertHub,
        store: BlockStore,
        *,
        mqtt_credentials: Callable[[str], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.service = service
        self.hub = hub
        self.store = store
        self.mqtt_credentials = mqtt_credentials
        self.clock = clock
        self.random = random

    def challenge(self, address: str) -> dict[str, Any]:
        nonce = self.random(32)
        expires_at = int(self.clock()) + NONCE_TTL_S
        self.store.add_nonce(nonce, address, expires_at * 1000)
        return {"v": 1, "nonce": nonce.hex(), "expires_at": expires_at}

    def _authenticate(self, by: str, action: str, nonce: str, signature: str, *fields: str) -> None:
        if _signer(action, bytes.fromhex(nonce), signature, *fields) != by:
            raise AlertError(401, "invalid_signature", "the request is not signed by its sender")
        if not self.store.consume_nonce(bytes.fromhex(nonce), by, int(self.clock() * 1000)):
            raise AlertError(401, "challenge_invalid", "unknown, used or expired challenge")

    def acknowledge(self, alert_id: str, body: AckRequest) -> dict[str, Any]:
        self._authenticate(body.by, "ack", body.nonce, body.signature, alert_id)
        first = self.service.escalator.acknowledge(alert_id, body.by)
        return {"v": 1, "alert_id": alert_id, "acknowledged": True, "first": first}

    def mqtt(self, body: AckRequest) -> dict[str, Any]:
        """Broker credentials that can read only the sender's own alert topic."""
        if self.mqtt_credentials is None:
            raise AlertError(409, "mqtt_unavailable", "this gateway runs no MQTT broker")
        self._authenticate(body.by, "mqtt", body.nonce, body.signature)
        return {"v": 1, **self.mqtt_credentials(body.by)}

    def snooze(self, body: SnoozeRequest) -> dict[str, Any]:
        vital = None
        if body.vital is not None:
            try:
                vital = Vital.parse(body.vital)
            except (ValueError, KeyError):
                raise AlertError(422, "unknown_vital", f"unknown vital {body.vital!r}") from None
        fields = (body.patient, body.vital or "*", repr(body.duration_s))
        self._authenticate(body.by, "snooze", body.nonce, body.signature, *fields)
        if body.by != body.patient and body.by not in self.service.providers(body.patient, vital):
            raise AlertError(403, "not_a_recipient", "only the patient or a consented provider")
        until = self.service.escalator.snooze(body.by, body.patient, vital, body.duration_s)
        return {"v": 1, "until": until}


async def _api(request: Request) -> AlertApi:
    api: AlertApi = request.app.state.alerts
    return api


ApiDep = Annotated[AlertApi, Depends(_api)]


def create_alert_router() -> APIRouter:
    router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

    @router.post("/challenges", status_code=201, responses=REFUSALS)
    def challenge(body: ChallengeRequest, api: ApiDep) -> dict[str, Any]:
        """A one-time nonce for the sender's next signed acknowledgement or snooze."""
        return api.challenge(body.address)

    @router.post("/snoozes", responses=REFUSALS)
    def snooze(body: SnoozeRequest, api: ApiDep) -> dict[str, Any]:
        """Suppress deliveries of a patient's alerts (one vital, or all) to the sender."""
        return api.snooze(body)

    @router.post("/mqtt-credentials", status_code=201, responses=REFUSALS)
    def mqtt(body: AckRequest, api: ApiDep) -> dict[str, Any]:
        """MQTT credentials for ``vitalchain/v1/<group>/alerts/<address>``, read-only."""
        return api.mqtt(body)

    @router.get("/{alert_id}", responses=REFUSALS)
    def public(alert_id: str, api: ApiDep) -> dict[str, Any]:
        """The public alert object: ciphertext, ring proof, relay signature."""
        try:
            raw = bytes.fromhex(alert_id)
        except ValueError:
            raise AlertError(404, "unknown_alert", "no such alert") from None
        return api.service.public(raw).to_json()

    @router.post("/{alert_id}/acknowledgements", responses=REFUSALS)
    def acknowledge(alert_id: str, body: AckRequest, api: ApiDep) -> dict[str, Any]:
        """A recipient acknowledges: escalation stops."""
        return api.acknowledge(alert_id, body)

    return router


def mount_alerts(app: FastAPI, api: AlertApi) -> None:
    app.state.alerts = api
    app.include_router(create_alert_router())

    @app.exception_handler(AlertError)
    @app.exception_handler(EscalationError)
    @app.exception_handler(RuleError)
    async def alert_error(_: Request, exc: Exception) -> JSONResponse:
        status = getattr(exc, "status", 422)
        code = getattr(exc, "code", "invalid_request")
        return JSONResponse({"error": {"code": code, "message": str(exc)}}, status_code=status)

    @app.websocket("/v1/alerts/ws")
    async def stream(ws: WebSocket) -> None:
        """Live deliveries for the address that signs the connection's challenge."""
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
        inbox = api.hub.subscribe(address, asyncio.get_running_loop())

        async def forward() -> None:
            while True:
                await ws.send_text(await inbox.get())

        async def until_closed() -> None:
            # A subscriber sends nothing after its hello; watching the socket is what lets a
            # closed connection (or a server shutting down) end this handler between alerts.
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass

        try:
            await ws.send_json({"v": 1, "subscribed": address})
            tasks = {asyncio.ensure_future(forward()), asyncio.ensure_future(until_closed())}
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and (error := task.exception()) is not None:
                    log.debug("alert stream ended: %s", safe_error(error))  # no address
        except WebSocketDisconnect:
            pass
        finally:
            api.hub.unsubscribe(address, inbox)


class AlertSubscriber:
    """The patient's or provider's side: a live WebSocket feed of its own alerts."""

    def __init__(self, url: str, key: PrivateKey) -> None:
        from websockets.sync.client import connect

        self.key = key
        self._stack = contextlib.ExitStack()
        self._ws = self._stack.enter_context(connect(url))
        hello = json.loads(self._ws.recv(timeout=10))
        nonce = bytes.fromhex(hello["challenge"])
        signature = sign_action(key, "subscribe", nonce)
        self._ws.send(json.dumps({"v": 1, "address": key.address, "signature": signature}))
        answer = json.loads(self._ws.recv(timeout=10))
        if answer.get("subscribed") != key.address:
            raise AlertError(401, "subscription_refused", str(answer.get("error")))

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next notification, with ``latency_ms`` from the reading's arrival to now."""
        notice: dict[str, Any] = json.loads(self._ws.recv(timeout=timeout))
        notice["latency_ms"] = time.time() * 1000 - notice["received_at"]
        return notice

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.receive()

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> AlertSubscriber:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
