"""A vitalchain node: the composition root that wires gateway, store and care together.

Chain, master key, broker, gateway service, MQTT bridge, sealer/anchorer, the threshold check
that seals abnormal readings at once, and the store's provider access API, in one process.
``vitalchain gateway run`` calls :func:`serve`; tests and the demo use :func:`running_gateway`
for the same composition without the HTTP server.  Nothing below imports this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from vitalchain.care.access import AccessService, mount_access
from vitalchain.care.alerts import AlertService
from vitalchain.care.delivery import AlertApi, AlertHub, mount_alerts
from vitalchain.crypto.keys import PrivateKey
from vitalchain.gateway.app import create_app
from vitalchain.gateway.broker import BrokerAdmin, BrokerEndpoint, Mosquitto, find_mosquitto
from vitalchain.gateway.mqtt import MqttBridge
from vitalchain.gateway.policy import NORMAL, ThresholdPolicy
from vitalchain.gateway.sealer import Sealer, SealingPolicy
from vitalchain.gateway.service import Gateway, MqttInfo
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.ledger import ANVIL_DEV_KEY, Deployment, Ledger, RpcBackend
from vitalchain.store import Message
from vitalchain.vitals import Vital, from_fixed

__all__ = [
    "RunningGateway",
    "load_or_create_key",
    "open_ledger",
    "rpc_backend",
    "running_gateway",
    "serve",
    "served",
]

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


def rpc_backend(url: str) -> RpcBackend:
    """A node at ``url``, funded by anvil's well-known dev account on anvil's chain ID, else by
    ``VITALCHAIN_FUNDER_KEY`` when set (new accounts need gas)."""
    backend = RpcBackend(url)
    if backend.w3.eth.chain_id == ANVIL_CHAIN_ID:
        backend.funder = PrivateKey(ANVIL_DEV_KEY)
    elif funder := os.environ.get("VITALCHAIN_FUNDER_KEY"):
        backend.funder = PrivateKey(bytes.fromhex(funder.removeprefix("0x")))
    return backend


def open_ledger(settings: GatewaySettings, deployer: PrivateKey) -> Ledger:
    """The embedded chain, or the node at ``rpc_url``; deploys once and remembers where."""
    if settings.rpc_url is None:
        return Ledger.embedded()
    backend = rpc_backend(settings.rpc_url)
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
    sealer: Sealer
    access: AccessService
    policy: ThresholdPolicy
    alerts: AlertService
    hub: AlertHub
    alert_api: AlertApi

    def app(self) -> FastAPI:
        """The HTTP surface: the gateway's API Edge, the provider access API, alerts."""
        app = create_app(self.gateway)
        mount_access(app, self.access)
        mount_alerts(app, self.alert_api)
        return app


@contextlib.contextmanager
def running_gateway(
    settings: GatewaySettings,
    *,
    ledger: Ledger | None = None,
    master: PrivateKey | None = None,
    sealing: SealingPolicy | None = None,
    background: bool = True,
) -> Iterator[RunningGateway]:
    """Everything started, and stopped on exit; ``background=False`` leaves sealing and
    anchoring to explicit calls (deterministic tests)."""
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
        store = None
        if settings.store_dsn:
            from vitalchain.store.postgres import PostgresStore

            store = PostgresStore(settings.store_dsn)
        gateway = Gateway(
            settings,
            master,
            ledger,
            store=store,
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
        sealer = Sealer(
            gateway.store, ledger, master, settings.group_id, sealing or SealingPolicy()
        )
        policy = ThresholdPolicy(ledger)

        def seal_abnormal_at_once(message: Message) -> None:
            if any(
                policy.evaluate(message.patient, r.vital, r.value) != NORMAL
                for r in message.readings
            ):
                sealer.seal_soon(message.patient)

        sealer.on_tick(policy.refresh)

        def thresholds(patient: str, vital: Vital) -> tuple[float, float]:
            low, high = policy.thresholds(patient, vital)
            return from_fixed(low), from_fixed(high)

        hub = AlertHub(settings.group_id, publish=bridge.publish if bridge else None)
        alerts = AlertService(
            ledger,
            master,
            settings.group_id,
            thresholds,
            hub,
            settings.data_dir,
            ring_k=settings.alert_ring_k,
            ack_timeout_s=settings.alert_ack_timeout_s,
            member_status=gateway.registry.status,
        )
        stack.callback(alerts.close)
        # Alerts first: sealing an abnormal reading at once must not delay its notification.
        gateway.ingest_core.on_stored(alerts.on_message)
        gateway.ingest_core.on_stored(seal_abnormal_at_once)
        sealer.on_tick(alerts.tick)

        def alert_credentials(address: str) -> dict[str, object]:
            assert admin is not None
            assert endpoint is not None
            creds = admin.add_alert_subscriber(settings.group_id, address)
            return {
                "host": endpoint.host,
                "port": endpoint.port,
                "username": creds.username,
                "password": creds.password,
                "client_id": creds.client_id,
                "topic": creds.telemetry_topic,
            }

        alert_api = AlertApi(
            alerts, hub, gateway.store, mqtt_credentials=alert_credentials if admin else None
        )
        if background:
            sealer.start()
            stack.callback(sealer.stop)
        access = AccessService(gateway.store, ledger)
        yield RunningGateway(
            gateway, broker, bridge, sealer, access, policy, alerts, hub, alert_api
        )


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a free loopback port, in a thread (real HTTP and WebSocket); yields its URL."""
    import threading
    import time

    import uvicorn

    from vitalchain.ledger.devnode import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name=f"http-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def serve(settings: GatewaySettings) -> None:
    import uvicorn

    with running_gateway(settings) as running:
        log.info("gateway %s for group %s", running.gateway.master.address, settings.group_id)
        uvicorn.run(running.app(), host=settings.host, port=settings.port, log_level="warning")
