"""Real services for the integration tests, each on a free 127.0.0.1 port, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vitalchain.gateway.broker import Mosquitto


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A real mosquitto with the dynamic-security plugin; ``.admin`` is its dynsec admin.

    Shared by the session, so tests isolate themselves with their own group ids and devices.
    """
    with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker
