"""Run a gateway: chain, master key, broker, service, MQTT bridge and HTTP server together.

``vitalchain gateway run`` calls :func:`serve`; tests and the demo use
:func:`running_gateway` to get the same composition without the HTTP server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vitalchain.crypto.keys import PrivateKey
from vitalchain.gateway.broker import BrokerAdmin, BrokerEndpoint, Mosquitto, find_mosquitto
from vitalchain.gateway.mqtt import MqttBridge
from vitalchain.gateway.service import Gateway, MqttInfo
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import ANVIL_DEV_KEY, Deployment, Ledger, RpcBackend

__all__ = ["RunningGateway", "load_or_create_key", "open_ledger", "running_gateway", "serve"]

log = logging.getLogger(__name__)
ANVIL_CHAIN_ID = 31337


def load_or_create_key(path: Path) -> PrivateKey:
    """The gateway's master key, kept as hex in a 0600 file next to its data."""
    if path.exists():
        return PrivateKey(bytes.fromhex(path.read_text().strip()))
    key = PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.secret.hex() + "\n")
    return key


def open_ledger(settings: GatewaySettings, deployer: PrivateKey) -> Ledger:
    """The embedded chain, or the node at ``rpc_url``; deploys once and remembers where."""
    if settings.rpc_url is None:
        return Ledger.embedded()
    backend = RpcBackend(settings.rpc_url)
    if backend.w3.eth.chain_id == ANVIL_CHAIN_ID:
        backend.funder = PrivateKey(ANVIL_DEV_KEY)
    elif funder := os.environ.get("VITALCHAIN_FUNDER_KEY"):
        backend.funder = PrivateKey(bytes.fromhex(funder.removeprefix("0x")))
    path = settings.data_dir / "deployment.json"
    if path.exists():
        return Ledger(backend, Deployment.load(path))
    ledger = Ledger.deploy(backend, deployer)
    ledger.deployment.save(path)
    return ledger


@dataclass
class RunningGateway:
    gateway: Gateway
    broker: Mosquitto | None
    bridge: MqttBridge | None


@contextlib.contextmanager
def running_gateway(
    settings: GatewaySettings, *, ledger: Ledger | None = None, master: PrivateKey | None = None
) -> Iterator[RunningGateway]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    master = master or load_or_create_key(settings.data_dir / "master.key")
    ledger = ledger or open_ledger(settings, master)
    with contextlib.ExitStack() as stack:
        broker: Mosquitto | None = None
        admin: BrokerAdmin | None = None
        endpoint: BrokerEndpoint | None = None
        if settings.mqtt and find_mosquitto() is not None:
            broker = stack.enter_context(Mosquitto(settings.data_dir / "mqtt", settings.mqtt_port))
            endpoint = broker.endpoint
            admin = stack.enter_context(BrokerAdmin(endpoint, *broker.admin))
        elif settings.mqtt:
            log.warning("mosquitto is not installed: serving telemetry over HTTP only")
        gateway = Gateway(
            settings,
            master,
            ledger,
            credentials=admin,
            mqtt=MqttInfo(endpoint.host, endpoint.port) if endpoint else None,
        )
        stack.callback(gateway.close)
        gateway.start()
        bridge: MqttBridge | None = None
        if admin is not None and endpoint is not None:
            username, password = f"gateway-{settings.group_id}", secrets.token_urlsafe(24)
            admin.ensure_gateway(settings.group_id, username, password)
            bridge = MqttBridge(gateway, endpoint, username, password)
            bridge.start()
            stack.callback(bridge.stop)
        yield RunningGateway(gateway, broker, bridge)


def serve(settings: GatewaySettings) -> None:
    import uvicorn

    from vitalchain.gateway.app import create_app

    with running_gateway(settings) as running:
        log.info("gateway %s for group %s", running.gateway.master.address, settings.group_id)
        uvicorn.run(
            create_app(running.gateway), host=settings.host, port=settings.port, log_level="warning"
        )
