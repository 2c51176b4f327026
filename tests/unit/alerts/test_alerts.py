"""The alarm service's durability (issue 13):
restarts on the same data directory, replay of the journal, receipts and listing, technical
alarms, and the alert formats of earlier versions."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.alerts import (
    RING_K,
    SEALING,
    alert_world,
    escalating_after,
    raised_since,
)
from tests.support.gateway import settings_for
from tests.support.node import World
from tests.support.waiting import wait_for
from vitalchain.alerts.escalation import EscalationError
from vitalchain.crypto import PrivateKey
from vitalchain.crypto.envelope import seal_for
from vitalchain.errors import DecodeError
from vitalchain.ledger import Ledger
from vitalchain.node import load_or_create_key, running_gateway
from vitalchain.sdk.alert import Alert, AlertError, open_alert, verify_alert
from vitalchain.vitals import Vital
from vitalchain.wire.alert import RELAY_CONTEXT

_ids = itertools.count(9_100_000)


@pytest.fixture
def world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    yield from alert_world(chain, tmp_path / "node")


# -- restarts on one data directory -------------------------------------------------------------


class Node:
    """One node's settings, started again and again on the same data directory (and so the
    same master key): what survives a restart is what the alarm service persisted."""

    def __init__(self, chain: tuple[Ledger, PrivateKey], data_dir: Path, **overrides: Any) -> None:
        self.ledger, self.admin = chain
        self.settings = settings_for(
            data_dir,
            alert_ring_k=RING_K,
            **overrides,
        )

    @contextlib.contextmanager
    def run(self) -> Iterator[World]:
        with (
            running_gateway(self.settings, ledger=self.ledger, sealing=SEALING,
                            background=False) as running,
            TestClient(running.app()) as client,
        ):  # fmt: skip
            yield World(running, client, self.ledger, self.admin)


def crash_alarms(world: World) -> None:
    """What a kill -9 leaves of the alarm state: whatever was flushed before this call.

    The journal goes on committing (it is another file); the alarm service's writes stop."""
    db = world.running.alerts.db
    db.flush = lambda: False  # type: ignore[method-assign]


def send(world: World, device: Any, value: float, count: int = 1) -> None:
    device.http = world.client
    device.send(device.prepare([(Vital.SPO2, value)] * count))


def episode_count(world: World, patient: str) -> int:
    episodes, _ = world.running.alerts.engine.snapshot()
    return sum(e.count for e in episodes if e.patient == patient and e.vital == Vital.SPO2)


def test_readings_the_alarm_store_never_saw_are_replayed_from_the_journal(
    chain: tuple[Ledger, PrivateKey], tmp_path: Path
) -> None:
    """Killed after M-1 abnormal readings (none of them in alarms.db): the M-th raises."""
    node = Node(chain, tmp_path / "node")
    with node.run() as world:
        patient, doctor = world.patient(), world.provider()
        world.consent(patient, doctor, Vital.SPO2)
        device = world.device(patient)
        crash_alarms(world)
        send(world, device, 88.0)
        send(world, device, 88.0)
        wait_for(lambda: episode_count(world, patient.address) == 2 or None)
        assert world.running.alerts.raised_total == 0
    with node.run() as world:
        # replayed at start: the two readings count again, once each
        assert episode_count(world, patient.address) == 2
        before = world.running.alerts.raised_total
        send(world, device, 88.0)
        (alert,) = wait_for(lambda: raised_since(world, before))
        assert open_alert(alert, doctor)["readings_out"] == 3
        notices = world.running.alerts.pending_for(doctor.address)
        assert [n.alert.alert_id for n in notices] == [alert.alert_id]
    with node.run() as world:  # a clean restart replays nothing and raises nothing again
        assert world.running.alerts.raised_total == 0
        assert episode_count(world, patient.address) == 0  # ALERTING: the run is consumed
        assert len(world.running.alerts.pending_for(doctor.address)) == 1


def test_deliveries_receipts_acks_and_snoozes_survive_a_restart(
    chain: tuple[Ledger, PrivateKey], tmp_path: Path
) -> None:
    node = Node(chain, tmp_path / "node", **escalating_after(0.3))
    with node.run() as world:
        patient, doctor, second = world.patient(), world.provider(), world.provider()
        world.consent(patient, doctor, Vital.SPO2)
        world.consent(patient, second, Vital.SPO2)
        device = world.device(patient)
        before = world.running.alerts.raised_total
        send(world, device, 88.0, count=3)
        (alert,) = wait_for(lambda: raised_since(world, before))
        alert_id = alert.alert_id.hex()
        crash_alarms(world)  # the alert and its deliveries were committed before notifying
    time.sleep(0.4)  # the escalation timer runs on while the gateway is down
    with node.run() as world:
        alerts = world.running.alerts
        (pending,) = alerts.pending_for(doctor.address)
        assert (pending.alert, pending.delivery.tier) == (alert, 0)
        assert str(pending.delivery.priority) == "medium"
        assert alerts.pending_for(patient.address)[0].alert == alert
        alerts.tick()  # the timer fires at once: it ran out while the gateway was down
        (escalated,) = alerts.pending_for(second.address)
        assert escalated.delivery.tier == 1
        assert alerts.receipt(alert_id, doctor.address) is True
        assert alerts.receipt(alert_id, doctor.address) is False  # once
        assert alerts.pending_for(doctor.address) == []
        assert [n.alert for n in alerts.since(doctor.address, 0)] == [alert]  # still listed
        with pytest.raises(AlertError) as refused:
            alerts.receipt(alert_id, PrivateKey.generate().address)
        assert refused.value.code == "not_a_recipient"
        with pytest.raises(AlertError) as refused:
            alerts.receipt("00" * 16, doctor.address)
        assert refused.value.code == "unknown_alert"
        assert alerts.acknowledge(alert_id, doctor.address) is True
        until = alerts.snooze(second.address, patient.address, Vital.SPO2, 300.0)
        with pytest.raises(EscalationError) as bad:
            alerts.snooze(second.address, patient.address, Vital.SPO2, 301.0)
        assert bad.value.code == "invalid_snooze"
    with node.run() as world:
        alerts = world.running.alerts
        assert alerts.acknowledge(alert_id, second.address) is False  # acknowledged already
        assert alerts.escalator.state(alert_id).acknowledged_by == doctor.address
        assert alerts.escalator.is_snoozed(second.address, patient.address, Vital.SPO2,
                                           alerts.snooze_priority(patient.address, Vital.SPO2))  # fmt: skip
        assert until > time.time()
        # The episode clears; acknowledged and resolved, the alert leaves memory (not the disk).
        send(world, device, 97.0, count=3)
        wait_for(lambda: episode_count(world, patient.address) == 0 or None)
        wait_for(lambda: _retired(world, alert_id))
        assert alerts.public(alert.alert_id) == alert
        assert alerts.acknowledge(alert_id, doctor.address) is False
        assert alerts.receipt(alert_id, second.address) is True


def _retired(world: World, alert_id: str) -> bool:
    try:
        world.running.alerts.escalator.state(alert_id)
    except EscalationError as exc:
        return exc.code == "unknown_alert"
    return False


def test_an_alert_nobody_receipts_escalates_and_raises_a_technical_alarm(
    chain: tuple[Ledger, PrivateKey], tmp_path: Path
) -> None:
    node = Node(chain, tmp_path / "node", alert_receipt_timeout_s=0.2)
    with node.run() as world:
        patient, doctor, second = world.patient(), world.provider(), world.provider()
        world.consent(patient, doctor, Vital.SPO2)
        world.consent(patient, second, Vital.SPO2)
        device = world.device(patient)
        alerts = world.running.alerts
        before = alerts.raised_total
        send(world, device, 88.0, count=3)
        (alert,) = wait_for(lambda: raised_since(world, before))
        time.sleep(0.3)
        alerts.tick()
        # The next tier at once, and a technical alarm to the care team.
        assert next(n.alert for n in alerts.pending_for(second.address)) == alert
        technical = [a for a in raised_since(world, before) if a.kind == "technical"]
        assert len(technical) == 1
        body = open_alert(technical[0], doctor)
        assert (body["condition"], body["alert_id"], body["priority"]) == (
            "undeliverable",
            alert.alert_id.hex(),
            "medium",
        )
        verify_alert(technical[0], world.ledger)
        time.sleep(0.3)
        alerts.tick()  # no alarm about the alarm, and none twice
        assert [a.kind for a in raised_since(world, before)] == ["threshold", "technical"]


def test_the_chain_out_of_reach_too_long_raises_one_alarm_per_outage(
    chain: tuple[Ledger, PrivateKey], tmp_path: Path
) -> None:
    """Gateway-wide: to the providers consented by the patients this gateway has seen."""
    node = Node(chain, tmp_path / "node", alarm_outage_after_s=60)
    with node.run() as world:
        patient, doctor, other = world.patient(), world.provider(), world.provider()
        world.consent(patient, doctor, Vital.SPO2)
        device = world.device(patient)
        send(world, device, 97.0)  # seen: the doctor is on this gateway's care team
        alerts = world.running.alerts
        wait_for(lambda: alerts.care_team() == [doctor.address] or None)
        down: dict[str, float | None] = {"chain": time.time() - 30, "store": None}
        alerts.outages = lambda: down
        alerts.tick()
        assert alerts.raised_total == 0  # 30 s is below the threshold
        down["chain"] = time.time() - 61
        alerts.tick()
        alerts.tick()
        (alarm,) = list(alerts.raised)
        body = open_alert(alarm, doctor)
        assert (body["condition"], body["component"], body["priority"]) == (
            "chain_unreachable",
            "chain",
            "low",
        )
        assert [n.alert for n in alerts.pending_for(doctor.address)] == [alarm]
        assert alerts.pending_for(other.address) == []
        assert alerts.pending_for(world.running.gateway.master.address) == []
        down["chain"] = None  # back ...
        alerts.tick()
        down["chain"] = time.time() - 100  # ... and down again: a new outage, a new alarm
        alerts.tick()
        assert alerts.raised_total == 2


def test_memory_is_bounded_and_the_old_alerts_db_is_imported(
    chain: tuple[Ledger, PrivateKey], tmp_path: Path
) -> None:
    """An alerts.db of an earlier version: its alerts keep their public GET at the first
    start on alarms.db."""
    data_dir = tmp_path / "node"
    master = load_or_create_key(data_dir / "master.key")
    node = Node(chain, data_dir)
    old = _v1_alert(master, node.settings.group_id, PrivateKey.generate())
    with sqlite3.connect(data_dir / "alerts.db") as legacy:
        legacy.execute(
            "CREATE TABLE alerts (alert_id BLOB PRIMARY KEY, key_image BLOB UNIQUE,"
            " patient TEXT NOT NULL, body TEXT NOT NULL, recorded_tx BLOB)"
        )
        legacy.execute(
            "INSERT INTO alerts VALUES (?, NULL, ?, ?, NULL)",
            (old.alert_id, master.address, json.dumps(old.to_json())),
        )
    with node.run() as world:
        alerts = world.running.alerts
        assert alerts.raised.maxlen is not None
        assert alerts.refused.maxlen is not None
        assert (data_dir / "alarms.db").stat().st_mode & 0o777 == 0o600
        assert alerts.db.schema_version == 1
        assert alerts.public(old.alert_id) == old
        r = world.client.get(f"/v1/alerts/{old.alert_id.hex()}")
        assert r.status_code == 200
        assert Alert.from_json(r.json()) == old


def _v1_alert(master: PrivateKey, group_id: int, patient: PrivateKey) -> Alert:
    """A stale alarm as versions before issue 13 raised it: object v1, body v1."""
    body = b'{"v": 1, "kind": "stale", "patient": "%s", "device": "0x00", "last_seen": 1.0,' \
           b' "at": 2.0}' % patient.address.encode()  # fmt: skip
    alert_id = bytes(range(16))
    envelope = seal_for([patient.public_key], body, alert_id).to_bytes()
    unsigned = Alert(alert_id, group_id, "stale", 2000, 2000, envelope, bytes(32), None,
                     master.address, bytes(65), 1)  # fmt: skip
    assert unsigned.signed_bytes().startswith(b"VCA\x01")
    return dataclasses.replace(
        unsigned, signature=master.sign(unsigned.signed_bytes(), RELAY_CONTEXT).to_rsv()
    )


# -- formats of earlier versions ---------------------------------------------------------------


def test_a_v1_alert_object_and_body_still_parse_verify_and_open(world: World) -> None:
    """An alert raised before issue 13: object v1 (kinds threshold, stale; "VCA" 0x01) and
    body v1 (no priority)."""
    patient = world.patient()
    signed = _v1_alert(world.running.gateway.master, world.group_id, patient)
    data = signed.to_json()
    assert data["v"] == 1
    again = Alert.from_json(data)
    assert again == signed
    verify_alert(again, world.ledger)
    opened = open_alert(again, patient)
    assert (opened["kind"], opened["priority"]) == ("stale", "medium")  # v1: read as medium
    with pytest.raises(DecodeError):
        Alert.from_json({**data, "kind": "technical"})  # not a v1 kind
    with pytest.raises(DecodeError):
        Alert.from_json({**data, "v": 3})


def test_an_alert_not_yet_recorded_on_chain_is_recorded_after_a_restart(
    chain: tuple[Ledger, PrivateKey], tmp_path: Path
) -> None:
    """Killed before the alert reached the chain outbox: the next start submits it (under
    the same outbox key, so an alert the outbox already had is not written twice)."""
    node = Node(chain, tmp_path / "node")
    with node.run() as world:
        patient, doctor = world.patient(), world.provider()
        world.consent(patient, doctor, Vital.SPO2)
        device = world.device(patient)
        for _ in range(RING_K):
            world.device(world.patient())
        device.use_ring(device.fetch_ring(RING_K))
        alerts = world.running.alerts
        alerts.record = lambda alert: False  # type: ignore[method-assign]  # the kill came first
        before = alerts.raised_total
        send(world, device, 88.0, count=3)
        (alert,) = wait_for(lambda: raised_since(world, before))
        alerts.drain()
        assert world.ledger.alert_count(world.group_id) == 0
    with node.run() as world:
        world.running.alerts.drain()
        wait_for(lambda: world.ledger.alert_count(world.group_id) == 1 or None)
        stored = world.running.alerts.db.alert(alert.alert_id)
        assert stored is not None
        assert stored.chain == "recorded"
        verify_alert(alert, world.ledger)
    with node.run() as world:  # recorded: not submitted again
        assert world.running.alerts.db.unrecorded() == []
        assert world.ledger.alert_count(world.group_id) == 1


def test_a_high_alert_repeats_until_acknowledged(
    chain: tuple[Ledger, PrivateKey], tmp_path: Path
) -> None:
    """Dexcom urgent-low style: SpO2 below the urgent limit is HIGH, and HIGH re-notifies its
    unacknowledged recipients every alert_repeat_high_s, each repeat persisted first."""
    node = Node(chain, tmp_path / "node", alert_repeat_high_s=0.2)
    with node.run() as world:
        patient, doctor = world.patient(), world.provider()
        world.consent(patient, doctor, Vital.SPO2)
        device = world.device(patient)
        alerts = world.running.alerts
        sent: list[tuple[str, int]] = []
        hub_deliver = alerts.notifier.deliver

        def deliver(alert: Alert, delivery: Any) -> None:
            sent.append((delivery.recipient, delivery.repeat))
            hub_deliver(alert, delivery)

        alerts.notifier.deliver = deliver  # type: ignore[method-assign]
        before = alerts.raised_total
        send(world, device, 80.0, count=3)
        (alert,) = wait_for(lambda: raised_since(world, before))
        assert open_alert(alert, doctor)["priority"] == "high"
        time.sleep(0.3)
        alerts.tick()
        assert (doctor.address, 1) in sent
        (pending,) = alerts.pending_for(doctor.address)
        assert (pending.delivery.repeat, str(pending.delivery.priority)) == (1, "high")
        assert alerts.acknowledge(alert.alert_id.hex(), doctor.address) is True
        count = len(sent)
        time.sleep(0.3)
        alerts.tick()
        assert len(sent) == count  # acknowledged: no more repeats
