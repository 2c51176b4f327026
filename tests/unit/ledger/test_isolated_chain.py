"""The embedded chain in a child process (what a gateway node runs): same answers, no leftovers.

The child exists so that py-evm's CPU does not hold the gateway's GIL; these tests check that
nothing else changes: contract refusals still decode to typed errors, time still moves, a
failing transaction's text still names its cause, and the child never outlives its parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from vitalchain.crypto import PrivateKey
from vitalchain.ledger import ChainUnavailable, EmbeddedBackend, Ledger
from vitalchain.ledger.errors import AnchorError, LedgerError


@pytest.fixture(scope="module")
def isolated() -> Iterator[tuple[EmbeddedBackend, Ledger]]:
    backend = EmbeddedBackend(isolated=True)
    try:
        yield backend, Ledger.deploy(backend, PrivateKey.generate())
    finally:
        backend.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it has exited all the same.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def test_a_contract_refusal_is_decoded_as_in_process(
    isolated: tuple[EmbeddedBackend, Ledger],
) -> None:
    _, ledger = isolated
    stranger = PrivateKey.generate()
    ledger.fund(stranger.address)
    with pytest.raises(AnchorError) as refused:
        ledger.anchor(stranger, 424242, b"\x01" * 32, 1, 0)
    assert refused.value.code == "anchor_log.not_master"


def test_time_moves_in_the_child(isolated: tuple[EmbeddedBackend, Ledger]) -> None:
    backend, ledger = isolated
    before = ledger.timestamp()
    backend.advance_time(3600)
    assert ledger.timestamp() >= before + 3600 - 1  # eth-tester stamps the next block


def test_an_unfunded_sender_is_named_as_such(isolated: tuple[EmbeddedBackend, Ledger]) -> None:
    _, ledger = isolated
    broke = PrivateKey.generate()  # publishing one's own key is open to anyone with gas
    with pytest.raises(LedgerError) as failed:
        ledger.publish_key(broke)
    assert failed.value.code == "insufficient_funds"


def test_close_stops_the_child_and_later_calls_say_unavailable() -> None:
    backend = EmbeddedBackend(isolated=True)
    assert backend._child is not None
    pid = backend._child._process.pid
    assert backend.w3.eth.block_number >= 0
    backend.close()
    assert not _alive(pid)
    with pytest.raises(ChainUnavailable):
        backend.w3.eth.block_number  # noqa: B018 - the call is the test


def test_the_child_dies_with_a_killed_parent() -> None:
    script = (
        "from vitalchain.ledger import EmbeddedBackend\n"
        "b = EmbeddedBackend(isolated=True)\n"
        "print(b._child._process.pid, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
