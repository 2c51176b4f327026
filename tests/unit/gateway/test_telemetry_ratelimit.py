"""Rate limits on telemetry (issue 12 item 6): a device's budget is spent only by messages
that authenticated; junk is throttled per client, before authentication."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from tests.support.gateway import Harness, error_code
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.ingest import ClientBudget, IngestCore
from vitalchain.gateway.ratelimit import RateLimiter
from vitalchain.vitals import Vital

OCTETS = {"content-type": "application/octet-stream"}
PREAUTH_BURST = 100


class ManualClock:
    def __init__(self) -> None:
        self.t = 1_000.0

    def __call__(self) -> float:
        return self.t


def limited(core: IngestCore, clock: ManualClock, device_burst: int) -> None:
    """Both budgets on a clock the test moves: the device's, and each client's pre-auth one."""
    core._rate = RateLimiter(0.001, device_burst, clock)
    core.clients = ClientBudget(RateLimiter(10.0, PREAUTH_BURST, clock))


def junk_for(device: DeviceClient) -> bytes:
    """A data message with the device's (cleartext) session ID and garbage for ciphertext."""
    return device._header + os.urandom(120)


def send(device: DeviceClient) -> str:
    try:
        device.send(device.prepare([(Vital.HEART_RATE, 70)]))
        return "ok"
    except DeviceError as exc:
        return str(exc.code)


def test_junk_carrying_a_devices_session_id_does_not_spend_its_budget(
    fresh_harness: Harness,
) -> None:
    """300 junk messages with A's session ID from one client: A's real messages still pass,
    its full budget intact; the junk is refused too_many_requests past the client's budget."""
    h, clock = fresh_harness, ManualClock()
    limited(h.gateway.ingest_core, clock, device_burst=3)
    device = h.onboarded()
    attacker = TestClient(h.client.app, client=("203.0.113.7", 40_000))
    codes: Counter[tuple[int, str]] = Counter()
    for _ in range(300):
        r = attacker.post("/v1/telemetry", content=junk_for(device), headers=OCTETS)
        codes[(r.status_code, error_code(r))] += 1
    assert codes == {
        (400, "decryption_failed"): PREAUTH_BURST,
        (429, "too_many_requests"): 300 - PREAUTH_BURST,
    }
    # A, from its own address, has its whole budget; the device limit applies after that.
    assert [send(device) for _ in range(4)] == ["ok", "ok", "ok", "rate_limited"]
    # The attacker's own budget refills with time, like any bucket.
    clock.t += 1.0
    r = attacker.post("/v1/telemetry", content=junk_for(device), headers=OCTETS)
    assert (r.status_code, error_code(r)) == (400, "decryption_failed")


def test_a_client_over_its_pre_auth_budget_is_refused_unread(fresh_harness: Harness) -> None:
    """Refused before any work, with the pre-auth code, whatever it sends: even a good message
    from that address waits until the client's bucket refills (a shared address shares it)."""
    h, clock = fresh_harness, ManualClock()
    limited(h.gateway.ingest_core, clock, device_burst=100)
    device = h.onboarded()
    before = h.gateway.store.count_readings()
    for _ in range(PREAUTH_BURST):
        assert error_code(h.client.post("/v1/telemetry", content=b"junk", headers=OCTETS)) == (
            "malformed_message"
        )
    assert send(device) == "too_many_requests"
    assert h.gateway.store.count_readings() == before
    clock.t += 0.1  # one token back
    assert send(device) == "ok"


def test_only_failures_spend_the_pre_auth_budget(fresh_harness: Harness) -> None:
    """Many good messages from one address (devices behind one NAT) never hit the pre-auth
    limit: it is charged by messages that fail to authenticate, not by every message."""
    h, clock = fresh_harness, ManualClock()
    limited(h.gateway.ingest_core, clock, device_burst=1000)
    h.gateway.ingest_core.clients = ClientBudget(RateLimiter(10.0, 2, clock))
    device = h.onboarded()
    assert {send(device) for _ in range(10)} == {"ok"}


def test_mqtt_junk_is_charged_to_the_publishing_client(fresh_harness: Harness) -> None:
    """Over MQTT the pre-auth key is the topic's client: junk that client B publishes with
    A's session ID is refused (wrong_device, then too_many_requests) and never touches A."""
    h, clock = fresh_harness, ManualClock()
    core = h.gateway.ingest_core
    limited(core, clock, device_burst=3)
    a, b = h.onboarded(), h.onboarded()
    codes: Counter[str] = Counter()
    for _ in range(300):
        try:
            core.submit(junk_for(a), topic_device=b.address)
        except GatewayError as exc:
            codes[exc.code] += 1
    assert codes == {"wrong_device": PREAUTH_BURST, "too_many_requests": 300 - PREAUTH_BURST}
    for _ in range(3):
        ack = core.ingest(a.prepare([(Vital.SPO2, 97)]), topic_device=a.address)
        assert ack.accepted == 1
    with pytest.raises(GatewayError) as err:
        core.ingest(a.prepare([(Vital.SPO2, 97)]), topic_device=a.address)
    assert err.value.code == "rate_limited"


def test_the_bucket_table_stays_bounded() -> None:
    """A flood from many addresses cannot grow the limiter's table without bound."""
    clock = ManualClock()
    limiter = RateLimiter(1.0, 5, clock, max_buckets=100)
    for i in range(10_000):
        limiter.charge(f"http:10.0.{i // 256}.{i % 256}")
    assert len(limiter) <= 101
    assert limiter.exhausted("http:x") is False
