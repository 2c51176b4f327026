"""A whole node on a chain for the access, alerts, sdk and sealing tests: patients, providers,
devices.  ``chain`` and ``world`` are fixtures; a test package's conftest imports them, so each
package gets its own chain."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from tests.gateway_fixtures import ADMIN_TOKEN
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.device.simulator import enrol
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import EmbeddedBackend, Ledger
from vitalchain.node import RunningGateway, running_gateway
from vitalchain.sdk.provider import ProviderClient
from vitalchain.sealing.sealer import SealingPolicy
from vitalchain.vitals import Vital

_ids = itertools.count(8_000_000)
HOUR = 3600


@dataclass
class World:
    running: RunningGateway
    client: TestClient
    ledger: Ledger
    admin: PrivateKey

    @property
    def group_id(self) -> int:
        return self.running.gateway.group_id

    def patient(self) -> PrivateKey:
        key = PrivateKey.generate()
        self.ledger.fund(key.address)
        self.ledger.publish_key(key)
        return key

    def provider(self, *, publish: bool = True) -> PrivateKey:
        key = PrivateKey.generate()
        self.ledger.fund(key.address)
        self.ledger.register_provider(self.admin, key.address)
        if publish:
            self.ledger.publish_key(key)
        return key

    def consent(
        self, patient: PrivateKey, provider: PrivateKey, *vitals: Vital, hours: int = 24
    ) -> None:
        scope = 0
        for v in vitals or tuple(Vital):
            scope |= v.bit
        self.ledger.grant(patient, provider.address, scope, self.ledger.timestamp() + hours * HOUR)

    def device(self, patient: PrivateKey) -> DeviceClient:
        device = DeviceClient(PrivateKey.generate(), next(_ids), http=self.client)
        device.onboard(enrol(self.client, ADMIN_TOKEN, patient.address))
        return device

    def reader(self, key: PrivateKey) -> ProviderClient:
        return ProviderClient(key, self.client)


def make_world(
    ledger: Ledger,
    admin: PrivateKey,
    data_dir: Path,
    sealing: SealingPolicy,
    background: bool = False,
    **overrides: Any,
) -> Iterator[World]:
    fields: dict[str, Any] = {"mqtt": False, **overrides}
    settings = GatewaySettings(
        data_dir=data_dir,
        group_id=next(_ids),
        master_object_id=next(_ids),
        admin_token=SecretStr(ADMIN_TOKEN),
        **fields,
    )
    with (
        running_gateway(settings, ledger=ledger, sealing=sealing, background=background) as running,
        TestClient(running.app()) as client,
    ):
        yield World(running, client, ledger, admin)


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
