"""A managed, supervised mosquitto with the dynamic-security plugin, for dev, demo and tests.

The supervisor only: it writes the configuration, initialises the dynsec file (one admin,
default deny), keeps the port, starts the broker (on
:class:`~vitalchain.services.process.LocalProcess`) and restarts it when it dies. What the
broker's clients may do (topics, roles, device credentials) is the gateway's business:
:mod:`vitalchain.gateway.dynsec` sets it over MQTT as the admin this module creates, the same
way on a broker someone else runs.

The default-deny policy lives here, not in the gateway, because the managed broker must be
closed from its first start, before any admin has connected; the gateway's admin applies the
same :data:`DEFAULT_ACL_ACCESS` over MQTT so a foreign broker converges to it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from vitalchain.services.ports import LOOPBACK, free_port
from vitalchain.services.process import (
    LocalProcess,
    PortInUse,
    ServiceError,
    StartStop,
    retry_port,
)

__all__ = [
    "ADMIN_USERNAME",
    "DEFAULT_ACL_ACCESS",
    "BrokerEndpoint",
    "BrokerError",
    "BrokerStatus",
    "Mosquitto",
    "find_dynsec_plugin",
    "find_mosquitto",
]

log = logging.getLogger(__name__)

ADMIN_USERNAME: Final = "vitalchain-admin"

# Publish and subscribe only where a role grants it; receiving needs a grant too, so a
# subscription that slipped through still delivers nothing. Unsubscribing is harmless.
DEFAULT_ACL_ACCESS: Final[dict[str, bool]] = {
    "publishClientSend": False,
    "publishClientReceive": False,
    "subscribe": False,
    "unsubscribe": True,
}

_RUNNING_RE: Final = re.compile(r"mosquitto version \S+ running")  # logged once listening

# The signal a managed broker gets when the thread that started it dies, whatever killed it
# (SIGTERM to the gateway, kill -9, a crash). SIGTERM, not SIGKILL: mosquitto then writes its
# persistence file (queued telemetry, the gateway's session) before it exits.
DEATH_SIGNAL: Final = signal.SIGTERM


class BrokerError(ServiceError):
    """The broker refused, failed or did not answer; the message never contains a secret."""

    code = "broker_error"


@dataclass(frozen=True)
class BrokerEndpoint:
    host: str
    port: int


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


class Mosquitto(StartStop):
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
        max_packet_size: int | None = None,
    ) -> None:
        """``port`` overrides the kept one; ``port_busy_grace_s`` is how long a start waits
        for a port given or kept to be let go (a previous broker may still be exiting);
        ``max_packet_size`` is the largest MQTT packet it takes (the gateway passes
        :data:`vitalchain.wire.mqtt.MAX_PACKET_SIZE`; None keeps mosquitto's own limit)."""
        self.data_dir = Path(data_dir)
        self._max_packet_size = max_packet_size
        self._clock = clock
        self._port_busy_grace_s = port_busy_grace_s
        kept = None if port else self._kept_port()
        # A port given or kept is the devices' port: never silently move it.
        self._stable_port = bool(port or kept)
        self.endpoint = BrokerEndpoint(LOOPBACK, port or kept or free_port())
        self._admin: tuple[str, str] | None = None
        self._lock = threading.Lock()
        self._proc: LocalProcess | None = None
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
            alive = (
                self._proc is not None and self._proc.pid is not None and self._proc.poll() is None
            )
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
        def on(port: int) -> None:
            self.endpoint = BrokerEndpoint(LOOPBACK, port)
            self._write_conf(plugin)
            self._spawn(binary)

        try:
            retry_port(
                on, self.endpoint.port, fixed=self._stable_port, grace_s=self._port_busy_grace_s
            )
        except PortInUse as exc:
            if not self._stable_port:
                raise BrokerError(str(exc), code="broker_start_failed") from None
            raise BrokerError(
                f"the MQTT port {self.endpoint.port} is in use by another process "
                "(Address already in use); the gateway's devices were given this "
                "port: free it, or set another with mqtt_port",
                code="broker_start_failed",
            ) from None

    def _restart(self, binary: Path, plugin: Path, code: int) -> None:
        """Bring a dead broker back on the same port, config and persistence, with backoff."""
        why = f"mosquitto exited with code {code}"
        with self._lock:
            self._last_error = why
        log.warning("broker: %s; restarting it on port %d", why, self.endpoint.port)
        delay, longest = self.RESTART_DELAY
        with self._lock:
            dead, self._proc = self._proc, None
        if dead is not None:
            dead.stop()  # reaps it, and anything it left in its group
        while not self._stopping.is_set():
            with contextlib.suppress(OSError):  # keep the dead broker's log for a post-mortem
                self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
            try:
                self._write_conf(plugin)
                self._spawn(binary)
            except (ServiceError, OSError) as exc:
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
        if proc is not None:
            proc.stop()  # SIGTERM: mosquitto saves its persistence file; SIGKILL after 5 s

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
        config["defaultACLAccess"] = DEFAULT_ACL_ACCESS
        self.dynsec_path.write_text(json.dumps(config, indent=1))
        self.dynsec_path.chmod(0o600)  # password hashes

    def _write_conf(self, plugin: Path) -> None:
        # Run as whoever we are: as root, mosquitto would otherwise switch to the `mosquitto`
        # user and could not write the dynsec file in a private temp dir.
        user = pwd.getpwuid(os.geteuid()).pw_name
        packet = f"max_packet_size {self._max_packet_size}\n" if self._max_packet_size else ""
        text = (
            "# written by vitalchain.services.mosquitto on every start; edits are lost\n"
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
            f"{packet}"
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
        """Start mosquitto and return once it runs; the caller keeps it in ``_proc``."""
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as log_file:
            proc = LocalProcess(
                [str(binary), "-c", str(self.conf_path)],
                self.endpoint.port,
                name="mosquitto",
                error=BrokerError,
                code="broker_start_failed",
                host=self.endpoint.host,
                start_timeout=self.START_TIMEOUT,
                stop_timeout=5,
                # The port alone could be another process's: wait for our broker to say it runs.
                ready=lambda: bool(_RUNNING_RE.search(self._log_tail())),
                log_tail=self._log_tail,
                stderr=log_file,
                death_signal=DEATH_SIGNAL,
                # Not SIGKILLed by mirakuru at interpreter exit: the death signal (SIGTERM)
                # comes when the supervisor thread ends, and lets the broker save its queue.
                kill_at_exit=False,
            ).start()
        now = self._clock()
        with self._lock:
            self._proc = proc
            self._started_at = self._last_ok = now

    def _log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:].strip()
        except OSError:
            return ""
