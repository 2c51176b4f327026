"""The broker's access control, on a real mosquitto with the dynamic-security plugin.

Every refusal is asserted on what the broker itself says over MQTT v5 (CONNACK, SUBACK and
PUBACK reason codes, the DISCONNECT reason), never on a mock.  "The gateway never receives it"
is shown without sleeping: after the refused message a legitimate one follows on the same
broker, which handles packets in order, so if the refused one had been routed it would arrive
first.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.broker import (
    ADMINISTRATIVE_ACTION,
    GROUPS,
    NOT_AUTHORIZED,
    PACKET_TOO_LARGE,
    RETAIN_NOT_SUPPORTED,
    SUCCESS,
    WAIT,
    Connect,
    Probe,
    new_device,
)
from vitalchain.gateway.dynsec import BrokerAdmin, DeviceCredentials
from vitalchain.services.mosquitto import BrokerEndpoint, BrokerError, Mosquitto
from vitalchain.wire.mqtt import (
    MAX_PACKET_SIZE,
    TOPIC_PREFIX,
    ack_topic,
    parse_telemetry_topic,
    telemetry_topic,
)
from vitalchain.wire.telemetry import MAX_MESSAGE_BYTES


@pytest.fixture(scope="module")
def admin(mosquitto: Mosquitto) -> Iterator[BrokerAdmin]:
    with BrokerAdmin(mosquitto.endpoint, *mosquitto.admin) as broker_admin:
        yield broker_admin


@pytest.fixture
def probe(mosquitto: Mosquitto) -> Iterator[Callable[..., Probe]]:
    """``probe(username, password, client_id=username)``: an unconnected client, closed after."""
    made: list[Probe] = []

    def make(username: str | None, password: str | None, client_id: str | None = None) -> Probe:
        made.append(Probe(mosquitto.endpoint, username, password, client_id or username or "x"))
        return made[-1]

    yield make
    for p in made:
        p.close()


@pytest.fixture
def connect(probe: Callable[..., Probe]) -> Connect:
    """Like ``probe`` but connected, and the connection must be accepted."""

    def make(username: str, password: str, client_id: str | None = None) -> Probe:
        p = probe(username, password, client_id)
        assert p.connect() == SUCCESS
        return p

    return make


class Group:
    """A fresh group with its gateway connected and subscribed to the group's telemetry."""

    def __init__(self, admin: BrokerAdmin, connect: Connect) -> None:
        self.id = next(GROUPS)
        self.admin = admin
        self.connect = connect
        username, password = f"gateway-test-{self.id}", f"pw-{os.urandom(8).hex()}"
        admin.ensure_gateway(self.id, username, password)
        self.gateway = connect(username, password)
        assert self.gateway.subscribe(f"{TOPIC_PREFIX}/{self.id}/+/telemetry") == 1  # QoS 1

    def device(self) -> tuple[DeviceCredentials, Probe]:
        creds = self.admin.add_device(self.id, new_device())
        return creds, self.connect(creds.username, creds.password, creds.client_id)


@pytest.fixture
def group(admin: BrokerAdmin, connect: Connect) -> Group:
    return Group(admin, connect)


# --- topics ------------------------------------------------------------------------------------

DEVICE = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"  # an EIP-55 example address


def test_topic_helpers_round_trip() -> None:
    topic = telemetry_topic(7, DEVICE)
    assert topic == f"{TOPIC_PREFIX}/7/{DEVICE}/telemetry"
    assert ack_topic(7, DEVICE) == f"{TOPIC_PREFIX}/7/{DEVICE}/ack"
    assert parse_telemetry_topic(topic) == (7, DEVICE)
    assert parse_telemetry_topic(telemetry_topic(0, DEVICE)) == (0, DEVICE)
    big = 2**256 - 1
    assert parse_telemetry_topic(telemetry_topic(big, DEVICE)) == (big, DEVICE)


@pytest.mark.parametrize(
    "topic",
    [
        "",
        f"vitalchain/v2/7/{DEVICE}/telemetry",
        f"/{TOPIC_PREFIX}/7/{DEVICE}/telemetry",
        f"other/v1/7/{DEVICE}/telemetry",
        f"{TOPIC_PREFIX}/x/{DEVICE}/telemetry",
        f"{TOPIC_PREFIX}/-1/{DEVICE}/telemetry",
        f"{TOPIC_PREFIX}/07/{DEVICE}/telemetry",
        f"{TOPIC_PREFIX}/1_0/{DEVICE}/telemetry",
        f"{TOPIC_PREFIX}/ 7/{DEVICE}/telemetry",
        f"{TOPIC_PREFIX}//{DEVICE}/telemetry",
        f"{TOPIC_PREFIX}/7/{DEVICE}/telemetry/extra",
        f"{TOPIC_PREFIX}/7/{DEVICE}",
        f"{TOPIC_PREFIX}/7/{DEVICE}/ack",
        f"{TOPIC_PREFIX}/7/{DEVICE.lower()}/telemetry",
        f"{TOPIC_PREFIX}/7/0x1234/telemetry",
        f"{TOPIC_PREFIX}/+/" + DEVICE + "/telemetry",
        f"{TOPIC_PREFIX}/7/+/telemetry",
        f"{TOPIC_PREFIX}/7/#",
        f"{TOPIC_PREFIX}/#",
    ],
)
def test_parse_telemetry_topic_rejects_malformed(topic: str) -> None:
    with pytest.raises(ValueError, match="telemetry topic"):
        parse_telemetry_topic(topic)


@pytest.mark.parametrize(
    ("group_id", "device"),
    [(-1, DEVICE), (True, DEVICE), (7, DEVICE.lower()), (7, "+"), (7, "dev/1")],
)
def test_topic_builders_reject_bad_parts(group_id: Any, device: str) -> None:
    with pytest.raises(ValueError, match="must be"):
        telemetry_topic(group_id, device)
    with pytest.raises(ValueError, match="must be"):
        ack_topic(group_id, device)


# --- the happy path ----------------------------------------------------------------------------


def test_device_publishes_and_gateway_receives(group: Group) -> None:
    creds, device = group.device()
    assert creds.client_id == creds.username
    assert creds.telemetry_topic == telemetry_topic(group.id, creds.username)
    assert "password" not in repr(creds)
    assert creds.password not in repr(creds)

    assert device.publish(creds.telemetry_topic, b"reading") == SUCCESS
    assert group.gateway.expect(creds.telemetry_topic) == b"reading"
    assert parse_telemetry_topic(creds.telemetry_topic) == (group.id, creds.username)


def test_gateway_acks_reach_only_that_device(group: Group) -> None:
    creds_a, device_a = group.device()
    creds_b, device_b = group.device()
    assert device_a.subscribe(creds_a.ack_topic) == 1
    assert device_b.subscribe(creds_b.ack_topic) == 1

    assert group.gateway.publish(creds_b.ack_topic, b"ack-b") == SUCCESS
    assert group.gateway.publish(creds_a.ack_topic, b"ack-a") == SUCCESS
    assert device_a.expect(creds_a.ack_topic) == b"ack-a"  # first, so ack-b never came
    assert device_b.expect(creds_b.ack_topic) == b"ack-b"


# --- refusals: publishing ----------------------------------------------------------------------


@pytest.mark.parametrize("qos", [0, 1])
def test_device_cannot_publish_as_another(group: Group, qos: int) -> None:
    _, device_a = group.device()
    creds_b, device_b = group.device()

    reason = device_a.publish(creds_b.telemetry_topic, b"forged", qos=qos)
    assert reason == (NOT_AUTHORIZED if qos else SUCCESS)  # QoS 0 has no PUBACK to refuse with

    assert device_b.publish(creds_b.telemetry_topic, b"genuine") == SUCCESS
    assert group.gateway.expect(creds_b.telemetry_topic) == b"genuine"
    assert group.gateway.messages.empty()
    assert not device_a.disconnected.is_set()  # refused, not disconnected: it may go on


@pytest.mark.parametrize(
    "target",
    [
        "own ack",  # only the gateway writes acks
        "own address, other group",
        "other group's device",
        "dynsec control",
        "outside the prefix",
    ],
)
def test_device_cannot_publish_elsewhere(group: Group, admin: BrokerAdmin, target: str) -> None:
    creds, device = group.device()
    other = Group(admin, group.connect)
    other_creds, _ = other.device()
    topic = {
        "own ack": creds.ack_topic,
        "own address, other group": telemetry_topic(other.id, creds.username),
        "other group's device": other_creds.telemetry_topic,
        "dynsec control": "$CONTROL/dynamic-security/v1",
        "outside the prefix": "vitalchain/v2/x",
    }[target]
    assert device.publish(topic, b'{"commands": []}') == NOT_AUTHORIZED

    assert device.publish(creds.telemetry_topic, b"genuine") == SUCCESS
    assert group.gateway.expect(creds.telemetry_topic) == b"genuine"
    assert other.gateway.messages.empty()


def test_gateway_publishes_acks_only_in_its_group(group: Group, admin: BrokerAdmin) -> None:
    other = Group(admin, group.connect)
    other_creds, other_device = other.device()
    assert other_device.subscribe(other_creds.ack_topic) == 1

    assert group.gateway.publish(other_creds.ack_topic, b"forged ack") == NOT_AUTHORIZED
    assert group.gateway.publish(telemetry_topic(group.id, new_device()), b"x") == NOT_AUTHORIZED
    assert other.gateway.publish(other_creds.ack_topic, b"genuine ack") == SUCCESS
    assert other_device.expect(other_creds.ack_topic) == b"genuine ack"


def test_oversized_message_is_refused(group: Group) -> None:
    """The data message limit is 64 KiB; the broker cuts off a client sending a larger packet."""
    creds, device = group.device()
    assert device.publish(creds.telemetry_topic, b"x" * MAX_MESSAGE_BYTES) == SUCCESS
    assert group.gateway.expect(creds.telemetry_topic) == b"x" * MAX_MESSAGE_BYTES

    device.client.publish(creds.telemetry_topic, b"x" * MAX_PACKET_SIZE, qos=1)
    assert device.disconnected.wait(WAIT)
    assert device.disconnect_reason == PACKET_TOO_LARGE
    other_creds, other = group.device()
    assert other.publish(other_creds.telemetry_topic, b"next") == SUCCESS
    assert group.gateway.expect(other_creds.telemetry_topic) == b"next"  # the big one never came


def test_retained_message_is_refused(group: Group) -> None:
    """A retained reading would be replayed to every new subscriber, so retain is off."""
    creds, device = group.device()
    device.client.publish(creds.telemetry_topic, b"retained", qos=1, retain=True)
    assert device.disconnected.wait(WAIT)
    assert device.disconnect_reason == RETAIN_NOT_SUPPORTED
    other_creds, other = group.device()
    assert other.publish(other_creds.telemetry_topic, b"next") == SUCCESS
    assert group.gateway.expect(other_creds.telemetry_topic) == b"next"


# --- refusals: subscribing ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "other device's ack",
        "ack wildcard",
        "telemetry wildcard",
        "own telemetry",
        "everything",
        "dynsec responses",
        "$SYS",
    ],
)
def test_device_cannot_subscribe_elsewhere(group: Group, target: str) -> None:
    creds, device = group.device()
    other_creds, _ = group.device()
    topic = {
        "other device's ack": other_creds.ack_topic,
        "ack wildcard": f"{TOPIC_PREFIX}/{group.id}/+/ack",
        "telemetry wildcard": f"{TOPIC_PREFIX}/{group.id}/+/telemetry",
        "own telemetry": creds.telemetry_topic,
        "everything": "#",
        "dynsec responses": "$CONTROL/dynamic-security/#",
        "$SYS": "$SYS/#",
    }[target]
    assert device.subscribe(topic) == NOT_AUTHORIZED


@pytest.mark.parametrize(
    "topic",
    [
        TOPIC_PREFIX + "/{gid}/+/telemetry",
        TOPIC_PREFIX + "/{gid}/#",
        TOPIC_PREFIX + "/+/+/telemetry",
        TOPIC_PREFIX + "/{gid}/+/ack",
        "#",
    ],
)
def test_gateway_cannot_read_another_group(group: Group, admin: BrokerAdmin, topic: str) -> None:
    other = Group(admin, group.connect)
    assert other.gateway.subscribe(topic.format(gid=group.id)) == NOT_AUTHORIZED

    creds, device = group.device()
    assert device.publish(creds.telemetry_topic, b"reading") == SUCCESS
    assert group.gateway.expect(creds.telemetry_topic) == b"reading"
    other_creds, other_device = other.device()
    assert other_device.publish(other_creds.telemetry_topic, b"own") == SUCCESS
    assert other.gateway.expect(other_creds.telemetry_topic) == b"own"  # not group's reading


# --- refusals: connecting ----------------------------------------------------------------------


def test_wrong_password_cannot_connect(admin: BrokerAdmin, probe: Callable[..., Probe]) -> None:
    creds = admin.add_device(next(GROUPS), new_device())
    assert probe(creds.username, creds.password + "x").connect() == NOT_AUTHORIZED
    assert probe(creds.username, "").connect() == NOT_AUTHORIZED
    assert probe("nobody-" + creds.username, creds.password).connect() == NOT_AUTHORIZED


def test_anonymous_cannot_connect(probe: Callable[..., Probe]) -> None:
    assert probe(None, None, "anonymous-probe").connect() == NOT_AUTHORIZED


def test_device_must_use_its_own_client_id(group: Group, probe: Callable[..., Probe]) -> None:
    """Without this, device A could connect as B's client id and take B's session over."""
    creds_a, _ = group.device()
    creds_b, device_b = group.device()
    assert probe(creds_a.username, creds_a.password, creds_b.client_id).connect() == NOT_AUTHORIZED
    assert probe(creds_a.username, creds_a.password, "random-id").connect() == NOT_AUTHORIZED
    assert not device_b.disconnected.is_set()


def test_remove_device_kicks_and_locks_out(
    group: Group, admin: BrokerAdmin, probe: Callable[..., Probe]
) -> None:
    creds, device = group.device()
    admin.remove_device(creds.username)

    assert device.disconnected.wait(WAIT)
    assert device.disconnect_reason == ADMINISTRATIVE_ACTION
    assert probe(creds.username, creds.password).connect() == NOT_AUTHORIZED
    admin.remove_device(creds.username)  # idempotent
    # The broker survived the deletions (deleting a held role first would crash 2.0.11).
    other, again = group.device()
    assert again.publish(other.telemetry_topic, b"still up") == SUCCESS
    assert group.gateway.expect(other.telemetry_topic) == b"still up"


def test_add_device_again_rotates_the_password(group: Group, probe: Callable[..., Probe]) -> None:
    old, device = group.device()
    new = group.admin.add_device(group.id, old.username)
    assert new.password != old.password

    assert device.disconnected.wait(WAIT)
    assert device.disconnect_reason == ADMINISTRATIVE_ACTION
    assert probe(old.username, old.password).connect() == NOT_AUTHORIZED
    renewed = group.connect(new.username, new.password)
    assert renewed.publish(new.telemetry_topic, b"after rotation") == SUCCESS
    assert group.gateway.expect(new.telemetry_topic) == b"after rotation"


def test_ensure_gateway_is_idempotent_and_updates_the_password(
    admin: BrokerAdmin, probe: Callable[..., Probe], connect: Connect
) -> None:
    gid = next(GROUPS)
    admin.ensure_gateway(gid, f"gw-{gid}", "first")
    admin.ensure_gateway(gid, f"gw-{gid}", "first")
    gateway = connect(f"gw-{gid}", "first")
    assert gateway.subscribe(f"{TOPIC_PREFIX}/{gid}/+/telemetry") == 1

    admin.ensure_gateway(gid, f"gw-{gid}", "second")
    assert gateway.disconnected.wait(WAIT)  # a changed password ends the old session
    assert probe(f"gw-{gid}", "first").connect() == NOT_AUTHORIZED
    assert probe(f"gw-{gid}", "second", "not-its-id").connect() == NOT_AUTHORIZED
    gateway = connect(f"gw-{gid}", "second")
    assert gateway.subscribe(f"{TOPIC_PREFIX}/{gid}/+/telemetry") == 1


# --- the admin client and the managed process ---------------------------------------------------


def test_admin_with_wrong_password_is_refused(mosquitto: Mosquitto) -> None:
    with pytest.raises(BrokerError, match="Not authorized") as info:
        BrokerAdmin(mosquitto.endpoint, mosquitto.admin[0], "wrong", timeout=WAIT)
    assert info.value.code == "broker_unavailable"


def test_device_credentials_cannot_administer(mosquitto: Mosquitto, admin: BrokerAdmin) -> None:
    creds = admin.add_device(next(GROUPS), new_device())
    with pytest.raises(BrokerError, match="Not authorized"):
        BrokerAdmin(mosquitto.endpoint, creds.username, creds.password, timeout=WAIT)


def test_admins_sharing_the_response_topic_get_their_own_answers(
    mosquitto: Mosquitto, admin: BrokerAdmin, connect: Connect
) -> None:
    """dynsec broadcasts every response to every admin; correlation data sorts them out."""
    results: dict[str, list[DeviceCredentials]] = {"first": [], "second": []}
    gid = next(GROUPS)
    with BrokerAdmin(mosquitto.endpoint, *mosquitto.admin) as second:

        def work(name: str, who: BrokerAdmin) -> None:
            results[name] = [who.add_device(gid, new_device()) for _ in range(5)]

        threads = [
            threading.Thread(target=work, args=("first", admin)),
            threading.Thread(target=work, args=("second", second)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 2)
    creds = results["first"] + results["second"]
    assert len({c.username for c in creds}) == 10
    for c in (results["first"][-1], results["second"][-1]):
        device = connect(c.username, c.password)
        assert not device.publish(c.telemetry_topic, b"x").is_failure  # no gateway: 0x10


def test_gateway_cannot_take_the_admins_name(mosquitto: Mosquitto, admin: BrokerAdmin) -> None:
    with pytest.raises(ValueError, match="admin"):
        admin.ensure_gateway(next(GROUPS), mosquitto.admin[0], "x")


def test_dynsec_error_becomes_broker_error(admin: BrokerAdmin) -> None:
    with pytest.raises(BrokerError, match="Client not found") as info:
        admin._run([{"command": "getClient", "username": "nobody"}])
    assert info.value.code == "broker_error"


def test_no_broker_is_a_broker_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(BrokerError, match="cannot reach") as info:
            BrokerAdmin(BrokerEndpoint("127.0.0.1", port), "admin", "pw", timeout=1)
    assert info.value.code == "broker_unavailable"


def test_start_failure_reports_the_broker_stderr(mosquitto: Mosquitto, tmp_path: Any) -> None:
    taken = Mosquitto(tmp_path, port=mosquitto.endpoint.port, port_busy_grace_s=0.5)
    with pytest.raises(BrokerError, match="Address already in use") as info:
        taken.start()
    assert info.value.code == "broker_start_failed"
    taken.stop()  # harmless when nothing runs
    with pytest.raises(BrokerError, match="not been started"):
        _ = taken.admin


def test_managed_broker_files(mosquitto: Mosquitto) -> None:
    conf = mosquitto.conf_path.read_text()
    assert f"listener {mosquitto.endpoint.port} 127.0.0.1" in conf
    assert "allow_anonymous false" in conf
    # the broker queues telemetry for an offline gateway, and keeps it across its own restart
    assert "persistence true" in conf
    assert f"persistence_location {mosquitto.persistence_dir}/" in conf
    assert "max_queued_messages 100000" in conf
    assert mosquitto.persistence_dir.stat().st_mode & 0o777 == 0o700
    assert mosquitto.admin[1] not in conf
    assert mosquitto.admin[1] not in mosquitto.log_path.read_text()
    assert mosquitto.dynsec_path.stat().st_mode & 0o077 == 0
