"""Issue 12 items 15-16 with real parts: anvil gone, anvil hung (SIGSTOP), PostgreSQL stopped.

During each outage, over real HTTP: ``/v1/health`` answers within a second and shows the
component down with its age, ``/v1/ready`` is 503 naming it, a route that needs it is a 503
with ``chain_unavailable`` / ``store_unavailable``; the logs hold exactly one line as the outage
starts and one as it ends, and no traceback.  Outages last a few seconds; probes run every
0.2 s.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway import next_id, settings_for
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.node import running_gateway, served
from vitalchain.services.anvil import AnvilProcess
from vitalchain.services.postgres import LocalPostgres


def _settings(data_dir: Path, **overrides: object) -> GatewaySettings:
    return settings_for(
        data_dir,
        health_interval_s=0.2,
        health_timeout_s=0.5,
        rpc_timeout_s=1.0,
        **overrides,  # type: ignore[arg-type]
    )


def _health(http: httpx.Client) -> dict[str, object]:
    """/v1/health, which must answer within a second whatever is down."""
    started = time.monotonic()
    response = http.get("/v1/health", timeout=5)
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"/v1/health took {elapsed:.2f} s"
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def _component(http: httpx.Client, name: str) -> dict[str, object]:
    components = _health(http)["components"]
    assert isinstance(components, dict)
    component: dict[str, object] = components[name]
    return component


def _assert_down_during_outage(http: httpx.Client, name: str) -> None:
    wait_for(lambda: _component(http, name)["status"] == "down")
    time.sleep(0.5)  # let its last success age
    component = _component(http, name)
    assert component["status"] == "down"
    assert component["error"] == f"{name}_unavailable"
    age = component["age_s"]
    assert isinstance(age, float | int)
    assert age >= 0.5
    assert _health(http)["status"] == "degraded"
    ready = http.get("/v1/ready")
    assert ready.status_code == 503
    assert ready.json()["failing"] == [name]


def _assert_one_outage_logged(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], name: str
) -> None:
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith(f"{name} outage started") for m in messages) == 1, messages
    assert sum(m.startswith(f"{name} outage ended") for m in messages) == 1, messages
    assert not [m for m in messages if "outage" in m and not m.startswith(name)], messages
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert "Traceback" not in caplog.text
    assert "Traceback" not in capfd.readouterr().err


def _session_body() -> dict[str, object]:
    key = PrivateKey.generate().public_key.compressed.hex()
    return {"v": 1, "device_key": key, "object_id": next_id()}


@contextlib.contextmanager
def _gateway_on(anvil: AnvilProcess, data_dir: Path) -> Iterator[httpx.Client]:
    with (
        running_gateway(_settings(data_dir, rpc_url=anvil.url)) as running,
        served(running.app()) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        yield http


@pytest.mark.parametrize("hang", [False, True], ids=["gone", "hung"])
def test_chain_outage_is_visible_and_well_mannered(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    hang: bool,
) -> None:
    """Regression: /v1/health hung with a hung node and was a 500 with a gone one; routes were
    500s; a refused node logged a traceback a second and a hung one nothing."""
    anvil = AnvilProcess(tmp_path / "anvil-state.json")
    anvil.start()
    try:
        with _gateway_on(anvil, tmp_path / "gateway") as http:
            wait_for(lambda: http.get("/v1/ready").status_code == 200)
            sealing = _health(http)["sealing"]
            assert isinstance(sealing, dict)
            assert sealing["failing"] == {}
            caplog.clear()
            capfd.readouterr()
            with caplog.at_level(logging.INFO):
                if hang:
                    anvil.signal(signal.SIGSTOP)
                else:
                    anvil.stop()
                try:
                    _assert_down_during_outage(http, "chain")
                    r = http.post("/v1/sessions", json=_session_body())
                    assert r.status_code == 503, r.text
                    assert r.json()["error"]["code"] == "chain_unavailable"
                    time.sleep(1.0)  # sealer ticks and watchers run into the outage too
                finally:
                    if hang:
                        anvil.signal(signal.SIGCONT)
                    else:
                        anvil.start()
                wait_for(lambda: http.get("/v1/ready").status_code == 200)
                assert _component(http, "chain")["status"] == "up"
                r = http.post("/v1/sessions", json=_session_body())
                assert r.status_code == 201, r.text
        _assert_one_outage_logged(caplog, capfd, "chain")
    finally:
        anvil.stop()


def test_postgres_outage_is_visible_and_well_mannered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Regression: a stopped PostgreSQL made the store API 500 and logged nothing."""
    with (
        LocalPostgres() as pg,
        running_gateway(_settings(tmp_path / "gateway", store_dsn=pg.dsn)) as running,
        served(running.app()) as url,
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        wait_for(lambda: http.get("/v1/ready").status_code == 200)
        provider = {"v": 1, "provider": PrivateKey.generate().address}
        proof = f"/v1/store/groups/{running.gateway.group_id}/proofs/inclusion"
        assert http.post("/v1/store/challenges", json=provider).status_code == 201
        caplog.clear()
        capfd.readouterr()
        with caplog.at_level(logging.INFO):
            pg.halt()
            try:
                _assert_down_during_outage(http, "store")
                r = http.post("/v1/store/challenges", json=provider)
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "store_unavailable"
                # A proof route used to turn any error into 404: an outage is no missing proof.
                r = http.get(proof, params={"leaf_index": 0, "tree_size": 1})
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "store_unavailable"
                time.sleep(1.0)
            finally:
                pg.resume()
            wait_for(lambda: http.get("/v1/ready").status_code == 200)
            assert http.post("/v1/store/challenges", json=provider).status_code == 201
    _assert_one_outage_logged(caplog, capfd, "store")
