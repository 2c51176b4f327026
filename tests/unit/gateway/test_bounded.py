"""What the ingest core keeps per device stays bounded however many devices are enrolled
(issue 16 item 4): seq books (LRU), device locks (a fixed stripe table), the rate limiter's
buckets, and the session map's writes (in place, so loading N sessions is O(N)).

The core runs on a real SQLite store (its (device, seq) ranges are the truth a forgotten
book falls back on) with sessions added directly, as ``Gateway._go_live`` adds them; a stub
registry says every device is active, so no chain is needed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import cast

import pytest

from vitalchain.crypto import Aead, PrivateKey
from vitalchain.device.client import DeviceClient
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.ingest import LOCK_STRIPES, IngestCore, LiveSession
from vitalchain.gateway.ratelimit import RateLimiter
from vitalchain.gateway.registry import DeviceRegistry
from vitalchain.ledger.ledger import DeviceStatus
from vitalchain.store import open_store
from vitalchain.vitals import Vital

GROUP = 7
ONE = [(Vital.SPO2, 97.0)]


class ActiveRegistry:
    """Every device is associated on chain (what the registry would say after association)."""

    def status(self, device: str) -> DeviceStatus:
        return DeviceStatus.ACTIVE

    def check_active(self, device: str) -> None:
        """Check 3 passes for every device."""


def now_ms() -> int:
    return int(time.time() * 1000)


def make_core(data_dir: Path, **kwargs: int) -> IngestCore:
    store = open_store(data_dir)
    rate = RateLimiter(1e9, 10**9, time.monotonic)
    return IngestCore(store, cast(DeviceRegistry, ActiveRegistry()), rate, now_ms, **kwargs)


def device_on(core: IngestCore, index: int) -> DeviceClient:
    """A device with a live session on ``core``, as a gateway's association leaves it."""
    key = PrivateKey.generate()
    sid, session_key = os.urandom(16), os.urandom(32)
    expires = int(time.time()) + 3600
    live = LiveSession(sid, key.address, GROUP, key.address, key.public_key, Aead(session_key),
                       expires)  # fmt: skip
    core.add_session(live, supersede=False)
    device = DeviceClient(key, 1000 + index, anonymity=False)
    device.attach(sid, session_key, GROUP)
    return device


@pytest.fixture
def core(tmp_path: Path) -> Iterator[IngestCore]:
    core = make_core(tmp_path, max_books=4)
    yield core
    core.close()
    core._store.close()


def test_the_seq_books_hold_at_most_their_bound(core: IngestCore) -> None:
    """Forty devices send once: at most four books stay, the most recent ones."""
    devices = [device_on(core, i) for i in range(40)]
    for device in devices:
        assert core.ingest(device.prepare(ONE)).accepted == 1
    assert len(core._books) <= 4
    assert list(core._books) == [d.address for d in devices[-4:]]


def test_a_forgotten_device_still_has_its_replay_refused(core: IngestCore) -> None:
    """The first device's book is evicted by later ones; its replayed message is refused by
    the store, its book is read back from the store, and a half-stored one is a conflict."""
    first = device_on(core, 0)
    message = first.prepare(ONE)
    assert core.ingest(message).accepted == 1
    for i in range(1, 10):
        other = device_on(core, i)
        core.ingest(other.prepare(ONE))
    assert first.address not in core._books  # forgotten
    with pytest.raises(GatewayError) as err:
        core.ingest(message)
    assert err.value.code == "replayed"
    assert core._books[first.address].ranges() == [(0, 0)]  # reloaded from the store
    # Forgotten again, a message overlapping a stored seq is refused as a conflict, not stored.
    for i in range(10, 20):
        core.ingest(device_on(core, i).prepare(ONE))
    assert first.address not in core._books
    first._seq = 0
    with pytest.raises(GatewayError) as err:
        core.ingest(first.prepare([*ONE, *ONE]))
    assert err.value.code == "seq_conflict"
    # And the device's next new reading is stored as usual.
    assert core.ingest(first.prepare(ONE)).last_seq == 2


def test_a_book_with_a_message_in_flight_is_not_forgotten(core: IngestCore) -> None:
    """A book with a seq in flight (its commit not settled) is passed over by the eviction,
    however many devices come after it; once settled, it may go like any other."""
    held = "0x" + "ab" * 20
    with core._lock_for(held):
        core._book(held).pending[5] = Future()
    for i in range(12):
        with core._lock_for(f"0x{i:040x}"):
            core._book(f"0x{i:040x}")
    assert held in core._books
    assert len(core._books) <= 5  # the bound, and the one book it may not drop
    core._books[held].pending.clear()
    for i in range(12, 20):
        with core._lock_for(f"0x{i:040x}"):
            core._book(f"0x{i:040x}")
    assert held not in core._books
    assert len(core._books) <= 4


def test_the_lock_table_does_not_grow_with_devices(core: IngestCore) -> None:
    """One lock per stripe, a device always on the same one, however many devices are seen."""
    for i in range(3 * LOCK_STRIPES):
        core._lock_for(f"0x{i:040x}")
    assert len(core._device_locks) == LOCK_STRIPES
    assert core._lock_for("0xabc") is core._lock_for("0xabc")


def test_the_rate_limiters_table_is_bounded_by_devices_too() -> None:
    """Already bounded (max_buckets): charged by more devices than the cap, the table stays
    within it, and a device forgotten with a partial bucket starts again with a full one."""
    limiter = RateLimiter(1.0, 5, lambda: 1_000.0, max_buckets=50)
    for i in range(5_000):
        assert limiter.allow(f"0x{i:040x}")
        assert len(limiter) <= 51
    assert limiter.allow("0x" + "0" * 40)


def test_loading_many_sessions_is_linear(tmp_path: Path) -> None:
    """A start putting 20,000 sessions back takes well under a second; a copy of the map per
    session (the old way) took 25 s on this machine, loaded.  Expired ones are still swept."""
    core = make_core(tmp_path)
    try:
        key = PrivateKey.generate()
        aead = Aead(os.urandom(32))
        expired = LiveSession(os.urandom(16), "0xdead", GROUP, "0xp", key.public_key, aead, 1)
        core.add_session(expired, supersede=False)
        start = time.perf_counter()
        for i in range(20_000):
            sid = i.to_bytes(16, "big")
            live = LiveSession(sid, f"0x{i:040x}", GROUP, "0xp", key.public_key, aead, 2**40)
            core.add_session(live, supersede=False)
        assert time.perf_counter() - start < 2.0
        assert len(core.sessions()) == 20_000  # the expired one swept on the way
        assert core.live_session((5).to_bytes(16, "big"), now_ms()) is not None
        # A new association of device 5 ends its other session, in place.
        again = LiveSession(b"n" * 16, f"0x{5:040x}", GROUP, "0xp", key.public_key, aead, 2**40)
        core.add_session(again)
        assert core.live_session((5).to_bytes(16, "big"), now_ms()) is None
        assert core.live_session(b"n" * 16, now_ms()) is again
    finally:
        core.close()
        core._store.close()
