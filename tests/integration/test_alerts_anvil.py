"""The alert and delivery suites against a real anvil node: ring from the chain, record in its
alert log, and issue 13's delivery test (a subscriber offline during 3 alerts gets each once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alert_suite import ACK_TIMEOUT_S, RING_K, AlertSuite, escalating_after
from tests.delivery_suite import DeliverySuite
from tests.node_fixtures import World, make_world
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import ANVIL_DEV_KEY, Ledger, RpcBackend
from vitalchain.sealing.sealer import SealingPolicy


@pytest.fixture(scope="module")
def chain(anvil_url: str) -> tuple[Ledger, PrivateKey]:
    admin = PrivateKey.generate()
    return Ledger.deploy(RpcBackend(anvil_url, funder=PrivateKey(ANVIL_DEV_KEY)), admin), admin


@pytest.fixture
def world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    ledger, admin = chain
    yield from make_world(
        ledger,
        admin,
        tmp_path / "node",
        SealingPolicy(max_readings=1000, max_age_s=3600),
        alert_ring_k=RING_K,
        **escalating_after(ACK_TIMEOUT_S),
    )


class TestAlertsAnvil(AlertSuite):
    pass


class TestDeliveryAnvil(DeliverySuite):
    pass
