"""The patient's views of the portal (issue 15, items 6-9), on a real node and chain: my devices
from my own blocks, my consents granted and revoked on chain, who accessed my data, my alerts."""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest

from tests.support.delivery import raise_low
from tests.support.node import World
from tests.support.portal import csrf_of, portal_client, portal_of
from vitalchain.crypto import PrivateKey
from vitalchain.crypto.keys import keccak256
from vitalchain.ledger import ConsentStatus
from vitalchain.portal.core import Portal, PortalError, Role
from vitalchain.portal.patient import (
    FETCHES_NOT_REPORTED,
    STALE_AFTER_S,
    MyDevices,
    access_log,
    my_alerts,
    parse_grant,
)
from vitalchain.vitals import Vital, scope_of

PAGES = ("/me", "/me/consents", "/me/access", "/me/alerts")


def patient_portal(world: World, key: PrivateKey | None = None) -> Portal:
    return portal_of(world, key or world.patient(), Role.PATIENT)


def row_of(html: str, needle: str) -> str:
    """The table row of a page that names ``needle``."""
    rows = [r.split("</tr>")[0] for r in html.split("<tr")[1:]]
    rows = [r for r in rows if needle in r]
    assert len(rows) == 1, f"{len(rows)} rows name {needle}"
    return rows[0]


def in_days(world: World, days: int) -> str:
    now = max(world.running.gateway.clock(), world.ledger.timestamp())
    return (dt.datetime.fromtimestamp(now, dt.UTC).date() + dt.timedelta(days=days)).isoformat()


def seal(world: World, patient: PrivateKey) -> int:
    """Seal every unsealed message of the patient (a block holds at most 4 readings here)."""
    blocks = 0
    while world.running.sealer.seal(patient.address) is not None:
        blocks += 1
    assert blocks
    return blocks


def grant_form(provider: str, *vitals: str, expires: str, csrf: str) -> dict[str, object]:
    return {"csrf": csrf, "provider": provider, "vitals": list(vitals), "expires": expires}


# -- signing in ----------------------------------------------------------------------------------


def test_each_patient_page_needs_the_session(world: World) -> None:
    with portal_client(patient_portal(world), sign_in=False) as client:
        for path in PAGES:
            response = client.get(path, follow_redirects=False)
            assert response.status_code == 303, path
            assert response.headers["location"] == "/login"
        assert client.post("/me/consents", data={}).status_code == 401


def test_the_patient_lands_on_my_devices_and_the_nav_marks_the_page(world: World) -> None:
    with portal_client(patient_portal(world)) as client:
        assert client.get("/", follow_redirects=False).headers["location"] == "/me"
        for path in PAGES:
            page = client.get(path)
            assert page.status_code == 200, path
            assert f'href="{path}" aria-current="page"' in page.text
            assert "style=" not in page.text
            assert "<script" not in page.text


# -- 6. my devices -------------------------------------------------------------------------------


def test_my_devices_lists_the_devices_of_my_blocks_with_last_reading_and_stale(
    world: World,
) -> None:
    patient = world.patient()
    quiet, busy, gone = (world.device(patient) for _ in range(3))
    now_ms = int(time.time() * 1000)
    quiet.send(quiet.prepare([(Vital.SPO2, 97.0)] * 4, at_ms=now_ms - 240_000))
    busy.send(busy.prepare([(Vital.HEART_RATE, 71.0)] * 4, at_ms=now_ms))
    gone.send(gone.prepare([(Vital.SPO2, 96.0)] * 4, at_ms=now_ms - 240_000))
    seal(world, patient)
    world.running.gateway.revoke(gone.address)
    world.device(world.patient())  # someone else's device: not mine, never shown

    portal = patient_portal(world, patient)
    # 12 minutes on: the quiet device's last reading is 16 min old, the busy one's 12
    portal.clock = lambda: time.time() + 720
    with portal_client(portal) as client:
        page = client.get("/me")
    assert page.status_code == 200
    assert page.text.count("<tbody>") == 1
    assert page.text.count('<tr class="device-') == 3
    quiet_row, busy_row, gone_row = (row_of(page.text, d.address) for d in (quiet, busy, gone))
    assert "Associated" in quiet_row
    assert "Stale" in quiet_row
    assert "Associated" in busy_row
    assert "Stale" not in busy_row
    assert "Revoked" in gone_row
    assert "revoked in block" in gone_row
    assert "Stale" not in gone_row  # a revoked device is expected to be silent
    assert f"group {world.group_id}" in busy_row
    when = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert when in busy_row
    assert "12 min ago" in busy_row
    assert "16 min ago" in quiet_row


def test_my_devices_reads_only_new_blocks_and_counts_every_reading(world: World) -> None:
    patient = world.patient()
    device = world.device(patient)
    portal = patient_portal(world, patient)
    devices = MyDevices(portal)
    rows, problems, unreadable = devices.rows()
    assert (rows, problems, unreadable) == ([], [], 0)  # no block yet: nothing, no error
    device.send(device.prepare([(Vital.SPO2, 97.0)] * 4))
    seal(world, patient)
    (row,) = devices.rows()[0]
    assert row.readings == 4
    assert not row.stale
    assert row.last_reading is not None
    assert devices.refresh(portal.gateways[0]).last_number == 1
    device.send(device.prepare([(Vital.SPO2, 95.0)] * 4))
    seal(world, patient)
    (row,) = devices.rows()[0]
    assert row.readings == 8  # the second block added, the first not counted twice
    assert STALE_AFTER_S == 900


def test_a_gateway_that_does_not_answer_is_named_not_a_crash(world: World) -> None:
    import httpx

    from vitalchain.portal.core import GatewayLink

    portal = patient_portal(world)
    dead = httpx.Client(base_url="http://127.0.0.1:9", timeout=1)
    portal.gateways.append(GatewayLink("http://127.0.0.1:9", dead))
    with portal_client(portal) as client:
        for path in ("/me", "/me/alerts"):
            page = client.get(path)
            assert page.status_code == 200, path
            assert "http://127.0.0.1:9" in page.text
            assert "did not answer" in page.text


# -- 7. my consents ------------------------------------------------------------------------------


def test_grant_then_revoke_in_the_form_changes_access_on_chain(world: World) -> None:
    patient, doctor = world.patient(), world.provider()
    portal = patient_portal(world, patient)
    spo2, hr = Vital.SPO2.bit, Vital.HEART_RATE.bit
    with portal_client(portal) as client:
        page = client.get("/me/consents")
        assert "No provider holds" in page.text
        for vital in Vital:  # every vital a labelled checkbox
            assert f'name="vitals" value="{vital.info.short}"' in page.text
        csrf = csrf_of(page.text)
        before = world.ledger.block_number()
        granted = client.post(
            "/me/consents",
            data=grant_form(doctor.address.lower(), "spo2", "heart_rate",
                            expires=in_days(world, 10), csrf=csrf),
        )  # fmt: skip
        assert granted.status_code == 200, granted.text
        assert world.ledger.has_access(patient.address, doctor.address, spo2 | hr)
        assert not world.ledger.has_access(patient.address, doctor.address, Vital.GLUCOSE.bit)
        consent = world.ledger.consent_of(patient.address, doctor.address)
        assert consent.status is ConsentStatus.GRANTED
        assert consent.scope == spo2 | hr
        # valid until the end of that day, UTC
        day = dt.date.fromisoformat(in_days(world, 10)) + dt.timedelta(days=1)
        assert consent.expires_at == int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp())
        (event,) = world.ledger.events.query("ConsentGranted", patient=patient.address)
        assert event.block_number > before
        assert f'id="confirmed-block">{event.block_number}<' in granted.text
        assert "0x" + event.transaction_hash.hex() in granted.text
        assert 'id="confirmed-status">granted<' in granted.text
        row = row_of(granted.text, doctor.address)  # listed by address (EIP-55) and pseudonym
        assert "Heart rate, SpO2" in row
        assert f"end of {in_days(world, 10)} (UTC)" in row  # the day chosen, not the next
        assert f"/me/consents/{doctor.address}/revoke" in row

        revoked = client.post(
            f"/me/consents/{doctor.address}/revoke", data={"csrf": csrf_of(granted.text)}
        )
        assert revoked.status_code == 200, revoked.text
        assert not world.ledger.has_access(patient.address, doctor.address, spo2)
        (gone,) = world.ledger.events.query("ConsentRevoked", patient=patient.address)
        assert f'id="confirmed-block">{gone.block_number}<' in revoked.text
        assert 'id="confirmed-status">revoked<' in revoked.text
        assert "/revoke" not in row_of(revoked.text, doctor.address)  # nothing left to revoke


def _refused(response: object, status: int, code: str) -> None:
    assert getattr(response, "status_code", None) == status, getattr(response, "text", "")
    assert f'<code class="code">{code}</code>' in getattr(response, "text", "")


@pytest.mark.parametrize(
    ("field", "value", "status", "code", "says"),
    [
        ("csrf", "0" * 64, 403, "csrf_failed", "CSRF"),
        ("csrf", "", 403, "csrf_failed", "CSRF"),
        ("provider", "0x1234", 422, "invalid_request", "40 hex digits"),
        ("provider", "not an address", 422, "invalid_request", "40 hex digits"),
        ("provider", "checksum", 422, "invalid_request", "checksum"),
        ("vitals", [], 422, "invalid_request", "at least one vital"),
        ("vitals", ["pulse"], 422, "unknown_vital", "from the list"),
        ("expires", "yesterday", 422, "invalid_time", "past"),
        ("expires", "someday", 422, "invalid_time", "YYYY-MM-DD"),
        ("expires", "", 422, "invalid_time", "YYYY-MM-DD"),
        ("provider", "unregistered", 404, "not_found", "not a registered provider"),
    ],
)
def test_a_bad_grant_is_refused_by_code_and_nothing_reaches_the_chain(
    world: World, field: str, value: object, status: int, code: str, says: str
) -> None:
    patient, doctor = world.patient(), world.provider()
    portal = patient_portal(world, patient)
    with portal_client(portal) as client:
        csrf = csrf_of(client.get("/me/consents").text)
        form = grant_form(doctor.address, "spo2", expires=in_days(world, 5), csrf=csrf)
        if value == "checksum":  # one letter's case flipped: a typo EIP-55 catches
            i = next(i for i, c in enumerate(doctor.address[2:], 2) if c.isalpha())
            value = doctor.address[:i] + doctor.address[i].swapcase() + doctor.address[i + 1 :]
        elif value == "unregistered":
            value = PrivateKey.generate().address
        elif value == "yesterday":
            value = in_days(world, -1)
        form[field] = value
        granted_before = len(world.ledger.events.query("ConsentGranted"))
        response = client.post("/me/consents", data=form)
        _refused(response, status, code)
        assert says in response.text
        assert "Traceback" not in response.text
    assert world.ledger.providers_of(patient.address) == []
    assert len(world.ledger.events.query("ConsentGranted")) == granted_before
    assert not world.ledger.has_access(patient.address, doctor.address, Vital.SPO2.bit)


def test_the_grant_form_accepts_all_one_case_and_normalises_it(world: World) -> None:
    doctor = world.provider()
    portal = patient_portal(world)
    for spelling in (doctor.address.lower(), "0x" + doctor.address[2:].upper()):
        checked = parse_grant(portal, spelling, ["spo2", "systolic"], in_days(world, 1))
        assert checked.provider == doctor.address
        assert checked.scope == scope_of(Vital.SPO2, Vital.SYSTOLIC_BP)
    with pytest.raises(PortalError) as refused:
        parse_grant(portal, doctor.address, ["spo2"], in_days(world, -400))
    assert refused.value.code == "invalid_time"


def test_revoking_what_is_not_granted_is_refused_before_the_chain(world: World) -> None:
    patient, doctor = world.patient(), world.provider()
    with portal_client(patient_portal(world, patient)) as client:
        csrf = csrf_of(client.get("/me/consents").text)
        path = f"/me/consents/{doctor.address}/revoke"
        _refused(client.post(path, data={"csrf": csrf}), 404, "not_found")
        _refused(client.post("/me/consents/0xnope/revoke", data={"csrf": csrf}), 422,
                 "invalid_request")  # fmt: skip
        world.consent(patient, doctor, Vital.SPO2)
        _refused(client.post(path, data={}), 403, "csrf_failed")
    assert world.ledger.has_access(patient.address, doctor.address, Vital.SPO2.bit)
    assert world.ledger.events.query("ConsentRevoked", patient=patient.address) == []


def test_my_consents_shows_requests_and_expired_grants_as_the_chain_has_them(
    world: World,
) -> None:
    patient, asking, doctor = world.patient(), world.provider(), world.provider()
    world.ledger.request_access(asking, patient.address, Vital.GLUCOSE.bit)
    world.consent(patient, doctor, Vital.BODY_TEMPERATURE, hours=1)
    with portal_client(patient_portal(world, patient)) as client:
        page = client.get("/me/consents").text
    asked = row_of(page, asking.address)
    assert "requested" in asked
    assert "Glucose" in asked
    assert "/revoke" not in asked
    held = row_of(page, doctor.address)
    assert "granted" in held
    assert "Temperature" in held
    assert "(expired)" not in held
    consent = world.ledger.consent_of(patient.address, doctor.address)
    expiry = dt.datetime.fromtimestamp(consent.expires_at, dt.UTC)
    assert expiry.strftime("%Y-%m-%d %H:%M:%S UTC") in held


# -- 8. who accessed my data ---------------------------------------------------------------------


def test_the_access_page_lists_break_glass_and_consent_changes_newest_first(
    world: World,
) -> None:
    patient, doctor, medic = world.patient(), world.provider(), world.provider()
    other = world.patient()
    world.consent(patient, doctor, Vital.SPO2)
    world.ledger.break_glass(medic, patient.address, Vital.HEART_RATE.bit, 3, b"unconscious")
    world.ledger.break_glass(medic, other.address, Vital.SPO2.bit, 3, b"someone else")
    with portal_client(patient_portal(world, patient)) as client:
        page = client.get("/me/access").text
    glass = row_of(page, "BreakGlassAccessed")
    assert medic.address in glass
    assert portal_of(world, medic).my_pseudonym in glass
    assert "Heart rate" in glass
    assert "reason code 3" in glass
    assert "0x" + keccak256(b"unconscious").hex() in glass
    granted = row_of(page, "ConsentGranted")
    assert doctor.address in granted
    assert "SpO2" in granted
    assert page.index("BreakGlassAccessed") < page.index("ConsentGranted")  # newest first
    assert page.count('<tr class="event-') == 2  # the other patient's break-glass is not mine
    assert FETCHES_NOT_REPORTED in page


def test_access_rows_carry_the_block_and_its_time(world: World) -> None:
    patient, doctor = world.patient(), world.provider()
    world.ledger.request_access(doctor, patient.address, Vital.SPO2.bit)
    world.ledger.deny(patient, doctor.address)
    rows = access_log(patient_portal(world, patient))
    assert [r.event for r in rows] == ["ConsentDenied", "AccessRequested"]
    (requested,) = world.ledger.events.query("AccessRequested", patient=patient.address)
    assert rows[1].block_number == requested.block_number
    assert rows[1].tx_hash == "0x" + requested.transaction_hash.hex()
    assert abs(rows[1].at - world.ledger.timestamp()) < 3600
    assert rows[0].provider == doctor.address


# -- 9. my alerts --------------------------------------------------------------------------------


def test_my_alerts_shows_my_own_alerts_opened_with_my_key(world: World) -> None:
    patient, doctor = world.patient(), world.provider()
    world.consent(patient, doctor, Vital.SPO2)
    device = world.device(patient)
    alert = raise_low(world, device)
    stranger = world.patient()
    portal = patient_portal(world, patient)
    rows, problems, unopened = my_alerts(portal)
    assert (problems, unopened) == ([], 0)
    (row,) = rows
    assert row.alert_id == alert.alert_id.hex()
    assert row.kind == "threshold"
    assert row.priority in ("high", "medium", "low")
    assert row.what == "SpO2"
    assert row.value == "85 %"
    with portal_client(portal) as client:
        page = client.get("/me/alerts").text
    assert f'class="priority priority-{row.priority}"' in page
    assert "85 %" in page
    assert row.at_text in page
    assert my_alerts(patient_portal(world, stranger))[0] == []  # nobody else's


def test_no_alerts_is_said_plainly(world: World) -> None:
    with portal_client(patient_portal(world)) as client:
        page = client.get("/me/alerts")
    assert page.status_code == 200
    assert "No alerts about you" in page.text
    assert re.search(r"last 7 days\b", page.text)
