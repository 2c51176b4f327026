"""A local anvil node (npm's @foundry-rs/anvil) on a 127.0.0.1 port, for tests, benchmarks and
``vitalchain chain``.

Loopback only, always. Both kinds run on :class:`~vitalchain.services.process.LocalProcess`,
so the node dies with the thread that started it and leaves no process behind.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from vitalchain.services.ports import LOOPBACK, free_port
from vitalchain.services.process import LocalProcess, ServiceError, StartStop

__all__ = ["AnvilError", "AnvilProcess", "find_anvil", "run_anvil"]


class AnvilError(ServiceError):
    """anvil is missing, exited, or did not listen in time."""

    code = "node_failed"


def find_anvil() -> Path:
    """node_modules/.bin/anvil of this checkout (``make setup`` runs npm ci), else PATH."""
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "node_modules" / ".bin" / "anvil"
        if candidate.exists():
            return candidate
    found = shutil.which("anvil")
    if found is None:
        raise AnvilError("anvil not found: run `make setup` (npm ci) first", code="anvil_missing")
    return Path(found)


def _anvil(binary: Path, port: int, args: Sequence[str]) -> LocalProcess:
    command = [str(binary), "--host", LOOPBACK, "--port", str(port), "--silent", *args]
    # npm's launcher forwards SIGTERM to the node: signal the launcher alone, or anvil gets two
    # and may cut its state dump short.
    return LocalProcess(
        command, port, name="anvil", error=AnvilError, code=AnvilError.code, group_stop=False,
        stop_timeout=20,
    )  # fmt: skip


@contextlib.contextmanager
def run_anvil(
    port: int | None = None,
    block_time: float | None = None,
    anvil: Path | None = None,
    *,
    args: Sequence[str] = (),
) -> Iterator[str]:
    """Yield the URL of a fresh anvil node (``anvil``, default :func:`find_anvil`, with extra
    command-line ``args``); stop it on exit."""
    port = port or free_port()
    extra = [*(["--block-time", str(block_time)] if block_time else []), *args]
    with _anvil(anvil or find_anvil(), port, extra):
        yield f"http://{LOOPBACK}:{port}"


class AnvilProcess(StartStop):
    """anvil that can be hung, stopped and brought back on the same port with the same chain,
    for fault tests and benchmarks (``run_anvil`` is the plain fresh node).

    It runs in a process group of its own, because npm's launcher runs the real binary as a
    child and a signal must reach both; the chain is kept in ``state`` (written on SIGTERM,
    loaded on start), so a restart keeps the genesis block and every contract.
    """

    def __init__(self, state: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.state = state
        self._node: LocalProcess | None = None

    @property
    def proc(self) -> subprocess.Popen[str] | None:
        """The launcher's process while the node runs, else None."""
        return self._node.process if self._node is not None else None

    def start(self) -> None:
        node = _anvil(find_anvil(), self.port, ["--state", str(self.state)])
        node.start()
        self._node = node

    def signal(self, sig: int) -> None:
        """``sig`` to the launcher and the binary (SIGSTOP: a node that hangs; SIGCONT)."""
        if self._node is not None:
            self._node.signal_group(sig)

    def stop(self) -> None:
        """SIGTERM through the launcher (anvil writes its state on the way out), then wait
        for the whole group, killing it if it will not go."""
        node, self._node = self._node, None
        if node is not None:
            node.stop()
