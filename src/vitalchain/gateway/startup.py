"""What a gateway makes sure of before it starts: its data directory is its own and belongs
to the chain it is about to use, and its HTTP port is free.

Why each check exists:

- **One gateway per data directory** (:class:`DataDirLock`).  Two gateways on one directory
  would interleave two writers on one journal and two sealers on one Merkle log.  The lock is
  ``flock`` on ``DATA_DIR/gateway.lock``, taken before any store is opened and held for the
  gateway's lifetime; the kernel drops it when the process ends, however it ends (kill -9
  included), so a stale lock never blocks a restart.  The file itself is left in place:
  deleting a lock file while another process waits on it would let two holders in.
- **One chain per data directory** (:func:`check_chain`).  The blocks and anchors in a data
  directory refer to one chain's contracts and anchored roots.  Started against a reset or
  another chain, a gateway would silently re-anchor old blocks there, and ``verify`` would
  fail for every old block.  The first start records the chain ID, the genesis block hash (a
  restarted dev node keeps its chain ID and, with the same deployer, even its contract
  addresses, but not its genesis block) and the contract addresses in ``DATA_DIR/chain.json``;
  every later start compares and refuses a difference with ``chain_mismatch``.  The embedded
  chain lives in the gateway's process, so every start is a new chain: its data directory is
  good for one run, unless started afresh.
- **Starting afresh** (:func:`reset_data_dir`) moves the old data aside to
  ``DATA_DIR/.old-<UTC timestamp>/`` rather than deleting it: nothing is lost silently.
- **The HTTP port** (:func:`listen_socket`) is bound before the chain is touched, so a busy
  port is reported before contracts are deployed, and the socket is handed to the HTTP server
  so nothing can take the port in between.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitalchain.errors import VitalchainError
from vitalchain.store.files import write_private

if TYPE_CHECKING:
    from vitalchain.ledger import Ledger

__all__ = [
    "CHAIN_RECORD",
    "KEPT_ON_RESET",
    "LOCK_FILE",
    "ChainRecord",
    "DataDirLock",
    "StartupError",
    "check_chain",
    "listen_socket",
    "reset_data_dir",
]

log = logging.getLogger(__name__)

LOCK_FILE = "gateway.lock"
CHAIN_RECORD = "chain.json"
# Kept in place by a reset: the gateway's identity (its key) and the contracts to use
# (written by `chain start` / `chain deploy`, or by the gateway's own first deployment).
KEPT_ON_RESET = frozenset({LOCK_FILE, "master.key", "deployment.json"})
OLD_PREFIX = ".old-"


class StartupError(VitalchainError):
    """The gateway refuses to start; ``code`` says why (``data_dir_locked``,
    ``chain_mismatch``, ``port_in_use``, ...)."""

    code = "startup_failed"


# -- the lock --------------------------------------------------------------------------------------


class DataDirLock:
    """An exclusive ``flock`` on ``DATA_DIR/gateway.lock``, held until :meth:`release`.

    ``flock`` locks belong to an open file description, so a second acquisition is refused
    within one process too (two ``running_gateway`` on one directory in a test).
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Create ``data_dir`` (0700) if needed and lock it; refuse with ``data_dir_locked``."""
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = data_dir / LOCK_FILE
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StartupError(
                f"cannot use {data_dir} as the data directory: {exc.strerror or exc}",
                code="data_dir_unusable",
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StartupError(
                    f"cannot lock {path}: {exc.strerror or exc}", code="data_dir_unusable"
                ) from None
            by = f" (process {holder})" if holder else ""
            raise StartupError(
                f"another gateway is running on {data_dir}{by}: one data directory serves one "
                "gateway; stop it or choose another data directory",
                code="data_dir_locked",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        """Unlock (idempotent).  The file stays: see the module docstring."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or "0") or None
    except (OSError, ValueError):
        return None


# -- the chain a data directory belongs to ---------------------------------------------------------


@dataclass(frozen=True)
class ChainRecord:
    """Which chain and deployment a data directory's blocks and anchors belong to."""

    chain_id: int
    genesis_hash: str
    addresses: dict[str, str]
    embedded: bool

    @classmethod
    def of(cls, ledger: Ledger) -> ChainRecord:
        from vitalchain.ledger.backends import EmbeddedBackend

        genesis = ledger.w3.eth.get_block(0)
        return cls(
            chain_id=int(ledger.chain_id),
            genesis_hash="0x" + bytes(genesis["hash"]).hex(),
            addresses=dict(ledger.deployment.addresses),
            embedded=isinstance(ledger.backend, EmbeddedBackend),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "type": "vitalchain-chain-record",
            "chain_id": self.chain_id,
            "genesis_hash": self.genesis_hash,
            "addresses": self.addresses,
            "embedded": self.embedded,
        }

    @classmethod
    def from_json(cls, data: Any) -> ChainRecord:
        if not isinstance(data, dict) or data.get("type") != "vitalchain-chain-record":
            raise ValueError("not a chain record")
        if data.get("v") != 1:
            raise ValueError(f"chain record version {data.get('v')!r} is not 1")
        return cls(
            int(data["chain_id"]),
            str(data["genesis_hash"]),
            {str(k): str(v) for k, v in dict(data["addresses"]).items()},
            bool(data["embedded"]),
        )

    def difference(self, other: ChainRecord) -> str | None:
        """What differs between the recorded chain (self) and ``other``, or None."""
        if self.chain_id != other.chain_id:
            return f"chain ID {self.chain_id}, not {other.chain_id}"
        if self.genesis_hash != other.genesis_hash:
            return (
                f"genesis block {self.genesis_hash[:10]}…, not {other.genesis_hash[:10]}… "
                "(the chain was reset or is another chain)"
            )
        if {k.lower(): v.lower() for k, v in self.addresses.items()} != {
            k.lower(): v.lower() for k, v in other.addresses.items()
        }:
            return "other contract addresses (the contracts were deployed again)"
        return None


def check_chain(data_dir: Path, ledger: Ledger) -> ChainRecord:
    """Record the chain on first use of ``data_dir``; refuse another chain with
    ``chain_mismatch``.  Returns the chain's record."""
    now = ChainRecord.of(ledger)
    path = data_dir / CHAIN_RECORD
    try:
        text = path.read_text()
    except FileNotFoundError:
        _write_private_json(path, now.to_json())
        return now
    except OSError as exc:
        raise StartupError(
            f"cannot read {path}: {exc.strerror or exc}", code="bad_chain_record"
        ) from None
    try:
        recorded = ChainRecord.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise StartupError(
            f"{path} is not a vitalchain chain record ({exc}); start with --reset-data to "
            "move the data aside",
            code="bad_chain_record",
        ) from None
    why = recorded.difference(now)
    if why is not None:
        embedded = (
            " The embedded chain is new on every start: use a node that persists (--rpc-url) "
            "to keep data across runs."
            if recorded.embedded or now.embedded
            else ""
        )
        raise StartupError(
            f"{data_dir} holds the data of another chain (it was recorded on {why}); "
            f"--reset-data moves that data aside and starts afresh.{embedded}",
            code="chain_mismatch",
        )
    return recorded


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def reset_data_dir(data_dir: Path, *, now: datetime | None = None) -> Path | None:
    """Move everything in ``data_dir`` but :data:`KEPT_ON_RESET` and earlier ``.old-*``
    folders into a new ``data_dir/.old-<UTC timestamp>/`` (0700); the folder, or None when
    there was nothing to move.  Call with the data directory's lock held."""
    entries = sorted(
        p
        for p in data_dir.iterdir()
        if p.name not in KEPT_ON_RESET and not p.name.startswith(OLD_PREFIX)
    )
    if not entries:
        return None
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = data_dir / f"{OLD_PREFIX}{stamp}"
    n = 1
    while target.exists():
        target = data_dir / f"{OLD_PREFIX}{stamp}-{n}"
        n += 1
    target.mkdir(mode=0o700)
    for entry in entries:
        entry.rename(target / entry.name)  # same file system: atomic, nothing copied
    log.warning("moved the old data of %s aside to %s", data_dir, target)
    return target


# -- the HTTP port ---------------------------------------------------------------------------------


def listen_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound TCP socket on ``host:port`` for the HTTP server (SO_REUSEADDR, as uvicorn sets
    it, so a port in TIME_WAIT after a previous run counts as free); refuse with
    ``port_in_use``, ``port_forbidden`` or ``bad_host``.  ``reuse_port``: SO_REUSEPORT too,
    for the ingest workers' telemetry port (see :func:`telemetry_socket`)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        raise StartupError(
            f"cannot listen on {host!r}: not an address of this machine ({exc})", code="bad_host"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        where = f"{host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(
                f"{where} is in use (another gateway?); choose another port", code="port_in_use"
            ) from None
        if exc.errno == errno.EACCES:
            raise StartupError(
                f"no permission to listen on {where} (ports below 1024 need privileges)",
                code="port_forbidden",
            ) from None
        raise StartupError(
            f"cannot listen on {where}: {exc.strerror or exc}", code="bad_host"
        ) from None
    sock.set_inheritable(False)
    return sock


TELEMETRY_PORT_FILE = "telemetry.port"


def telemetry_socket(data_dir: Path, host: str, port: int | None) -> socket.socket:
    """The ingest workers' telemetry port held for them: bound with SO_REUSEPORT, never
    listening (the kernel hands connections to listening sockets only, the workers').

    Why the plain bind first: any socket of this user with SO_REUSEPORT may join a port whose
    sockets all have it, so a second gateway given the same port would silently take half of
    this one's telemetry; a plain bind fails on a port anyone holds (``port_in_use``), and the
    held socket keeps failing it for the others while this node runs.  ``port`` None: one
    picked once per data directory and kept in ``<data_dir>/telemetry.port``, so devices told
    the URL at onboarding find it again after a restart."""
    record = data_dir / TELEMETRY_PORT_FILE
    if port is None:
        try:
            port = int(record.read_text().strip())
        except (OSError, ValueError):
            probe = listen_socket(host, 0)
            port = int(probe.getsockname()[1])
            probe.close()
            write_private(record, f"{port}\n".encode())
    listen_socket(host, port).close()  # refused if anyone holds it
    return listen_socket(host, port, reuse_port=True)
