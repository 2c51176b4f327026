"""The backend-neutral access suite on the embedded chain."""

from __future__ import annotations

from tests.access_suite import AccessSuite


class TestAccessEmbedded(AccessSuite):
    pass
