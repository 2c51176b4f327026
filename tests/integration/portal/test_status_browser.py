"""The operator's status page in a real browser: sign in with the admin token, create a
pairing code (shown as text and as a QR code), and onboard a simulated device with it."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.support.browser import axe_violations, screenshot
from tests.support.gateway import ADMIN_TOKEN, next_id
from tests.support.node import World
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.node import served


def test_the_operator_page_creates_a_pairing_code_that_onboards_a_device(
    world: World, page: Page
) -> None:
    patient = world.patient()
    with served(world.running.app()) as url:
        page.goto(f"{url}/status")
        assert axe_violations(page) == []
        page.get_by_label("Admin token").fill(ADMIN_TOKEN)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("Patient address").fill(patient.address)
        page.get_by_label("Device label").fill("ward 3 oximeter")
        page.get_by_role("button", name="Create pairing code").click()
        code = page.locator("#pairing-code").inner_text()
        qr = page.get_by_role("img", name=f"QR code of pairing code {code}")
        assert qr.count() == 1
        assert axe_violations(page) == []
        screenshot(page, "operator-status")

        device = DeviceClient(PrivateKey.generate(), next_id(), http=world.client)
        device.onboard(code)
        assert world.ledger.is_active_device(device.key.address)
        page.reload()
        assert page.get_by_text(device.key.address).count() == 1  # the page lists it now


def test_the_operator_page_is_keyboard_navigable(world: World, page: Page) -> None:
    """Tab reaches the sign-in field and the button, and Enter submits."""
    with served(world.running.app()) as url:
        page.goto(f"{url}/status")
        reached = []
        for _ in range(6):
            page.keyboard.press("Tab")
            reached.append(
                page.evaluate("document.activeElement.id || document.activeElement.textContent")
            )
        assert "token" in reached
        page.locator("#token").focus()
        page.keyboard.type(ADMIN_TOKEN)
        with page.expect_navigation():
            page.keyboard.press("Enter")
        assert page.get_by_role("button", name="Create pairing code").count() == 1
