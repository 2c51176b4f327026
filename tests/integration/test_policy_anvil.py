"""The same threshold-policy suite against a real anvil node over JSON-RPC."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.policy_suite import PolicySuite
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import ANVIL_DEV_KEY, Ledger, RpcBackend


@pytest.fixture(scope="module")
def deployed(anvil_url: str) -> Iterator[tuple[Ledger, PrivateKey]]:
    admin = PrivateKey.generate()
    ledger = Ledger.deploy(RpcBackend(anvil_url, funder=PrivateKey(ANVIL_DEV_KEY)), admin)
    yield ledger, admin
    ledger.backend.close()


@pytest.fixture(scope="module")
def ledger(deployed: tuple[Ledger, PrivateKey]) -> Ledger:
    return deployed[0]


@pytest.fixture(scope="module")
def admin(deployed: tuple[Ledger, PrivateKey]) -> PrivateKey:
    return deployed[1]


class TestAnvilPolicy(PolicySuite):
    # The arithmetic is covered at 40 examples on the embedded chain; here the point is the
    # JSON-RPC path (encoding, revert decoding, event logs), so fewer keep the file short.
    # (A call to anvil is measured no slower than one to the embedded EVM: ~100 ms an example.)
    max_policies = 20
