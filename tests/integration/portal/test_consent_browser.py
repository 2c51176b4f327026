"""Both sides of a consent in a real browser: the patient grants and then revokes in the
patient's portal, and the provider's portal gains and then loses the patient."""

from __future__ import annotations

import datetime as dt

from playwright.sync_api import Browser, expect

from tests.support.node import World
from tests.support.portal import TOKEN, live_portal
from vitalchain.logs import pseudonym
from vitalchain.node import served
from vitalchain.portal.app import create_app
from vitalchain.portal.core import Role
from vitalchain.vitals import Vital


def test_the_provider_loses_the_patient_after_the_revoke(world: World, browser: Browser) -> None:
    patient, doctor = world.patient(), world.provider()
    tag = pseudonym(patient.address)
    expires = dt.datetime.fromtimestamp(world.ledger.timestamp(), dt.UTC).date()
    expires += dt.timedelta(days=30)
    with (
        live_portal(world, patient, Role.PATIENT) as mine,
        live_portal(world, doctor, Role.PROVIDER) as theirs,
        served(create_app(mine)) as patient_url,
        served(create_app(theirs)) as provider_url,
    ):
        me = browser.new_context().new_page()
        clinic = browser.new_context().new_page()
        me.goto(f"{patient_url}/?token={TOKEN}")
        clinic.goto(f"{provider_url}/?token={TOKEN}")

        clinic.goto(f"{provider_url}/patients")
        expect(clinic.get_by_text(tag)).to_have_count(0)  # no consent yet

        me.goto(f"{patient_url}/me/consents")
        me.get_by_label("Provider address").fill(doctor.address)
        me.get_by_label(Vital.HEART_RATE.info.label, exact=True).check()
        me.get_by_label("Expires").fill(expires.isoformat())
        me.get_by_role("button", name="Grant consent").click()
        expect(me.locator("#confirmed-status")).to_have_text("granted")

        clinic.reload()
        expect(clinic.get_by_text(tag).first).to_be_visible()

        row = me.get_by_role("row").filter(has_text=doctor.address)
        row.get_by_role("button", name="Revoke consent of").click()
        expect(me.locator("#confirmed-status")).to_have_text("revoked")
        assert not world.ledger.has_access(patient.address, doctor.address, Vital.HEART_RATE.bit)

        clinic.reload()
        expect(clinic.get_by_text(tag)).to_have_count(0)  # the provider's view lost the patient
        me.context.close()
        clinic.context.close()
