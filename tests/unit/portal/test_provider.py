"""The provider's views on a real node: patients under consent, a patient's vitals and charts,
verify badges (a tampered block named), break-glass on chain before anything is shown, FHIR."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.node import World
from tests.support.portal import (
    RING_K,
    chart_data,
    charted,
    charted_world,
    csrf_of,
    portal_client,
    portal_of,
    seal_all,
    send,
    tamper,
)
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.crypto.keys import keccak256
from vitalchain.ledger import Ledger
from vitalchain.logs import pseudonym
from vitalchain.portal.provider import ProviderViews
from vitalchain.sdk.subscriber import AlertClient
from vitalchain.vitals import Vital


@pytest.fixture
def world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    yield from charted_world(chain, tmp_path)


def test_patients_lists_those_under_consent_and_drops_a_revoked_one(world: World) -> None:
    c = charted(world, vitals=(Vital.SPO2, Vital.HEART_RATE))
    stranger = world.patient()  # no consent for this provider
    portal = portal_of(world, c.doctor)
    with portal_client(portal, sign_in=False) as anonymous:
        refused = anonymous.get("/patients", follow_redirects=False)
        assert (refused.status_code, refused.headers["location"]) == (303, "/login")
    with portal_client(portal) as client:
        page = client.get("/patients")
        assert page.status_code == 200
        assert pseudonym(c.patient.address) in page.text
        assert pseudonym(stranger.address) not in page.text
        assert "Heart rate, Oxygen saturation by pulse oximetry" in page.text
        assert "Systolic" not in page.text  # out of this consent's scope
        assert re.search(
            r'<time datetime="[0-9T:+-]+" data-local>[^<]+ UTC</time> \(in 23 h', page.text
        )
        assert 'class="badge badge-ok"' in page.text
        assert ">verified<" in page.text
        world.ledger.revoke(c.patient, c.doctor.address)
        assert pseudonym(c.patient.address) not in client.get("/patients").text
        after = client.get(f"/patients/{c.patient.address}")
        assert after.status_code == 403
        assert "no_consent" in after.text


def test_the_patient_page_shows_latest_vitals_charts_bands_and_alert_markers(
    world: World,
) -> None:
    c = charted(world)
    for _ in range(RING_K):
        world.device(world.patient())
    c.device.use_ring(c.device.fetch_ring(RING_K))
    send(c.device, [(Vital.SPO2, 85)] * 3, c.now)  # sustained low: one alert for the doctor
    alerts = AlertClient(c.doctor, world.client)
    wait_for(lambda: alerts.since(0), "the alert to reach the doctor")
    seal_all(world, c.patient)
    with portal_client(portal_of(world, c.doctor)) as client:
        page = client.get(f"/patients/{c.patient.address}")
    assert page.status_code == 200, page.text
    html = page.text
    assert "85 %" in html  # the latest SpO2, with its unit as clinicians write it
    assert "131 mmHg" in html
    assert "84 mmHg" in html
    assert "72 bpm" in html  # 3 h back, yet the latest heart rate
    data = chart_data(html)
    assert set(data) == {"bp", "spo2", "heart_rate"}
    spo2 = data["spo2"]
    assert sum(v is not None for v in spo2["series"]["spo2"]) == c.spo2 + 3
    assert spo2["band"] == [92.0, 100.0]  # the chain's 9200..10000
    (marker,) = spo2["alerts"]
    assert (marker["t"], marker["value"]) == (int(c.now * 1000) / 1000, 85.0)
    assert marker["priority"] in ("medium", "high")
    bp = data["bp"]
    assert set(bp["series"]) == {"systolic", "diastolic"}
    assert bp["series"]["systolic"] == [121, None, 131]  # 29 min apart: not joined
    assert bp["bands"] == {"systolic": [90.0, 140.0], "diastolic": None}
    assert data["heart_rate"]["band"] is None
    assert "Heart rate: no threshold set on chain." in html
    assert "Diastolic blood pressure: no threshold set on chain." in html
    assert html.count('class="badge badge-ok"') >= 2  # the patient and each block


def test_ranges_are_measured_back_from_the_latest_reading(world: World) -> None:
    c = charted(world)
    with portal_client(portal_of(world, c.doctor)) as client:
        hour = chart_data(client.get(f"/patients/{c.patient.address}?range=1h").text)
        week = chart_data(client.get(f"/patients/{c.patient.address}?range=7d").text)
        wrong = client.get(f"/patients/{c.patient.address}?range=2d")
    assert "heart_rate" not in hour  # 3 h before the latest reading
    assert sum(v is not None for v in hour["spo2"]["series"]["spo2"]) == c.spo2
    assert "heart_rate" in week
    assert wrong.status_code == 422
    assert "invalid_request" in wrong.text


def test_a_tampered_block_shows_a_red_badge_naming_the_failed_check(world: World) -> None:
    c = charted(world)
    views = ProviderViews(portal_of(world, c.doctor))
    before = views.load(c.patient.address)
    assert before.badge.kind == "ok"
    (second,) = [b for b in before.blocks if b.number == 2]
    assert second.readings == 4
    tamper(world, c.patient, 2)
    with portal_client(portal_of(world, c.doctor)) as client:
        page = client.get(f"/patients/{c.patient.address}")
        listed = client.get("/patients")
    assert page.status_code == 200
    row = re.search(r'<tr data-block="2">(.*?)</tr>', page.text, re.S)
    assert row is not None
    assert 'badge badge-failed">failed: block_signature' in row.group(1)
    assert "failed verification: its readings are not shown" in row.group(1)
    assert re.search(r'id="patient-badge">failed: [a-z_, ]*block_signature', page.text)
    assert re.search(
        r'class="badge badge-failed"[^>]*>failed: [a-z_, ]*block_signature', listed.text
    )
    # the tampered block's readings are neither charted nor exported
    points = sum(v is not None for v in chart_data(page.text)["spo2"]["series"]["spo2"])
    assert points == c.spo2 - second.readings
    after = views.load(c.patient.address)
    assert len(after.readings) == len(before.readings) - second.readings


def test_a_block_not_yet_anchored_is_pending(world: World) -> None:
    c = charted(world)
    send(c.device, [(Vital.SPO2, 97)], c.now)
    seal_all(world, c.patient, anchor=False)
    with portal_client(portal_of(world, c.doctor)) as client:
        page = client.get(f"/patients/{c.patient.address}").text
    assert 'id="patient-badge">pending<' in page
    assert 'class="badge badge-pending">pending<' in page
    assert "sealed, not anchored yet" in page


def test_without_consent_the_page_names_no_consent_and_offers_break_glass(world: World) -> None:
    patient, medic = world.patient(), world.provider()
    device = world.device(patient)
    send(device, [(Vital.SPO2, 91)], time.time())
    seal_all(world, patient)
    with portal_client(portal_of(world, medic)) as client:
        page = client.get(f"/patients/{patient.address}")
    assert page.status_code == 403
    assert '<code class="code">no_consent</code>' in page.text
    assert f'action="/patients/{patient.address}/break-glass"' in page.text
    assert 'id="chart-data">{}</script>' in page.text  # nothing of the patient's data


def test_a_store_refusal_is_named(world: World) -> None:
    """Consent for heart rate, blocks holding only SpO2: the store says out_of_scope."""
    c = charted(world, vitals=(Vital.RESPIRATORY_RATE,))
    with portal_client(portal_of(world, c.doctor)) as client:
        page = client.get(f"/patients/{c.patient.address}")
    assert page.status_code == 403
    assert '<code class="code">out_of_scope</code>' in page.text


def test_break_glass_needs_a_reason_and_csrf_and_is_on_chain_before_the_data(
    world: World,
) -> None:
    patient, medic = world.patient(), world.provider()
    device = world.device(patient)
    send(device, [(Vital.SPO2, 91)], time.time())
    seal_all(world, patient)
    url = f"/patients/{patient.address}/break-glass"

    def records() -> int:
        return len(
            world.ledger.events.query(
                "BreakGlassAccessed", patient=patient.address, provider=medic.address
            )
        )

    with portal_client(portal_of(world, medic)) as client:
        csrf = csrf_of(client.get(f"/patients/{patient.address}").text)
        form = {"csrf": csrf, "reason_code": "1", "vital": ["spo2", "heart_rate"]}
        empty = client.post(url, data={**form, "reason": "   "})
        assert empty.status_code == 422
        assert "invalid_request" in empty.text
        forged = client.post(url, data={**form, "csrf": "0" * 64, "reason": "collapsed"})
        assert forged.status_code == 403
        assert "csrf_failed" in forged.text
        no_code = client.post(url, data={**form, "reason_code": "0", "reason": "collapsed"})
        assert no_code.status_code == 422
        assert records() == 0
        reason = "unresponsive in the ward, no consent possible"
        opened = client.post(url, data={**form, "reason": reason})
        assert opened.status_code == 200, opened.text
        (record,) = world.ledger.events.query(
            "BreakGlassAccessed", patient=patient.address, provider=medic.address
        )
        assert record.args["reasonHash"] == keccak256(reason.encode())
        assert record.args["reasonCode"] == 1
        assert record.args["scope"] == Vital.SPO2.bit | Vital.HEART_RATE.bit
        assert f"recorded on chain (block {record.block_number})" in opened.text
        assert "Break-glass access until" in opened.text
        # sealed before the emergency: ciphertext only, and the page says so
        assert "holds no key for you" in opened.text
        assert pseudonym(patient.address) in client.get("/patients").text
        assert client.get(f"/patients/{patient.address}").status_code == 200


def test_bad_addresses_and_dates_are_invalid_requests(world: World) -> None:
    c = charted(world)
    with portal_client(portal_of(world, c.doctor)) as client:
        for path in (
            "/patients/0x1234",
            "/patients/not-an-address",
            "/patients/open?address=0xzz",
            f"/patients/{c.patient.address}/fhir?from=yesterday",
            f"/patients/{c.patient.address}/fhir?from=2026-12-03&to=2026-12-01",
        ):
            response = client.get(path)
            assert response.status_code == 422, path
            assert "invalid_request" in response.text, path
        opened = client.get(f"/patients/open?address={c.patient.address}", follow_redirects=False)
        assert opened.headers["location"] == f"/patients/{c.patient.address}"


def test_fhir_download_for_a_range(world: World) -> None:
    c = charted(world)
    day = time.strftime("%Y-%m-%d", time.gmtime(c.now))
    with portal_client(portal_of(world, c.doctor)) as client:
        page = client.get(f"/patients/{c.patient.address}").text
        assert f'action="/patients/{c.patient.address}/fhir"' in page
        everything = client.get(f"/patients/{c.patient.address}/fhir")
        ranged = client.get(
            f"/patients/{c.patient.address}/fhir",
            params={"from": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(c.now - 600))},
        )
        by_day = client.get(f"/patients/{c.patient.address}/fhir?from={day}&to={day}")
        stranger = client.get(f"/patients/{world.patient().address}/fhir")
    assert everything.status_code == 200
    assert everything.headers["content-type"].startswith("application/fhir+json")
    disposition = everything.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    assert c.patient.address not in disposition
    document = everything.json()
    assert document["resourceType"] == "Bundle"
    resources = [e["resource"] for e in document["entry"]]
    assert len(resources) == c.spo2 + c.bp + 1  # each BP pair is one panel
    spo2 = next(r for r in resources if "59408-5" in {c["code"] for c in r["code"]["coding"]})
    assert spo2["referenceRange"][0]["low"]["value"] == 92.0
    assert len(ranged.json()["entry"]) == 10 + 1  # the last ten minutes: 9-10 SpO2 and a BP
    times = [c.now - 3600 + m * 60 for m in range(60)] + [c.now - 1800, c.now - 60]
    times.append(c.now - 3 * 3600)
    on_day = sum(time.strftime("%Y-%m-%d", time.gmtime(t)) == day for t in times)
    assert len(by_day.json()["entry"]) == on_day  # the day of now, whole, in UTC
    assert stranger.status_code == 403
    assert "no_consent" in stranger.text


def test_an_expired_consent_is_not_listed_and_is_named(world: World) -> None:
    patient, doctor = world.patient(), world.provider()
    world.ledger.grant(patient, doctor.address, Vital.SPO2.bit, world.ledger.timestamp() + 2)
    views = ProviderViews(portal_of(world, doctor))
    assert [a.patient for a in views.under_consent()] == [patient.address]
    time.sleep(3)
    world.patient()  # a few transactions: the chain's clock moves past the expiry
    assert views.under_consent() == []
    with portal_client(portal_of(world, doctor)) as client:
        assert pseudonym(patient.address) not in client.get("/patients").text
        page = client.get(f"/patients/{patient.address}")
    assert page.status_code == 403
    assert '<code class="code">consent_expired</code>' in page.text
