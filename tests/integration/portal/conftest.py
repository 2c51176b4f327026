"""The browser fixtures for every portal test here (Debian's chromium through Playwright)."""

from tests.support.browser import browser, no_browser_left, page

__all__ = ["browser", "no_browser_left", "page"]
