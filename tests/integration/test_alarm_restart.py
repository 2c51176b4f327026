"""No alarm lost across a kill -9 (issue 13, item 1): the gateway as ``vitalchain gateway run``
in its own process against anvil in another (anvil outlives the gateway's death, as a real
chain would), SIGKILLed and started again on the same data directory.

- killed after M-1 abnormal readings of a sustained rule, the M-th after the restart raises;
- an alert raised while its recipient was offline reaches it after the restart, once;
- an escalation timer that was running when the gateway died fires when due (at once, if
  the deadline passed while it was down), not a full timeout after the restart;
- a snooze is still honoured after the restart.

Readings are SpO2 88 % (below the default band's 92, above the urgent 85: a MEDIUM alarm),
three in a row to confirm.  Alarm settings are shortened by environment variables.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from benchmarks.faults import TOKEN, GatewayProcess, leftovers
from websockets.sync.client import ClientConnection, connect

from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.device.simulator import enrol
from vitalchain.ledger import Ledger
from vitalchain.node import rpc_backend
from vitalchain.sdk.alert import Alert, open_alert
from vitalchain.sdk.subscriber import sign_action
from vitalchain.store.files import private_dir
from vitalchain.vitals import Vital

LOW = 88.0  # SpO2: MEDIUM
DAY = 86400
ESCALATE_S = 5.0  # MEDIUM escalation, shortened


@dataclass
class Node:
    """A gateway process on one data directory, the chain as the test sees it, its admin."""

    process: GatewayProcess
    ledger: Ledger
    admin: PrivateKey
    http: httpx.Client

    @property
    def data_dir(self) -> Path:
        return self.process.data_dir

    def kill9(self) -> None:
        self.process.kill(signal.SIGKILL)
        stray = leftovers(self.data_dir, wait_s=10)
        assert not stray, stray

    def restart(self) -> float:
        """Start the gateway again; returns when the process was spawned (time.time())."""
        spawned = time.time()
        self.process.start()
        return spawned

    def patient(self) -> PrivateKey:
        key = PrivateKey.generate()
        self.ledger.fund(key.address)
        self.ledger.publish_key(key)
        return key

    def provider(self, patient: PrivateKey) -> PrivateKey:
        """A provider consented for the patient's SpO2 (in grant order: the escalation order)."""
        key = PrivateKey.generate()
        self.ledger.fund(key.address)
        self.ledger.register_provider(self.admin, key.address)
        self.ledger.publish_key(key)
        expires = self.ledger.timestamp() + DAY
        self.ledger.grant(patient, key.address, Vital.SPO2.bit, expires)
        return key

    def device(self, patient: PrivateKey, object_id: int) -> DeviceClient:
        device = DeviceClient(PrivateKey.generate(), object_id, http=self.http)
        device.onboard(enrol(self.http, TOKEN, patient.address, "alarm restart"))
        return device

    def alerts(self) -> list[tuple[str, str]]:
        """(alert id, kind) of every alert alarms.db holds, oldest first (read-only)."""
        path = self.data_dir / "alarms.db"
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            try:
                rows = db.execute("SELECT alert_id, kind FROM alerts ORDER BY raised_at")
                return [(bytes(a).hex(), k) for a, k in rows]
            except sqlite3.OperationalError:  # not created yet
                return []


@pytest.fixture
def node(tmp_path: Path, anvil_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    """A gateway on its own contracts on the shared anvil, stopped (and checked gone) after."""
    # Escalation quick enough for a test; receipts never time out (no SDK sends them here).
    monkeypatch.setenv("VITALCHAIN_GATEWAY_ALERT_ESCALATE_MEDIUM_S", str(ESCALATE_S))
    monkeypatch.setenv("VITALCHAIN_GATEWAY_ALERT_RECEIPT_TIMEOUT_S", "3600")
    process = GatewayProcess(tmp_path / "gateway", anvil_url, mqtt=False)
    # The test's own deployer is the registry admin: the gateway's master key sends its own
    # transactions (and counts its nonces), so nobody else may use it.
    admin = PrivateKey.generate()
    ledger = Ledger.deploy(rpc_backend(anvil_url), admin)
    private_dir(process.data_dir)
    ledger.deployment.save(process.data_dir / "deployment.json")
    try:
        process.start()
        with httpx.Client(base_url=process.url, timeout=30) as http:
            yield Node(process, ledger, admin, http)
    finally:
        process.stop()
        stray = leftovers(process.data_dir, wait_s=10)
        assert not stray, stray


class Inbox:
    """A recipient's WebSocket subscription, raw (docs/spec/alert.md, Delivery)."""

    def __init__(self, node: Node, key: PrivateKey) -> None:
        url = node.process.url.replace("http://", "ws://") + "/v1/alerts/ws"
        self.ws: ClientConnection = connect(url, open_timeout=10, proxy=None, legacy=True)
        hello = json.loads(self.ws.recv(timeout=10))
        nonce = bytes.fromhex(hello["challenge"])
        signature = sign_action(key, "subscribe", nonce)
        self.ws.send(json.dumps({"v": 1, "address": key.address, "signature": signature}))
        assert json.loads(self.ws.recv(timeout=10))["subscribed"] == key.address

    def notices(self, timeout: float) -> list[dict[str, Any]]:
        """Every alert notification that arrives within ``timeout`` seconds."""
        found = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                break
            if frame.get("type") == "alert":
                found.append(frame)
        return found

    def next(self, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            frame = json.loads(self.ws.recv(timeout=left))
            if frame.get("type") == "alert":
                return dict(frame)
        raise AssertionError("no notification in time")

    def receipt(self, alert_id: str) -> None:
        self.ws.send(json.dumps({"v": 1, "type": "receipt", "alert_id": alert_id}))

    def close(self) -> None:
        self.ws.close()


def low(device: DeviceClient, count: int = 1) -> None:
    device.send(device.prepare([(Vital.SPO2, LOW)] * count))


def test_killed_after_m_minus_1_readings_the_mth_after_the_restart_raises(node: Node) -> None:
    patient = node.patient()
    doctor = node.provider(patient)
    device = node.device(patient, 71_001)
    low(device)
    low(device)  # M-1 = 2 of 3, each acknowledged: in the journal
    node.kill9()
    node.restart()
    assert node.alerts() == []  # two readings raise nothing, before or after
    inbox = Inbox(node, doctor)
    try:
        low(device)  # the M-th
        notice = inbox.next()
        body = open_alert(Alert.from_json(notice["alert"]), doctor)
        assert (body["readings_out"], body["value"], body["priority"]) == (3, LOW, "medium")
        assert [kind for _, kind in node.alerts()] == ["threshold"]  # one alert, not two
    finally:
        inbox.close()


def test_an_alert_raised_while_its_recipient_was_offline_arrives_after_the_restart_once(
    node: Node,
) -> None:
    patient = node.patient()
    doctor = node.provider(patient)
    device = node.device(patient, 71_002)
    low(device, count=3)
    (alert_id, _), *_ = wait_for(node.alerts)  # raised and committed; nobody was connected
    node.kill9()
    node.restart()
    inbox = Inbox(node, doctor)
    try:
        notice = inbox.next()  # the pending delivery, first thing on subscribing
        assert (notice["alert_id"], notice["tier"]) == (alert_id, 0)
        inbox.receipt(alert_id)
        assert [n["alert_id"] for n in inbox.notices(1.0)] == []  # once
    finally:
        inbox.close()
    again = Inbox(node, doctor)  # receipted: not sent again on the next subscription
    try:
        assert [n for n in again.notices(1.0) if n["alert_id"] == alert_id] == []
    finally:
        again.close()
    assert len(node.alerts()) == 1


def test_a_running_escalation_timer_fires_on_time_after_the_restart(node: Node) -> None:
    """MEDIUM escalates after ESCALATE_S (setting above).  Killed while the timer runs, down
    until past its deadline: the new process escalates at its first tick, before it even
    answers HTTP, not a full ESCALATE_S after it started (the timer resumes from the persisted
    tier-0 time; a timer restarted with the process would fire after the gateway is back up)."""
    patient = node.patient()
    first, second = node.provider(patient), node.provider(patient)
    device = node.device(patient, 71_003)
    low(device, count=3)
    (alert_id, _), *_ = wait_for(node.alerts)
    node.kill9()
    raised_at = _raised_at(node, alert_id)
    deadline = raised_at + ESCALATE_S
    time.sleep(max(0.0, deadline + 0.2 - time.time()))  # it passes while the gateway is down
    node.restart()
    ready = time.time()  # the gateway answers /v1/health
    inbox = Inbox(node, second)
    try:
        notice = inbox.next(timeout=30)
        assert (notice["alert_id"], notice["tier"]) == (alert_id, 1)
        escalated_at = notice["notified_at"] / 1000
        assert escalated_at >= deadline - 0.01, (raised_at, escalated_at)  # not early
        assert escalated_at <= ready, (raised_at, escalated_at, ready)  # not reset
    finally:
        inbox.close()
    first_inbox = Inbox(node, first)  # tier 0 went to the first provider, once
    try:
        tiers = [n["tier"] for n in first_inbox.notices(1.0) if n["alert_id"] == alert_id]
        assert tiers == [0]
    finally:
        first_inbox.close()


def _raised_at(node: Node, alert_id: str) -> float:
    path = node.data_dir / "alarms.db"
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        (raised_at,) = db.execute(
            "SELECT raised_at FROM alerts WHERE alert_id = ?", (bytes.fromhex(alert_id),)
        ).fetchone()
    return float(raised_at)


def test_a_snooze_is_still_honoured_after_the_restart(node: Node) -> None:
    patient = node.patient()
    first, second = node.provider(patient), node.provider(patient)
    device = node.device(patient, 71_004)
    nonce = bytes.fromhex(
        node.http.post("/v1/alerts/challenges", json={"v": 1, "address": first.address}).json()[
            "nonce"
        ]
    )
    duration = 300.0  # SpO2 can raise HIGH: HIGH's first snooze choice
    fields = (patient.address, "spo2", repr(duration))
    r = node.http.post(
        "/v1/alerts/snoozes",
        json={"v": 1, "by": first.address, "patient": patient.address, "vital": "spo2",
              "duration_s": duration, "nonce": nonce.hex(),
              "signature": sign_action(first, "snooze", nonce, *fields)},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    node.kill9()  # at once: the snooze was durable before the answer
    node.restart()
    snoozed, awake = Inbox(node, first), Inbox(node, second)
    try:
        low(device, count=3)
        notice = awake.next()
        assert notice["tier"] == 0  # the second provider took the snoozed one's turn
        assert [n for n in snoozed.notices(1.0) if n["alert_id"] == notice["alert_id"]] == []
    finally:
        snoozed.close()
        awake.close()
