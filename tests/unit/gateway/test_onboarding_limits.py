"""Unauthenticated state expires and is purged, its creation is limited per client, and every
chain call is bounded by a timeout (issue 12, item 8).

Before: 2,000 challenges and 300 sessions created in seconds all stayed, and a session request
held a worker for 35 s while the node hung.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient

from tests.support.gateway import ADMIN_TOKEN, Harness, error_code, make_harness, next_id
from tests.support.node import make_world
from vitalchain.crypto import PrivateKey
from vitalchain.errors import VitalchainError
from vitalchain.gateway.app import create_app
from vitalchain.gateway.preauth import PreAuthLimiter
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.gateway.state import EXPIRED_CODE_KEPT_S
from vitalchain.ledger import EmbeddedBackend, Ledger, RpcBackend
from vitalchain.ledger.errors import ChainUnavailable
from vitalchain.node import open_ledger
from vitalchain.sealing.sealer import SealingPolicy


def _session_body(harness: Harness) -> dict[str, object]:
    device = harness.device()
    return {
        "v": 1,
        "device_key": device.key.public_key.compressed.hex(),
        "object_id": device.object_id,
    }


def _enrol(client: TestClient, ttl: int = 60) -> None:
    r = client.post(
        "/v1/enrolments",
        json={"v": 1, "patient": PrivateKey.generate().address, "ttl_seconds": ttl},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 201, r.text


def test_purge_removes_expired_codes_sessions_and_challenges(fresh_harness: Harness) -> None:
    h = fresh_harness
    start = time.time()
    h.gateway.clock = lambda: start
    active = h.onboarded()  # its code is used, its session ACTIVE: the session must stay
    for _ in range(3):
        _enrol(h.client, ttl=60)
        assert h.client.post("/v1/sessions", json=_session_body(h)).status_code == 201
    h.gateway.store.add_nonce(b"\x01" * 32, PrivateKey.generate().address, int(start + 60) * 1000)
    assert h.gateway.state.counts()["sessions"] == 4
    nothing = h.gateway.purge_expired()
    assert nothing == {"enrolments": 0, "sessions": 0, "enrolment_requests": 0, "challenges": 0}

    h.gateway.clock = lambda: start + h.gateway.settings.session_ttl_s + 1
    purged = h.gateway.purge_expired()
    assert purged == {"enrolments": 0, "sessions": 3, "enrolment_requests": 0, "challenges": 1}
    # expired codes stay a while (a late device hears "expired", not "unknown"), then go
    h.gateway.clock = lambda: start + 900 + EXPIRED_CODE_KEPT_S
    purged = h.gateway.purge_expired()
    assert purged == {"enrolments": 4, "sessions": 0, "enrolment_requests": 0, "challenges": 0}
    assert h.gateway.state.counts() == {"enrolments": 0, "sessions": 1, "enrolment_requests": 0}
    # the active device's session is untouched
    assert [s.device for s in h.gateway.state.active_sessions()] == [active.address]


def test_creating_state_purges_amortised(fresh_harness: Harness) -> None:
    """No timer needed: a creation after ``purge_every_s`` purges first."""
    h = fresh_harness
    start = time.time()
    h.gateway.clock = lambda: start
    for _ in range(5):
        _enrol(h.client, ttl=60)
    assert h.gateway.state.counts()["enrolments"] == 5
    h.gateway.clock = lambda: start + 60 + EXPIRED_CODE_KEPT_S
    _enrol(h.client)
    assert h.gateway.state.counts()["enrolments"] == 1


@pytest.fixture
def fast_purge(ledger: Ledger, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(ledger, tmp_path / "gw", next_id(), purge_every_s=0.05)


def test_the_timer_purges_without_any_request(fast_purge: Harness) -> None:
    h = fast_purge
    start = time.time()
    h.gateway.clock = lambda: start
    _enrol(h.client, ttl=60)
    h.gateway.clock = lambda: start + 60 + EXPIRED_CODE_KEPT_S
    deadline = time.monotonic() + 5
    while h.gateway.state.counts()["enrolments"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert h.gateway.state.counts()["enrolments"] == 0


@pytest.fixture
def limited(ledger: Ledger, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(
        ledger, tmp_path / "gw", next_id(), preauth_burst=5, preauth_rate_per_s=1.0
    )


def test_creation_is_limited_per_client_after_the_burst(limited: Harness) -> None:
    h = limited
    start = time.time()
    h.gateway.clock = lambda: start
    statuses = [h.client.post("/v1/sessions", json=_session_body(h)).status_code for _ in range(7)]
    assert statuses == [201] * 5 + [429] * 2
    refused = h.client.post("/v1/sessions", json=_session_body(h))
    assert refused.status_code == 429
    assert error_code(refused) == "too_many_requests"
    assert refused.headers["retry-after"] == "1"
    assert h.gateway.state.counts()["sessions"] == 5  # a refusal stores nothing
    # enrolments have their own budget; another client address has its own too
    for _ in range(5):
        _enrol(h.client)
    r = h.client.post("/v1/enrolments", json={"v": 1}, headers={"Authorization": "x"})
    assert error_code(r) == "too_many_requests"
    with TestClient(create_app(h.gateway), client=("192.0.2.7", 40000)) as other:
        assert other.post("/v1/sessions", json=_session_body(h)).status_code == 201
    # the budget refills with time (rate 1/s): one more after a second
    h.gateway.clock = lambda: start + 1
    assert h.client.post("/v1/sessions", json=_session_body(h)).status_code == 201
    assert h.client.post("/v1/sessions", json=_session_body(h)).status_code == 429
    # authenticated and non-creating routes are not limited
    assert h.client.get("/v1/health").status_code == 200


def test_limiter_forgets_refilled_buckets() -> None:
    now = [0.0]
    limiter = PreAuthLimiter(2.0, 4, lambda: now[0])
    for client in range(100):
        assert limiter.allow("/v1/sessions", f"10.0.0.{client}")
    assert len(limiter) == 100
    now[0] = 1.0  # half refilled: kept
    assert limiter.sweep() == 0
    now[0] = 2.0  # full again, the same as a new bucket: dropped
    assert limiter.sweep() == 100
    assert len(limiter) == 0


# -- every chain call is bounded ------------------------------------------------------------------


@pytest.fixture
def silent_node() -> Iterator[str]:
    """A TCP server on loopback that accepts connections and never answers: a hung node."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
        for conn in held:
            conn.close()


def test_an_rpc_call_to_a_hung_node_returns_within_its_timeout(silent_node: str) -> None:
    backend = RpcBackend(silent_node, timeout=0.5)
    started = time.monotonic()
    with pytest.raises((ChainUnavailable, requests.Timeout)):
        backend.w3.eth.get_block("latest")
    # once, not web3's five retries of a timed-out call
    assert time.monotonic() - started < 1.5


def test_the_gateway_setting_bounds_the_node_it_opens(silent_node: str, tmp_path: Path) -> None:
    settings = GatewaySettings(data_dir=tmp_path, rpc_url=silent_node, rpc_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(VitalchainError) as err:  # a StartupError or ChainUnavailable
        open_ledger(settings, PrivateKey.generate())
    assert time.monotonic() - started < 1.5
    assert err.value.code == "chain_unavailable"


# -- challenges (the store's and the alert API's) ------------------------------------------------


@pytest.fixture(scope="module")
def node_chain() -> tuple[Ledger, PrivateKey]:
    admin = PrivateKey.generate()
    return Ledger.deploy(EmbeddedBackend(), admin), admin


def test_unanswered_challenges_are_purged(
    node_chain: tuple[Ledger, PrivateKey], tmp_path: Path
) -> None:
    ledger, admin = node_chain
    for world in make_world((ledger, admin), tmp_path / "node", SealingPolicy()):
        gateway = world.running.gateway
        for route in ("/v1/store/challenges", "/v1/alerts/challenges"):
            body = {"v": 1, "provider" if "store" in route else "address": admin.address}
            for _ in range(20):
                assert world.client.post(route, json=body).status_code == 201
        assert gateway.purge_expired()["challenges"] == 0  # none expired yet
        later = time.time() + 61  # challenges live 60 s
        gateway.clock = lambda later=later: later
        assert gateway.purge_expired()["challenges"] == 40


def test_challenge_creation_is_limited_per_client_and_route(
    node_chain: tuple[Ledger, PrivateKey], tmp_path: Path
) -> None:
    ledger, admin = node_chain
    for world in make_world(
        (ledger, admin),
        tmp_path / "node",
        SealingPolicy(),
        preauth_burst=3,
        preauth_rate_per_s=0.01,
    ):
        for route, field in (
            ("/v1/store/challenges", "provider"),
            ("/v1/alerts/challenges", "address"),
        ):
            body = {"v": 1, field: admin.address}
            statuses = [world.client.post(route, json=body).status_code for _ in range(5)]
            assert statuses == [201, 201, 201, 429, 429], route
            refused = world.client.post(route, json=body)
            assert error_code(refused) == "too_many_requests"
            assert int(refused.headers["retry-after"]) >= 1
