"""The same backend-neutral ledger suite against a real anvil node over JSON-RPC."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ledger_suite import LedgerSuite
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import ANVIL_DEV_KEY, Ledger, RpcBackend


@pytest.fixture(scope="module")
def deployed(anvil_url: str) -> Iterator[tuple[Ledger, PrivateKey]]:
    admin = PrivateKey.generate()
    ledger = Ledger.deploy(RpcBackend(anvil_url, funder=PrivateKey(ANVIL_DEV_KEY)), admin)
    yield ledger, admin
    ledger.backend.close()


@pytest.fixture
def ledger(deployed: tuple[Ledger, PrivateKey]) -> Ledger:
    return deployed[0]


@pytest.fixture
def admin(deployed: tuple[Ledger, PrivateKey]) -> PrivateKey:
    return deployed[1]


class TestAnvilLedger(LedgerSuite):
    pass
