"""A vitalchain node: the composition root that wires gateway, store, sealing, access and
alerts together.

Chain, master key, broker, gateway service, MQTT bridge, sealer/anchorer, the threshold check
that seals abnormal readings at once, and the store's provider access API, in one process.
``vitalchain gateway run`` calls :func:`serve`; tests and the demo use :func:`running_gateway`
for the same composition without the HTTP server.  Nothing below imports this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from vitalchain.access.service import AccessService, mount_access
from vitalchain.alerts.delivery import AlertApi, AlertHub, mount_alerts
from vitalchain.alerts.rules import (
    DEFAULT_POLICIES,
    DEFAULT_RULES,
    Priority,
    PriorityPolicy,
    RuleBook,
)
from vitalchain.alerts.service import AlertService
from vitalchain.crypto.keys import PrivateKey
from vitalchain.errors import VitalchainError
from vitalchain.gateway.app import create_app
from vitalchain.gateway.dynsec import BrokerAdmin
from vitalchain.gateway.health import (
    ChainProbe,
    ComponentProbe,
    HealthMonitor,
    OutboxProbe,
    StoreProbe,
)
from vitalchain.gateway.mqtt import MqttBridge, MqttProbe
from vitalchain.gateway.service import Gateway, MqttInfo
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.gateway.startup import (
    DataDirLock,
    StartupError,
    check_chain,
    listen_socket,
    reset_data_dir,
    telemetry_socket,
)
from vitalchain.gateway.workers import IngestWorkers, default_worker_count
from vitalchain.ledger import (
    ANVIL_DEV_KEY,
    ChainOutbox,
    Deployment,
    EmbeddedBackend,
    Ledger,
    RpcBackend,
)
from vitalchain.ledger.consent import ConsentView
from vitalchain.ledger.thresholds import ThresholdPolicy
from vitalchain.ledger.watcher import ChainWatcher
from vitalchain.sealing.sealer import Sealer, SealingPolicy
from vitalchain.services.mosquitto import BrokerEndpoint, Mosquitto, find_mosquitto
from vitalchain.store import Message, open_store
from vitalchain.store.files import private_database
from vitalchain.vitals import Vital, from_fixed
from vitalchain.wire.mqtt import MAX_PACKET_SIZE

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


def rpc_backend(url: str, timeout: float = 10.0) -> RpcBackend:
    """A node at ``url``, funded by anvil's well-known dev account on anvil's chain ID, else by
    ``VITALCHAIN_FUNDER_KEY`` when set (new accounts need gas)."""
    backend = RpcBackend(url, timeout=timeout)
    if backend.w3.eth.chain_id == ANVIL_CHAIN_ID:
        backend.funder = PrivateKey(ANVIL_DEV_KEY)
    elif funder := os.environ.get("VITALCHAIN_FUNDER_KEY"):
        backend.funder = PrivateKey(bytes.fromhex(funder.removeprefix("0x")))
    return backend


def open_ledger(settings: GatewaySettings, deployer: PrivateKey) -> Ledger:
    """The embedded chain, or the node at ``rpc_url``; deploys once and remembers where.

    A node that does not answer, a deployment file that is not one, or one naming contracts
    the chain does not hold (a restarted dev node forgets them) raise :class:`StartupError`
    with one line (``chain_unavailable``, ``bad_deployment``, ``deployment_not_on_chain``),
    before anything is deployed or stored.
    """
    from web3.exceptions import Web3Exception

    if settings.rpc_url is None:
        # In a child process: its EVM's CPU must not hold this process's GIL (backends.py).
        return Ledger.deploy(EmbeddedBackend(isolated=True), PrivateKey.generate())
    url = settings.rpc_url
    path = settings.data_dir / "deployment.json"
    try:
        backend = rpc_backend(url, settings.rpc_timeout_s)
        if not path.exists():
            ledger = Ledger.deploy(backend, deployer)
            ledger.deployment.save(path)
            return ledger
        try:
            plan = Deployment.load(path)
        except (ValueError, KeyError, TypeError, VitalchainError) as exc:
            raise StartupError(
                f"{path} is not a vitalchain deployment file ({type(exc).__name__})",
                code="bad_deployment",
            ) from None
        ledger = Ledger(backend, plan)
        if not ledger.w3.eth.get_code(ledger.address_of("TrustGroups")):  # type: ignore[arg-type]
            raise StartupError(
                f"the chain at {url} holds no vitalchain contracts where {path} says (a "
                "restarted dev node forgets them): deploy again (`vitalchain chain deploy "
                f"--force --out {path}`), or remove {path} to let the gateway deploy",
                code="deployment_not_on_chain",
            )
        return ledger
    except VitalchainError as exc:
        if exc.code != "chain_unavailable":
            raise
        raise StartupError(
            f"no Ethereum JSON-RPC node answers at {url} ({exc.message})",
            code="chain_unavailable",
        ) from None
    except OSError as exc:  # requests' connection errors and timeouts are OSErrors
        raise StartupError(
            f"no Ethereum JSON-RPC node answers at {url} ({type(exc).__name__})",
            code="chain_unavailable",
        ) from None
    except Web3Exception as exc:
        first = (str(exc).splitlines() or [""])[0][:160]
        raise StartupError(
            f"the node at {url} answered unexpectedly ({type(exc).__name__}: {first})",
            code="chain_error",
        ) from None


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
    health: HealthMonitor | None = None
    workers: IngestWorkers | None = None

    def app(self) -> FastAPI:
        """The HTTP surface: the gateway's API Edge, the provider access API, alerts."""
        app = create_app(self.gateway, self.health, metrics=[self.alerts.registry])
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
    reset_data: bool = False,
) -> Iterator[RunningGateway]:
    """Everything started, and stopped on exit; ``background=False`` leaves sealing and
    anchoring to explicit calls (deterministic tests).

    First of all, the data directory is locked (a second gateway on it is refused with
    ``data_dir_locked``) and, once the chain is open, checked to belong to that chain
    (``chain_mismatch``); ``reset_data=True`` moves its old data aside first (see
    gateway/startup.py)."""
    lock = DataDirLock.acquire(settings.data_dir)  # before anything opens a store
    opened: Ledger | None = None  # a chain this node opened is this node's to close
    try:
        if reset_data:
            reset_data_dir(settings.data_dir)
        master = master or load_or_create_key(settings.data_dir / "master.key")
        if ledger is None:
            ledger = opened = open_ledger(settings, master)
        check_chain(settings.data_dir, ledger)
    except BaseException:
        if opened is not None:
            opened.backend.close()
        lock.release()
        raise
    with contextlib.ExitStack() as stack:
        stack.callback(lock.release)  # the last thing released
        if opened is not None:
            stack.callback(opened.backend.close)  # the embedded chain's process, if any
        broker: Mosquitto | None = None
        admin: BrokerAdmin | None = None
        endpoint: BrokerEndpoint | None = None
        if settings.mqtt and find_mosquitto() is not None:
            broker = stack.enter_context(
                Mosquitto(
                    settings.data_dir / "mqtt", settings.mqtt_port, max_packet_size=MAX_PACKET_SIZE
                )
            )
            endpoint = broker.endpoint
            admin = stack.enter_context(BrokerAdmin(endpoint, *broker.admin))
        elif settings.mqtt:
            log.warning("mosquitto is not installed: serving telemetry over HTTP only")
        # Nothing a gateway writes is for other local users (keys, sessions, readings): new
        # files 0600 and directories 0700, and those made before this point tightened.
        stack.callback(os.umask, os.umask(0o077))
        for name in ("gateway.db", "deployment.json", "master.key"):
            if name == "gateway.db" or (settings.data_dir / name).exists():
                private_database(settings.data_dir / name)  # (-wal, -shm too)
        # The store: journal.db (plaintext, local), blocks in store.db + blocks/ or PostgreSQL.
        store = open_store(settings.data_dir, settings.store_dsn)
        stack.callback(store.close)
        # The master's chain writes (alert records, anchors, associations, revocations): one
        # durable queue that holds no lock over a receipt and waits out outages (ledger/outbox.py).
        # Closed after everything that submits to it (registered before them).
        outbox = ChainOutbox(ledger, master, private_database(settings.data_dir / "outbox.db"))
        outbox.start()
        stack.callback(outbox.close)
        # One follower of the chain's events for the whole node (ledger/watcher.py), and the
        # one "who may read now" view the sealer and the alarm service share.
        watcher = ChainWatcher(ledger.events, poll_s=settings.revocation_poll_s)
        consent = ConsentView(ledger, watcher)
        if ledger.group(settings.group_id) is None:
            ledger.fund(master.address)  # gas for creating its group (a no-op off dev chains)
        gateway = Gateway(
            settings,
            master,
            ledger,
            store=store,
            credentials=admin,
            mqtt=MqttInfo(endpoint.host, endpoint.port) if endpoint else None,
            outbox=outbox,
            watcher=watcher,
        )
        stack.callback(gateway.close)
        gateway.start()
        workers = ingest_workers(settings, gateway)
        if workers is not None:
            workers.start()  # before any message flows (the bridge, HTTP)
            stack.callback(workers.close)  # after the bridge has stopped (registered first)
        bridge: MqttBridge | None = None
        if admin is not None and endpoint is not None:
            username, password = f"gateway-{settings.group_id}", secrets.token_urlsafe(24)
            admin.ensure_gateway(settings.group_id, username, password)
            bridge = MqttBridge(gateway, endpoint, username, password)  # started below
        sealer = Sealer(
            store=gateway.store,
            ledger=ledger,
            master=master,
            group_id=settings.group_id,
            policy=sealing
            or SealingPolicy(
                settings.seal_max_readings, settings.seal_max_age_s, settings.anchor_every_s
            ),
            outbox=outbox,
            consent=consent,
        )
        policy = gateway.policy

        def seal_abnormal_at_once(message: Message) -> None:
            if gateway.out_of_band(message.patient, message.readings):
                sealer.seal_soon(message.patient)

        def thresholds(patient: str, vital: Vital) -> tuple[float, float]:
            low, high = policy.thresholds(patient, vital)
            return from_fixed(low), from_fixed(high)

        hub = AlertHub(settings.group_id, publish=bridge.publish if bridge else None)
        alerts = AlertService(
            ledger=ledger,
            master=master,
            group_id=settings.group_id,
            thresholds=thresholds,
            notifier=hub,
            data_dir=settings.data_dir,
            outbox=outbox,
            rules=alarm_rules(settings),
            ring_k=settings.alert_ring_k,
            policies=alarm_policies(settings),
            receipt_timeout_s=settings.alert_receipt_timeout_s,
            outage_after_s=settings.alarm_outage_after_s,
            journal=lambda after, limit: store.messages(after_id=after, limit=limit),
            member_status=gateway.registry.status,
            consent=consent,
        )
        stack.callback(alerts.close)
        # Every subscriber is in: from here the watcher's one thread keeps the policy, the
        # consents and keys fresh (stopped first, before what it feeds).
        watcher.start()
        stack.callback(watcher.stop)
        # Alerts first: sealing an abnormal reading at once must not delay its notification.
        gateway.ingest_core.on_stored_entry(alerts.on_stored)
        gateway.ingest_core.on_stored(seal_abnormal_at_once)
        # Before any message flows: what the journal holds past the alarm cursor is replayed
        # (a kill between a reading's commit and its alarm's), then the alarm clock starts
        # (stale devices, escalation, repeats, receipt timeouts, outages: not the sealer's).
        alerts.start(clock=background)
        if bridge is not None:
            # Only once the hooks are in: the broker hands over what it queued for us while
            # we were away at once, and those readings must raise alerts like any other.
            bridge.start()
            stack.callback(bridge.stop)

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
            alerts,
            hub,
            gateway.store.block_store,
            mqtt_credentials=alert_credentials if admin else None,
        )
        if background:
            sealer.start()
            stack.callback(sealer.stop)
        access = AccessService(gateway.store.block_store, ledger)
        health = _health_monitor(settings, gateway, broker, bridge, sealer, outbox)
        alerts.outages = _outages(health)
        if background:
            health.start()
            stack.callback(health.stop)  # first to stop: shutdown is not an outage
        yield RunningGateway(
            gateway, broker, bridge, sealer, access, policy, alerts, hub, alert_api, health, workers
        )


def ingest_workers(settings: GatewaySettings, gateway: Gateway) -> IngestWorkers | None:
    """The node's ingest worker processes by the settings (None: none, all in process)."""
    count = settings.ingest_workers
    if count is None:
        count = default_worker_count()
    if count == 0:
        return None
    if settings.telemetry_port is not None and settings.telemetry_port == settings.port:
        # Both bound, neither listening yet (SO_REUSEADDR): the kernel would let both bind.
        raise StartupError(
            f"the telemetry port {settings.port} is the gateway's own port; choose another",
            code="port_in_use",
        )
    http = telemetry_socket(settings.data_dir, settings.host, settings.telemetry_port)
    try:
        workers = IngestWorkers(
            gateway.ingest_core,
            count,
            max_message_bytes=settings.max_message_bytes,
            max_readings=settings.max_readings,
            http=http,
            preauth=(settings.telemetry_preauth_rate_per_s, settings.telemetry_preauth_burst),
            master=gateway.master,
        )
    except BaseException:
        http.close()
        raise
    gateway.telemetry_url = workers.telemetry_url  # told to devices at association
    return workers


def alarm_policies(settings: GatewaySettings) -> dict[Priority, PriorityPolicy]:
    """The priorities' escalation and repeat settings over the defaults' snooze choices."""
    escalate = {
        Priority.HIGH: settings.alert_escalate_high_s,
        Priority.MEDIUM: settings.alert_escalate_medium_s,
        Priority.LOW: settings.alert_escalate_low_s,
    }
    policies = {}
    for priority, policy in DEFAULT_POLICIES.items():
        repeat = settings.alert_repeat_high_s if priority is Priority.HIGH else 0.0
        policies[priority] = dataclasses.replace(
            policy, escalate_after_s=escalate[priority], repeat_every_s=repeat
        )
    return policies


def alarm_rules(settings: GatewaySettings) -> RuleBook:
    """The default rules with the stale-device levels of the settings."""
    return RuleBook(
        {
            vital: dataclasses.replace(
                rule,
                stale_warning_s=settings.alert_stale_warning_s,
                stale_urgent_s=settings.alert_stale_urgent_s,
            )
            for vital, rule in DEFAULT_RULES.items()
        }
    )


def _outages(health: HealthMonitor) -> Callable[[], dict[str, float | None]]:
    """Since when each component is down (None: up), from the monitor's cache: never blocks."""

    def outages() -> dict[str, float | None]:
        return {name: c.down_since for name, c in health.components().items()}

    return outages


def _health_monitor(
    settings: GatewaySettings,
    gateway: Gateway,
    broker: Mosquitto | None,
    bridge: MqttBridge | None,
    sealer: Sealer,
    outbox: ChainOutbox,
) -> HealthMonitor:
    """Probes of the chain, the store, the chain outbox's backlog and the managed broker,
    checked once before serving."""
    probes: dict[str, ComponentProbe] = {
        "chain": ChainProbe(gateway.ledger, settings.health_timeout_s),
        "store": StoreProbe(gateway.store, gateway.group_id),
        # From the outbox's bookkeeping: never touches the chain (its threads do).
        "outbox": OutboxProbe(outbox),
    }
    if bridge is not None:
        # From the supervisor's and the bridge's bookkeeping: never blocks, never connects.
        probes["broker"] = MqttProbe(bridge, broker)
    monitor = HealthMonitor(probes, interval_s=settings.health_interval_s, sealing=sealer.status)
    monitor.probe_once()
    return monitor


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a free loopback port, in a thread (real HTTP and WebSocket); yields its URL."""
    import threading
    import time

    import uvicorn

    from vitalchain.services.ports import free_port

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


def settle_heap() -> None:
    """Leave what the node built so far out of every later garbage collection.

    Why: the modules and the node live as long as the process (~200k objects the collector
    tracks, a quarter of them SQLAlchemy's and Alembic's).  A full collection scanned them all,
    about every 1,500 messages, 10-15 % of the gateway's time under load (docs/benchmarks.md,
    issue 14).  Call it once the node is built, before it serves.
    """
    gc.collect()
    gc.freeze()


def serve(
    settings: GatewaySettings,
    *,
    reset_data: bool = False,
    on_started: Callable[[RunningGateway, str], None] | None = None,
) -> None:
    """``vitalchain gateway run``: the node over HTTP until SIGINT or SIGTERM.

    The HTTP port is bound first (a busy port is refused before the chain is touched, and the
    bound socket goes to uvicorn, so nothing takes the port in between); ``on_started`` gets
    the running node and its URL once everything is up.  On SIGINT or SIGTERM uvicorn stops
    and this returns normally, so ``running_gateway``'s cleanup (broker, stores, lock) runs:
    uvicorn would re-raise the signal after its shutdown, killing the process before that.
    """
    import functools
    import socket

    import uvicorn

    announce: Callable[[], None] | None = None

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()  # handled: do not re-raise after shutdown

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if announce is not None and not self.should_exit:
                announce()  # serving, and Ctrl-C is uvicorn's now: a clean stop from here

    sock = listen_socket(settings.host, settings.port)
    with contextlib.closing(sock), running_gateway(settings, reset_data=reset_data) as running:
        port = int(sock.getsockname()[1])
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        url = f"http://{host}:{port}"
        log.info("gateway %s for group %s", running.gateway.master.address, settings.group_id)
        if on_started is not None:
            announce = functools.partial(on_started, running, url)
        config = uvicorn.Config(running.app(), host=settings.host, port=port, log_level="warning")
        settle_heap()
        Server(config).run(sockets=[sock])
