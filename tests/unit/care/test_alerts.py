"""The alert suite on the embedded chain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.alert_suite import ACK_TIMEOUT_S, RING_K, AlertSuite
from tests.node_fixtures import World, make_world
from vitalchain.crypto import PrivateKey
from vitalchain.gateway.sealer import SealingPolicy
from vitalchain.ledger import Ledger


@pytest.fixture
def world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    ledger, admin = chain
    yield from make_world(
        ledger,
        admin,
        tmp_path / "node",
        SealingPolicy(max_readings=1000, max_age_s=3600),
        alert_ring_k=RING_K,
        alert_ack_timeout_s=ACK_TIMEOUT_S,
    )


class TestAlertsEmbedded(AlertSuite):
    pass
