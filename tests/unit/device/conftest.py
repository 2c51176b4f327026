from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway_fixtures import Harness, make_harness, next_id
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import EmbeddedBackend, Ledger


@pytest.fixture(scope="package")
def chain() -> Ledger:
    return Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())


@pytest.fixture(scope="module")
def harness(chain: Ledger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    yield from make_harness(chain, tmp_path_factory.mktemp("gateway"), next_id())


@pytest.fixture
def fresh_harness(chain: Ledger, tmp_path: Path) -> Iterator[Harness]:
    yield from make_harness(chain, tmp_path / "gateway", next_id())
