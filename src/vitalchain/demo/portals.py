"""The demo's world seen through the care portal: one provider's and one patient's portal on
the demo's running gateways, for ``vitalchain demo --serve`` and for the report's screenshots.

Why these two users: provider 1 sees patient 1, whose block the demo tampers with (a red
verify badge), and lost patient 0 to a revoked consent; patient 0 has devices, consents
(one revoked), an access history and the scripted desaturation's alerts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from vitalchain.crypto.keys import PrivateKey
from vitalchain.ledger import Ledger
from vitalchain.node import served
from vitalchain.portal.app import create_app
from vitalchain.portal.core import GatewayLink, Portal, Role

__all__ = ["CHROMIUM", "DemoWorld", "PortalUrls", "running_portals", "take_screenshots"]

log = logging.getLogger(__name__)
CHROMIUM = "/usr/bin/chromium"
# The pages each portal's screenshots show, in the order the report lists them.
PROVIDER_PAGES = ("/inbox", "/patients")
PATIENT_PAGES = ("/me", "/me/consents", "/me/access", "/me/alerts")


@dataclass(frozen=True, slots=True)
class DemoWorld:
    """What the demo runs, while it still runs: the chain, the gateways' URLs, the users."""

    ledger: Ledger
    gateway_urls: Sequence[str]
    provider: PrivateKey
    patient: PrivateKey
    patient_seen: str  # a patient the provider sees (the one whose block was tampered with)


@dataclass(frozen=True, slots=True)
class PortalUrls:
    provider: str  # each a login URL with its token, as `vitalchain portal` prints it
    patient: str
    provider_pages: tuple[str, ...]
    patient_pages: tuple[str, ...]


@contextlib.contextmanager
def running_portals(world: DemoWorld) -> Iterator[PortalUrls]:
    """Both portals served on free loopback ports until the block ends."""
    with contextlib.ExitStack() as stack:
        links = [
            GatewayLink(url, stack.enter_context(httpx.Client(base_url=url, timeout=30)))
            for url in world.gateway_urls
        ]
        urls = []
        for role, key in ((Role.PROVIDER, world.provider), (Role.PATIENT, world.patient)):
            token = secrets.token_urlsafe(24)
            portal = Portal(role, key, world.ledger, links, time.time, os.urandom, token)
            base = stack.enter_context(served(create_app(portal)))
            urls.append(f"{base}/?token={token}")
        yield PortalUrls(
            urls[0],
            urls[1],
            (*PROVIDER_PAGES, f"/patients/{world.patient_seen}"),
            PATIENT_PAGES,
        )


def take_screenshots(urls: PortalUrls, folder: Path, note: Callable[[str], None]) -> list[Path]:
    """Each portal page as a PNG in ``folder``, taken by Debian's chromium through Playwright;
    without them (a machine set up without the test tools) the report says so instead."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        note("no portal screenshots: Playwright is not installed (pip install -e '.[test]')")
        return []
    if shutil.which(CHROMIUM) is None:
        note(f"no portal screenshots: {CHROMIUM} is missing (apt-get install chromium)")
        return []
    folder.mkdir(parents=True, exist_ok=True)
    taken: list[Path] = []
    args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    args += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
            try:
                for who, login, pages in (
                    ("provider", urls.provider, urls.provider_pages),
                    ("patient", urls.patient, urls.patient_pages),
                ):
                    context = browser.new_context(viewport={"width": 1280, "height": 900})
                    page = context.new_page()
                    page.goto(login)
                    base = login.split("/?", 1)[0]
                    for path in pages:
                        response = page.goto(base + path)
                        if response is None or response.status != 200:
                            continue  # a view this portal does not offer
                        page.wait_for_load_state("networkidle")
                        name = f"{who}{path.replace('/', '-')}"[:60].rstrip("-")
                        if path.startswith("/patients/"):
                            name = "provider-patient"
                        shot = folder / f"{name}.png"
                        page.screenshot(path=str(shot), full_page=True)
                        taken.append(shot)
                    context.close()
            finally:
                browser.close()
    except Error as exc:
        note(f"portal screenshots stopped: {str(exc).splitlines()[0]}")
    return taken
