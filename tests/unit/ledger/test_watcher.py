"""The one chain watcher: each event reaches each subscriber once, in order, by name."""

from __future__ import annotations

import threading

from tests.support.fakes import FakeChain
from vitalchain.crypto import PrivateKey
from vitalchain.ledger import events
from vitalchain.ledger._artifacts import artifact
from vitalchain.ledger.events import (
    DEVICE_ASSOCIATED,
    DEVICE_REVOKED,
    THRESHOLD_SET,
    Event,
    EventName,
)
from vitalchain.ledger.watcher import ChainWatcher


def test_each_subscriber_gets_its_events_once_and_in_order() -> None:
    chain = FakeChain()
    watcher = ChainWatcher(chain.events)
    devices: list[str] = []
    thresholds: list[Event] = []
    watcher.subscribe((DEVICE_ASSOCIATED, DEVICE_REVOKED), lambda e: devices.append(e.name))
    watcher.subscribe(THRESHOLD_SET, thresholds.append)
    device = chain.associate(7, PrivateKey.generate().public_key)
    chain.set_threshold("0xp", 2, 1, 5)
    chain.revoke_device(7, device)
    assert devices == []  # nothing until a poll
    assert thresholds == []
    assert watcher.poll() == 3
    assert watcher.poll() == 0  # nothing twice
    assert devices == ["DeviceAssociated", "DeviceRevoked"]
    assert [e.args["vital"] for e in thresholds] == [2]


def test_a_late_subscriber_may_replay_the_history_without_doubling_it() -> None:
    chain = FakeChain()
    watcher = ChainWatcher(chain.events)
    early: list[str] = []
    watcher.subscribe(DEVICE_ASSOCIATED, lambda e: early.append(e.args["device"]))
    first = chain.associate(7, PrivateKey.generate().public_key)
    watcher.poll()
    second = chain.associate(7, PrivateKey.generate().public_key)  # not polled yet
    late: list[str] = []
    watcher.subscribe(DEVICE_ASSOCIATED, lambda e: late.append(e.args["device"]), replay=True)
    third = chain.associate(7, PrivateKey.generate().public_key)
    watcher.poll()
    assert early == [first, second, third]
    assert late == [first, second, third]
    skipped: list[str] = []
    watcher.subscribe(DEVICE_ASSOCIATED, lambda e: skipped.append(e.args["device"]))
    watcher.poll()
    assert skipped == []  # without replay: only what comes later


def test_a_failing_subscriber_does_not_stop_the_others_and_cancel_ends_one() -> None:
    chain = FakeChain()
    watcher = ChainWatcher(chain.events)
    seen: list[int] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("a bug")

    watcher.subscribe(THRESHOLD_SET, broken)
    mine = watcher.subscribe(THRESHOLD_SET, lambda e: seen.append(e.args["vital"]))
    chain.set_threshold("0xp", 1, 1, 5)
    watcher.poll()
    mine.cancel()
    chain.set_threshold("0xp", 2, 1, 5)
    watcher.poll()
    assert seen == [1]


def test_its_thread_polls_and_waits_out_an_outage() -> None:
    chain = FakeChain()
    watcher = ChainWatcher(chain.events, poll_s=0.01)
    arrived = threading.Event()
    watcher.subscribe(THRESHOLD_SET, lambda _e: arrived.set())
    chain.down = True
    watcher.start()
    watcher.start()  # a second start is a no-op
    try:
        chain.set_threshold("0xp", 1, 1, 5)
        assert not arrived.wait(0.05)
        chain.down = False
        assert arrived.wait(5)
    finally:
        watcher.stop()


def test_every_event_name_is_an_event_of_its_contract() -> None:
    """A misspelt constant would filter silently forever: each must be in the shipped ABI."""
    named = [v for v in vars(events).values() if isinstance(v, EventName)]
    assert len(named) == 14
    for name in named:
        abi = artifact(name.contract)["abi"]
        assert any(e.get("type") == "event" and e["name"] == name.name for e in abi), name
