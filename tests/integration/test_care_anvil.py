"""The access suite and the store's consent rules against a real anvil node."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.access_suite import AccessSuite
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
        ledger, admin, tmp_path / "node", SealingPolicy(max_readings=4, max_age_s=3600)
    )


class TestAccessAnvil(AccessSuite):
    pass
