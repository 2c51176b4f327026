"""Issue 13 item 3 on a real anvil node stopped for 10 s: chain writes queue and go out in order
when it returns, and an alert raised during the outage is delivered at once and recorded on
chain after it.

The node is an :class:`AnvilProcess` (its chain kept in a state file across the stop), so the
contracts and every earlier transaction are there when it comes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.alerts import alert_world, low_spo2, raised_since, ward
from tests.support.ledger import fresh_id
from tests.support.node import World
from tests.support.waiting import wait_for
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import ANVIL_DEV_KEY, AnchorError, ChainOutbox, Ledger, RpcBackend
from vitalchain.sdk.alert import verify_alert
from vitalchain.sdk.subscriber import sign_action
from vitalchain.services.anvil import AnvilProcess
from vitalchain.vitals import Vital

OUTAGE_S = 10.0


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[AnvilProcess]:
    node = AnvilProcess(tmp_path / "anvil-state.json")
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def chain(anvil: AnvilProcess) -> tuple[Ledger, PrivateKey]:
    admin = PrivateKey.generate()
    # A short RPC timeout, as a gateway configured for quick outage detection would have.
    backend = RpcBackend(anvil.url, funder=PrivateKey(ANVIL_DEV_KEY), timeout=1.0)
    return Ledger.deploy(backend, admin), admin


def _outage_until(stopped_at: float) -> None:
    """Let the outage last its full OUTAGE_S (the issue's figure), however long the checks
    made during it took."""
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped_at)))


def test_writes_submitted_while_the_node_is_down_go_out_in_order_when_it_returns(
    anvil: AnvilProcess,
    chain: tuple[Ledger, PrivateKey],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger, _ = chain
    master = PrivateKey.generate()
    ledger.fund(master.address)
    gid = fresh_id()
    ledger.create_group(master, gid, fresh_id())
    outbox = ChainOutbox(ledger, master, tmp_path / "outbox.db", retry_s=0.2)
    outbox.start()

    def anchor(size: int) -> Any:
        root = size.to_bytes(32, "big")
        return outbox.submit(
            f"anchor:{gid}:{size}", "AnchorLog", "anchor", gid, root, size, size - 1, size - 1
        )

    try:
        anchor(1).result(timeout=30)
        before = ledger.transaction_count(master.address)
        with caplog.at_level(logging.INFO, logger="vitalchain.ledger.outbox"):
            anvil.stop()
            stopped_at = time.monotonic()
            tickets = [anchor(size) for size in range(2, 7)]  # only SQLite inserts
            wait_for(lambda: outbox.status()["waiting"] == "chain_unavailable")
            assert not any(t.done() for t in tickets)
            assert outbox.pending() == 5
            _outage_until(stopped_at)
            assert outbox.pending() == 5
            anvil.start()
            outbox.drain(timeout=120)
        results = [t.result(timeout=0) for t in tickets]
        assert [a.tree_size for a in ledger.anchors(gid)] == [1, 2, 3, 4, 5, 6]
        nonces = [int(ledger.w3.eth.get_transaction(r.tx_hash)["nonce"]) for r in results]  # type: ignore[arg-type]
        assert nonces == list(range(before, before + 5))
        assert ledger.transaction_count(master.address) == before + 5
        messages = [r.getMessage() for r in caplog.records]
        assert sum(m.startswith("chain writes wait") for m in messages) == 1, messages
        assert sum(m.startswith("chain writes resume") for m in messages) == 1, messages
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        outbox.close()


@pytest.fixture
def world(chain: tuple[Ledger, PrivateKey], tmp_path: Path) -> Iterator[World]:
    yield from alert_world(chain, tmp_path / "node", escalating=False)


def _next_notice(ws: Any, alert_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """The first notice about ``alert_id`` on ``ws`` (others, such as repeats, are skipped),
    read on a thread so that a notice that never comes fails the test instead of hanging it."""
    found: list[dict[str, Any]] = []

    def read() -> None:
        while True:
            message = ws.receive_json()
            if message.get("alert", {}).get("alert_id") == alert_id:
                found.append(message)
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert found, f"no notice of alert {alert_id}"
    return found[0]


def test_an_alert_raised_while_the_chain_is_down_is_delivered_then_recorded_after(
    anvil: AnvilProcess, world: World
) -> None:
    """Issue 13 item 3: stop the node for 10 s during an episode.  The alert is delivered to
    the subscribed provider during the outage (notification never waits for the chain), and it
    is recorded on chain after the node returns (through the master's chain outbox)."""
    w = ward(world)
    alerts, ledger = world.running.alerts, world.ledger
    outbox = world.running.gateway.outbox
    assert isinstance(outbox, ChainOutbox)
    with world.client.websocket_connect("/v1/alerts/ws") as ws:
        nonce = bytes.fromhex(ws.receive_json()["challenge"])
        signature = sign_action(w.doctor, "subscribe", nonce)
        ws.send_json({"v": 1, "address": w.doctor.address, "signature": signature})
        assert ws.receive_json()["subscribed"] == w.doctor.address
        # A first episode with the chain up: recipients' keys and consents are warm, as in
        # any gateway that has run for a while.
        first = low_spo2(world, w)
        _next_notice(ws, first.alert_id.hex())
        alerts.drain()
        assert ledger.alert_count(world.group_id) == 1
        stored = len(w.stored)
        w.device.send(w.device.prepare([(Vital.SPO2, 97.0)] * 5))  # the episode clears
        wait_for(lambda: len(w.stored) > stored)
        # The next episode starts; the node goes away before it is confirmed.
        before = alerts.raised_total
        w.device.send(w.device.prepare([(Vital.SPO2, 85.0)]))
        anvil.stop()
        stopped_at = time.monotonic()
        w.device.send(w.device.prepare([(Vital.SPO2, 85.0)] * 2))
        second = wait_for(lambda: raised_since(world, before))[0]
        notice = _next_notice(ws, second.alert_id.hex())
        assert anvil.proc is None  # delivered while the chain was down
        assert notice["recipient"] == w.doctor.address
        wait_for(lambda: outbox.status()["waiting"] == "chain_unavailable")
        assert outbox.pending() >= 1  # its record waits in the outbox
        _outage_until(stopped_at)
        anvil.start()
        outbox.drain(timeout=120)
        alerts.drain(timeout=60)
    assert ledger.alert_count(world.group_id) == 2
    verify_alert(second, ledger)  # anyone can check it now: ring from the chain, record on it


def test_the_outbox_sends_and_polls_over_plain_json_rpc_and_decodes_a_mined_revert(
    chain: tuple[Ledger, PrivateKey], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13 item 7: on a node the outbox's hot calls bypass web3 (its middleware was most of
    the gateway's CPU per transaction); the answers must mean the same: mined anchors give
    their receipts, an unsimulated refusal (mined with status 0) its typed error, and several
    in flight are polled in one batch."""
    ledger, _ = chain
    master = PrivateKey.generate()
    ledger.fund(master.address)
    gid = fresh_id()
    ledger.create_group(master, gid, fresh_id())
    through_web3: list[str] = []
    provider = ledger.w3.provider
    real_request = provider.make_request

    def make_request(method: Any, params: Any) -> Any:
        through_web3.append(str(method))
        return real_request(method, params)

    monkeypatch.setattr(provider, "make_request", make_request)
    rpc = ledger.backend.json_rpc
    assert rpc is not None
    batches: list[int] = []
    real_batch = rpc.batch

    def batch(calls: list[tuple[str, list[Any]]]) -> list[Any]:
        batches.append(len(calls))
        return real_batch(calls)

    monkeypatch.setattr(rpc, "batch", batch)
    outbox = ChainOutbox(ledger, master, tmp_path / "outbox.db", retry_s=0.2)
    outbox.start()

    def anchor(size: int, first: int | None = None) -> Any:
        root = size.to_bytes(32, "big")
        first = size - 1 if first is None else first
        return outbox.submit(
            f"anchor:{gid}:{size}", "AnchorLog", "anchor", gid, root, size, first, size - 1
        )

    try:
        mined = [t.result(timeout=30) for t in [anchor(1), anchor(2), anchor(3)]]
        refused = anchor(9, first=5)  # an anchor passed already: sent unsimulated
        with pytest.raises(AnchorError) as error:
            refused.result(timeout=30)
        assert error.value.code == "anchor_log.invalid_range"
        after = anchor(4).result(timeout=30)
    finally:
        outbox.close()
    assert [a.tree_size for a in ledger.anchors(gid)] == [1, 2, 3, 4]
    assert all(r.block_number > 0 and r.gas_used > 0 for r in [*mined, after])
    hot = {"eth_sendRawTransaction", "eth_getTransactionReceipt", "eth_getBlockByNumber"}
    assert not hot & set(through_web3)
    assert batches  # the receipts came by batch
