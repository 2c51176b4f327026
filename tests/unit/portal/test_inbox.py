"""The provider's alert inbox on a live node: an alarm raised by a simulated episode reaches
the inbox through the gateway's alert stream, and acknowledging or snoozing it is recorded
by the gateway.  The portal's WebSocket needs the session cookie and the portal's origin."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.support.delivery import raise_low
from tests.support.node import World, make_world
from tests.support.portal import BASE_URL, csrf_of, live_portal, portal_client, portal_of
from tests.support.waiting import wait_for
from vitalchain.alerts.rules import Priority
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.ledger import Ledger
from vitalchain.logs import pseudonym
from vitalchain.portal import inbox as inbox_module
from vitalchain.portal.core import Portal
from vitalchain.portal.inbox import Inbox, ws_url
from vitalchain.sdk.subscriber import AlertClient
from vitalchain.vitals import Vital

WS = BASE_URL.replace("http://", "ws://") + "/inbox/ws"  # the TestClient's own host, not testserver


@dataclass
class Team:
    patient: PrivateKey
    provider: PrivateKey
    device: DeviceClient


def team_of(world: World) -> Team:
    """A patient who consented a provider for SpO2, and the patient's oximeter."""
    patient, provider = world.patient(), world.provider()
    world.consent(patient, provider, Vital.SPO2)
    return Team(patient, provider, world.device(patient))


@contextmanager
def inbox_of(world: World, team: Team) -> Iterator[tuple[Portal, TestClient]]:
    """The provider's portal, signed in, its inbox subscribed to the node's alert stream."""
    with live_portal(world, team.provider) as portal, portal_client(portal) as client:
        assert client.get("/inbox").status_code == 200  # the first visit subscribes
        yield portal, client
    assert not [t for t in threading.enumerate() if t.name.startswith("portal-inbox")]


def shown(client: TestClient, alert_id: str) -> str | None:
    page = client.get("/inbox").text
    return page if f'id="alert-{alert_id}"' in page else None


def row(page: str, alert_id: str) -> str:
    found = re.search(rf'<tr id="alert-{alert_id}".*?</tr>', page, re.S)
    assert found is not None
    return found.group(0)


def test_an_alarm_of_an_episode_is_listed_with_pseudonym_vital_value_and_priority(
    world: World,
) -> None:
    team = team_of(world)
    with inbox_of(world, team) as (_, client):
        alert_id = raise_low(world, team.device).alert_id.hex()
        page = wait_for(lambda: shown(client, alert_id), "the alarm in the inbox")
        listed = row(page, alert_id)
        assert pseudonym(team.patient.address) in listed
        assert team.patient.address not in page
        assert team.patient.address.lower() not in page
        assert team.device.key.address.lower() not in page.lower()
        assert "Oxygen saturation by pulse oximetry" in listed
        assert "85 %" in listed
        assert 'class="priority priority-medium"' in listed
        assert 'data-state="new"' in listed
        assert re.search(r'<time datetime="[^"]+Z" data-epoch-ms="\d+">', listed)
        # the gateway's snooze choices for SpO2 (its urgent limit makes them high's)
        wait_for(lambda: 'value="300"' in row(client.get("/inbox").text, alert_id), "choices")
        page = client.get("/inbox").text
        assert [m for m in re.findall(r'name="duration_s" value="(\d+)"', row(page, alert_id))] == [
            "300",
            "600",
            "900",
        ]
        technical = page.split('id="technical-alarms"', 1)[1]
        assert alert_id not in technical
        assert "No technical alarms." in technical


def test_acknowledging_is_recorded_by_the_gateway(world: World) -> None:
    team = team_of(world)
    with inbox_of(world, team) as (_, client):
        alert_id = raise_low(world, team.device).alert_id.hex()
        page = wait_for(lambda: shown(client, alert_id), "the alarm in the inbox")
        answer = client.post(
            f"/inbox/{alert_id}/ack", data={"csrf": csrf_of(page)}, follow_redirects=False
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/inbox"
        state = world.running.alerts.escalator.state(alert_id)
        assert state.acknowledged_by == team.provider.address
        listed = row(client.get("/inbox").text, alert_id)
        assert 'data-state="acknowledged"' in listed
        assert "Acknowledge</button>" not in listed
        # the script's fetch asks for JSON; a second acknowledgement is not the first
        again = client.post(
            f"/inbox/{alert_id}/ack",
            data={"csrf": csrf_of(page)},
            headers={"accept": "application/json"},
        )
        assert again.status_code == 200
        assert again.json()["item"]["state"] == "acknowledged"
        unknown = client.post(
            f"/inbox/{'0' * 32}/ack",
            data={"csrf": csrf_of(page)},
            headers={"accept": "application/json"},
        )
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "unknown_alert"


def test_a_snooze_of_an_offered_duration_is_recorded_and_others_are_422(world: World) -> None:
    team = team_of(world)
    with inbox_of(world, team) as (_, client):
        alert_id = raise_low(world, team.device).alert_id.hex()
        page = wait_for(lambda: shown(client, alert_id), "the alarm in the inbox")
        csrf = csrf_of(page)
        for refused in ("1800", "60", "abc", ""):  # medium's 30 min is not offered for SpO2
            answer = client.post(
                f"/inbox/{alert_id}/snooze", data={"csrf": csrf, "duration_s": refused}
            )
            assert answer.status_code == 422, refused
            assert "invalid_snooze" in answer.text
        escalator = world.running.alerts.escalator
        assert not escalator.is_snoozed(
            team.provider.address, team.patient.address, Vital.SPO2, Priority.HIGH
        )
        answer = client.post(
            f"/inbox/{alert_id}/snooze",
            data={"csrf": csrf, "duration_s": "300"},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        assert escalator.is_snoozed(
            team.provider.address, team.patient.address, Vital.SPO2, Priority.HIGH
        )
        listed = row(client.get("/inbox").text, alert_id)
        assert 'data-state="snoozed"' in listed
        assert "Snoozed until" in listed
        assert 'name="duration_s"' not in listed  # snoozed: only Acknowledge is left


def test_forms_without_csrf_or_session_are_refused(world: World) -> None:
    team = team_of(world)
    with inbox_of(world, team) as (_portal, client):
        alert_id = raise_low(world, team.device).alert_id.hex()
        wait_for(lambda: shown(client, alert_id), "the alarm in the inbox")
        for path, data in (("ack", {}), ("snooze", {"duration_s": "300"})):
            missing = client.post(f"/inbox/{alert_id}/{path}", data=data)
            assert missing.status_code == 403
            assert "csrf_failed" in missing.text
            wrong = client.post(f"/inbox/{alert_id}/{path}", data={**data, "csrf": "0" * 64})
            assert wrong.status_code == 403
            scripted = client.post(
                f"/inbox/{alert_id}/{path}", data=data, headers={"accept": "application/json"}
            )
            assert scripted.status_code == 403
            assert scripted.json()["error"]["code"] == "csrf_failed"
        assert world.running.alerts.escalator.state(alert_id).acknowledged_by is None
        stranger = TestClient(client.app, base_url=BASE_URL)  # no cookie (and no lifespan)
        assert stranger.post(f"/inbox/{alert_id}/ack", data={"csrf": "x"}).status_code == 401
        landing = stranger.get("/inbox", follow_redirects=False)
        assert landing.status_code == 303
        assert landing.headers["location"] == "/login"


def test_the_websocket_needs_the_cookie_and_the_portals_own_origin(world: World) -> None:
    team = team_of(world)
    with inbox_of(world, team) as (_, client):
        refusals: tuple[dict[str, str], ...] = (
            {"origin": "http://evil.example"},
            {},  # no Origin at all
            {"origin": "http://localhost:8800"},  # another name of the same port
        )
        for headers in refusals:
            with (
                pytest.raises(WebSocketDisconnect) as refused,
                client.websocket_connect(WS, headers=headers),
            ):
                pass
            assert refused.value.code == 1008, headers
        stranger = TestClient(client.app, base_url=BASE_URL)  # no cookie (and no lifespan)
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            stranger.websocket_connect(WS, headers={"origin": BASE_URL}),
        ):
            pass
        assert refused.value.code == 1008
        with client.websocket_connect(WS, headers={"origin": BASE_URL}) as ws:
            assert ws.receive_json() == {"type": "hello"}
            alert = raise_low(world, team.device)
            pushed = ws.receive_json()
            assert pushed["type"] == "alert"
            assert pushed["event"] == "notified"
            item = pushed["item"]
            assert item["alert_id"] == alert.alert_id.hex()
            assert item["patient"] == pseudonym(team.patient.address)
            assert item["priority"] == "medium"
            assert item["state"] == "new"
            assert team.patient.address.lower() not in str(pushed).lower()


def test_technical_alarms_are_shown_apart(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> None:
    """A device gone silent past the stale limit: the alarm service's own technical alarm."""
    with contextmanager(make_world)(chain, tmp_path / "node", alert_stale_warning_s=0.3) as world:
        team = team_of(world)
        team.device.send(team.device.prepare([(Vital.SPO2, 97.0)]))
        with inbox_of(world, team) as (_, client):
            alerts = world.running.alerts

            def stale() -> str | None:
                alerts.tick()
                page = client.get("/inbox").text
                technical = page.split('id="technical-alarms"', 1)[1]
                return technical if "No data from a device" in technical else None

            technical = wait_for(stale, "the stale-device alarm in the inbox")
            assert "(warning)" in technical
            assert 'class="priority priority-low"' in technical
            assert pseudonym(team.device.key.address) in technical
            assert team.device.key.address.lower() not in technical.lower()
            patients = client.get("/inbox").text.split('id="technical-alarms"', 1)[0]
            assert "No data from a device" not in patients


def test_state_follows_the_gateways_snooze_end_and_notifications(world: World) -> None:
    """The Inbox without threads or pages: the notifications as the gateway lists them,
    with an injected clock."""
    team = team_of(world)
    alert = raise_low(world, team.device)
    listed = AlertClient(team.provider, world.client).since(0)
    now = [world.running.gateway.clock()]
    portal = portal_of(world, team.provider)
    portal.clock = lambda: now[0]
    inbox = Inbox(portal)
    heard: list[str] = []
    stop = inbox.listen(heard.append)
    for notice in listed:
        inbox.add(portal.gateways[0], notice)
    item = inbox.item(alert.alert_id.hex())
    assert inbox.state(item) == "new"
    assert heard
    assert '"event": "notified"' in heard[0]
    assert inbox.choices(item) == (300.0, 600.0, 900.0)
    inbox.snooze(item.alert_id, "600")
    assert inbox.state(item) == "snoozed"
    now[0] += 601
    assert inbox.state(item) == "new"  # the snooze ran out
    repeat = {**listed[0], "repeat": 1, "notified_at": listed[0]["notified_at"] + 1}
    inbox.add(portal.gateways[0], repeat)
    assert inbox.state(item) == "escalated"
    assert item.repeat == 1
    stop()
    inbox.close()
    assert ws_url("http://127.0.0.1:9/") == "ws://127.0.0.1:9/v1/alerts/ws"
    assert ws_url("https://gw.example") == "wss://gw.example/v1/alerts/ws"


def test_an_alarm_that_does_not_open_is_shown_as_technical_and_memory_is_bounded(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = team_of(world)
    first = raise_low(world, team.device).alert_id.hex()
    listed = AlertClient(team.provider, world.client).since(0)
    # another provider's key: the envelope is not wrapped for it
    other = Inbox(portal_of(world, world.provider()))
    other.add(other.portal.gateways[0], listed[0])
    view = other.view(other.item(first))
    assert view["technical"] is True
    assert view["kind"] == "unreadable"
    assert view["code"] == "decryption_failed"
    assert other.page()["technical_alarms"] == [view]

    inbox = Inbox(portal_of(world, team.provider))
    inbox.add(inbox.portal.gateways[0], listed[0])
    inbox.acknowledge(first)
    monkeypatch.setattr(inbox_module, "MAX_ITEMS", 1)
    patient = world.patient()
    world.consent(patient, team.provider, Vital.SPO2)
    second = raise_low(world, world.device(patient)).alert_id.hex()
    for notice in AlertClient(team.provider, world.client).since(0):
        if notice["alert_id"] == second:
            inbox.add(inbox.portal.gateways[0], notice)
    assert [i.alert_id for i in inbox.items()] == [second]  # the acknowledged one went first
