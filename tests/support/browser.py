"""A real browser for the portal's tests: Debian's chromium driven by Playwright (no browser
download), headless, on loopback only; axe-core from npm for the accessibility audit.

Why these flags: no sandbox (the tests run as root), and nothing in the background that
would reach beyond loopback (component updates, sync, field trials, the first-run tour).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--metrics-recording-only",
    "--mute-audio",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless chromium per test module; closed (and its processes gone) afterwards."""
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) and page per test, in the UTC+1 zone (so the
    user's time zone differs from the machine's and from patient time)."""
    context = browser.new_context(
        timezone_id="Europe/Berlin", locale="en-GB", viewport={"width": 1280, "height": 900}
    )
    try:
        yield context.new_page()
    finally:
        context.close()


def axe_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[Any]:
    """axe-core's violations of the page at ``impacts``.  The script from npm is evaluated
    through the driver, which the page's CSP (scripts from the portal only) does not govern."""
    page.evaluate(AXE.read_text())
    result = page.evaluate("async () => JSON.stringify(await axe.run(document))")
    return [v for v in json.loads(result)["violations"] if v["impact"] in impacts]


SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def screenshot(page: Page, name: str) -> Path:
    """Save the page as ``build/screenshots/<name>.png`` (docs/portal.md shows current ones)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# Every control the page offers, as the keyboard should reach it (visible ones only).
CONTROLS_JS = """() => [...document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary')]
  .filter(el => el.checkVisibility())
  .map((el, i) => { el.dataset.probe = String(i); return el; })
  .map(el => {
    const labelled = el.getAttribute('aria-labelledby');
    const name = (el.getAttribute('aria-label')
      || (labelled && document.getElementById(labelled)?.textContent)
      || [...(el.labels || [])].map(l => l.textContent).join(' ')
      || el.textContent || '').trim();
    return {probe: el.dataset.probe, id: el.id, tag: el.tagName, name};
  })"""


def tab_through(page: Page) -> list[dict[str, Any]]:
    """Tab from the top of the page until focus leaves it: every control must be reached,
    and each must have an accessible name."""
    controls: list[dict[str, Any]] = page.evaluate(CONTROLS_JS)
    assert controls, "no controls on the page"
    nameless = [c for c in controls if not c["name"]]
    assert nameless == [], f"controls without a label: {nameless}"
    page.evaluate("() => { document.activeElement?.blur(); window.scrollTo(0, 0); }")
    reached: list[str] = []
    wanted = {c["probe"] for c in controls}
    for _ in range(4 * len(controls) + 20):  # a date input takes a stop per field
        page.keyboard.press("Tab")
        probe = page.evaluate("() => document.activeElement?.dataset?.probe ?? null")
        if probe is not None and probe not in reached:
            reached.append(probe)
        if wanted <= set(reached):
            break
    missed = [c for c in controls if c["probe"] not in reached]
    assert missed == [], f"the keyboard does not reach {missed}"
    page.evaluate("() => document.activeElement?.blur()")
    return controls


def our_chromium() -> list[int]:
    """Chromium processes descended from this test process, read from /proc (other
    processes' browsers, e.g. another worker's, are not ours to judge)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        pid = int(stat.parent.name)
        names[pid] = text[text.index("(") + 1 : text.rindex(")")]
        parents[pid] = int(text[text.rindex(")") + 2 :].split()[1])
    ours: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - ours
        ours |= frontier
    return sorted(pid for pid in ours if "chrom" in names[pid].lower())


@pytest.fixture(scope="module", autouse=True)
def no_browser_left() -> Iterator[None]:
    """Set up before a module's browser, so torn down after it: no chromium of this test
    process may outlive the module."""
    yield
    deadline = time.monotonic() + 10
    while our_chromium() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert our_chromium() == [], "chromium outlived the test module"
