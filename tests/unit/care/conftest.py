from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node_fixtures import World, make_world
from vitalchain.crypto import PrivateKey
from vitalchain.gateway.sealer import SealingPolicy
from vitalchain.ledger import EmbeddedBackend, Ledger


@pytest.fixture(scope="package")
def chain() -> tuple[Ledger, PrivateKey]:
    admin = PrivateKey.generate()
    return Ledger.deploy(EmbeddedBackend(), admin), admin


@pytest.fixture
def world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    ledger, admin = chain
    yield from make_world(
        ledger, admin, tmp_path / "node", SealingPolicy(max_readings=4, max_age_s=3600)
    )
