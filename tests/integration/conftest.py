"""Real services for the integration tests, each on a free 127.0.0.1 port, stopped afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vitalchain.services.mosquitto import Mosquitto
from vitalchain.services.postgres import LocalPostgres
from vitalchain.services.process import ServiceError
from vitalchain.wire.mqtt import MAX_PACKET_SIZE


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A real mosquitto with the dynamic-security plugin; ``.admin`` is its dynsec admin.

    Shared by the session, so tests isolate themselves with their own group ids and devices.
    """
    data_dir = tmp_path_factory.mktemp("mosquitto")
    with Mosquitto(data_dir, max_packet_size=MAX_PACKET_SIZE) as broker:  # as the gateway's
        yield broker


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A real PostgreSQL (Debian's ``postgresql``) of our own: initdb, 127.0.0.1 only, stopped
    afterwards.  ``.dsn`` is its ``vitalchain`` database, ``.admin_dsn`` the maintenance one.

    As root, initdb and the server run as the ``postgres`` user; the superuser has a random
    password, since this throwaway cluster listens on loopback only.
    """
    server = LocalPostgres()
    error = None
    try:
        server.start()  # cleans up after itself if it fails
    except ServiceError as exc:  # e.g. the `postgresql` package is missing: say so, no traceback
        error = str(exc)
    if error is not None:
        pytest.fail(f"cannot start PostgreSQL: {error}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()
