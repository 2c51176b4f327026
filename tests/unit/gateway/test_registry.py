"""The device registry's view of the chain, on the in-memory ledger fake (no EVM)."""

from __future__ import annotations

from tests.support.fakes import FakeChain
from vitalchain.crypto import PrivateKey
from vitalchain.gateway.registry import DeviceRegistry
from vitalchain.ledger import DeviceStatus
from vitalchain.ledger.watcher import ChainWatcher

GROUP = 7


def test_the_history_is_replayed_and_a_revocation_applies_at_the_next_poll() -> None:
    chain = FakeChain()
    kept = chain.associate(GROUP, PrivateKey.generate().public_key)
    gone = chain.associate(GROUP, PrivateKey.generate().public_key)
    chain.associate(GROUP + 1, PrivateKey.generate().public_key)  # another gateway's
    chain.revoke_device(GROUP, gone)
    watcher = ChainWatcher(chain.events)
    revoked: list[str] = []
    registry = DeviceRegistry(chain, GROUP, on_revoked=revoked.append, watcher=watcher)
    assert registry.active() == [kept]
    assert registry.status(gone) is DeviceStatus.REVOKED
    assert revoked == [gone]
    chain.revoke_device(GROUP, kept)
    assert registry.status(kept) is DeviceStatus.ACTIVE  # not polled yet
    watcher.poll()
    assert registry.status(kept) is DeviceStatus.REVOKED
    assert registry.active() == []
    assert revoked == [gone, kept]
    assert chain.calls["device"] == 0  # every answer came from the events


def test_an_unknown_device_is_asked_once_and_keys_are_cached() -> None:
    chain = FakeChain()
    watcher = ChainWatcher(chain.events)
    registry = DeviceRegistry(chain, GROUP, watcher=watcher)
    key = PrivateKey.generate().public_key
    device = chain.associate(GROUP, key)  # by another process: no poll has seen it
    other = chain.associate(GROUP + 1, PrivateKey.generate().public_key)
    assert registry.status(device) is DeviceStatus.ACTIVE
    assert registry.status(device) is DeviceStatus.ACTIVE
    assert registry.status(other) is DeviceStatus.NONE
    assert chain.calls["device"] == 2
    assert registry.public_key(device) == key
    assert registry.public_key(device) == key
    assert chain.calls["device_public_key"] == 1
