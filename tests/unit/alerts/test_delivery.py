"""Alert delivery: the SDK's backoff, de-duplication and receipts, and the suite on the
embedded chain (tests/support/delivery.py; the same suite runs on anvil).

The subscriber unit tests drive :class:`AlertSubscriber` through a scripted connection (the
gateway's side of one WebSocket) with an injected clock and sleep, so reconnection delays
are checked exactly without waiting for them; the suite uses the real node over a real
socket.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError

from tests.support.alerts import SEALING, signed_post
from tests.support.delivery import (
    _error,
    _list,
    _ws_hello,
    care_team,
    edge_of,
    raise_low,
    subscribe,
)
from tests.support.node import World, make_world
from tests.support.waiting import wait_for
from vitalchain.alerts import delivery
from vitalchain.alerts.delivery import ALERT_REFUSALS
from vitalchain.crypto import PrivateKey
from vitalchain.errors import DecodeError
from vitalchain.ledger import Ledger
from vitalchain.sdk.alert import AlertError
from vitalchain.sdk.subscriber import (
    AlertClient,
    AlertSubscriber,
    Backoff,
    GatewayRefusal,
    SubscriptionClosed,
)
from vitalchain.vitals import Vital
from vitalchain.wire.alert import read_notification

_CLOSED = object()


def notice(alert_id: str, repeat: int = 0, *, v: int = 2, at: int = 1_000) -> str:
    frame: dict[str, Any] = {
        "v": v, "type": "alert", "recipient": "0x" + "11" * 20, "tier": 0,
        "received_at": at - 5, "notified_at": at, "alert": {"alert_id": alert_id},
    }  # fmt: skip
    if v == 2:
        frame.update({"alert_id": alert_id, "priority": "high", "repeat": repeat})
    return json.dumps(frame)


class Scripted:
    """One WebSocket as the gateway would run it: challenge, subscribed, then ``frames``
    (``_CLOSED`` drops the connection there); what the client sends is kept in ``sent``."""

    def __init__(self, frames: list[Any], *, refuse: str | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self._frames = frames
        self._refuse = refuse
        self._out: queue.Queue[Any] = queue.Queue()
        self._out.put(json.dumps({"v": 1, "challenge": "ab" * 32}))

    def send(self, message: str) -> None:
        frame = json.loads(message)
        self.sent.append(frame)
        if "address" in frame:  # the hello
            if self._refuse:
                self._out.put(json.dumps({"v": 1, "error": {"code": self._refuse}}))
                return
            self._out.put(json.dumps({"v": 1, "subscribed": frame["address"]}))
            for item in self._frames:
                self._out.put(item)

    def recv(self, timeout: float | None = None) -> str:
        try:
            item = self._out.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError from None
        if item is _CLOSED:
            self._out.put(_CLOSED)
            raise ConnectionClosedError(None, None)
        assert isinstance(item, str)
        return item

    def close(self) -> None:
        self._out.put(_CLOSED)

    def receipts(self) -> list[str]:
        return [f["alert_id"] for f in self.sent if f.get("type") == "receipt"]


class Clock:
    """Injected time: ``sleep`` moves it on and records each delay."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def connections(*script: Scripted | Exception) -> Callable[[str], Scripted]:
    """``connect`` for the subscriber: each call the next of ``script`` (raised if an error)."""
    items: Iterator[Scripted | Exception] = iter(script)

    def connect(_: str) -> Scripted:
        item = next(items)
        if isinstance(item, Exception):
            raise item
        return item

    return connect


def subscriber(*script: Scripted | Exception, clock: Clock | None = None,
               **kwargs: Any) -> AlertSubscriber:  # fmt: skip
    clock = clock or Clock()
    return AlertSubscriber(
        "ws://127.0.0.1:9/v1/alerts/ws", PrivateKey.generate(), connect=connections(*script),
        backoff=Backoff(random=lambda: 1.0), sleep=clock.sleep, clock=clock, catch_up=False,
        **kwargs,
    )  # fmt: skip


# -- the SDK -------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets() -> None:
    top = Backoff(initial=0.5, factor=2, cap=30, random=lambda: 1.0)
    assert [top.next() for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    low = Backoff(initial=0.5, factor=2, cap=30, random=lambda: 0.0)
    assert [low.next() for _ in range(3)] == [0.25, 0.5, 1.0]  # jitter: half to all of it
    top.reset()
    assert top.next() == 0.5


def test_an_alarm_subscriber_never_waits_more_than_5_s_between_attempts() -> None:
    """A gateway killed again and again (benchmarks/faults.py) once left the SDK at a 30 s
    cap, so alarms raised after a restart reached the provider 30-47 s late."""
    waits = Backoff(random=lambda: 1.0)
    assert max(waits.next() for _ in range(20)) == 5.0


def test_read_notice_reads_both_versions_and_nothing_else() -> None:
    v2 = read_notification(json.loads(notice("aa" * 16, 2)))
    assert (v2["alert_id"], v2["priority"], v2["repeat"]) == ("aa" * 16, "high", 2)
    v1 = read_notification(json.loads(notice("bb" * 16, v=1)))
    assert (v1["alert_id"], v1["priority"], v1["repeat"]) == ("bb" * 16, None, 0)
    for junk in ({"v": 3, "type": "alert"}, {"v": 2, "type": "alert"}, {"subscribed": "x"},
                 {**json.loads(notice("cc" * 16)), "tier": "top"}):  # fmt: skip
        with pytest.raises(DecodeError):
            read_notification(junk)


def test_each_notice_is_returned_once_and_receipted_a_repeat_is_new() -> None:
    a, b = "aa" * 16, "bb" * 16
    ws = Scripted([notice(a), notice(a), notice(b), notice(a, 1), notice(b, v=1)])
    with subscriber(ws) as sub:
        got = [(n["alert_id"], n["repeat"]) for n in (sub.receive(timeout=1) for _ in range(3))]
        assert got == [(a, 0), (b, 0), (a, 1)]
        with pytest.raises(TimeoutError):
            sub.receive(timeout=0.05)
        assert sub.duplicates == 2  # the second (a, 0) and the v1 copy of b
    # a receipt for every copy: one that was lost with a connection is sent again
    assert ws.receipts() == [a, a, b, a, b]


def test_the_duplicate_memory_is_bounded() -> None:
    ids = [f"{i:032x}" for i in range(4)]
    ws = Scripted([notice(i) for i in ids] + [notice(ids[0])])
    with subscriber(ws, seen=2) as sub:
        got = [sub.receive(timeout=1)["alert_id"] for _ in range(5)]
        assert got == [*ids, ids[0]]  # ids[0] was forgotten (the oldest of more than 2)
        assert len(sub._seen) == 2


def test_a_dropped_stream_reconnects_with_exponential_backoff() -> None:
    a, b = "aa" * 16, "bb" * 16
    clock = Clock()
    first, second = Scripted([notice(a), _CLOSED]), Scripted([notice(b)])
    events: list[str] = []
    with subscriber(first, OSError("refused"), TimeoutError(), second, clock=clock,
                    on_event=lambda name, _: events.append(name)) as sub:  # fmt: skip
        assert sub.receive(timeout=100)["alert_id"] == a
        assert sub.receive(timeout=100)["alert_id"] == b
        assert clock.slept == [0.5, 1.0, 2.0]  # two failed attempts, then subscribed
        assert sub.reconnects == 1
        assert sub.backoff.attempt == 0  # reset by the success
    assert events[0] == "disconnected"
    assert events.count("unreachable") == 2
    assert events[-1] == "subscribed"


def test_a_timeout_while_reconnecting_keeps_the_wait_already_spent() -> None:
    clock = Clock()
    with subscriber(Scripted([_CLOSED]), OSError(), Scripted([notice("aa" * 16)]),
                    clock=clock) as sub:  # fmt: skip
        with pytest.raises(TimeoutError):
            sub.receive(timeout=0.2)  # the first retry is due at 0.5 s
        assert clock.now == pytest.approx(0.2)
        with pytest.raises(TimeoutError):
            sub.receive(timeout=0.6)  # retried at 0.5 (refused); the next is due at 1.5
        assert clock.now == pytest.approx(0.8)
        assert sub.receive(timeout=10)["alert_id"] == "aa" * 16
        assert clock.now == pytest.approx(1.5)


def test_a_refusal_on_reconnecting_is_raised_not_retried() -> None:
    with subscriber(Scripted([_CLOSED]), Scripted([], refuse="invalid_signature")) as sub:
        with pytest.raises(AlertError) as refused:
            sub.receive(timeout=10)
        assert refused.value.code == "invalid_signature"


def test_a_first_refusal_raises_at_construction() -> None:
    with pytest.raises(AlertError) as refused:
        subscriber(Scripted([], refuse="invalid_signature"))
    assert refused.value.code == "invalid_signature"


def test_close_from_another_thread_ends_a_blocked_receive() -> None:
    sub = subscriber(Scripted([]))
    outcome: list[BaseException] = []

    def blocked() -> None:
        try:
            sub.receive()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    sub.close()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert isinstance(outcome[0], SubscriptionClosed)
    with pytest.raises(SubscriptionClosed):
        sub.receive(timeout=1)


def test_every_refusal_of_the_alert_routes_is_documented() -> None:
    """Each code delivery.py answers with is named in ALERT_REFUSALS under its status."""
    source = Path(delivery.__file__).read_text()
    raised = set(re.findall(r'AlertError\(\s*(\d{3}),\s*"([a-z_]+)"', source))
    raised |= {
        (422, "invalid_snooze"),
        (404, "unknown_alert"),
        (403, "not_a_recipient"),
        (422, "invalid_request"),
    }  # fmt: skip - SnoozeRefused, the service, pydantic
    raised.discard(("502", "not_a_gateway"))  # the SDK's own, never a route's
    for status, code in raised:
        assert f"`{code}`" in ALERT_REFUSALS[int(status)]["description"], (status, code)


# -- the suite, on each chain -------------------------------------------------------------------


@pytest.fixture
def world(any_chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    yield from make_world(any_chain, tmp_path / "node", SEALING)


class TestDeliveryService:
    def test_a_subscriber_offline_during_three_alerts_gets_each_once_on_reconnect(
        self, world: World
    ) -> None:
        """Issue 13's test: three alerts raised while the subscriber cannot connect (the
        gateway's HTTP edge is down) all arrive when it is back, each exactly once."""
        team = care_team(world, patients=3)
        doctor, devices = team.doctor, team.devices
        with edge_of(world) as edge, subscribe(edge, doctor) as subscriber:
            edge.stop()  # the subscriber is offline from here
            raised = {raise_low(world, d).alert_id.hex() for d in devices}
            assert len(raised) == 3
            edge.start()
            got = [subscriber.receive(timeout=30) for _ in range(3)]
            assert sorted(n["alert_id"] for n in got) == sorted(raised)
            with pytest.raises(TimeoutError):
                subscriber.receive(timeout=0.5)  # nothing more: no duplicate returned
            # Listed (the catch-up) and re-sent (no receipt yet): each came twice.
            assert subscriber.duplicates >= 3
            assert subscriber.reconnects >= 1
            # Receipts went back over the stream: nothing is left to re-send.
            service = world.running.alerts
            wait_for(lambda: not service.pending_for(doctor.address) or None)

    def test_notification_v2_carries_id_priority_and_repeat(self, world: World) -> None:
        team = care_team(world)
        doctor, (device,) = team.doctor, team.devices
        with world.client.websocket_connect("/v1/alerts/ws") as ws:
            _ws_hello(ws, doctor)
            alert = raise_low(world, device)
            notice = ws.receive_json()
        assert (notice["v"], notice["type"]) == (2, "alert")
        assert notice["alert_id"] == alert.alert_id.hex() == notice["alert"]["alert_id"]
        assert notice["priority"] in ("high", "medium", "low")
        assert notice["repeat"] == 0
        assert notice["recipient"] == doctor.address
        assert notice["notified_at"] >= notice["received_at"] > 0

    def test_unreceipted_alerts_are_sent_again_on_every_subscribe_until_receipted(
        self, world: World
    ) -> None:
        team = care_team(world, patients=2)
        doctor, devices = team.doctor, team.devices
        first, second = (raise_low(world, d).alert_id.hex() for d in devices)
        for _ in range(2):  # no receipt: the same two, oldest first, on each subscribe
            with world.client.websocket_connect("/v1/alerts/ws") as ws:
                _ws_hello(ws, doctor)
                assert [ws.receive_json()["alert_id"] for _ in range(2)] == [first, second]
        with world.client.websocket_connect("/v1/alerts/ws") as ws:
            _ws_hello(ws, doctor)
            assert ws.receive_json()["alert_id"] == first
            ws.send_json({"v": 1, "type": "receipt", "alert_id": first})
            assert ws.receive_json()["alert_id"] == second
            answer = ws.receive_json()
            assert answer == {"v": 1, "type": "receipted", "alert_id": first, "first": True}
            ws.send_json({"v": 1, "type": "receipt", "alert_id": first})
            assert ws.receive_json()["first"] is False  # idempotent
            ws.send_json({"v": 1, "type": "receipt", "alert_id": "zz"})
            assert ws.receive_json()["error"]["code"] == "invalid_request"
            ws.send_json({"v": 1, "type": "receipt", "alert_id": "00" * 16})
            assert ws.receive_json()["error"]["code"] == "unknown_alert"
        with world.client.websocket_connect("/v1/alerts/ws") as ws:
            _ws_hello(ws, doctor)
            assert ws.receive_json()["alert_id"] == second  # only the unreceipted one
        # The receipt is not the clinician's acknowledgement.
        assert world.running.alerts.escalator.state(first).acknowledged_by is None

    def test_list_since_returns_what_was_delivered_and_refuses_clearly(self, world: World) -> None:
        team = care_team(world)
        doctor, (device,) = team.doctor, team.devices
        start_ms = int(time.time() * 1000) - 1
        alert = raise_low(world, device)
        r, _ = _list(world, doctor, start_ms)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["v"] == 1
        assert [n["alert_id"] for n in body["alerts"]] == [alert.alert_id.hex()]
        assert body["alerts"][0]["v"] == 2
        r, _ = _list(world, doctor, int(time.time() * 1000) + 60_000)
        assert r.json()["alerts"] == []  # nothing delivered after that
        # refusals: another's signature, a reused challenge, a bad since (each stores nothing)
        r, _ = _list(world, doctor, start_ms, signer=PrivateKey.generate())
        assert _error(r) == (401, "invalid_signature")
        r, nonce = _list(world, doctor, start_ms)
        r, _ = _list(world, doctor, start_ms, nonce=nonce)
        assert _error(r) == (401, "challenge_invalid")
        for since in (-1, "yesterday", 2**63):
            r, _ = _list(world, doctor, since)
            assert _error(r) == (422, "invalid_request"), since
        stranger = world.provider()
        r, _ = _list(world, stranger, start_ms)
        assert r.json()["alerts"] == []  # not a recipient: nothing of anyone else's

    def test_receipts_over_http_for_mqtt_and_list_users(self, world: World) -> None:
        team = care_team(world)
        doctor, (device,) = team.doctor, team.devices
        alert_id = raise_low(world, device).alert_id.hex()
        client = AlertClient(doctor, world.client)
        unknown = "00" * 16
        results = client.receipts([alert_id, unknown])
        assert results[0] == {"alert_id": alert_id, "first": True}
        assert results[1]["error"]["code"] == "unknown_alert"
        assert client.receipts([alert_id]) == [{"alert_id": alert_id, "first": False}]
        stranger = AlertClient(world.provider(), world.client)
        assert stranger.receipts([alert_id])[0]["error"]["code"] == "not_a_recipient"
        assert not world.running.alerts.pending_for(doctor.address)
        body = {"alert_ids": [alert_id]}
        r = signed_post(world, doctor, "/v1/alerts/receipts", "receipt", alert_id, body=body,
                        signer=PrivateKey.generate())  # fmt: skip
        assert _error(r) == (401, "invalid_signature")
        r = signed_post(world, doctor, "/v1/alerts/receipts", "receipt", body={"alert_ids": []})
        assert _error(r) == (422, "invalid_request")

    def test_a_snooze_takes_only_the_offered_durations(self, world: World) -> None:
        team = care_team(world)
        doctor, body_patient = team.doctor, team.patients[0].address
        choices = world.running.alerts.snooze_choices(body_patient, Vital.SPO2)
        assert choices
        body = {"patient": body_patient, "vital": "spo2"}
        for odd in (max(choices) + 1.0, 7.0 * 86400):  # a high alarm: never past its maximum
            fields = (body_patient, "spo2", repr(odd))
            r = signed_post(world, doctor, "/v1/alerts/snoozes", "snooze", *fields,
                            body={**body, "duration_s": odd})  # fmt: skip
            assert _error(r) == (422, "invalid_snooze")
            assert r.json()["error"]["choices_s"] == list(choices)
        for junk in (0.0, -300.0, "300"):
            r = signed_post(world, doctor, "/v1/alerts/snoozes", "snooze", body_patient, "spo2",
                            repr(junk), body={**body, "duration_s": junk})  # fmt: skip
            assert _error(r) == (422, "invalid_request"), junk
        assert not world.running.alerts.escalator.is_snoozed(doctor.address, body_patient,
                                                             Vital.SPO2)  # fmt: skip
        odd = max(choices) + 1.0
        ok = choices[0]
        fields = (body_patient, "spo2", repr(ok))
        r = signed_post(world, doctor, "/v1/alerts/snoozes", "snooze", *fields,
                        body={**body, "duration_s": ok})  # fmt: skip
        assert r.status_code == 200, r.text
        # The SDK's refusal carries the choices too.
        client = AlertClient(doctor, world.client)
        with pytest.raises(GatewayRefusal) as refused:
            client.snooze(body_patient, Vital.SPO2, odd)
        assert (refused.value.code, refused.value.choices) == ("invalid_snooze", tuple(choices))
