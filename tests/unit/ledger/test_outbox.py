"""The chain outbox (issue 13 item 3) on the in-process chain: order, idempotency, pipelining,
refusals, outages and restarts; and Ledger._send no longer holding its lock over a receipt wait.

Anchors make good test entries: each must start where the previous one ended (``firstBlock ==
previous size``), so an entry sent out of order is refused by the contract itself.  Outages and
lost answers are staged by wrapping the ledger's provider or its broadcast; a stalled block by
gating the receipt poll.  No test sleeps for a fixed time or asserts a duration.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import chain_outbox
from tests.support.ledger import fresh_id
from tests.support.node import World, make_world
from vitalchain.alerts.service import AlertService
from vitalchain.crypto import PrivateKey
from vitalchain.gateway.service import Gateway
from vitalchain.ledger import (
    AnchorError,
    ChainOutbox,
    ChainUnavailable,
    EmbeddedBackend,
    KeyDirectoryError,
    Ledger,
    LedgerError,
    Outcome,
)
from vitalchain.ledger.ledger import _Sender, sign_dynamic_fee
from vitalchain.sealing.sealer import Sealer, SealingPolicy
from vitalchain.vitals import Vital


@pytest.fixture(scope="module")
def ledger() -> Iterator[Ledger]:
    ledger = Ledger.deploy(EmbeddedBackend(), PrivateKey.generate())
    yield ledger
    ledger.backend.close()


@pytest.fixture
def master(ledger: Ledger) -> tuple[PrivateKey, int]:
    """A funded key that masters a fresh group (so it may anchor that group's roots)."""
    key = PrivateKey.generate()
    ledger.fund(key.address)
    gid = fresh_id()
    ledger.create_group(key, gid, fresh_id())
    return key, gid


@pytest.fixture
def opened(ledger: Ledger, tmp_path: Path) -> Iterator[Callable[..., ChainOutbox]]:
    """``opened(key, **options)``: a started outbox on tmp_path/outbox.db, closed afterwards."""
    with contextlib.ExitStack() as stack:

        def open_one(key: PrivateKey, *, start: bool = True, **options: Any) -> ChainOutbox:
            options.setdefault("retry_s", 0.02)
            options.setdefault("poll_s", 0.005)
            path = tmp_path / "outbox.db"
            return stack.enter_context(chain_outbox(ledger, key, path, start=start, **options))

        yield open_one


def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def _root(size: int) -> bytes:
    return size.to_bytes(32, "big")


def _anchor(outbox: ChainOutbox, gid: int, size: int, first: int | None = None, **kw: Any) -> Any:
    """Anchor ``size`` blocks, from ``first`` (default: size - 1, right after the previous)."""
    first = size - 1 if first is None else first
    return outbox.submit(
        f"anchor:{gid}:{size}", "AnchorLog", "anchor", gid, _root(size), size, first, size - 1, **kw
    )


def _nonces(ledger: Ledger, hashes: list[bytes]) -> list[int]:
    return [int(ledger.w3.eth.get_transaction(h)["nonce"]) for h in hashes]  # type: ignore[arg-type]


class _Gate:
    """Wraps a ledger method so that calls park until :meth:`open` (a block that stalls)."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.opened = threading.Event()
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.opened.wait(60)
        return self.real(*args, **kwargs)

    def open(self) -> None:
        self.opened.set()


# -- order, idempotency, pipelining --------------------------------------------------------------


def test_entries_are_mined_once_each_in_submission_order(
    ledger: Ledger, master: tuple[PrivateKey, int], opened: Callable[..., ChainOutbox]
) -> None:
    key, gid = master
    outbox = opened(key)
    before = ledger.transaction_count(key.address)
    tickets = [_anchor(outbox, gid, size) for size in range(1, 13)]
    results = [t.result(timeout=60) for t in tickets]
    assert [a.tree_size for a in ledger.anchors(gid)] == list(range(1, 13))
    assert [r.block_number for r in results] == sorted(r.block_number for r in results)
    assert _nonces(ledger, [r.tx_hash for r in results]) == list(range(before, before + 12))
    assert ledger.transaction_count(key.address) == before + 12
    assert outbox.pending() == 0


def test_submit_is_idempotent_by_key(
    ledger: Ledger, master: tuple[PrivateKey, int], opened: Callable[..., ChainOutbox]
) -> None:
    key, gid = master
    outbox = opened(key)
    before = ledger.transaction_count(key.address)
    seen: list[Outcome] = []
    first = _anchor(outbox, gid, 1, on_done=seen.append)
    again = _anchor(outbox, gid, 1, on_done=seen.append)  # while queued or in flight
    tx = first.result(timeout=30)
    assert again.result(timeout=30) == tx
    late = _anchor(outbox, gid, 1, on_done=seen.append)  # finished: on_done runs at once
    assert late.result(timeout=0) == tx
    assert [o.tx for o in seen] == [tx, tx, tx]
    assert ledger.transaction_count(key.address) == before + 1
    assert len(ledger.anchors(gid)) == 1


def test_pipelined_up_to_max_in_flight_and_no_lock_held_over_receipts(
    ledger: Ledger,
    master: tuple[PrivateKey, int],
    opened: Callable[..., ChainOutbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While no receipt comes back, exactly max_in_flight transactions go out, and every other
    sender of the process still gets its transactions through (no lock over the wait)."""
    key, gid = master
    gate = _Gate(ledger.receipt)
    monkeypatch.setattr(ledger, "receipt", gate)
    outbox = opened(key, max_in_flight=3)
    before = ledger.transaction_count(key.address)
    tickets = [_anchor(outbox, gid, size) for size in range(1, 11)]
    _until(lambda: ledger.transaction_count(key.address) == before + 3 and gate.calls > 0)
    assert outbox.status() | {"waiting_s": 0} == {
        "queued": 7,
        "in_flight": 3,
        "waiting": None,
        "waiting_s": 0,
    }
    someone = PrivateKey.generate()
    ledger.fund(someone.address)
    ledger.publish_key(someone)  # not held up by the stalled receipts
    gate.open()
    results = [t.result(timeout=60) for t in tickets]
    assert outbox.max_in_flight_seen == 3
    assert [a.tree_size for a in ledger.anchors(gid)] == list(range(1, 11))
    assert _nonces(ledger, [r.tx_hash for r in results]) == list(range(before, before + 10))


# -- refusals ------------------------------------------------------------------------------------


def test_a_simulated_refusal_sends_nothing_and_later_entries_go(
    ledger: Ledger, master: tuple[PrivateKey, int], opened: Callable[..., ChainOutbox]
) -> None:
    key, gid = master
    outbox = opened(key)
    before = ledger.transaction_count(key.address)
    bad = _anchor(outbox, gid, 5, first=3)  # nothing in flight: simulated, refused
    good = _anchor(outbox, gid, 1)
    with pytest.raises(AnchorError) as refused:
        bad.result(timeout=30)
    assert refused.value.code == "anchor_log.invalid_range"
    good.result(timeout=30)
    assert ledger.transaction_count(key.address) == before + 1  # the refusal cost nothing


def test_a_revert_in_its_block_is_decoded_and_later_entries_go(
    ledger: Ledger,
    master: tuple[PrivateKey, int],
    opened: Callable[..., ChainOutbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a transaction in flight there is no simulation: the refused one is mined with
    status 0, its error is decoded by running the call at its block, and the next one goes."""
    key, gid = master
    gate = _Gate(ledger.receipt)
    monkeypatch.setattr(ledger, "receipt", gate)
    outbox = opened(key)
    before = ledger.transaction_count(key.address)
    first = _anchor(outbox, gid, 1)
    bad = _anchor(outbox, gid, 5, first=3)
    after = _anchor(outbox, gid, 2)
    _until(lambda: ledger.transaction_count(key.address) == before + 3)
    gate.open()
    first.result(timeout=30)
    with pytest.raises(AnchorError) as refused:
        bad.result(timeout=30)
    assert refused.value.code == "anchor_log.invalid_range"
    after.result(timeout=30)
    assert [a.tree_size for a in ledger.anchors(gid)] == [1, 2]


def test_ledger_send_decodes_a_revert_in_its_block(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: a transaction that passed its simulation but reverted in its block raised
    an undecoded TransactionFailed; now the contract's typed error."""
    someone = PrivateKey.generate()
    ledger.fund(someone.address)
    ledger.publish_key(someone)
    monkeypatch.setattr(_Sender, "simulate", lambda *a, **k: 1_000_000)  # state moved on
    with pytest.raises(KeyDirectoryError) as refused:
        ledger.publish_key(someone)
    assert refused.value.code == "key_directory.already_published"


def test_ledger_send_holds_no_lock_while_waiting_for_a_receipt(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: one RLock covered every transaction up to its receipt (120 s on a stalled
    chain); a second sender now gets through while the first waits for its block."""
    first, second = PrivateKey.generate(), PrivateKey.generate()
    ledger.fund(first.address)
    ledger.fund(second.address)
    real_wait = ledger.w3.eth.wait_for_transaction_receipt
    parked, release = threading.Event(), threading.Event()

    def wait(tx_hash: Any, *args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "first-sender":
            parked.set()
            release.wait(60)
        return real_wait(tx_hash, *args, **kwargs)

    monkeypatch.setattr(ledger.w3.eth, "wait_for_transaction_receipt", wait)
    waiting = threading.Thread(target=ledger.publish_key, args=(first,), name="first-sender")
    waiting.start()
    try:
        assert parked.wait(30)
        done = threading.Event()
        other = threading.Thread(target=lambda: (ledger.publish_key(second), done.set()))
        other.start()
        other.join(timeout=30)
        assert done.is_set(), "the second sender waited for the first one's receipt"
        assert not release.is_set()
    finally:
        release.set()
        waiting.join(timeout=60)
    assert ledger.has_key(first.address)
    assert ledger.has_key(second.address)


# -- outages -------------------------------------------------------------------------------------


class _Switch:
    """The provider's requests fail with ChainUnavailable while ``down`` (a node gone)."""

    def __init__(self, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        self.refused = 0
        provider = ledger.w3.provider
        real = provider.make_request

        def make_request(method: Any, params: Any) -> Any:
            if self.down:
                self.refused += 1
                raise ChainUnavailable("the chain node does not answer (ConnectionError)")
            return real(method, params)

        monkeypatch.setattr(provider, "make_request", make_request)
        # web3 caches the request function built around make_request; build it again (and on
        # undo the cached original comes back with the original make_request).
        monkeypatch.setattr(provider, "_request_func_cache", (None, None))


def test_an_outage_keeps_entries_queued_and_they_go_in_order_after_it(
    ledger: Ledger,
    master: tuple[PrivateKey, int],
    opened: Callable[..., ChainOutbox],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key, gid = master
    outbox = opened(key)
    switch = _Switch(ledger, monkeypatch)
    before = ledger.transaction_count(key.address)
    with caplog.at_level(logging.INFO, logger="vitalchain.ledger.outbox"):
        switch.down = True
        started = time.monotonic()
        tickets = [_anchor(outbox, gid, size) for size in range(1, 6)]
        assert time.monotonic() - started < 5  # submit never waits for the chain
        _until(lambda: outbox.status()["waiting"] == "chain_unavailable" and switch.refused > 3)
        assert not any(t.done() for t in tickets)
        assert outbox.pending() == 5
        with pytest.raises(ChainUnavailable):
            tickets[0].result(timeout=60)  # a caller that needs an answer gets one at once
        switch.down = False
        outbox.drain(timeout=60)
        results = [t.result(timeout=0) for t in tickets]
    assert [a.tree_size for a in ledger.anchors(gid)] == [1, 2, 3, 4, 5]
    assert _nonces(ledger, [r.tx_hash for r in results]) == list(range(before, before + 5))
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("chain writes wait") for m in messages) == 1, messages
    assert sum(m.startswith("chain writes resume") for m in messages) == 1, messages
    assert not [r for r in caplog.records if r.exc_info]
    assert outbox.status()["waiting"] is None


# -- restarts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reached", [True, False], ids=["answer-lost", "never-reached"])
def test_a_restart_sends_unmined_entries_again_exactly_once(
    ledger: Ledger,
    master: tuple[PrivateKey, int],
    opened: Callable[..., ChainOutbox],
    monkeypatch: pytest.MonkeyPatch,
    reached: bool,
) -> None:
    """The process dies with a transaction signed and persisted but unconfirmed (the node took
    it and the answer was lost, or it never reached the node): the next run broadcasts that
    very transaction again (same hash, same nonce) and the rest after it, each mined once."""
    key, gid = master
    before = ledger.transaction_count(key.address)
    real = ledger.broadcast

    def broadcast(raw: bytes) -> bytes:
        if reached and ledger.transaction_count(key.address) == before:
            real(raw)
        raise ChainUnavailable("the chain node does not answer (ReadTimeout)")

    monkeypatch.setattr(ledger, "broadcast", broadcast)
    dying = opened(key)
    for size in (1, 2, 3):
        _anchor(dying, gid, size)
    _until(lambda: dying.status()["in_flight"] == 1)
    dying.close()  # the process is gone: its threads stop, its rows stay
    monkeypatch.setattr(ledger, "broadcast", real)
    db = sqlite3.connect(dying.path)
    signed = db.execute("SELECT tx_hash, nonce FROM entries WHERE state = 'sent'").fetchall()
    db.close()
    assert [n for _, n in signed] == [before]

    again = opened(key, start=False)  # started, it may confirm the first before we count
    assert again.pending() == 3
    again.start()
    tickets = [_anchor(again, gid, size) for size in (1, 2, 3, 4)]  # 1-3 known: the same
    results = [t.result(timeout=60) for t in tickets]
    assert results[0].tx_hash == bytes(signed[0][0])
    assert [a.tree_size for a in ledger.anchors(gid)] == [1, 2, 3, 4]
    assert ledger.transaction_count(key.address) == before + 4
    assert _nonces(ledger, [r.tx_hash for r in results]) == list(range(before, before + 4))


def test_finished_entries_answer_after_a_restart(
    ledger: Ledger, master: tuple[PrivateKey, int], opened: Callable[..., ChainOutbox]
) -> None:
    key, gid = master
    first = opened(key)
    tx = _anchor(first, gid, 1).result(timeout=30)
    refusal = _anchor(first, gid, 9, first=4)
    with pytest.raises(AnchorError) as original:
        refusal.result(timeout=30)
    first.close()
    second = opened(key, start=False)  # not even started: answered from the database
    assert _anchor(second, gid, 1).result(timeout=0) == tx
    with pytest.raises(AnchorError) as refused:
        _anchor(second, gid, 9, first=4).result(timeout=0)
    assert refused.value.code == "anchor_log.invalid_range"
    assert refused.value.fields == original.value.fields
    assert str(refused.value) == str(original.value)
    assert second.pending() == 0


def test_an_outbox_belongs_to_one_key(
    ledger: Ledger, master: tuple[PrivateKey, int], opened: Callable[..., ChainOutbox]
) -> None:
    key, _ = master
    opened(key).close()
    with pytest.raises(LedgerError) as refused:
        opened(PrivateKey.generate())
    assert refused.value.code == "outbox_mismatch"


def test_a_failing_callback_does_not_stop_the_outbox(
    ledger: Ledger,
    master: tuple[PrivateKey, int],
    opened: Callable[..., ChainOutbox],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key, gid = master
    outbox = opened(key)

    def broken(outcome: Outcome) -> None:
        raise RuntimeError("a caller's bug")

    _anchor(outbox, gid, 1, on_done=broken).result(timeout=30)
    _anchor(outbox, gid, 2).result(timeout=30)
    assert any("on_done of a anchor entry failed" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info]


# -- the node's anchors through its outbox ---------------------------------------------------------


@pytest.mark.parametrize("service", [Gateway, Sealer, AlertService])
def test_the_outbox_is_the_only_way_to_the_chain(service: type) -> None:
    """Gateway, Sealer and AlertService keep no direct-ledger path for the master's writes
    (issue 13: one durable queue): each requires the outbox; there is no ``outbox=None``."""
    parameter = inspect.signature(service).parameters["outbox"]
    assert parameter.default is inspect.Parameter.empty
    assert parameter.annotation == "ChainWriter"


@pytest.fixture
def world(ledger: Ledger, tmp_path: Path) -> Iterator[World]:
    """A node on the embedded chain (no background threads: the test ticks it)."""
    yield from make_world(
        (ledger, PrivateKey.generate()), tmp_path / "node", SealingPolicy(max_readings=2)
    )


def _sealed(world: World, patient: PrivateKey, device: Any, blocks: int) -> None:
    for _ in range(blocks):
        device.send(device.prepare([(Vital.SPO2, 97)] * 2))
    assert len(world.running.sealer.seal_due()) == blocks


def test_a_node_anchors_through_its_outbox_and_forgets_plaintext_only_once_mined(
    ledger: Ledger, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealer, store = world.running.sealer, world.running.gateway.store
    outbox = world.running.gateway.outbox
    assert isinstance(outbox, ChainOutbox)
    assert sealer.outbox is outbox
    patient = world.patient()
    device = world.device(patient)
    _sealed(world, patient, device, 2)
    gate = _Gate(ledger.receipt)
    monkeypatch.setattr(ledger, "receipt", gate)  # the anchor's block does not come
    sealer.anchor_wait_s = 0.2
    with pytest.raises(ChainUnavailable):
        sealer.anchor()
    assert [t.key for t in outbox.tickets("anchor:")] == [f"anchor:{world.group_id}:2"]
    assert store.anchors(world.group_id) == []  # not recorded: not mined
    assert len(store.messages()) == 2  # so the plaintext stays
    with pytest.raises(ChainUnavailable):
        sealer.anchor()  # the same anchor waits again; nothing new is queued
    assert len(outbox.tickets("anchor:")) == 1
    gate.open()
    record = sealer.anchor()
    assert record is not None
    assert record.tree_size == 2
    assert [a.tree_size for a in store.anchors(world.group_id)] == [2]
    assert store.messages() == []
    assert [a.tree_size for a in ledger.anchors(world.group_id)] == [2]


def test_a_restarted_sealer_takes_up_the_anchor_it_had_queued(
    ledger: Ledger, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each anchor must start where the previous one ended: a new sealer that queued the grown
    log's root beside the old, unmined anchor would have it refused (invalid_range)."""
    sealer, store = world.running.sealer, world.running.gateway.store
    outbox = world.running.gateway.outbox
    assert isinstance(outbox, ChainOutbox)
    patient = world.patient()
    device = world.device(patient)
    _sealed(world, patient, device, 1)
    gate = _Gate(ledger.receipt)
    monkeypatch.setattr(ledger, "receipt", gate)
    sealer.anchor_wait_s = 0.2
    with pytest.raises(ChainUnavailable):
        sealer.anchor()  # anchor:<group>:1 queued, not mined
    _sealed(world, patient, device, 2)  # the log grows to 3 meanwhile
    again = Sealer(
        store=store,
        ledger=ledger,
        master=world.running.gateway.master,
        group_id=world.group_id,
        policy=SealingPolicy(max_readings=2),
        outbox=outbox,
        consent=sealer.consent,
    )
    gate.open()
    record = again.anchor()
    assert record is not None
    assert record.tree_size == 3
    assert [a.tree_size for a in ledger.anchors(world.group_id)] == [1, 3]
    assert [a.tree_size for a in store.anchors(world.group_id)] == [1, 3]


def test_an_association_cut_off_by_an_outage_is_a_503_and_its_retry_associates_once(
    ledger: Ledger, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node goes away as the association is broadcast: the device gets a quick 503
    chain_unavailable (not a 30 s hang), and when it sends the very same request again the
    gateway finds the queued entry, so the device is associated by one transaction."""
    master = world.running.gateway.master
    real_broadcast, real_post = ledger.broadcast, world.client.post
    down = threading.Event()

    def broadcast(raw: bytes) -> bytes:
        if down.is_set():
            raise ChainUnavailable("the chain node does not answer (ConnectionError)")
        return real_broadcast(raw)

    answers: list[tuple[int, str]] = []

    def post(path: str, *args: Any, **kwargs: Any) -> Any:
        if path == "/v1/associations":
            down.set()
            first = real_post(path, *args, **kwargs)
            answers.append((first.status_code, first.json()["error"]["code"]))
            down.clear()  # the node is back; the device retries the same request
        return real_post(path, *args, **kwargs)

    monkeypatch.setattr(ledger, "broadcast", broadcast)
    monkeypatch.setattr(world.client, "post", post)
    patient = world.patient()
    before = ledger.transaction_count(master.address)
    device = world.device(patient)
    assert answers == [(503, "chain_unavailable")]
    assert ledger.is_active_device(device.address)
    assert ledger.transaction_count(master.address) == before + 1


def test_health_shows_the_outbox_backlog_growing_while_the_chain_is_away_and_draining_after(
    ledger: Ledger, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator sees a backlog: with the chain node gone, the node's /v1/health shows the
    outbox's queued writes growing and since when they wait (status degraded); once the node
    is back, the backlog drains to nothing and the writes are mined in order."""
    outbox, health = world.running.gateway.outbox, world.running.health
    assert isinstance(outbox, ChainOutbox)
    assert health is not None

    def backlog() -> tuple[dict[str, Any], str]:
        health.check("outbox")  # what the probe thread does every health_interval_s
        body = world.client.get("/v1/health").json()
        assert body["components"]["outbox"]["status"] == "up"  # the chain's outage, not its
        return body["components"]["outbox"]["backlog"], body["status"]

    idle = {"queued": 0, "in_flight": 0, "waiting": None, "waiting_since": None}
    assert backlog() == (idle, "ok")
    switch = _Switch(ledger, monkeypatch)
    switch.down = True
    tickets = [_anchor(outbox, world.group_id, size) for size in (1, 2)]
    _until(lambda: outbox.status()["waiting"] == "chain_unavailable")
    first, status = backlog()
    assert (first["queued"], first["in_flight"], first["waiting"]) == (2, 0, "chain_unavailable")
    assert first["waiting_since"] is not None
    assert status == "degraded"
    tickets.append(_anchor(outbox, world.group_id, 3))
    grown, _ = backlog()
    assert grown["queued"] == 3
    assert grown["waiting_since"] == pytest.approx(first["waiting_since"], abs=0.5)  # one outage
    switch.down = False
    outbox.nudge()  # rather than wait out the backoff
    outbox.drain(timeout=60)
    for ticket in tickets:
        ticket.result(timeout=0)  # mined (a refusal would raise)
    assert [a.tree_size for a in ledger.anchors(world.group_id)] == [1, 2, 3]
    assert backlog() == (idle, "ok")


# -- the lean hot path (issue 13 item 7: client-side CPU per transaction) -----------------------


def test_receipts_of_several_in_flight_transactions_come_from_one_poll(
    ledger: Ledger,
    master: tuple[PrivateKey, int],
    opened: Callable[..., ChainOutbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Regression: each transaction's receipt was awaited on its own; one poll now asks for
    every transaction in flight at once (a JSON-RPC batch on a node) and resolves them all."""
    key, gid = master
    asked: list[list[bytes]] = []
    real = ledger.receipts
    released = threading.Event()

    def receipts(hashes: list[bytes]) -> list[Any]:
        released.wait(60)
        asked.append(list(hashes))
        return real(hashes)

    monkeypatch.setattr(ledger, "receipts", receipts)
    outbox = opened(key)
    before = ledger.transaction_count(key.address)
    tickets = [_anchor(outbox, gid, size) for size in (1, 2, 3)]
    _until(lambda: outbox.status()["in_flight"] == 3)
    released.set()
    hashes = [t.result(timeout=30).tx_hash for t in tickets]
    assert ledger.transaction_count(key.address) == before + 3
    # The poll parked at the gate holds what was in flight when it began; the next one asks
    # for all the rest at once (one request per poll, however many are in flight).
    assert len(asked) <= 2
    assert [h for call in asked for h in call] == hashes
    assert max(len(call) for call in asked) >= 2


def test_fees_are_read_once_a_second_not_per_transaction(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: every signature read the latest block for the base fee; it is now read at
    most once per FEE_TTL_S (injected clock), and again once that has passed or a broadcast
    was refused."""
    now = [100.0]
    lean = Ledger(ledger.backend, ledger.deployment, clock=lambda: now[0])
    reads: list[float] = []
    real = lean._read_base_fee

    def read() -> int:
        reads.append(now[0])
        return real()

    monkeypatch.setattr(lean, "_read_base_fee", read)
    key = PrivateKey.generate()
    for nonce in range(3):
        lean.sign_call(key, nonce, "AnchorLog", "anchor", 1, _root(1), 1, 0, 0)
    assert reads == [100.0]
    now[0] += 1.5
    lean.sign_call(key, 3, "AnchorLog", "anchor", 1, _root(1), 1, 0, 0)
    assert reads == [100.0, 101.5]
    with pytest.raises(Exception):  # noqa: B017,PT011 - the node's own refusal (unfunded)
        lean.broadcast(lean.sign_call(key, 4, "AnchorLog", "anchor", 1, _root(1), 1, 0, 0)[0])
    lean.sign_call(key, 5, "AnchorLog", "anchor", 1, _root(1), 1, 0, 0)
    assert reads == [100.0, 101.5, 101.5]


def test_a_presumed_kind_is_simulated_first_and_again_after_a_refusal(
    ledger: Ledger,
    master: tuple[PrivateKey, int],
    opened: Callable[..., ChainOutbox],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The simulation rule (module docstring): an anchor is simulated until one has passed,
    then not (even with nothing in flight); a refusal then is mined with status 0 and decoded
    to the same typed error, and the next anchor is simulated again."""
    key, gid = master
    simulated: list[int] = []
    real = ledger.simulate

    def simulate(sender: str, contract: str, function: str, *args: Any, **kw: Any) -> None:
        simulated.append(args[2])  # the tree size
        real(sender, contract, function, *args, **kw)

    monkeypatch.setattr(ledger, "simulate", simulate)
    outbox = opened(key)
    before = ledger.transaction_count(key.address)
    _anchor(outbox, gid, 1).result(timeout=30)
    _anchor(outbox, gid, 2).result(timeout=30)
    with pytest.raises(AnchorError) as refused:
        _anchor(outbox, gid, 9, first=5).result(timeout=30)
    assert refused.value.code == "anchor_log.invalid_range"
    _anchor(outbox, gid, 3).result(timeout=30)
    assert simulated == [1, 3]
    assert ledger.transaction_count(key.address) == before + 4  # the refusal was mined
    assert [a.tree_size for a in ledger.anchors(gid)] == [1, 2, 3]


def test_the_lean_signature_is_byte_for_byte_eth_accounts(ledger: Ledger) -> None:
    """sign_call signs without eth_account (a tenth of the CPU); the transaction must be the
    very one eth_account would make of the same fields, whatever the fees and calldata."""
    from eth_account import Account

    key = PrivateKey.generate()
    for nonce, base in [(0, 0), (7, 875_000_000), (2**20, 10**12)]:
        tip = 10**9 if base else 0
        data = ledger.calldata("AnchorLog", "anchor", 3, _root(nonce + 1), nonce + 1, nonce, 0)
        fields = {
            "to": ledger.address_of("AnchorLog"), "data": data, "value": 0, "gas": 1_000_000,
            "nonce": nonce, "chainId": ledger.chain_id,
            "maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip,
        }  # fmt: skip
        expected = Account.sign_transaction(fields, key.secret)
        raw, tx_hash = sign_dynamic_fee(
            key, ledger.chain_id, nonce, tip, 2 * base + tip, 1_000_000,
            bytes.fromhex(ledger.address_of("AnchorLog")[2:]), data,
        )  # fmt: skip
        assert raw == bytes(expected.raw_transaction)
        assert tx_hash == bytes(expected.hash)
