"""A data directory belongs to one gateway and one chain (gateway/startup.py, issue 12 item 4).

Real parts: the embedded chain, real files, a real second process holding the lock.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from vitalchain.crypto import PrivateKey
from vitalchain.gateway.settings import GatewaySettings
from vitalchain.gateway.startup import (
    CHAIN_RECORD,
    LOCK_FILE,
    ChainRecord,
    DataDirLock,
    StartupError,
    check_chain,
    listen_socket,
    reset_data_dir,
)
from vitalchain.ledger import EmbeddedBackend, Ledger
from vitalchain.node import running_gateway

TOKEN = "startup-test-admin-token-0123"


@pytest.fixture(scope="module")
def chains() -> tuple[Ledger, Ledger]:
    """Two different embedded chains (one deployment each)."""
    return (
        Ledger.deploy(EmbeddedBackend(), PrivateKey.generate()),
        Ledger.deploy(EmbeddedBackend(), PrivateKey.generate()),
    )


_groups = itertools.count(7_100_000)
_group_of: dict[Path, int] = {}


def settings(data_dir: Path) -> GatewaySettings:
    """One trust group per data directory (its master key creates it on the shared chains)."""
    group = _group_of.setdefault(data_dir, next(_groups))
    return GatewaySettings(
        data_dir=data_dir,
        group_id=group,
        master_object_id=group,
        admin_token=SecretStr(TOKEN),
        mqtt=False,
    )


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


# -- the lock -----------------------------------------------------------------------------------------


def run_once(data_dir: Path, ledger: Ledger) -> None:
    """Start a gateway on ``data_dir`` and stop it: the directory now names ``ledger``'s chain."""
    with running_gateway(settings(data_dir), ledger=ledger, background=False):
        pass


def test_a_second_lock_on_one_directory_is_refused_until_the_first_is_released(
    tmp_path: Path,
) -> None:
    first = DataDirLock.acquire(tmp_path / "gw")
    assert (tmp_path / "gw").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "gw" / LOCK_FILE).stat().st_mode & 0o777 == 0o600
    with pytest.raises(StartupError) as refused:
        DataDirLock.acquire(tmp_path / "gw")
    assert refused.value.code == "data_dir_locked"
    assert f"process {os.getpid()}" in refused.value.message
    first.release()
    DataDirLock.acquire(tmp_path / "gw").release()
    first.release()  # idempotent


def test_the_lock_dies_with_its_process_even_on_kill_9(tmp_path: Path) -> None:
    """flock belongs to the process: a gateway killed with -9 leaves no stale lock."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from vitalchain.gateway.startup import DataDirLock;"
            "DataDirLock.acquire(Path(sys.argv[1])); print('locked', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StartupError) as refused:
            DataDirLock.acquire(tmp_path)
        assert refused.value.code == "data_dir_locked"
        assert f"process {holder.pid}" in refused.value.message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()
    DataDirLock.acquire(tmp_path).release()


def test_two_gateways_on_one_data_directory_the_second_is_refused_and_opens_nothing(
    tmp_path: Path, chains: tuple[Ledger, Ledger]
) -> None:
    ledger, _ = chains
    with running_gateway(settings(tmp_path / "gw"), ledger=ledger, background=False):
        before = listing(tmp_path / "gw")
        with (
            pytest.raises(StartupError) as refused,
            running_gateway(settings(tmp_path / "gw"), ledger=ledger, background=False),
        ):
            pass
        assert refused.value.code == "data_dir_locked"
        assert listing(tmp_path / "gw") == before
    # released on exit: the directory can be used again
    with running_gateway(settings(tmp_path / "gw"), ledger=ledger, background=False):
        pass


# -- the chain ----------------------------------------------------------------------------------------


def test_the_first_start_records_the_chain_and_a_restart_on_it_is_accepted(
    tmp_path: Path, chains: tuple[Ledger, Ledger]
) -> None:
    ledger, _ = chains
    run_once(tmp_path, ledger)
    path = tmp_path / CHAIN_RECORD
    record = json.loads(path.read_text())
    assert path.stat().st_mode & 0o777 == 0o600
    assert record["chain_id"] == ledger.chain_id
    assert record["addresses"] == ledger.deployment.addresses
    assert record["genesis_hash"] == "0x" + bytes(ledger.w3.eth.get_block(0)["hash"]).hex()
    assert record["embedded"] is True
    run_once(tmp_path, ledger)  # same chain: no complaint
    assert json.loads(path.read_text()) == record


def test_another_chain_is_refused_before_any_store_is_opened(
    tmp_path: Path, chains: tuple[Ledger, Ledger]
) -> None:
    ledger, other = chains
    run_once(tmp_path, ledger)
    before = listing(tmp_path)
    with (
        pytest.raises(StartupError) as refused,
        running_gateway(settings(tmp_path), ledger=other, background=False),
    ):
        pass
    assert refused.value.code == "chain_mismatch"
    assert "--reset-data" in refused.value.message
    assert "embedded chain is new on every start" in refused.value.message
    assert "\n" not in refused.value.message
    assert listing(tmp_path) == before  # nothing written, nothing re-anchored
    DataDirLock.acquire(tmp_path).release()  # and the refusal let go of the lock


def test_each_difference_is_named(chains: tuple[Ledger, Ledger]) -> None:
    ledger, _ = chains
    mine = ChainRecord.of(ledger)
    assert mine.difference(mine) is None
    other_id = ChainRecord(1, mine.genesis_hash, mine.addresses, False)
    assert "chain ID" in (mine.difference(other_id) or "")
    reset = ChainRecord(mine.chain_id, "0x" + "ab" * 32, mine.addresses, False)
    assert "was reset" in (mine.difference(reset) or "")
    moved = {**mine.addresses, "TrustGroups": "0x" + "12" * 20}
    redeployed = ChainRecord(mine.chain_id, mine.genesis_hash, moved, False)
    assert "deployed again" in (mine.difference(redeployed) or "")
    # an address written in another case is the same address
    lower = {k: v.lower() for k, v in mine.addresses.items()}
    assert mine.difference(ChainRecord(mine.chain_id, mine.genesis_hash, lower, True)) is None


@pytest.mark.parametrize("content", ["not json", "{}", '{"type": "vitalchain-chain-record"}'])
def test_a_damaged_chain_record_is_refused(
    tmp_path: Path, chains: tuple[Ledger, Ledger], content: str
) -> None:
    (tmp_path / CHAIN_RECORD).write_text(content)
    with pytest.raises(StartupError) as refused:
        check_chain(tmp_path, chains[0])
    assert refused.value.code == "bad_chain_record"


def test_reset_data_moves_the_old_data_aside_and_starts_afresh(
    tmp_path: Path, chains: tuple[Ledger, Ledger]
) -> None:
    ledger, other = chains
    run_once(tmp_path, ledger)
    old = listing(tmp_path)
    master = (tmp_path / "master.key").read_text()
    with running_gateway(
        settings(tmp_path), ledger=other, background=False, reset_data=True
    ) as running:
        assert running.gateway.store.count_readings() == 0
    (aside,) = tmp_path.glob(".old-*")
    assert aside.stat().st_mode & 0o777 == 0o700
    moved = listing(aside)
    assert CHAIN_RECORD in moved
    assert {k for k in old if k != "master.key"} <= set(moved)  # nothing lost
    assert (tmp_path / "master.key").read_text() == master  # the gateway's identity kept
    record = json.loads((tmp_path / CHAIN_RECORD).read_text())
    assert record["addresses"] == other.deployment.addresses


def test_reset_keeps_key_deployment_lock_and_earlier_old_folders(tmp_path: Path) -> None:
    for name in ("master.key", "deployment.json", LOCK_FILE, "store.db", "chain.json"):
        (tmp_path / name).write_text(name)
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "1.bin").write_text("x")
    (tmp_path / ".old-earlier").mkdir()
    at = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
    aside = reset_data_dir(tmp_path, now=at)
    assert aside == tmp_path / ".old-20261201T120000Z"
    assert sorted(p.name for p in aside.iterdir()) == ["blocks", "chain.json", "store.db"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".old-earlier", aside.name, "deployment.json", LOCK_FILE, "master.key"]
    )
    (tmp_path / "store.db").write_text("again")
    assert reset_data_dir(tmp_path, now=at) == tmp_path / ".old-20261201T120000Z-1"
    assert reset_data_dir(tmp_path, now=at) is None  # nothing left to move


# -- the HTTP port ------------------------------------------------------------------------------------


def test_a_busy_port_is_refused_and_a_free_one_bound() -> None:
    with contextlib.closing(socket.socket()) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StartupError) as refused:
            listen_socket("127.0.0.1", port)
        assert refused.value.code == "port_in_use"
    with contextlib.closing(listen_socket("127.0.0.1", 0)) as sock:
        assert sock.getsockname()[1] > 0
    with pytest.raises(StartupError) as bad:
        listen_socket("no-such-host.invalid", 0)
    assert bad.value.code == "bad_host"
