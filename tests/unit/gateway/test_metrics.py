"""/metrics: Prometheus text, behind the admin token, counting what ingest did; no identity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.alerts import alert_world, low_spo2, ward
from tests.support.gateway import ADMIN_TOKEN, Harness, error_code
from tests.support.node import World
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import Ledger
from vitalchain.vitals import Vital

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def test_metrics_need_the_admin_token(harness: Harness) -> None:
    assert error_code(harness.client.get("/metrics")) == "unauthorized"
    bad = harness.client.get("/metrics", headers={"Authorization": "Bearer wrong-token-0123456"})
    assert bad.status_code == 401


def test_ingest_is_counted_and_refusals_by_code(fresh_harness: Harness) -> None:
    h = fresh_harness
    device = h.onboarded()
    device.send(device.prepare([(Vital.SPO2, 97.0)]))
    device.send(device.prepare([(Vital.SYSTOLIC_BP, 120.0), (Vital.DIASTOLIC_BP, 80.0)]))
    for _ in range(2):
        r = h.client.post(
            "/v1/telemetry", content=b"junk", headers={"content-type": "application/octet-stream"}
        )
        assert error_code(r) == "malformed_message"
    samples = scrape(h.client)
    assert samples[("vitalchain_ingest_messages_total", ())] == 2
    assert samples[("vitalchain_ingest_readings_total", ())] == 3
    assert samples[("vitalchain_ingest_refusals_total", (("code", "malformed_message"),))] == 2
    text = h.client.get("/metrics", headers=ADMIN).text
    assert device.address not in text
    assert device.address.lower() not in text


def test_a_node_reports_its_outbox_depth_and_anchor_lag(world: World) -> None:
    patient = world.patient()
    device = world.device(patient)
    for value in (97.0, 96.0, 95.0, 97.0):  # four messages: a block (max_readings=4)
        device.send(device.prepare([(Vital.SPO2, value)]))
    world.running.sealer.tick()
    assert world.running.health is not None
    world.running.health.probe_once()
    samples = scrape(world.client)
    assert ("vitalchain_outbox_depth", (("state", "queued"),)) in samples
    assert samples[("vitalchain_outbox_depth", (("state", "in_flight"),))] >= 0
    assert samples[("vitalchain_anchor_lag_seconds", ())] >= 0
    text = world.client.get("/metrics", headers=ADMIN).text
    assert patient.address not in text
    assert patient.address.lower()[2:] not in text.lower()


@pytest.fixture
def alerting(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    yield from alert_world(chain, tmp_path / "node")


def test_a_raised_alert_is_timed_from_its_reading(alerting: World) -> None:
    before = scrape(alerting.client)
    assert before[("vitalchain_alert_latency_seconds_count", ())] == 0
    low_spo2(alerting, ward(alerting))
    count = ("vitalchain_alert_latency_seconds_count", ())
    wait_for(lambda: scrape(alerting.client)[count] == 1 or None, "the latency observed")
    after = scrape(alerting.client)
    assert 0 <= after[("vitalchain_alert_latency_seconds_sum", ())] < 60
    assert after[("vitalchain_alert_latency_seconds_bucket", (("le", "+Inf"),))] == 1
