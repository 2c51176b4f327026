"""A whole node on a chain for the access, alerts, sdk and sealing tests: patients, providers,
devices.  The ``world`` fixture (tests/support/plugin.py) is one on the package's chain."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.support.gateway import ADMIN_TOKEN, next_id, settings_for
from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.device.simulator import enrol
from vitalchain.ledger import Ledger
from vitalchain.node import RunningGateway, running_gateway
from vitalchain.sdk.provider import ProviderClient
from vitalchain.sealing.sealer import SealingPolicy
from vitalchain.vitals import Vital

HOUR = 3600
SEALING = SealingPolicy(max_readings=4, max_age_s=3600)  # a block every 4 messages


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
        device = DeviceClient(PrivateKey.generate(), next_id(), http=self.client)
        device.onboard(enrol(self.client, ADMIN_TOKEN, patient.address))
        return device

    def reader(self, key: PrivateKey) -> ProviderClient:
        return ProviderClient(key, self.client)


def make_world(
    chain: tuple[Ledger, PrivateKey],
    data_dir: Path,
    sealing: SealingPolicy = SEALING,
    background: bool = False,
    **overrides: Any,
) -> Iterator[World]:
    """A node on ``chain`` (the ledger and its consent admin) with its data in ``data_dir``."""
    ledger, admin = chain
    settings = settings_for(data_dir, **overrides)
    with (
        running_gateway(settings, ledger=ledger, sealing=sealing, background=background) as running,
        TestClient(running.app()) as client,
    ):
        yield World(running, client, ledger, admin)
