"""The browser fixtures for every portal test here (Debian's chromium through Playwright)."""

from tests.support.browser import browser, page

__all__ = ["browser", "page"]
