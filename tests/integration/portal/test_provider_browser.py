"""The provider's pages in a real browser (Debian's chromium through Playwright) against a live
node on the embedded chain: the chart's data and band, the red badge of a tampered block,
keyboard navigation with a label on every control, axe-core, and screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.support.browser import axe_violations, screenshot, tab_through
from tests.support.node import World
from tests.support.portal import TOKEN, charted, charted_world, live_portal, tamper
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import Ledger
from vitalchain.logs import pseudonym
from vitalchain.node import served
from vitalchain.portal.app import create_app


@pytest.fixture
def world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    yield from charted_world(chain, tmp_path)


def test_the_provider_pages_in_a_browser(world: World, page: Page) -> None:
    c = charted(world)
    with live_portal(world, c.doctor) as portal, served(create_app(portal)) as url:
        page.goto(f"{url}/?token={TOKEN}")
        page.goto(f"{url}/patients")
        assert page.locator("h1").inner_text() == "Patients under consent"
        row = page.locator("tbody tr", has_text=pseudonym(c.patient.address))
        assert row.locator(".badge-ok").inner_text() == "verified"
        # the expiry is shown in the browser's zone (Europe/Berlin here), not the server's UTC
        assert "UTC" not in row.locator("time").first.inner_text()
        assert axe_violations(page) == []
        tab_through(page)
        screenshot(page, "provider-patients")

        row.get_by_role("link").click()
        page.wait_for_function("() => window.vitalchainCharts && window.vitalchainPlots")
        charts = page.evaluate("() => window.vitalchainCharts")
        spo2 = charts["spo2"]
        assert sum(v is not None for v in spo2["series"]["spo2"]) == c.spo2
        assert spo2["band"] == [92.0, 100.0]  # the on-chain 9200..10000
        assert charts["bp"]["bands"]["systolic"] == [90.0, 140.0]
        assert set(charts["bp"]["series"]) == {"systolic", "diastolic"}
        drawn = page.evaluate(
            "() => Object.keys(window.vitalchainPlots).filter(k => window.vitalchainPlots[k]"
            " && document.querySelector('#chart-' + k + ' canvas'))"
        )
        assert sorted(drawn) == sorted(charts)
        plotted = page.evaluate(
            "() => window.vitalchainPlots.spo2.data[1].filter(v => v !== null).length"
        )
        assert plotted == c.spo2  # uPlot holds exactly the readings
        assert axe_violations(page) == []
        controls = tab_through(page)
        names = " ".join(c["name"] for c in controls)
        assert "Download FHIR R4 bundle" in names
        assert "1h" in names
        screenshot(page, "provider-patient")

        # a patient without consent: the refusal named, the break-glass form open and labelled
        stranger = world.patient()
        page.goto(f"{url}/patients/{stranger.address}")
        assert page.locator(".error code").inner_text() == "no_consent"
        assert page.locator("#reason").is_visible()
        assert page.evaluate("() => Object.keys(window.vitalchainCharts).length") == 0
        assert axe_violations(page) == []
        names = " ".join(c["name"] for c in tab_through(page))
        assert "Reason" in names
        assert "Record break-glass access and open" in names
        screenshot(page, "provider-break-glass")

        tamper(world, c.patient, 2)
        page.goto(f"{url}/patients/{c.patient.address}")
        badge = page.locator('tr[data-block="2"] .badge')
        assert badge.inner_text().startswith("failed: ")
        assert "block_signature" in badge.inner_text()
        assert "failed" in page.locator("#patient-badge").inner_text()
        assert axe_violations(page) == []
        screenshot(page, "provider-patient-tampered")
