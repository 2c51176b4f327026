"""Per-key message limits and re-keying (issue 12, item 25: "cap the messages per session key,
then re-key").

Before: a session key carried telemetry without end (the device's Aead did not count, and
the gateway accepted any number of messages under one key), and there was no way to agree a
new key without onboarding again.  Now the gateway counts what each key carried and refuses
``key_exhausted`` past the limit, and a device re-keys (docs/spec/onboarding.md, section 5)
by itself, before the limit and on that refusal.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.gateway import (
    ADMIN_TOKEN,
    Harness,
    error_code,
    make_harness,
    next_id,
    restartable_gateway,
    settings_for,
)
from vitalchain.crypto import PrivateKey
from vitalchain.crypto.aead import Suite, Usage, UsageLimit
from vitalchain.device.client import REKEY_REQUEST_CONTEXT, DeviceClient, DeviceError
from vitalchain.device.mqtt import MqttPublisher
from vitalchain.device.simulator import enrol
from vitalchain.gateway.app import create_app
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.ingest import KeyBudget
from vitalchain.gateway.state import GatewayState, SessionState
from vitalchain.ledger import Ledger
from vitalchain.node import running_gateway
from vitalchain.vitals import Vital

LIMIT = 5  # messages per session key, at the gateway
ONBOARDING_SEALS = 2  # the ticket and association requests are sealed under the key too
OCTETS = {"content-type": "application/octet-stream"}


@pytest.fixture
def limited(ledger: Ledger, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(ledger, tmp_path / "gw", next_id(), session_message_limit=LIMIT)


def counting_device(h: Harness) -> DeviceClient:
    """A device whose own count knows the limit (its key sealed two onboarding requests)."""
    return h.onboarded(key_limit=UsageLimit(ONBOARDING_SEALS + LIMIT))


def post(h: Harness, message: bytes) -> str:
    r = h.client.post("/v1/telemetry", content=message, headers=OCTETS)
    return "ok" if r.status_code == 200 else error_code(r)


def stored(h: Harness, device: DeviceClient) -> int:
    return len(h.gateway.store.messages(device=device.address))


def reading(device: DeviceClient, value: float = 97) -> bytes:
    return device.prepare([(Vital.SPO2, value)])


def sid(message: bytes) -> bytes:
    return message[4:20]


def rekey_request(device: DeviceClient, *, signer: PrivateKey | None = None) -> dict[str, Any]:
    issued_at = int(time.time())
    signature = (signer or device.key).sign(
        device.session_id + issued_at.to_bytes(8, "big"), REKEY_REQUEST_CONTEXT
    )
    return {
        "v": 1,
        "session_id": device.session_id.hex(),
        "issued_at": issued_at,
        "signature": signature.to_rsv().hex(),
    }


# -- the device re-keys by itself ----------------------------------------------------------------


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.name)
def test_the_sdk_rekeys_transparently_at_the_limit(limited: Harness, suite: Suite) -> None:
    h = limited
    device = h.onboarded(suite=suite, key_limit=UsageLimit(ONBOARDING_SEALS + LIMIT))
    first = device.session_id
    under_a = [reading(device) for _ in range(LIMIT)]
    for message in under_a:
        assert device.send(message)["accepted"] == 1
    under_b = [reading(device) for _ in range(4)]  # the first of these re-keyed
    for message in under_b:
        assert device.send(message)["accepted"] == 1
    assert {sid(m) for m in under_a} == {first}
    assert {sid(m) for m in under_b} == {device.session_id} != {first}
    assert device.session is not None
    assert device.session.session_id == device.session_id
    assert stored(h, device) == LIMIT + 4
    old = h.gateway.state.session(first)
    assert old is not None
    assert old.state is SessionState.REKEYED
    assert old.successor == device.session_id


def test_a_message_past_the_limit_is_refused_key_exhausted_and_stores_nothing(
    limited: Harness,
) -> None:
    """Firmware that does not count: the gateway's count refuses the sixth message."""
    h = limited
    device = h.onboarded()  # the suite's own limit: this device would go on sealing
    for _ in range(LIMIT):
        device.send(reading(device))
    sixth = reading(device)
    r = h.client.post("/v1/telemetry", content=sixth, headers=OCTETS)
    assert (r.status_code, error_code(r)) == (409, "key_exhausted")
    assert stored(h, device) == LIMIT
    assert post(h, sixth) == "key_exhausted"  # still, and still nothing stored
    assert stored(h, device) == LIMIT
    # A resend of a message already stored is still answered "replayed" (it is stored).
    # The SDK, refused key_exhausted, re-keys and sends the same readings again.
    before = device.session_id
    ack = device.send(sixth)
    assert ack["accepted"] == 1
    assert device.session_id != before
    assert stored(h, device) == LIMIT + 1
    seqs = sorted(
        r.seq for m in h.gateway.store.messages(device=device.address) for r in m.message.readings
    )
    assert seqs == list(range(LIMIT + 1))  # the same seq, signed once, stored once


def test_without_http_an_exhausted_device_says_key_exhausted(limited: Harness) -> None:
    device = counting_device(limited)
    for _ in range(LIMIT):
        reading(device)
    device.http = None  # an MQTT-only moment: no way to re-key
    with pytest.raises(DeviceError) as err:
        reading(device)
    assert err.value.code == "key_exhausted"


# -- the grace period ----------------------------------------------------------------------------


def test_the_old_session_is_accepted_for_the_grace_period_then_refused(
    limited: Harness,
) -> None:
    h = limited
    device = counting_device(h)
    start = time.time()
    h.gateway.clock = lambda: start
    in_flight = [reading(device), reading(device)]  # sealed under A, not yet delivered
    old = device.session_id
    device.rekey()
    assert device.session_id != old
    assert post(h, in_flight[0]) == "ok"  # within the grace period: still accepted
    h.gateway.clock = lambda: start + h.gateway.settings.rekey_grace_s + 1
    assert post(h, in_flight[1]) == "unknown_session"
    assert stored(h, device) == 1
    assert post(h, reading(device)) == "ok"  # the new session carries on
    # the SDK seals a late message of the old session again, under the new one
    assert device.send(in_flight[1])["accepted"] == 1
    assert stored(h, device) == 3


# -- the re-key exchange -------------------------------------------------------------------------


def test_a_replayed_rekey_request_creates_no_second_session(limited: Harness) -> None:
    h = limited
    device = counting_device(h)
    request = rekey_request(device)
    before = h.gateway.state.counts()["sessions"]
    first = h.client.post("/v1/sessions/rekey", json=request)
    assert first.status_code == 200, first.text
    again = h.client.post("/v1/sessions/rekey", json=request)
    assert again.status_code == 200
    assert again.json()["session_id"] == first.json()["session_id"]
    fresh = h.client.post("/v1/sessions/rekey", json=rekey_request(device))  # a new request
    assert fresh.json()["session_id"] == first.json()["session_id"]
    assert h.gateway.state.counts()["sessions"] == before + 1
    # the device (which lost the answers) re-keys itself and lands on that same session
    device.rekey()
    assert device.session_id.hex() == first.json()["session_id"]
    assert post(h, reading(device)) == "ok"


def test_rekey_refusals_are_coded_and_create_nothing(limited: Harness) -> None:
    h = limited
    device = counting_device(h)
    before = h.gateway.state.counts()["sessions"]
    stranger = PrivateKey.generate()
    cases = [
        ({**rekey_request(device, signer=stranger)}, 401, "invalid_signature"),
        ({**rekey_request(device), "issued_at": int(time.time()) - 3600}, 422, "clock_skew"),
        ({**rekey_request(device), "session_id": "00" * 16}, 401, "unknown_session"),
        ({**rekey_request(device), "signature": "zz" * 65}, 422, "invalid_request"),
    ]
    for body, status, code in cases:
        r = h.client.post("/v1/sessions/rekey", json=body)
        assert (r.status_code, error_code(r)) == (status, code), body
    # a session that is not active (never associated) cannot be re-keyed
    other = h.device()
    offer = h.offer(other)
    other._header = b"VCm\x01" + bytes.fromhex(offer["session_id"])
    r = h.client.post("/v1/sessions/rekey", json=rekey_request(other))
    assert (r.status_code, error_code(r)) == (409, "session_used")
    assert h.gateway.state.counts()["sessions"] == before + 1  # only that offer


def test_a_revoked_device_cannot_rekey(limited: Harness) -> None:
    h = limited
    device = counting_device(h)
    h.gateway.revoke(device.address)
    with pytest.raises(DeviceError) as err:
        device.rekey()
    assert err.value.code == "device_revoked"


def test_the_sdk_refuses_an_answer_not_signed_by_its_gateway(limited: Harness) -> None:
    device = counting_device(limited)
    old = device.session_id
    device.gateway = PrivateKey.generate().address  # as if another gateway had answered
    with pytest.raises(DeviceError) as err:
        device.rekey()
    assert err.value.code == "untrusted_gateway"
    assert device.session_id == old  # nothing switched


# -- restarts and crashes ------------------------------------------------------------------------


@pytest.fixture
def restartable(ledger: Ledger, tmp_path: Path) -> Iterator[Callable[[], Harness]]:
    """Starts the gateway, or restarts it (a clean stop) on the same data directory and key."""
    with restartable_gateway(ledger, tmp_path / "gateway", session_message_limit=LIMIT) as start:
        yield start


def test_a_rekey_and_the_counts_survive_a_restart(restartable: Callable[[], Harness]) -> None:
    h = restartable()
    device = counting_device(h)
    device.send(reading(device))
    late = reading(device)  # under A, delivered after the restart, within the grace period
    device.rekey()
    for _ in range(2):
        device.send(reading(device))  # B has carried 2
    h = restartable()
    device.http = h.client
    assert post(h, late) == "ok"  # A's grace period survived the restart
    for _ in range(LIMIT - 2):
        assert post(h, reading(device)) == "ok"  # B is live, and carries 3 more
    no_rekey = DeviceClient(device.key, device.object_id, http=h.client)  # does not count
    no_rekey.attach(device.session_id, device.session_key or b"", h.gateway.group_id)
    no_rekey._seq = 1000
    assert post(h, reading(no_rekey)) == "key_exhausted"  # the count was not reset to 0
    assert stored(h, device) == 1 + 2 + 1 + (LIMIT - 2)


def test_a_crash_can_only_over_count() -> None:
    """The count is reserved ahead durably: restarting from the record after a crash (no
    settle) finds at least as many as were accepted, never fewer."""
    records: list[Usage] = []
    budget = KeyBudget(UsageLimit(2**32), Usage(), records.append)
    for _ in range(3):
        budget.charge(100)
    assert budget.used == Usage(3, 3 * 8)
    assert len(records) == 1  # one write for the first 1,025 messages
    crashed = records[-1]
    assert crashed.messages >= 3
    assert crashed.blocks >= 3 * 8
    # a clean stop records the exact count; the next message must reserve again first
    budget.settle(records.append)
    assert records[-1] == Usage(3, 24)
    budget.charge(10)
    assert records[-1].messages > 4


def test_the_block_bound_is_enforced_too() -> None:
    budget = KeyBudget(UsageLimit(100, blocks=10), Usage(), lambda _: None)
    budget.charge(16 * 8)  # 9 blocks (8 and the tag's)
    with pytest.raises(GatewayError) as err:
        budget.charge(16)  # 2 more: over
    assert err.value.code == "key_exhausted"
    assert budget.used == Usage(1, 9)


def test_an_old_gateway_db_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    db = sqlite3.connect(path)
    db.executescript(
        """CREATE TABLE sessions (session_id BLOB PRIMARY KEY, device TEXT NOT NULL,
        device_key BLOB NOT NULL, object_id TEXT NOT NULL, suite INTEGER NOT NULL,
        key BLOB NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
        state TEXT NOT NULL, failures INTEGER NOT NULL DEFAULT 0, token BLOB, patient TEXT);"""
    )
    db.execute(
        "INSERT INTO sessions VALUES (?, 'd', ?, '1', 1, ?, 0, 2000000000, 'active', 0, NULL, 'p')",
        (b"\x01" * 16, b"\x02" * 33, b"\x03" * 32),
    )
    db.commit()
    db.close()
    state = GatewayState(path)
    try:
        (session,) = state.live_sessions(1)
        assert session.used == Usage()
        assert session.successor is None
    finally:
        state.close()


# -- the telemetry pre-authentication limit is a setting ---------------------------------------


def test_the_telemetry_preauth_limit_comes_from_the_settings(
    ledger: Ledger, tmp_path: Path
) -> None:
    for h in make_harness(
        ledger,
        tmp_path / "gw",
        next_id(),
        telemetry_preauth_burst=3,
        telemetry_preauth_rate_per_s=0.01,
    ):
        junk = b"VCm\x01" + bytes(16) + bytes(40)
        assert [post(h, junk) for _ in range(4)] == ["unknown_session"] * 3 + ["too_many_requests"]


def test_the_count_is_durable_before_the_acknowledgement(ledger: Ledger, tmp_path: Path) -> None:
    """What a kill -9 right after an ack would leave: the session's row, read by another
    connection, already covers every acknowledged message (reserved ahead, in chunks)."""
    for h in make_harness(ledger, tmp_path / "gw", next_id(), session_message_limit=640):
        device = h.onboarded()
        for _ in range(3):
            device.send(reading(device))
        other = GatewayState(tmp_path / "gw" / "gateway.db")
        try:
            row = other.session(device.session_id)
        finally:
            other.close()
        assert row is not None
        assert 3 <= row.used.messages <= 3 + 10  # 640 // 64 = 10 reserved at a time


def test_a_ring_signed_message_is_resealed_with_its_ring_header(limited: Harness) -> None:
    """A v2 data message (with a ring proof) refused key_exhausted is sealed again as v2."""
    h = limited
    counting_device(h)  # a second active device, for the ring
    device = h.onboarded()
    device.use_ring(device.fetch_ring(1))
    for _ in range(LIMIT):
        device.send(reading(device))
    before = device.session_id
    last = reading(device, 85)  # out of the SpO2 band: ring-signed
    assert last[:4] == b"VCm\x02"
    assert post(h, last) == "key_exhausted"
    resealed = device.reseal(last)  # what send() does on that refusal
    assert device.session_id != before
    assert resealed[:4] == b"VCm\x02"
    assert sid(resealed) == device.session_id
    assert post(h, resealed) == "ok"


def test_a_device_that_cannot_check_its_gateway_does_not_rekey(limited: Harness) -> None:
    """Attached without the gateway's address (as from an old device file), the SDK cannot
    check a re-key answer, so it refuses to re-key and reports the exhausted key."""
    h = limited
    onboarded = h.onboarded()
    for _ in range(LIMIT):
        onboarded.send(reading(onboarded))
    device = DeviceClient(onboarded.key, onboarded.object_id, http=h.client, first_seq=100)
    device.attach(onboarded.session_id, onboarded.session_key or b"", h.gateway.group_id)
    with pytest.raises(DeviceError) as err:
        device.send(reading(device))
    assert err.value.code == "key_exhausted"
    assert stored(h, device) == LIMIT


def test_over_mqtt_a_rekeyed_device_keeps_its_topic_and_its_in_flight_messages(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Through a real mosquitto: MQTT credentials are per device, not per session, so after a
    re-key the device publishes under the new session on the same topic, and a message
    sealed under the old one (a QoS 1 redelivery) is stored within the grace period; a
    message past the limit is answered key_exhausted on the ack topic."""
    settings = settings_for(
        tmp_path / "gateway",
        mqtt=True,
        session_message_limit=LIMIT,
    )
    with (
        running_gateway(settings, ledger=ledger) as running,
        TestClient(create_app(running.gateway)) as client,
    ):
        assert running.bridge is not None, "mosquitto must be installed (make setup installs it)"
        device = DeviceClient(PrivateKey.generate(), next_id(), http=client)
        device.onboard(enrol(client, ADMIN_TOKEN, PrivateKey.generate().address))
        assert device.session is not None
        assert device.session.mqtt is not None
        with MqttPublisher(device.session.mqtt) as mqtt:
            under_a = [reading(device) for _ in range(LIMIT + 1)]
            answers = mqtt.publish_many(under_a[:-2])
            device.rekey()
            answers += mqtt.publish_many([under_a[-2], reading(device), under_a[-1]])
        assert [a.get("accepted") for a in answers] == [1] * (LIMIT + 1) + [None]
        assert answers[-1]["error"]["code"] == "key_exhausted"
        assert len(running.gateway.store.messages(device=device.address)) == LIMIT + 1
