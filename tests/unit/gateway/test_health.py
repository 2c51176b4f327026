"""Issue 12 items 15-16: health from cached state, readiness, and outages as 503 + one log line.

Fakes stand in only for the failing dependency (a probe that raises, a ledger method that raises
ChainUnavailable); the gateway, its app and its chain are real.  The real outages (anvil gone or
hung, PostgreSQL stopped) are in tests/integration/test_outages.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.support.gateway import Harness, error_code, make_harness, next_id
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.gateway.app import create_app
from vitalchain.gateway.health import (
    BrokerUnavailable,
    ChainProbe,
    HealthMonitor,
    OutageTracker,
    SocketProbe,
    StoreProbe,
)
from vitalchain.ledger import ChainUnavailable, Ledger, RpcBackend
from vitalchain.services.ports import free_port
from vitalchain.store import StoreUnavailable


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Switch:
    """A probe that fails while ``down`` is set (what a dead dependency looks like)."""

    def __init__(self) -> None:
        self.down: BaseException | None = None
        self.calls = 0

    def check(self) -> None:
        self.calls += 1
        if self.down is not None:
            raise self.down


def _outage_lines(caplog: pytest.LogCaptureFixture, name: str) -> tuple[int, int]:
    messages = [r.getMessage() for r in caplog.records]
    return (
        sum(m.startswith(f"{name} outage started") for m in messages),
        sum(m.startswith(f"{name} outage ended") for m in messages),
    )


def test_tracker_logs_one_line_per_outage_edge(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    tracker = OutageTracker("chain", clock)
    assert tracker.snapshot().error == "not_checked"  # never checked is not "up"
    assert not tracker.snapshot().up
    tracker.succeeded()
    clock.now += 3
    with caplog.at_level(logging.INFO):
        for _ in range(50):  # a stream of failures is one outage
            tracker.failed(ChainUnavailable("gone"))
            clock.now += 0.1
        down = tracker.snapshot()
        for _ in range(5):
            tracker.succeeded()
    assert not down.up
    assert down.error == "chain_unavailable"
    assert down.age_s == pytest.approx(3 + 5.0)
    assert down.down_since == pytest.approx(clock.now - 5.0)
    assert _outage_lines(caplog, "chain") == (1, 1)
    assert "outage ended after 5.0 s" in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
    up = tracker.snapshot()
    assert up.up
    assert up.age_s == 0
    assert up.error is None


def test_tracker_never_logs_an_exception_message(caplog: pytest.LogCaptureFixture) -> None:
    """Messages may carry a DSN or an address; only the stable code is logged."""
    tracker = OutageTracker("store")
    with caplog.at_level(logging.INFO):
        tracker.failed(OSError("postgresql://vitalchain:secret@127.0.0.1/db refused"))
    assert "secret" not in caplog.text
    assert "OSError" in caplog.text


def test_monitor_reports_age_and_a_hung_check() -> None:
    clock = FakeClock()
    chain, store = Switch(), Switch()
    monitor = HealthMonitor({"chain": chain, "store": store}, interval_s=1, clock=clock)
    monitor.probe_once()
    assert monitor.failing() == []
    clock.now += 4
    chain.down = ChainUnavailable("refused")
    monitor.check("chain")
    components = monitor.components()
    assert not components["chain"].up
    assert components["chain"].age_s == pytest.approx(4)
    assert components["store"].up
    assert monitor.failing() == ["chain"]

    # A check that hangs longer than hung_after_s counts as down, even with no failure yet.
    release = threading.Event()

    class Hanging:
        def check(self) -> None:
            release.wait(5)

    hung = HealthMonitor({"chain": Hanging()}, interval_s=1, hung_after_s=2, clock=clock)
    hung.trackers["chain"].succeeded()
    thread = threading.Thread(target=hung.check, args=("chain",))
    thread.start()
    try:
        while "chain" not in hung._checking:
            time.sleep(0.01)
        assert hung.failing() == []
        clock.now += 3
        assert hung.components()["chain"].error == "check_hung"
        assert hung.failing() == ["chain"]
    finally:
        release.set()
        thread.join()


def test_background_probe_follows_a_component_down_and_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    chain = Switch()
    monitor = HealthMonitor({"chain": chain}, interval_s=0.02)
    monitor.start()
    try:
        with caplog.at_level(logging.INFO):
            wait_for(lambda: monitor.components()["chain"].up)
            chain.down = ChainUnavailable("gone")
            wait_for(lambda: not monitor.components()["chain"].up)
            calls = chain.calls
            wait_for(lambda: chain.calls > calls + 5)  # keeps probing while down
            chain.down = None
            wait_for(lambda: monitor.components()["chain"].up)
    finally:
        monitor.stop()
    assert _outage_lines(caplog, "chain") == (1, 1)
    assert not any(t.name.startswith("health-") for t in threading.enumerate())


@pytest.fixture
def probed(ledger: Ledger, tmp_path: Path) -> Iterator[tuple[Harness, Switch, Switch]]:
    """A real gateway whose monitor's chain and store probes can be switched off."""
    for harness in make_harness(ledger, tmp_path / "gw", next_id()):
        chain_probe, store_probe = Switch(), Switch()
        monitor = HealthMonitor({"chain": chain_probe, "store": store_probe}, interval_s=60)
        monitor.probe_once()
        with TestClient(create_app(harness.gateway, monitor)) as client:
            yield Harness(harness.gateway, client, harness.ledger), chain_probe, store_probe


def test_health_and_readiness_when_all_is_up(harness: Harness) -> None:
    """The default app (no monitor given) probes the real chain and store."""
    body = harness.client.get("/v1/health").json()
    assert body["status"] == "ok"
    assert body["group_id"] == harness.gateway.group_id
    assert body["block_number"] >= 1
    assert isinstance(body["readings"], int)
    assert set(body["components"]) == {"chain", "store"}
    assert body["components"]["chain"]["status"] == "up"
    assert body["components"]["chain"]["age_s"] >= 0
    ready = harness.client.get("/v1/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["failing"] == []


def test_health_never_calls_the_chain(
    probed: tuple[Harness, Switch, Switch], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: /v1/health called block_number() and count_readings() on every request, so a
    hung node hung it and a gone node made it 500."""
    harness, chain_probe, _ = probed

    def hang(*_: object) -> int:
        raise AssertionError("health asked the chain or the store")

    monkeypatch.setattr(harness.ledger, "block_number", hang)
    monkeypatch.setattr(harness.gateway.store, "count_readings", hang)
    chain_probe.down = ChainUnavailable("hung")
    harness.client.app.state.health.check("chain")  # type: ignore[attr-defined]
    started = time.monotonic()
    r = harness.client.get("/v1/health")
    assert time.monotonic() - started < 1
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "degraded"
    chain = body["components"]["chain"]
    assert chain["status"] == "down"
    assert chain["error"] == "chain_unavailable"
    assert chain["age_s"] >= 0
    assert chain["down_since"] is not None
    assert body["components"]["store"]["status"] == "up"
    ready = harness.client.get("/v1/ready")
    assert ready.status_code == 503
    assert ready.json()["failing"] == ["chain"]
    assert ready.json()["status"] == "not_ready"


def test_chain_failure_on_a_route_is_503_and_one_log_line(
    probed: tuple[Harness, Switch, Switch],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Regression: a chain failure inside a route was a 500 internal_error."""
    harness, _, _ = probed

    def gone(*_: object) -> bool:
        raise ChainUnavailable("the chain node does not answer (ConnectionError)")

    monkeypatch.setattr(harness.ledger, "object_id_taken", gone)
    monkeypatch.setattr(harness.ledger, "device", gone)
    body = {"v": 1, "device_key": PrivateKey.generate().public_key.compressed.hex()}
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            r = harness.client.post("/v1/sessions", json=body | {"object_id": next_id()})
            assert r.status_code == 503, r.text
            assert error_code(r) == "chain_unavailable"
            assert r.headers["retry-after"] == "5"
    assert _outage_lines(caplog, "chain") == (1, 0)
    assert not [rec for rec in caplog.records if rec.exc_info]
    # The error path marked the chain down before any probe ran.
    assert harness.client.get("/v1/ready").json()["failing"] == ["chain"]


def test_store_failure_on_a_route_is_503(
    probed: tuple[Harness, Switch, Switch], monkeypatch: pytest.MonkeyPatch
) -> None:
    harness, _, store_probe = probed

    def gone(*_: object) -> None:
        raise StoreUnavailable("the database is unavailable")

    # Any route: the handler is app-wide, so it covers mounted routers (access, alerts) too.
    monkeypatch.setattr(harness.gateway, "ring_members", gone)
    r = harness.client.get("/v1/ring", params={"size": 2})
    assert r.status_code == 503
    assert error_code(r) == "store_unavailable"
    assert harness.client.get("/v1/ready").json()["failing"] == ["store"]
    store_probe.check()  # the probe's next success ends the outage
    harness.client.app.state.health.check("store")  # type: ignore[attr-defined]
    assert harness.client.get("/v1/ready").status_code == 200


def test_openapi_documents_503_and_readiness(harness: Harness) -> None:
    paths = harness.client.get("/openapi.json").json()["paths"]
    assert "503" in paths["/v1/sessions"]["post"]["responses"]
    assert "503" in paths["/v1/ready"]["get"]["responses"]


def test_rpc_node_with_nothing_listening_is_chain_unavailable() -> None:
    """Regression: requests' ConnectionError escaped the ledger untyped (and became a 500)."""
    backend = RpcBackend(f"http://127.0.0.1:{free_port()}", timeout=1)
    started = time.monotonic()
    with pytest.raises(ChainUnavailable) as err:
        backend.ping(0.5)
    assert err.value.code == "chain_unavailable"
    with pytest.raises(ChainUnavailable):
        _ = backend.w3.eth.block_number
    assert time.monotonic() - started < 5


def test_probes_of_the_real_parts(harness: Harness) -> None:
    chain = ChainProbe(harness.ledger, 1.0)
    chain.check()
    assert chain.block_number == harness.ledger.block_number()
    store = StoreProbe(harness.gateway.store, harness.gateway.group_id)
    store.check()
    assert store.readings == harness.gateway.store.count_readings()
    with pytest.raises(BrokerUnavailable) as err:
        SocketProbe("127.0.0.1", free_port(), 0.5).check()
    assert err.value.code == "broker_unavailable"


def test_health_reports_the_sealers_failures(ledger: Ledger, tmp_path: Path) -> None:
    """Issue 12 item 12: a patient whose readings do not seal is visible in health."""
    sealing = {"failing": {}, "errors": {}, "last_seal_at_ms": None, "last_anchor_at_ms": None}
    for harness in make_harness(ledger, tmp_path / "gw", next_id()):
        monitor = HealthMonitor({"chain": Switch()}, sealing=lambda: sealing)
        monitor.probe_once()
        with TestClient(create_app(harness.gateway, monitor)) as client:
            body = client.get("/v1/health").json()
            assert body["status"] == "ok"
            assert body["sealing"]["failing"] == {}
            sealing["failing"] = {"p:0123abcd": "no_reader_key"}
            body = client.get("/v1/health").json()
            assert body["status"] == "degraded"
            assert body["sealing"]["failing"] == {"p:0123abcd": "no_reader_key"}
            assert client.get("/v1/ready").status_code == 200  # the gateway still serves
