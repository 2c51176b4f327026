"""The care portal on a test node: a :class:`Portal` for a provider or a patient of a
:class:`World`, its app in a TestClient (host 127.0.0.1, as the portal accepts), signed in."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.support.node import World, make_world
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.ledger import Ledger
from vitalchain.portal.app import create_app
from vitalchain.portal.core import GatewayLink, Portal, Role
from vitalchain.store import SqliteStore
from vitalchain.vitals import Vital

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


# -- a patient with a history, for the provider's views ---------------------------------------

RING_K = 2
SKEW_S = 8 * 24 * 3600  # readings of the past week are accepted (patient time, 7 d range)


def charted_world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    """A node that takes readings a week old (the 7 d range) and ring-signs alerts among
    RING_K others."""
    yield from make_world(chain, tmp_path / "node", clock_skew_s=SKEW_S, alert_ring_k=RING_K)


@dataclass
class Chart:
    """A patient with a history: SpO2 every minute for an hour, BP twice, heart rate 3 h back."""

    patient: PrivateKey
    doctor: PrivateKey
    device: DeviceClient
    now: float
    spo2: int
    bp: int


def send(device: DeviceClient, readings: list[tuple[Vital, float]], t: float) -> None:
    device.send(device.prepare(readings, at_ms=int(t * 1000)))


def seal_all(world: World, patient: PrivateKey, *, anchor: bool = True) -> None:
    while world.running.sealer.seal(patient.address) is not None:
        pass
    if anchor:
        world.running.sealer.anchor()


def charted(world: World, *, vitals: tuple[Vital, ...] = ()) -> Chart:
    patient, doctor = world.patient(), world.provider()
    world.consent(patient, doctor, *vitals)
    device = world.device(patient)
    now = time.time()
    for minute in range(60):
        send(device, [(Vital.SPO2, 96 + minute % 3)], now - 3600 + minute * 60)
    send(device, [(Vital.SYSTOLIC_BP, 121), (Vital.DIASTOLIC_BP, 79)], now - 1800)
    send(device, [(Vital.SYSTOLIC_BP, 131), (Vital.DIASTOLIC_BP, 84)], now - 60)
    send(device, [(Vital.HEART_RATE, 72)], now - 3 * 3600)
    world.ledger.set_threshold(patient, patient.address, int(Vital.SPO2), 9200, 10000)
    world.ledger.set_threshold(patient, patient.address, int(Vital.SYSTOLIC_BP), 9000, 14000)
    seal_all(world, patient)
    return Chart(patient, doctor, device, now, spo2=60, bp=2)


def chart_data(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="chart-data">(.*?)</script>', html)
    assert found is not None, "the page has no chart data"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def tamper(world: World, patient: PrivateKey, number: int) -> None:
    """An attacker with the store's disk changes one signed byte of block ``number``."""
    store = world.running.gateway.store.block_store
    assert isinstance(store, SqliteStore)
    block = store.patient_block(world.group_id, patient.address, number)
    assert block is not None
    (path,) = (store.block_dir / str(world.group_id)).glob(f"{block.leaf_index}-*.vcb")
    data = bytearray(path.read_bytes())
    data[-70] ^= 0x01  # inside the signed part, just before the signature
    path.write_bytes(bytes(data))
