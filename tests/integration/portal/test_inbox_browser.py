"""The provider's alert inbox in a real browser (Debian's chromium through Playwright) against
a live node: sign in with the printed token, an alarm of a simulated episode appears within
2 s, a snooze keeps it quiet, an acknowledgement reaches the gateway; keyboard and axe."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import axe_violations, screenshot, tab_through
from tests.support.node import World, make_world
from tests.support.portal import TOKEN, live_portal
from tests.support.waiting import wait_for
from vitalchain.alerts.rules import Priority
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import Ledger
from vitalchain.logs import pseudonym
from vitalchain.node import served
from vitalchain.portal.app import create_app
from vitalchain.vitals import Vital

REPEAT_S = 1.0  # a high alarm repeats this often until acknowledged (default 60 s)


@pytest.fixture
def world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    """A node whose high alarms repeat every :data:`REPEAT_S` (its alarm clock is ticked by
    the test, so each repeat comes when the test says)."""
    yield from make_world(chain, tmp_path / "node", alert_repeat_high_s=REPEAT_S)


def test_a_provider_sees_snoozes_and_acknowledges_a_live_alarm(world: World, page: Page) -> None:
    patient, provider = world.patient(), world.provider()
    world.consent(patient, provider, Vital.SPO2)
    device = world.device(patient)
    alerts = world.running.alerts
    with live_portal(world, provider) as portal, served(create_app(portal)) as url:
        page.goto(f"{url}/login")
        page.get_by_label("Login token").fill(TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{url}/inbox")
        expect(page.locator("#inbox-live")).to_have_attribute("data-live", "live")

        # A high alarm (SpO2 below 85 %, three readings in a row) reaches the page in 2 s.
        before = alerts.raised_total
        started = time.monotonic()
        device.send(device.prepare([(Vital.SPO2, 80.0)] * 3))
        wait_for(lambda: alerts.raised_total > before or None, "the alarm")
        alert_id = alerts.raised[-1].alert_id.hex()
        row = page.locator(f"#alert-{alert_id}")
        row.wait_for(state="visible", timeout=2000)
        assert time.monotonic() - started < 2.0
        expect(row).to_have_attribute("data-state", "new")
        expect(row).to_have_attribute("data-priority", "high")
        expect(row.locator(".priority-high")).to_have_text("High")
        expect(row).to_contain_text(pseudonym(patient.address))
        expect(row).to_contain_text("80 %")
        expect(page.get_by_role("alert")).to_contain_text("High priority alarm")
        banner = page.locator("#inbox-alarm")  # the same element, still there once it is empty
        expect(banner).to_have_attribute("data-cues", "1")
        assert patient.address.lower() not in page.content().lower()
        # the reading's time in the user's zone (the context's Europe/Berlin), not UTC
        when = row.locator("time")
        expect(when).to_have_attribute("datetime", re.compile(r"Z$"))
        assert not when.inner_text().endswith("UTC")
        assert re.search(r"CET|GMT\+1", when.inner_text())

        screenshot(page, "provider-inbox")
        assert axe_violations(page) == []
        _every_control_is_reachable_by_tab_and_named(page)

        # Unacknowledged, it repeats: the row counts the reminder and the cue sounds again.
        time.sleep(REPEAT_S)
        alerts.tick()
        expect(row).to_have_attribute("data-repeat", "1")
        expect(row).to_have_attribute("data-state", "escalated")
        expect(banner).to_have_attribute("data-cues", "2")

        # Snoozed (the shortest of the gateway's choices, 5 min): quiet while it runs.
        row.get_by_role("button", name=re.compile(r"^Snooze 5 min")).click()
        expect(row).to_have_attribute("data-state", "snoozed")
        escalator = alerts.escalator
        assert escalator.is_snoozed(provider.address, patient.address, Vital.SPO2, Priority.HIGH)
        rows = page.locator("tr.alert-row").count()
        for _ in range(3):  # three repeat rounds go by: the patient's app is reminded, we are not
            time.sleep(REPEAT_S)
            alerts.tick()
        page.wait_for_timeout(500)
        expect(row).to_have_attribute("data-repeat", "1")
        expect(banner).to_have_attribute("data-cues", "2")
        expect(banner).to_have_text("")  # no unhandled high alarm is left to announce
        assert page.locator("tr.alert-row").count() == rows
        expect(page.locator("#inbox-message")).to_contain_text("Snoozed until")

        # Acknowledged: the row says so and the gateway has it (escalation and repeats stop).
        row.get_by_role("button", name=re.compile(r"^Acknowledge")).click()
        expect(row).to_have_attribute("data-state", "acknowledged")
        expect(row.get_by_role("button")).to_have_count(0)
        assert escalator.state(alert_id).acknowledged_by == provider.address
        screenshot(page, "provider-inbox-acknowledged")
    assert not [t for t in threading.enumerate() if t.name.startswith("portal-inbox")]


def test_without_javascript_the_forms_still_work(world: World, browser: Browser) -> None:
    """The buttons are plain forms: with scripts off they post and come back to /inbox."""
    patient, provider = world.patient(), world.provider()
    world.consent(patient, provider, Vital.SPO2)
    device = world.device(patient)
    alerts = world.running.alerts
    context = browser.new_context(java_script_enabled=False, timezone_id="Europe/Berlin")
    try:
        page = context.new_page()
        with live_portal(world, provider) as portal, served(create_app(portal)) as url:
            page.goto(f"{url}/?token={TOKEN}")
            page.wait_for_url(f"{url}/inbox")
            before = alerts.raised_total
            device.send(device.prepare([(Vital.SPO2, 85.0)] * 3))
            wait_for(lambda: alerts.raised_total > before or None, "the alarm")
            alert_id = alerts.raised[-1].alert_id.hex()

            def listed() -> bool:
                page.reload()
                return page.locator(f"#alert-{alert_id} button[name=duration_s]").count() == 3

            wait_for(listed, "the alarm and its snooze choices after a reload")
            row = page.locator(f"#alert-{alert_id}")
            row.get_by_role("button", name=re.compile(r"^Acknowledge")).click()
            page.wait_for_url(f"{url}/inbox")
            expect(page.locator(f"#alert-{alert_id}")).to_have_attribute(
                "data-state", "acknowledged"
            )
            assert alerts.escalator.state(alert_id).acknowledged_by == provider.address
    finally:
        context.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("portal-inbox")]


def _every_control_is_reachable_by_tab_and_named(page: Page) -> None:
    ids = {c["id"] for c in tab_through(page)}
    assert any(i.startswith("ack-") for i in ids)
    assert any(i.startswith("snooze-") for i in ids)
