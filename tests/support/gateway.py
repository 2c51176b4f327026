"""Shared set-up for gateway tests: a real gateway app over a chain, and onboarded devices."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from pydantic import SecretStr

from vitalchain.crypto import Aead, PrivateKey
from vitalchain.crypto.envelope import Envelope
from vitalchain.crypto.keys import Signature, message_digest
from vitalchain.device.client import DeviceClient
from vitalchain.gateway.app import create_app
from vitalchain.gateway.service import Gateway
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import ChainOutbox, Ledger
from vitalchain.ledger.watcher import ChainWatcher
from vitalchain.store.files import private_database
from vitalchain.wire.onboarding import AAD_SESSION_KEY, ENROLMENT_CONTEXT

ADMIN_TOKEN = "test-admin-token-0123456789"
_ids = itertools.count(5_000_000)


def next_id() -> int:
    """A group or object id no other test uses (one counter for the whole run)."""
    return next(_ids)


def settings_for(data_dir: Path, **overrides: Any) -> GatewaySettings:
    """A test gateway's settings: fresh group and master ids, the test admin token, no MQTT
    unless ``overrides`` say otherwise (and no ingest workers: see tests/conftest.py)."""
    fields: dict[str, Any] = {
        "group_id": next_id(),
        "master_object_id": next_id(),
        "admin_token": SecretStr(ADMIN_TOKEN),
        "mqtt": False,
        **overrides,
    }
    return GatewaySettings(data_dir=data_dir, **fields)


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

    def offer(self, device: DeviceClient) -> dict[str, Any]:
        """``POST /v1/sessions`` for ``device``: the gateway's session offer, as JSON."""
        r = self.client.post(
            "/v1/sessions",
            json={
                "v": 1,
                "device_key": device.key.public_key.compressed.hex(),
                "object_id": device.object_id,
            },
        )
        return dict(r.json())

    def raw_session(self, device: DeviceClient) -> RawSession:
        """A session ``device`` opened by hand, for requests the SDK would never send."""
        offer = self.offer(device)
        sid = bytes.fromhex(offer["session_id"])
        envelope = Envelope.from_bytes(bytes.fromhex(offer["session_key"]))
        return RawSession(
            self, device, offer, sid, Aead(envelope.open(device.key, AAD_SESSION_KEY + sid))
        )


@dataclass
class RawSession:
    """An open onboarding session: its offer, id and AEAD (docs/spec/onboarding.md)."""

    harness: Harness
    device: DeviceClient
    offer: dict[str, Any]
    sid: bytes
    aead: Aead

    def sealed(self, body: dict[str, Any], aad: bytes) -> dict[str, Any]:
        """``body`` as a sealed request of this session, ``aad`` being its context."""
        ciphertext = self.aead.seal(json.dumps(body).encode(), aad + self.sid)
        return {"v": 1, "session_id": self.sid.hex(), "ciphertext": ciphertext.hex()}

    def post(self, path: str, body: dict[str, Any], aad: bytes) -> Any:
        return self.harness.client.post(path, json=self.sealed(body, aad))

    def ticket_request(self, pairing_code: str) -> dict[str, Any]:
        return {
            "v": 1,
            "object_id": self.device.object_id,
            "device_key": self.device.key.public_key.compressed.hex(),
            "pairing_code": pairing_code,
        }


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
    ledger: Ledger, data_dir: Path, group_id: int, **overrides: Any
) -> Iterator[Harness]:
    settings = settings_for(data_dir, group_id=group_id, **overrides)
    master = PrivateKey.generate()
    with (
        chain_outbox(ledger, master, data_dir / "outbox.db") as outbox,
        started_gateway(settings, master, ledger, outbox) as gateway,
        TestClient(create_app(gateway)) as client,
    ):
        yield Harness(gateway, client, ledger)


def signed_request(
    patient: PrivateKey, issued_at: int | None = None, *, address: str | None = None
) -> tuple[bytes, Signature]:
    """A patient's own enrolment request (docs/spec/onboarding.md), for ``address`` as written
    (the patient's checksummed address unless given), and its signature."""
    body = {
        "v": 1,
        "patient": address or patient.address,
        "issued_at": issued_at or int(time.time()),
    }
    raw = json.dumps(body).encode()
    return raw, patient.sign_digest(message_digest(raw, ENROLMENT_CONTEXT))


def post_signed(client: TestClient, body: bytes, signature: Signature) -> httpx.Response:
    """``POST /v1/enrolments`` with a patient's signature instead of the admin token."""
    return client.post(
        "/v1/enrolments",
        content=body,
        headers={
            "x-vitalchain-signature": signature.to_rsv().hex(),
            "content-type": "application/json",
        },
    )


def error_code(response: object) -> str:
    body = json.loads(response.text)  # type: ignore[attr-defined]
    return str(body["error"]["code"])


@contextlib.contextmanager
def restartable_gateway(
    chain: Ledger, data_dir: Path, **overrides: Any
) -> Iterator[Callable[[], Harness]]:
    """Yields ``start``: it starts the gateway, or restarts it (a clean stop first) on the same
    data directory and master key, so a test can check what survives a restart."""
    settings = settings_for(data_dir, **overrides)
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
