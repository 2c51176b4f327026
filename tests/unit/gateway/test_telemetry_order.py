"""Sequence numbers (issue 12 item 13): the gateway tracks which seqs are stored, not one
high-water mark, so a message that arrives after a later one is stored, and ``replayed``
means stored, and only that; the same after a restart, rebuilt from the store."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from tests.support.gateway import Harness, error_code, restartable_gateway
from vitalchain.device.client import DeviceClient, DeviceError
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.ingest import SeqBook
from vitalchain.ledger import Ledger
from vitalchain.vitals import Vital

OCTETS = {"content-type": "application/octet-stream"}


def code_of(h: Harness, message: bytes) -> str:
    r = h.client.post("/v1/telemetry", content=message, headers=OCTETS)
    return "ok" if r.status_code == 200 else error_code(r)


def stored_seqs(h: Harness, device: DeviceClient) -> list[int]:
    return sorted(
        r.seq for m in h.gateway.store.messages(device=device.address) for r in m.message.readings
    )


def test_a_message_that_arrives_after_a_later_one_is_stored(harness: Harness) -> None:
    """k+1 before k: both stored (k used to be answered ``replayed``, and lost)."""
    device = harness.onboarded()
    k = device.prepare([(Vital.SPO2, 97)])
    k1 = device.prepare([(Vital.SPO2, 96)])
    assert device.send(k1)["last_seq"] == 1
    ack = device.send(k)
    assert (ack["accepted"], ack["last_seq"]) == (1, 0)
    assert stored_seqs(harness, device) == [0, 1]
    # a true duplicate of either is replayed, and stores nothing more
    assert [code_of(harness, k), code_of(harness, k1)] == ["replayed", "replayed"]
    assert stored_seqs(harness, device) == [0, 1]


def test_a_gap_left_by_a_refused_message_can_be_filled_later(harness: Harness) -> None:
    """Devices skip seqs (a refused message used some), so a gap is never an error."""
    device = harness.onboarded()
    msgs = [device.prepare([(Vital.HEART_RATE, 60 + i)] * 2) for i in range(4)]  # seqs 0..7
    for i in (3, 1):
        device.send(msgs[i])
    assert [code_of(harness, m) for m in msgs] == ["ok", "replayed", "ok", "replayed"]
    assert stored_seqs(harness, device) == list(range(8))


def test_a_message_overlapping_stored_seqs_is_a_conflict_not_a_replay(harness: Harness) -> None:
    """Some of its seqs stored, others not: ``seq_conflict`` (409), nothing of it stored."""
    device = harness.onboarded()
    device.send(device.prepare([(Vital.SPO2, 97)]))  # seq 0
    overlap = DeviceClient(device.key, device.object_id, http=device.http, first_seq=0)
    overlap.attach(device._header[4:], device.session_key or b"", device._group_id)
    message = overlap.prepare([(Vital.SPO2, 95), (Vital.SPO2, 94)])  # seqs 0, 1
    assert code_of(harness, message) == "seq_conflict"
    assert stored_seqs(harness, device) == [0]


def test_a_copy_of_a_message_still_being_stored_waits_for_it(harness: Harness) -> None:
    """A resend while the first copy is being committed gets ``replayed`` only once that one
    is stored; if the store fails it, the copy is told to resend (not ``replayed``)."""
    core = harness.gateway.ingest_core
    device = harness.onboarded()
    real_submit = harness.gateway.store.submit
    held: list[Future[int]] = []
    release = threading.Event()

    def slow_submit(message: object) -> Future[int]:
        outer: Future[int] = Future()
        held.append(outer)
        inner = real_submit(message)  # type: ignore[arg-type]

        def later() -> None:
            release.wait(10)
            error = inner.exception()
            if error is None:
                outer.set_result(inner.result())
            else:
                outer.set_exception(error)

        threading.Thread(target=later).start()
        return outer

    message = device.prepare([(Vital.SPO2, 97)])
    harness.gateway.store.submit = slow_submit  # type: ignore[method-assign]
    try:
        first = core.submit(message)
        second = core.submit(message)
        assert not second.done()  # not "replayed" before the first is stored
        release.set()
        assert first.result(10).accepted == 1
        with pytest.raises(GatewayError) as err:
            second.result(10)
        assert err.value.code == "replayed"
    finally:
        harness.gateway.store.submit = real_submit  # type: ignore[method-assign]


def test_a_copy_of_a_message_the_store_failed_is_not_replayed(harness: Harness) -> None:
    core = harness.gateway.ingest_core
    device = harness.onboarded()
    failing: Future[int] = Future()
    real_submit = harness.gateway.store.submit
    harness.gateway.store.submit = lambda message: failing  # type: ignore[method-assign]
    message = device.prepare([(Vital.SPO2, 97)])
    try:
        first, second = core.submit(message), core.submit(message)
        failing.set_exception(OSError("disk gone"))
    finally:
        harness.gateway.store.submit = real_submit  # type: ignore[method-assign]
    for pending in (first, second):
        with pytest.raises(GatewayError) as err:
            pending.result(10)
        assert err.value.code == "store_unavailable"
    # nothing was stored, so the device's resend is stored now
    assert core.ingest(message).accepted == 1


@pytest.fixture
def restartable(ledger: Ledger, tmp_path: Path) -> Iterator[Callable[[], Harness]]:
    """Starts the gateway, or restarts it on the same data directory and key."""
    with restartable_gateway(ledger, tmp_path / "gateway") as start:
        yield start


def test_after_a_restart_the_gap_is_still_fillable_and_duplicates_replayed(
    restartable: Callable[[], Harness],
) -> None:
    """The books are rebuilt from the store: k+1 before a restart, k after it is stored;
    a duplicate of k+1 is still ``replayed``."""
    h = restartable()
    device = h.onboarded()
    k = device.prepare([(Vital.SPO2, 97)])
    k1 = device.prepare([(Vital.SPO2, 96)])
    device.send(k1)
    h = restartable()
    device.http = h.client
    assert code_of(h, k1) == "replayed"
    assert device.send(k)["last_seq"] == 0
    assert code_of(h, k) == "replayed"
    assert stored_seqs(h, device) == [0, 1]
    with pytest.raises(DeviceError) as err:
        device.send(k1)
    assert err.value.code == "replayed"


def test_seq_book_merges_ranges() -> None:
    book = SeqBook([(0, 3), (10, 12)])
    book.add([5, 6])
    assert book.ranges() == [(0, 3), (5, 6), (10, 12)]
    book.add([4, 7, 8, 9])
    assert book.ranges() == [(0, 12)]
    book.add([20, 22])
    assert book.ranges() == [(0, 12), (20, 20), (22, 22)]
    book.add([21])
    assert book.ranges() == [(0, 12), (20, 22)]
    assert [book.stored(s) for s in (-1, 0, 12, 13, 19, 21, 23)] == [
        False,
        True,
        True,
        False,
        False,
        True,
        False,
    ]
