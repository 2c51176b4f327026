"""The care portal on a test node: a :class:`Portal` for a provider or a patient of a
:class:`World`, its app in a TestClient (host 127.0.0.1, as the portal accepts), signed in."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient

from tests.support.node import World
from vitalchain.crypto import PrivateKey
from vitalchain.portal.app import create_app
from vitalchain.portal.core import GatewayLink, Portal, Role

TOKEN = "portal-test-token-0123456789"
BASE_URL = "http://127.0.0.1:8800"


def portal_of(world: World, key: PrivateKey, role: Role = Role.PROVIDER) -> Portal:
    """A portal for ``key`` on the world's chain, its one gateway the world's (in process)."""
    return Portal(
        role=role,
        key=key,
        ledger=world.ledger,
        gateways=[GatewayLink("http://gateway.test", world.client)],
        clock=world.running.gateway.clock,
        random=os.urandom,
        login_token=TOKEN,
    )


def csrf_of(html: str) -> str:
    """The CSRF token of the first form of a page."""
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


@contextmanager
def portal_client(portal: Portal, *, sign_in: bool = True) -> Iterator[TestClient]:
    """The portal's app in a TestClient; signed in with the printed token unless told not."""
    with TestClient(create_app(portal), base_url=BASE_URL) as client:
        if sign_in:
            response = client.get(f"/?token={TOKEN}", follow_redirects=False)
            assert response.status_code == 303, response.text
        yield client


@contextmanager
def live_portal(world: World, key: PrivateKey, role: Role = Role.PROVIDER) -> Iterator[Portal]:
    """A portal whose gateway is the world's node served on a real loopback port (HTTP and
    WebSocket, as ``vitalchain portal --gateway URL`` sees it), for the alert stream and the
    browser tests."""
    import httpx

    from vitalchain.node import served

    with served(world.running.app()) as url, httpx.Client(base_url=url, timeout=30) as http:
        portal = portal_of(world, key, role)
        portal.gateways = [GatewayLink(url, http)]
        yield portal
