"""The MQTT broker side of the gateway: topics, a managed mosquitto, and dynsec administration.

Devices publish telemetry to a mosquitto broker and the gateway subscribes (docs/spec/mqtt.md).
The broker's dynamic-security plugin stops a device from publishing as another: every client
gets one role that grants exactly its own topics, and the default policy denies the rest. The
gateway manages those roles over MQTT (``$CONTROL/dynamic-security/v1``) as the dynsec admin, so
a broker run by someone else is managed exactly like the one :class:`Mosquitto` starts here.

Findings about mosquitto 2.0.11 that shaped this module:

- ``deleteClient``, ``setClientPassword``, ``modifyClient`` and ``addClientRole`` disconnect
  the client's live connections (MQTT v5 reason 0x98 "administrative action").
- Deleting a role while a client still holds it corrupts the plugin's state: ``getClient``
  then says "Internal error" and a later command can crash the broker
  (eclipse-mosquitto/mosquitto#2660). We always delete the client first.
- Any username without a bound client id may connect with another client's id and so kick it
  off (session takeover). Every client we create is bound to ``client id == username``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from vitalchain.crypto import is_checksum_address
from vitalchain.errors import VitalchainError
from vitalchain.logs import pseudonym

__all__ = [
    "MAX_PACKET_SIZE",
    "MESSAGE_SIZE_LIMIT",
    "TOPIC_PREFIX",
    "BrokerAdmin",
    "BrokerEndpoint",
    "BrokerError",
    "BrokerStatus",
    "DeviceCredentials",
    "Mosquitto",
    "ack_topic",
    "find_dynsec_plugin",
    "find_mosquitto",
    "parse_telemetry_topic",
    "telemetry_topic",
]

log = logging.getLogger(__name__)

TOPIC_PREFIX: Final = "vitalchain/v1"
CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = "$CONTROL/dynamic-security/v1/response"
ADMIN_USERNAME: Final = "vitalchain-admin"
MESSAGE_SIZE_LIMIT: Final = 64 * 1024  # the data message limit of docs/spec/telemetry.md
# A whole MQTT packet: the 64 KiB payload plus room for the fixed header, topic and properties.
MAX_PACKET_SIZE: Final = MESSAGE_SIZE_LIMIT + 1024

# Publish and subscribe only where a role grants it; receiving needs a grant too, so a
# subscription that slipped through still delivers nothing. Unsubscribing is harmless.
_DEFAULT_ACL_ACCESS: Final[dict[str, bool]] = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}


_GROUP_RE: Final = re.compile(r"0|[1-9][0-9]*")  # canonical decimal, so topics round-trip
_RUNNING_RE: Final = re.compile(r"mosquitto version \S+ running")  # logged once listening


class BrokerError(VitalchainError):
    """The broker refused, failed or did not answer; the message never contains a secret."""

    code = "broker_error"


# --- topics ------------------------------------------------------------------------------------


def _check_group(group_id: int) -> None:
    if isinstance(group_id, bool) or not isinstance(group_id, int) or group_id < 0:
        raise ValueError(f"group id must be a non-negative int, not {group_id!r}")


def _check_device(device: str) -> None:
    # ACL topics and dynsec usernames are case-sensitive: one spelling per device, EIP-55.
    if not isinstance(device, str) or not _is_checksummed(device):
        raise ValueError(f"device must be an EIP-55 checksummed address, not {device!r}")


@functools.lru_cache(maxsize=65536)
def _is_checksummed(device: str) -> bool:
    """Cached: every telemetry topic is checked, and a keccak per message adds up."""
    return is_checksum_address(device)


def telemetry_topic(group_id: int, device: str) -> str:
    """The only topic ``device`` may publish to."""
    _check_group(group_id)
    _check_device(device)
    return f"{TOPIC_PREFIX}/{group_id}/{device}/telemetry"


def ack_topic(group_id: int, device: str) -> str:
    """Where the group's gateway answers ``device``; only that device may read it."""
    _check_group(group_id)
    _check_device(device)
    return f"{TOPIC_PREFIX}/{group_id}/{device}/ack"


def parse_telemetry_topic(topic: str) -> tuple[int, str]:
    """``(group_id, device)`` of a telemetry topic; ValueError for anything else."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_PREFIX or parts[4] != "telemetry":
        raise ValueError(f"not a telemetry topic: {topic!r}")
    group, device = parts[2], parts[3]
    if not _GROUP_RE.fullmatch(group):
        raise ValueError(f"not a telemetry topic (group): {topic!r}")
    try:
        _check_device(device)
    except ValueError:
        raise ValueError(f"not a telemetry topic (device): {topic!r}") from None
    return int(group), device


def _gateway_role(group_id: int) -> str:
    return f"gateway-{group_id}"


def _device_role(device: str) -> str:
    return f"device-{device}"


# --- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerEndpoint:
    host: str
    port: int


@dataclass(frozen=True)
class DeviceCredentials:
    """What a device needs to reach the broker; handed over inside the encrypted onboarding."""

    username: str
    password: str = field(repr=False)
    telemetry_topic: str
    ack_topic: str

    @property
    def client_id(self) -> str:
        """The broker accepts this username only with this MQTT client id."""
        return self.username


# --- a managed mosquitto -----------------------------------------------------------------------


def find_mosquitto() -> Path | None:
    """Debian's /usr/sbin/mosquitto (sbin is often not on a user's PATH), else PATH."""
    debian = Path("/usr/sbin/mosquitto")
    if debian.is_file() and os.access(debian, os.X_OK):
        return debian
    found = shutil.which("mosquitto")
    return Path(found) if found else None


def find_dynsec_plugin() -> Path | None:
    """mosquitto_dynamic_security.so in the usual Debian, multiarch and /usr/local places."""
    candidates = [
        *sorted(Path("/usr/lib").glob("*/mosquitto_dynamic_security.so")),
        Path("/usr/lib/mosquitto_dynamic_security.so"),
        Path("/usr/local/lib/mosquitto_dynamic_security.so"),
    ]
    return next((p for p in candidates if p.is_file()), None)


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PR_SET_PDEATHSIG: Final = 1  # <linux/prctl.h>
# The signal a managed broker gets when the thread that started it dies, whatever killed it
# (SIGTERM to the gateway, kill -9, a crash). SIGTERM, not SIGKILL: mosquitto then writes its
# persistence file (queued telemetry, the gateway's session) before it exits.
DEATH_SIGNAL: Final = signal.SIGTERM


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to send :data:`DEATH_SIGNAL` to the child when its
    parent thread dies; ``None`` where there is no prctl (the broker then only stops on a
    clean exit).

    prctl is looked up here, in the parent, so that the child runs one foreign call and a
    getppid between fork and exec: nothing that could wait for a lock another thread held.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    death_signal = int(DEATH_SIGNAL)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(0)

    return preexec


@dataclass(frozen=True)
class BrokerStatus:
    """What the gateway knows about its managed broker, without asking it anything.

    Read from the supervisor's own bookkeeping, so a health check never blocks on the broker.
    Times come from the broker's injected clock (wall-clock seconds by default).
    """

    state: Literal["up", "down", "stopped"]
    port: int
    pid: int | None
    started_at: float | None  # when the current process came up
    last_ok: float | None  # when the supervisor last saw it running
    restarts: int  # restarts after a crash, since start()
    last_error: str | None  # why the broker is down or last failed to restart

    @property
    def up(self) -> bool:
        return self.state == "up"


class Mosquitto:
    """A managed, supervised mosquitto with the dynamic-security plugin, for dev, demo, tests.

    Loopback only, no anonymous access.  Everything lives in ``data_dir`` (0700) and survives a
    restart: the dynsec config (one admin with a random password, default deny, and every
    client the gateway adds), the listener port (chosen once, kept in ``port``, so devices
    enrolled before a restart still find the broker), and the persistence file (sessions and
    the QoS 1 telemetry queued for an offline gateway).

    The broker never outlives its gateway: it is started from a supervisor thread with
    PR_SET_PDEATHSIG, so it gets SIGTERM when that thread dies, on a clean stop, on SIGTERM to
    the gateway and on kill -9 alike; it runs in its own process group, so a terminal's Ctrl-C
    reaches the gateway, which then stops the broker in order.  The supervisor restarts a
    broker that died (same port, config and persistence) and reports it in :meth:`status`.
    """

    START_TIMEOUT: Final = 10.0
    CHECK_INTERVAL: Final = 0.1  # how often the supervisor looks at the process
    RESTART_DELAY: Final = (0.1, 5.0)  # first and largest wait between failed restarts
    AUTOSAVE_INTERVAL_S: Final = 10  # persistence file writes, besides the one at shutdown

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        clock: Callable[[], float] = time.time,
        port_busy_grace_s: float = 5.0,
    ) -> None:
        """``port`` overrides the kept one; ``port_busy_grace_s`` is how long a start waits
        for a port given or kept to be let go (a previous broker may still be exiting)."""
        self.data_dir = Path(data_dir)
        self._clock = clock
        self._port_busy_grace_s = port_busy_grace_s
        kept = None if port else self._kept_port()
        # A port given or kept is the devices' port: never silently move it.
        self._stable_port = bool(port or kept)
        self.endpoint = BrokerEndpoint("127.0.0.1", port or kept or _free_port())
        self._admin: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started_at: float | None = None
        self._last_ok: float | None = None
        self._restarts = 0
        self._last_error: str | None = None

    @property
    def admin(self) -> tuple[str, str]:
        """``(username, password)`` of the dynsec admin; exists once :meth:`start` ran."""
        if self._admin is None:
            raise BrokerError("mosquitto has not been started", code="broker_not_started")
        return self._admin

    @property
    def conf_path(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    @property
    def dynsec_path(self) -> Path:
        return self.data_dir / "dynamic-security.json"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "mosquitto.log"

    @property
    def port_path(self) -> Path:
        return self.data_dir / "port"

    @property
    def persistence_dir(self) -> Path:
        return self.data_dir / "persistence"

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def status(self) -> BrokerStatus:
        """Up, down (crashed, being restarted) or stopped; never blocks on the broker."""
        with self._lock:
            running = self._thread is not None and not self._stopping.is_set()
            alive = self._proc is not None and self._proc.poll() is None
            state: Literal["up", "down", "stopped"] = (
                "stopped" if not running else "up" if alive else "down"
            )
            return BrokerStatus(
                state=state,
                port=self.endpoint.port,
                pid=self._proc.pid if alive and self._proc is not None else None,
                started_at=self._started_at,
                last_ok=self._last_ok,
                restarts=self._restarts,
                last_error=self._last_error,
            )

    def start(self) -> None:
        """Start the broker and its supervisor; returns once it listens, or raises."""
        with self._lock:
            if self._thread is not None:
                raise BrokerError("mosquitto is already running", code="broker_running")
        binary, ctrl, plugin = self._tools()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self.persistence_dir.mkdir(exist_ok=True)
        self.persistence_dir.chmod(0o700)
        password = self._admin_password(ctrl)
        self._stopping.clear()
        with self._lock:
            self._restarts, self._last_error = 0, None
        started = threading.Event()
        failure: list[BaseException] = []
        thread = threading.Thread(
            target=self._supervise,
            args=(binary, plugin, started, failure),
            name=f"mosquitto-{self.endpoint.port}",
            daemon=True,
        )
        thread.start()
        started.wait()  # the first spawn is bounded by START_TIMEOUT and the port grace
        if failure:
            thread.join()
            raise failure[0]
        with self._lock:
            self._thread = thread
        self._keep_port()
        self._admin = (ADMIN_USERNAME, password)

    def stop(self) -> None:
        """Stop the supervisor and, from its thread, the broker (SIGTERM, then SIGKILL)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the supervisor thread: it alone spawns and stops the process, so the process's
    # -- PR_SET_PDEATHSIG is bound to a thread that lives exactly as long as the broker should.

    def _supervise(
        self,
        binary: Path,
        plugin: Path,
        started: threading.Event,
        failure: list[BaseException],
    ) -> None:
        try:
            self._first_spawn(binary, plugin)
        except BaseException as exc:  # handed to start(), which raises it
            failure.append(exc)
            return
        finally:
            started.set()
        try:
            while not self._stopping.wait(self.CHECK_INTERVAL):
                with self._lock:
                    proc = self._proc
                code = proc.poll() if proc is not None else -1
                if code is None:
                    self._last_ok = self._clock()
                else:
                    self._restart(binary, plugin, code)
        finally:
            self._terminate()

    def _first_spawn(self, binary: Path, plugin: Path) -> None:
        # A port picked by us can be taken between picking and binding: pick again, twice.
        # A kept port is the devices' port: wait a little for a previous broker to let go.
        attempts = 3
        deadline = time.monotonic() + self._port_busy_grace_s
        while True:
            self._write_conf(plugin)
            try:
                self._spawn(binary)
            except BrokerError:
                if "Address already in use" not in self._log_tail():
                    raise
                if self._stable_port:
                    if time.monotonic() > deadline:
                        raise BrokerError(
                            f"the MQTT port {self.endpoint.port} is in use by another process "
                            "(Address already in use); the gateway's devices were given this "
                            "port: free it, or set another with mqtt_port",
                            code="broker_start_failed",
                        ) from None
                    time.sleep(0.2)
                    continue
                attempts -= 1
                if attempts == 0:
                    raise
                self.endpoint = BrokerEndpoint("127.0.0.1", _free_port())
            else:
                return

    def _restart(self, binary: Path, plugin: Path, code: int) -> None:
        """Bring a dead broker back on the same port, config and persistence, with backoff."""
        why = f"mosquitto exited with code {code}"
        with self._lock:
            self._last_error = why
        log.warning("broker: %s; restarting it on port %d", why, self.endpoint.port)
        delay, longest = self.RESTART_DELAY
        while not self._stopping.is_set():
            with contextlib.suppress(OSError):  # keep the dead broker's log for a post-mortem
                self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
            try:
                self._write_conf(plugin)
                self._spawn(binary)
            except (BrokerError, OSError) as exc:
                if self._last_error == why:  # say it once per outage, not once per attempt
                    log.warning("broker: restart failed, retrying: %s", exc)
                with self._lock:
                    self._last_error = str(exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, longest)
            else:
                with self._lock:
                    self._restarts += 1
                    self._last_error = None
                log.info("broker: mosquitto is back on port %d", self.endpoint.port)
                return

    def _terminate(self) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # mosquitto saves its persistence file on SIGTERM
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    # -- files --

    def _kept_port(self) -> int | None:
        """The port of an earlier start, from ``data_dir/port``; None on the first start."""
        try:
            text = self.port_path.read_text().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise BrokerError(
                f"{self.port_path} does not hold a port number; the devices' MQTT port is"
                " unknown (delete the file to pick a new one, or set mqtt_port)",
                code="broker_start_failed",
            )
        return int(text)

    def _keep_port(self) -> None:
        """Write the port once it listens, so every later start binds the same one."""
        if self.port_path.exists() and self._kept_port() == self.endpoint.port:
            return
        tmp = self.port_path.with_name("port.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{self.endpoint.port}\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.port_path)

    def _tools(self) -> tuple[Path, Path, Path]:
        binary = find_mosquitto()
        if binary is None:
            raise BrokerError("mosquitto not found (apt install mosquitto)", code="broker_missing")
        ctrl_found = shutil.which("mosquitto_ctrl") or shutil.which(
            "mosquitto_ctrl", path=str(binary.parent.parent / "bin")
        )
        if ctrl_found is None:
            raise BrokerError(
                "mosquitto_ctrl not found (apt install mosquitto-clients)", code="broker_missing"
            )
        plugin = find_dynsec_plugin()
        if plugin is None:
            raise BrokerError("mosquitto_dynamic_security.so not found", code="broker_missing")
        return binary, Path(ctrl_found), plugin

    @property
    def _secret_path(self) -> Path:
        return self.data_dir / "admin.secret"

    def _admin_password(self, ctrl: Path) -> str:
        """Keep the dynsec config across restarts, as a real broker does: clients made by
        the gateway (devices' credentials) must survive a restart of gateway and broker."""
        if self.dynsec_path.exists() and self._secret_path.exists():
            return self._secret_path.read_text().strip()
        password = secrets.token_urlsafe(24)
        self._init_dynsec(ctrl, password)
        fd = os.open(self._secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        return password

    def _init_dynsec(self, ctrl: Path, password: str) -> None:
        """``mosquitto_ctrl dynsec init``, password on stdin (never in argv), then default deny."""
        self.dynsec_path.unlink(missing_ok=True)
        done = subprocess.run(  # noqa: S603 - fixed arguments, no shell
            [str(ctrl), "dynsec", "init", str(self.dynsec_path), ADMIN_USERNAME],
            input=f"{password}\n{password}\n".encode(),
            capture_output=True,
            timeout=10,
            check=False,
        )
        if done.returncode != 0 or not self.dynsec_path.exists():
            raise BrokerError(
                f"mosquitto_ctrl dynsec init failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace').strip()}",
                code="broker_start_failed",
            )
        config = json.loads(self.dynsec_path.read_text())
        # init leaves publishClientReceive open; receiving needs a grant too (docs/spec/mqtt.md).
        config["defaultACLAccess"] = _DEFAULT_ACL_ACCESS
        self.dynsec_path.write_text(json.dumps(config, indent=1))
        self.dynsec_path.chmod(0o600)  # password hashes

    def _write_conf(self, plugin: Path) -> None:
        # Run as whoever we are: as root, mosquitto would otherwise switch to the `mosquitto`
        # user and could not write the dynsec file in a private temp dir.
        user = pwd.getpwuid(os.geteuid()).pw_name
        text = (
            "# written by vitalchain.gateway.broker on every start; edits are lost\n"
            "per_listener_settings false\n"
            "allow_anonymous false\n"
            f"listener {self.endpoint.port} {self.endpoint.host}\n"
            # Sessions and queued QoS 1 telemetry survive a broker restart: saved every
            # AUTOSAVE_INTERVAL_S and at shutdown (the death signal is SIGTERM for that).
            "persistence true\n"
            f"persistence_location {self.persistence_dir}/\n"
            "persistence_file mosquitto.db\n"
            f"autosave_interval {self.AUTOSAVE_INTERVAL_S}\n"
            "retain_available false\n"
            f"max_packet_size {MAX_PACKET_SIZE}\n"
            # Nagle plus delayed ACKs would hold every small publish ~40 ms.
            "set_tcp_nodelay true\n"
            # The gateway's one session carries every device of the group, and holds what they
            # send while the gateway restarts: let its queue and in-flight window grow past the
            # defaults (1000 and 20), or bursts and outages are dropped.
            "max_queued_messages 100000\n"
            "max_inflight_messages 1000\n"
            f"user {user}\n"
            f"plugin {plugin}\n"
            f"plugin_opt_config_file {self.dynsec_path}\n"
            "log_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
        )
        fd = os.open(self.conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def _spawn(self, binary: Path) -> None:
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as log_file:
            proc = subprocess.Popen(  # noqa: S603 - our binary, fixed arguments
                [str(binary), "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                process_group=0,
                preexec_fn=_die_with_parent(),  # one prctl and a getppid, see there
            )
        deadline = time.monotonic() + self.START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"mosquitto exited with code {proc.returncode}: {self._log_tail()}",
                    code="broker_start_failed",
                )
            # The port alone could be another process's: wait for our broker to say it runs.
            if _RUNNING_RE.search(self._log_tail()) and self._accepts():
                now = self._clock()
                with self._lock:
                    self._proc = proc
                    self._started_at = self._last_ok = now
                return
            time.sleep(0.01)
        proc.kill()
        proc.wait()
        raise BrokerError(
            f"mosquitto not listening on {self.endpoint.host}:{self.endpoint.port} after "
            f"{self.START_TIMEOUT}s: {self._log_tail()}",
            code="broker_start_failed",
        )

    def _accepts(self) -> bool:
        with contextlib.closing(socket.socket()) as s:
            return s.connect_ex((self.endpoint.host, self.endpoint.port)) == 0

    def _log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:].strip()
        except OSError:
            return ""


# --- dynsec administration ---------------------------------------------------------------------


def _acl(acltype: str, topic: str) -> dict[str, object]:
    return {"acltype": acltype, "topic": topic, "allow": True}


@dataclass
class _Pending:
    size: int
    responses: dict[int, dict[str, Any]] = field(default_factory=dict)


class BrokerAdmin:
    """Manages credentials and ACLs through $CONTROL/dynamic-security/v1 as the dynsec admin.

    Commands go as one JSON batch per call; each carries ``correlationData`` so responses are
    matched even when several admins share the broadcast response topic.
    """

    def __init__(
        self, endpoint: BrokerEndpoint, username: str, password: str, timeout: float = 10
    ) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._username = username
        self._cond = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._failed_pubacks: dict[int, ReasonCode] = {}
        self._ready = False
        self._refused: str | None = None
        self._sub_mid: int | None = None
        self._policy_set = False
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"vitalchain-admin-{secrets.token_hex(6)}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        # After a broker restart, be back within seconds (paho's default grows to 2 min).
        self._client.reconnect_delay_set(1, 10)
        try:
            self._client.connect(endpoint.host, endpoint.port, keepalive=30)
        except OSError as e:
            raise BrokerError(
                f"cannot reach the broker at {endpoint.host}:{endpoint.port}: {e}",
                code="broker_unavailable",
            ) from e
        self._client.loop_start()
        with self._cond:
            ok = self._cond.wait_for(lambda: self._ready or self._refused is not None, timeout)
            refused = self._refused
        if not ok or refused is not None:
            self.close()
            raise BrokerError(
                f"dynsec admin could not connect: {refused or f'no answer within {timeout}s'}",
                code="broker_unavailable",
            )

    # -- public operations --

    def ensure_gateway(self, group_id: int, username: str, password: str) -> None:
        """Create or update the gateway client of ``group_id``; idempotent.

        Updating an existing client resets its password and so disconnects a live session of
        it: call this before the gateway connects.
        """
        _check_group(group_id)
        if not username or not password:
            raise ValueError("gateway username and password must be non-empty")
        if username == self._username:
            raise ValueError("a gateway cannot use the dynsec admin's username")
        self._ensure_policy()
        role = _gateway_role(group_id)
        telemetry = f"{TOPIC_PREFIX}/{group_id}/+/telemetry"
        acls = [
            _acl("subscribePattern", telemetry),
            _acl("publishClientReceive", telemetry),
            _acl("publishClientSend", f"{TOPIC_PREFIX}/{group_id}/+/ack"),
            _acl("publishClientSend", f"{TOPIC_PREFIX}/{group_id}/alerts/+"),
        ]
        client = {
            "username": username,
            "password": password,
            "clientid": username,
            "roles": [{"rolename": role}],
        }
        created = self._run(
            [
                {"command": "createRole", "rolename": role, "acls": acls},
                {"command": "modifyRole", "rolename": role, "acls": acls},
                {"command": "createClient", **client},
            ],
            tolerate=[{"Role already exists"}, set(), {"Client already exists"}],
        )
        if created[2].get("error") == "Client already exists":
            self._run([{"command": "modifyClient", **client}])
        log.info("broker: gateway client %s ready for group %d", username, group_id)

    def add_device(self, group_id: int, device: str) -> DeviceCredentials:
        """(Re)create ``device``'s client with a fresh password; an old session is cut off."""
        creds = DeviceCredentials(
            username=device,
            password=secrets.token_urlsafe(24),
            telemetry_topic=telemetry_topic(group_id, device),
            ack_topic=ack_topic(group_id, device),
        )
        self._ensure_policy()
        role = _device_role(device)
        acls = [
            _acl("publishClientSend", creds.telemetry_topic),
            _acl("subscribeLiteral", creds.ack_topic),
            _acl("publishClientReceive", creds.ack_topic),
        ]
        # Client before role, always: deleting a role still held crashes 2.0.11 (#2660).
        self._run(
            [
                {"command": "deleteClient", "username": device},
                {"command": "deleteRole", "rolename": role},
                {"command": "createRole", "rolename": role, "acls": acls},
                {
                    "command": "createClient",
                    "username": device,
                    "password": creds.password,
                    "clientid": creds.client_id,
                    "roles": [{"rolename": role}],
                },
            ],
            tolerate=[{"Client not found"}, {"Role not found"}, set(), set()],
        )
        log.info("broker: device %s may publish to its telemetry topic", pseudonym(device))
        return creds

    def add_alert_subscriber(self, group_id: int, address: str) -> DeviceCredentials:
        """(Re)create a client for a patient or provider that may only read its own alerts."""
        _check_group(group_id)
        _check_device(address)
        topic = f"{TOPIC_PREFIX}/{group_id}/alerts/{address}"
        username = f"alerts-{group_id}-{address}"
        creds = DeviceCredentials(username, secrets.token_urlsafe(24), topic, topic)
        self._ensure_policy()
        role = f"alerts-{group_id}-{address}"
        acls = [_acl("subscribeLiteral", topic), _acl("publishClientReceive", topic)]
        self._run(
            [
                {"command": "deleteClient", "username": username},
                {"command": "deleteRole", "rolename": role},
                {"command": "createRole", "rolename": role, "acls": acls},
                {
                    "command": "createClient",
                    "username": username,
                    "password": creds.password,
                    "clientid": username,
                    "roles": [{"rolename": role}],
                },
            ],
            tolerate=[{"Client not found"}, {"Role not found"}, set(), set()],
        )
        return creds

    def remove_device(self, device: str) -> None:
        """Delete ``device``'s client and role; the broker disconnects a live session at once.

        Idempotent: removing an unknown device is not an error.
        """
        _check_device(device)
        self._run(
            [
                {"command": "deleteClient", "username": device},
                {"command": "deleteRole", "rolename": _device_role(device)},
            ],
            tolerate=[{"Client not found"}, {"Role not found"}],
        )
        log.info("broker: device %s removed", pseudonym(device))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- commands --

    def _ensure_policy(self) -> None:
        """Default deny, set over MQTT so a broker we did not start ends up the same."""
        if self._policy_set:
            return
        acls = [{"acltype": k, "allow": v} for k, v in _DEFAULT_ACL_ACCESS.items()]
        self._run([{"command": "setDefaultACLAccess", "acls": acls}])
        self._policy_set = True

    def _run(
        self,
        commands: Sequence[Mapping[str, object]],
        tolerate: Sequence[set[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Send one batch, wait for every response, raise on an error not tolerated."""
        request = secrets.token_hex(8)
        batch = [{**c, "correlationData": f"{request}:{i}"} for i, c in enumerate(commands)]
        pending = _Pending(size=len(batch))
        with self._cond:
            if not self._ready:
                raise BrokerError("dynsec admin is not connected", code="broker_unavailable")
            self._pending[request] = pending
        try:
            # Never publish under our lock: paho calls on_publish holding its own.
            info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": batch}), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                raise BrokerError(
                    f"could not send dynsec command: {mqtt.error_string(info.rc)}",
                    code="broker_unavailable",
                )
            with self._cond:
                ok = self._cond.wait_for(
                    lambda: (
                        len(pending.responses) == pending.size
                        or info.mid in self._failed_pubacks
                        or not self._ready
                    ),
                    self.timeout,
                )
                refused = self._failed_pubacks.pop(info.mid, None)
                ready = self._ready
        finally:
            with self._cond:
                self._pending.pop(request, None)
        names = ", ".join(str(c["command"]) for c in commands)
        if refused is not None:
            raise BrokerError(f"broker refused dynsec command ({names}): {refused}")
        if not ok or len(pending.responses) != pending.size:
            why = "lost the connection" if not ready else f"no response within {self.timeout}s"
            raise BrokerError(f"dynsec {why} ({names})", code="broker_unavailable")
        responses = [pending.responses[i] for i in range(pending.size)]
        allowed = tolerate or [set() for _ in commands]
        for response, ok_errors in zip(responses, allowed, strict=True):
            error = response.get("error")
            if error is not None and error not in ok_errors:
                raise BrokerError(f"dynsec {response.get('command')}: {error}")
        return responses

    # -- paho callbacks (network thread) --

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            with self._cond:
                self._refused = str(reason)
                self._cond.notify_all()
            client.disconnect()  # stop paho retrying with credentials that do not work
            return
        result, mid = client.subscribe(RESPONSE_TOPIC, qos=1)
        with self._cond:
            self._sub_mid = mid if result == mqtt.MQTT_ERR_SUCCESS else None

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._cond:
            if mid != self._sub_mid:
                return
            if any(r.is_failure for r in reasons):
                self._refused = f"subscribe to {RESPONSE_TOPIC}: {reasons[0]}"
            else:
                self._ready = True
            self._cond.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            self._ready = False
            self._cond.notify_all()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            with self._cond:
                self._failed_pubacks[mid] = reason
                self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(message.payload)
            responses = body["responses"]
        except (ValueError, KeyError, TypeError):
            log.warning("broker: ignoring a malformed dynsec response")
            return
        with self._cond:
            for response in responses if isinstance(responses, list) else []:
                if not isinstance(response, dict):
                    continue
                request, _, index = str(response.get("correlationData", "")).partition(":")
                pending = self._pending.get(request)
                if pending is not None and index.isdigit() and int(index) < pending.size:
                    pending.responses[int(index)] = response
            self._cond.notify_all()
