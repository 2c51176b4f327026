"""Shared set-up for gateway tests: a real gateway app over a chain, and onboarded devices."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr

from vitalchain.crypto import PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.gateway.app import create_app
from vitalchain.gateway.service import Gateway
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import ChainOutbox, Ledger
from vitalchain.ledger.watcher import ChainWatcher
from vitalchain.store.files import private_database

ADMIN_TOKEN = "test-admin-token-0123456789"
_ids = itertools.count(5_000_000)


def next_id() -> int:
    return next(_ids)


@dataclass
class Harness:
    gateway: Gateway
    client: TestClient
    ledger: Ledger

    def enrol(self, patient: str | None = None, ttl: int = 900) -> str:
        patient = patient or PrivateKey.generate().address
        r = self.client.post(
            "/v1/enrolments",
            json={"v": 1, "patient": patient, "label": "test device", "ttl_seconds": ttl},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert r.status_code == 201, r.text
        return str(r.json()["pairing_code"])

    def device(self, **kwargs: object) -> DeviceClient:
        return DeviceClient(PrivateKey.generate(), next_id(), http=self.client, **kwargs)  # type: ignore[arg-type]

    def onboarded(self, patient: str | None = None, **kwargs: object) -> DeviceClient:
        device = self.device(**kwargs)
        device.onboard(self.enrol(patient))
        return device


@contextlib.contextmanager
def chain_outbox(
    ledger: Ledger, master: PrivateKey, path: Path, *, start: bool = True, **options: Any
) -> Iterator[ChainOutbox]:
    """The master's chain outbox as a node wires it (node.py): a private SQLite file at
    ``path``, started (unless ``start=False``), and closed on exit, so the caller closes what
    writes through it first.  The one way Gateway, Sealer and AlertService reach the chain."""
    outbox = ChainOutbox(ledger, master, private_database(path), **options)
    try:
        if start:
            outbox.start()
        yield outbox
    finally:
        outbox.close()


@contextlib.contextmanager
def started_gateway(
    settings: GatewaySettings, master: PrivateKey, ledger: Ledger, outbox: ChainOutbox
) -> Iterator[Gateway]:
    """A started gateway as node.py wires one: its master funded (a dev chain), the chain
    watcher it shares running; closed, then the watcher stopped, on exit."""
    ledger.fund(master.address)
    watcher = ChainWatcher(ledger.events, poll_s=settings.revocation_poll_s)
    gateway = Gateway(settings, master, ledger, outbox=outbox, watcher=watcher)
    try:
        gateway.start()
        watcher.start()
        yield gateway
    finally:
        gateway.close()
        watcher.stop()


def make_harness(
    ledger: Ledger, data_dir: Path, group_id: int, **overrides: object
) -> Iterator[Harness]:
    settings = GatewaySettings(
        data_dir=data_dir,
        group_id=group_id,
        master_object_id=next_id(),
        admin_token=SecretStr(ADMIN_TOKEN),
        mqtt=False,
        **overrides,  # type: ignore[arg-type]
    )
    master = PrivateKey.generate()
    with (
        chain_outbox(ledger, master, data_dir / "outbox.db") as outbox,
        started_gateway(settings, master, ledger, outbox) as gateway,
        TestClient(create_app(gateway)) as client,
    ):
        yield Harness(gateway, client, ledger)


def error_code(response: object) -> str:
    body = json.loads(response.text)  # type: ignore[attr-defined]
    return str(body["error"]["code"])


@contextlib.contextmanager
def restartable_gateway(
    chain: Ledger, data_dir: Path, **overrides: Any
) -> Iterator[Callable[[], Harness]]:
    """Yields ``start``: it starts the gateway, or restarts it (a clean stop first) on the same
    data directory and master key, so a test can check what survives a restart."""
    settings = GatewaySettings(
        data_dir=data_dir,
        group_id=next_id(),
        master_object_id=next_id(),
        admin_token=SecretStr(ADMIN_TOKEN),
        mqtt=False,
        **overrides,
    )
    master = PrivateKey.generate()
    running: list[tuple[Harness, contextlib.ExitStack]] = []

    def stop() -> None:
        if running:
            old, stack = running.pop()
            with stack:  # the gateway, then the outbox
                old.client.__exit__(None, None, None)

    def start() -> Harness:
        stop()
        with contextlib.ExitStack() as stack:
            outbox = stack.enter_context(chain_outbox(chain, master, data_dir / "outbox.db"))
            gateway = stack.enter_context(started_gateway(settings, master, chain, outbox))
            client = TestClient(create_app(gateway))
            client.__enter__()
            running.append((Harness(gateway, client, chain), stack.pop_all()))
        return running[-1][0]

    try:
        yield start
    finally:
        stop()
