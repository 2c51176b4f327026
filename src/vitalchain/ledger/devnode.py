"""Start a local anvil node (npm's @foundry-rs/anvil) on a free 127.0.0.1 port.

Used by the tests, the benchmarks and ``vitalchain chain``.  Loopback only, always.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from vitalchain.ledger.errors import LedgerError

__all__ = ["find_anvil", "free_port", "run_anvil", "wait_for_port"]


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
