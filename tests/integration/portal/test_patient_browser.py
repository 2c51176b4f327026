"""The patient's portal in a real browser (Debian's chromium through Playwright), against a
live node on the embedded chain: sign in with the printed token, grant a consent in the form
and revoke it, each change checked on chain; every page keyboard-reachable, labelled, free of
serious axe-core violations, and saved as a screenshot (build/screenshots/patient-*.png)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from playwright.sync_api import Page, expect

from tests.support.browser import axe_violations, screenshot, tab_through
from tests.support.delivery import raise_low
from tests.support.node import World
from tests.support.portal import TOKEN, live_portal
from vitalchain.crypto import PrivateKey
from vitalchain.node import served
from vitalchain.portal.app import create_app
from vitalchain.portal.core import Role
from vitalchain.vitals import Vital

PAGES = {
    "/me": ("My devices", "patient-devices"),
    "/me/consents": ("My consents", "patient-consents"),
    "/me/access": ("Who accessed my data", "patient-access"),
    "/me/alerts": ("My alerts", "patient-alerts"),
}


@dataclass
class Scene:
    patient: PrivateKey
    doctor: PrivateKey  # a registered provider the patient grants and revokes in the browser
    medic: PrivateKey  # used break-glass on the patient
    device: str


def scene(world: World) -> Scene:
    """A patient with a sealed block from one device, an alert and a break-glass record."""
    patient, doctor, medic = world.patient(), world.provider(), world.provider()
    device = world.device(patient)
    device.send(device.prepare([(Vital.HEART_RATE, 72.0)] * 4))
    while world.running.sealer.seal(patient.address) is not None:
        pass
    raise_low(world, device)  # three low SpO2 readings: one alert to the patient
    world.ledger.break_glass(medic, patient.address, Vital.SPO2.bit, 2, b"found unresponsive")
    return Scene(patient, doctor, medic, device.address)


@contextmanager
def signed_in(world: World, page: Page, key: PrivateKey) -> Iterator[str]:
    """The patient's portal served on loopback, the browser signed in with the printed token."""
    with live_portal(world, key, Role.PATIENT) as portal, served(create_app(portal)) as url:
        page.goto(f"{url}/?token={TOKEN}")
        expect(page).to_have_url(f"{url}/me")  # the token left the address bar
        yield url


def check_page(page: Page) -> None:
    """axe-core finds nothing serious, every control is labelled and reached by Tab."""
    assert axe_violations(page) == []
    tab_through(page)


def test_every_patient_page_is_reachable_labelled_and_clean(world: World, page: Page) -> None:
    s = scene(world)
    with signed_in(world, page, s.patient) as url:
        for path, (heading, name) in PAGES.items():
            page.goto(f"{url}{path}")
            expect(page.get_by_role("heading", level=1)).to_have_text(heading)
            expect(page.locator(f'nav a[href="{path}"]')).to_have_attribute("aria-current", "page")
            if path == "/me":
                row = page.get_by_role("row").filter(has_text=s.device)
                expect(row).to_contain_text("Associated")
            elif path == "/me/access":
                row = page.get_by_role("row").filter(has_text="break-glass")
                expect(row).to_contain_text(s.medic.address)
                expect(page.locator("#fetches-note")).to_contain_text("does not report fetches")
            elif path == "/me/alerts":
                expect(page.locator("td .priority").first).to_have_class(
                    re.compile(r"^priority priority-(high|medium|low)$")
                )
                expect(page.get_by_role("row").nth(1)).to_contain_text("85 %")
            if path != "/me/consents":  # its screenshot shows a confirmed grant (below)
                screenshot(page, name)
            check_page(page)


def test_the_patient_grants_and_revokes_consent_in_the_browser(world: World, page: Page) -> None:
    s = scene(world)
    ledger, me, doctor = world.ledger, s.patient.address, s.doctor.address
    expires = (
        dt.datetime.fromtimestamp(max(world.running.gateway.clock(), ledger.timestamp()), dt.UTC)
        + dt.timedelta(days=14)
    ).date()
    with signed_in(world, page, s.patient) as url:
        page.get_by_role("link", name="My consents").click()
        expect(page).to_have_url(f"{url}/me/consents")
        page.get_by_label("Provider address").fill(doctor)
        page.get_by_label("SpO2").check()
        page.get_by_label("Heart rate").check()
        page.get_by_label("Expires").fill(expires.isoformat())
        page.get_by_role("button", name="Grant consent").click()

        expect(page.locator("#confirmed-status")).to_have_text("granted")
        (granted,) = ledger.events.query("ConsentGranted", patient=me, provider=doctor)
        expect(page.locator("#confirmed-block")).to_have_text(str(granted.block_number))
        expect(page.locator("#confirmed-tx")).to_have_text("0x" + granted.transaction_hash.hex())
        assert ledger.has_access(me, doctor, Vital.SPO2.bit | Vital.HEART_RATE.bit)
        assert not ledger.has_access(me, doctor, Vital.GLUCOSE.bit)
        row = page.get_by_role("row").filter(has_text=doctor)
        expect(row).to_contain_text("Heart rate, SpO2")
        screenshot(page, "patient-consents")
        check_page(page)

        row.get_by_role("button", name="Revoke consent of").click()
        expect(page.locator("#confirmed-status")).to_have_text("revoked")
        (revoked,) = ledger.events.query("ConsentRevoked", patient=me, provider=doctor)
        expect(page.locator("#confirmed-block")).to_have_text(str(revoked.block_number))
        assert not ledger.has_access(me, doctor, Vital.SPO2.bit)
        expect(page.get_by_role("row").filter(has_text=doctor)).to_contain_text("revoked")
        assert axe_violations(page) == []

        # both changes are now on "Who accessed my data", newest first
        page.get_by_role("link", name="Who accessed my data").click()
        labels = page.locator("tbody tr td:nth-child(2)").all_inner_texts()
        assert labels[:2] == ["Consent revoked", "Consent granted"]


def test_a_refused_grant_shows_its_code_and_sends_nothing(world: World, page: Page) -> None:
    s = scene(world)
    with signed_in(world, page, s.patient) as url:
        page.goto(f"{url}/me/consents")
        page.get_by_label("Provider address").fill(s.doctor.address)
        page.get_by_label("Expires").fill(
            (dt.datetime.fromtimestamp(world.ledger.timestamp(), dt.UTC) + dt.timedelta(days=3))
            .date()
            .isoformat()
        )
        page.get_by_role("button", name="Grant consent").click()  # no vital ticked
        expect(page.get_by_role("alert")).to_contain_text("invalid_request")
        expect(page.get_by_role("alert")).to_contain_text("at least one vital")
        assert axe_violations(page) == []
    assert world.ledger.providers_of(s.patient.address) == [s.medic.address]  # break-glass only
