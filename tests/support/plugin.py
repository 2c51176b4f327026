"""The suite's shared fixtures, registered as a pytest plugin (tests/conftest.py).

Real services (anvil, mosquitto, PostgreSQL) start once per session on a free 127.0.0.1 port
and stop afterwards.  Chains are deployed per package (``chain``, on the embedded EVM) or per
module and backend (``any_chain``: the embedded EVM, then anvil), so a backend-neutral suite
is one test module whose fixtures are parametrised, not a class copied per backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import Harness, make_harness, next_id
from tests.support.node import World, make_world
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import EmbeddedBackend, Ledger, RpcBackend
from vitalchain.services.anvil import run_anvil
from vitalchain.services.mosquitto import Mosquitto
from vitalchain.services.postgres import LocalPostgres
from vitalchain.services.process import ServiceError
from vitalchain.wire.mqtt import MAX_PACKET_SIZE

CHAINS = ("embedded", "anvil")
FUNDS_WEI = 10**24


@pytest.fixture
def counter_random() -> Any:
    """Deterministic stand-in for os.urandom, for tests that pin outputs."""
    state = {"n": 0}

    def draw(n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            state["n"] += 1
            out += state["n"].to_bytes(32, "big")
        return bytes(out[:n])

    return draw


# --- real services started on a free loopback port ---------------------------------------------


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    """A real anvil node (npm's @foundry-rs/anvil) on 127.0.0.1, stopped afterwards."""
    with run_anvil() as url:
        yield url


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


# --- chains ---------------------------------------------------------------------------------------


def anvil_backend(url: str) -> RpcBackend:
    """A backend on the session's anvil whose funder is an account of its own.

    Why not anvil's dev key: each :class:`Ledger` counts its senders' nonces itself, so two
    deployments alive at once that both fund from the dev key hand out the same nonce ("nonce
    too low").  ``anvil_setBalance`` gives a fresh key ether without a transaction.
    """
    funder = PrivateKey.generate()
    backend = RpcBackend(url, funder=funder)
    assert backend.json_rpc is not None
    backend.json_rpc.call("anvil_setBalance", [funder.address, hex(FUNDS_WEI)])
    return backend


def deploy(request: pytest.FixtureRequest, kind: str) -> tuple[Ledger, PrivateKey]:
    """The contracts on a fresh embedded EVM, or on the session's anvil; the admin key."""
    backend = (
        EmbeddedBackend()
        if kind == "embedded"
        else anvil_backend(request.getfixturevalue("anvil_url"))
    )
    admin = PrivateKey.generate()
    return Ledger.deploy(backend, admin), admin


@pytest.fixture(scope="package")
def chain(request: pytest.FixtureRequest) -> tuple[Ledger, PrivateKey]:
    """The contracts on an embedded EVM of this test package's own, and the consent admin."""
    return deploy(request, "embedded")


@pytest.fixture(scope="module", params=CHAINS)
def any_chain(request: pytest.FixtureRequest) -> Iterator[tuple[Ledger, PrivateKey]]:
    """A backend-neutral suite's chain: each of :data:`CHAINS` in turn, one per module."""
    ledger, admin = deploy(request, request.param)
    yield ledger, admin
    ledger.backend.close()


@pytest.fixture(scope="package")
def ledger(chain: tuple[Ledger, PrivateKey]) -> Ledger:
    return chain[0]


# --- a gateway, and a whole node -----------------------------------------------------------------


@pytest.fixture(scope="module")
def harness(ledger: Ledger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """A gateway app on the package's chain, shared by the module (tests use their own ids)."""
    yield from make_harness(ledger, tmp_path_factory.mktemp("gateway"), next_id())


@pytest.fixture
def fresh_harness(ledger: Ledger, tmp_path: Path) -> Iterator[Harness]:
    """A gateway app of the test's own."""
    yield from make_harness(ledger, tmp_path / "gateway", next_id())


@pytest.fixture
def world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    """A node (gateway, sealer, alerts, access) on the package's chain."""
    yield from make_world(chain, tmp_path / "node")
