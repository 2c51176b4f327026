"""The backend-neutral threshold-policy suite on the in-process EVM (eth-tester + py-evm)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.policy_suite import PolicySuite
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import EmbeddedBackend, Ledger


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[Ledger, PrivateKey]]:
    admin = PrivateKey.generate()
    ledger = Ledger.deploy(EmbeddedBackend(), admin)
    yield ledger, admin
    ledger.backend.close()


@pytest.fixture(scope="module")
def ledger(deployed: tuple[Ledger, PrivateKey]) -> Ledger:
    return deployed[0]


@pytest.fixture(scope="module")
def admin(deployed: tuple[Ledger, PrivateKey]) -> PrivateKey:
    return deployed[1]


class TestEmbeddedPolicy(PolicySuite):
    pass
