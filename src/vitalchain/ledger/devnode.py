"""Start a local anvil node (npm's @foundry-rs/anvil) on a free 127.0.0.1 port.

Used by the tests, the benchmarks and ``vitalchain chain``.  Loopback only, always.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from vitalchain.ledger.errors import LedgerError

__all__ = ["AnvilProcess", "find_anvil", "free_port", "port_free", "run_anvil", "wait_for_port"]


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``host:port`` now.

    The test bind sets SO_REUSEADDR, as anvil and uvicorn do for their own listeners, so a
    port whose last connections sit in TIME_WAIT (for a minute after a node stops) counts as
    free: only a live listener (or a bound socket without the option) makes it busy.
    """
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LedgerError(f"node exited early with code {proc.returncode}", code="node_failed")
        with contextlib.closing(socket.socket()) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise LedgerError(f"nothing listening on 127.0.0.1:{port} after {timeout}s", code="node_failed")


def find_anvil() -> Path:
    """node_modules/.bin/anvil of this checkout (``make setup`` runs npm ci), else PATH."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "node_modules" / ".bin" / "anvil"
        if candidate.exists():
            return candidate
    found = shutil.which("anvil")
    if found is None:
        raise LedgerError("anvil not found: run `make setup` (npm ci) first", code="anvil_missing")
    return Path(found)


@contextlib.contextmanager
def run_anvil(
    port: int | None = None, block_time: float | None = None, anvil: Path | None = None
) -> Iterator[str]:
    """Yield the URL of a fresh anvil node (``anvil``, default :func:`find_anvil`); stop it
    on exit."""
    port = port or free_port()
    binary = anvil or find_anvil()
    args = [str(binary), "--host", "127.0.0.1", "--port", str(port), "--silent"]
    if block_time:
        args += ["--block-time", str(block_time)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603 - our binary, fixed args
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


class AnvilProcess:
    """anvil that can be hung, stopped and brought back on the same port with the same chain,
    for fault tests and benchmarks (``run_anvil`` is the plain fresh node).

    It runs in a session of its own, because npm's launcher runs the real binary as a child
    and a signal must reach both; the chain is kept in ``state`` (written on SIGTERM, loaded on
    start), so a restart keeps the genesis block and every contract.
    """

    def __init__(self, state: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = state
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [str(find_anvil()), "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        args += ["--state", str(self.state)]
        self.proc = subprocess.Popen(  # noqa: S603 - our binary, fixed args
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_for_port(self.port, self.proc)

    def signal(self, sig: int) -> None:
        """``sig`` to the launcher and the binary (SIGSTOP: a node that hangs; SIGCONT)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        """SIGTERM through the launcher (anvil writes its state on the way out), then wait
        for the whole group, killing it if it will not go."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _group_alive(proc.pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)

    def __enter__(self) -> AnvilProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True
