"""The ingest core: one path for telemetry from HTTP and MQTT (docs/spec/telemetry.md).

Checks run in the spec's order and the first failure refuses the whole message; nothing of a
refused message is stored.  The acknowledgement is returned only after the store has
committed the readings durably.

Each session key carries a bounded number of messages (check 8, :class:`KeyBudget`): the
gateway counts what it accepted under a key and refuses ``key_exhausted`` past the suite's
limit, so a device whose firmware does not count cannot wear its key out; the device re-keys.

Every acknowledgement carries a receipt (docs/spec/receipt.md): the master's one signature,
made once the store committed, over the group, the device, the SHA-256 of the message's bytes
as received, the seqs it covers and the commit time.  One signature per acknowledgement, never
per reading, so a receipt costs the gateway one ECDSA signature per message at most.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import logging
import queue
import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from itertools import pairwise
from typing import NoReturn, Protocol

from vitalchain.crypto.aead import Aead, Usage, UsageLimit
from vitalchain.crypto.keys import PrivateKey, PublicKey, Signature
from vitalchain.crypto.ring import RingProof
from vitalchain.errors import DecodeError, DecryptionError, InvalidSignature, VitalchainError
from vitalchain.gateway.errors import GatewayError
from vitalchain.gateway.metrics import IngestMetrics
from vitalchain.gateway.ratelimit import RateLimiter
from vitalchain.gateway.registry import DeviceRegistry
from vitalchain.ledger.errors import ChainUnavailable
from vitalchain.logs import safe_error
from vitalchain.store import DuplicateReading, Message, Reading
from vitalchain.store.base import Store
from vitalchain.store.errors import StoreUnavailable
from vitalchain.store.model import StoredMessage
from vitalchain.wire.receipt import RECEIPT_CONTEXT, cumulative_signed_bytes, signed_bytes
from vitalchain.wire.telemetry import (
    HEADER_SIZE,
    MESSAGE_HEADER,
    READING_CONTEXT,
    RING_HEADER,
    Ack,
    Payload,
    split_signed,
)

__all__ = [
    "ClientBudget",
    "IngestCore",
    "KeyBudget",
    "LiveSession",
    "RemoteVerifier",
    "SeqBook",
    "Unauthenticated",
    "Verified",
    "Verifier",
    "sign_receipt",
]

# Failed (unauthenticated) messages a client may send in a burst, and per second after that,
# before its messages are refused unread with 429 too_many_requests (telemetry.md).
# The gateway passes its settings (telemetry_preauth_burst, telemetry_preauth_rate_per_s).
PREAUTH_BURST = 100
PREAUTH_RATE_PER_S = 10.0
# A key's count is reserved durably this many messages ahead (at most; fewer for a small limit).
MAX_RESERVE_MESSAGES = 1024
# The devices' locks are a fixed table of stripes (a device takes the one its address hashes
# to), so the table does not grow with the devices ever seen; two devices on one stripe only
# wait out each other's few microseconds of bookkeeping.
LOCK_STRIPES = 1024
# Seq books kept in memory, the least recently used forgotten past this many.  A forgotten
# device's book starts empty again: the store, whose (device, seq) ranges are the truth and
# survive pruning, still refuses a replay (DuplicateReading), and the book is reloaded then.
MAX_BOOKS = 16_384


def _key_exhausted() -> GatewayError:
    return GatewayError(
        "key_exhausted",
        "this session key has carried its limit; re-key (POST /v1/sessions/rekey)",
    )


class KeyBudget:
    """What one session key has carried (messages, 16-byte blocks), against its limit.

    The count is made durable ahead of use: before the count passes what is recorded, the
    next ``chunk`` messages are reserved through ``reserve`` (a write to the session's row), so
    after a crash the gateway restarts from the reservation, at most ``chunk`` messages too
    high and never too low.  :meth:`settle` records the exact count at a clean shutdown.
    Callers hold the device's lock around :meth:`charge`; the budget has its own lock too.
    """

    __slots__ = ("_chunk", "_lock", "_per_message", "_reserve", "_reserved", "_used", "limit")

    def __init__(
        self,
        limit: UsageLimit,
        used: Usage,
        reserve: Callable[[Usage], None],
        *,
        max_message_bytes: int = 64 * 1024,
    ) -> None:
        self.limit = limit
        self._used = used
        self._reserved = used  # what the durable record already covers
        self._reserve = reserve
        # Small limits (tests) reserve one message at a time, so a restart loses nothing.
        self._chunk = max(1, min(MAX_RESERVE_MESSAGES, limit.messages // 64))
        self._per_message = (max_message_bytes + 15) // 16 + 1
        self._lock = threading.Lock()

    @property
    def used(self) -> Usage:
        with self._lock:
            return self._used

    def exhausted(self) -> bool:
        with self._lock:
            return self._used.messages >= self.limit.messages

    def charge(self, plaintext_bytes: int) -> None:
        """Count one accepted message of ``plaintext_bytes``, or refuse it (key_exhausted),
        reserving ahead first if the durable record would not cover it."""
        blocks = (plaintext_bytes + 15) // 16 + 1  # as the sealing Aead counts (aead.md)
        with self._lock:
            used = Usage(self._used.messages + 1, self._used.blocks + blocks)
            limit = self.limit
            if used.messages > limit.messages or (
                limit.blocks is not None and used.blocks > limit.blocks
            ):
                raise _key_exhausted()
            if used.messages > self._reserved.messages or used.blocks > self._reserved.blocks:
                ahead = Usage(
                    used.messages + self._chunk, used.blocks + self._chunk * self._per_message
                )
                try:
                    self._reserve(ahead)
                except Exception:  # the state database is away (or closed at shutdown)
                    raise _refuse(
                        "store_unavailable", "the gateway could not record the key's count"
                    ) from None
                self._reserved = ahead
            self._used = used

    def settle(self, record: Callable[[Usage], None]) -> None:
        """Record the exact count (a clean shutdown); any later charge must reserve again."""
        with self._lock:
            record(self._used)
            self._reserved = self._used


@dataclass(frozen=True, slots=True)
class LiveSession:
    """An active telemetry session, held in memory for the hot path."""

    session_id: bytes
    device: str
    group_id: int
    patient: str
    public_key: PublicKey
    aead: Aead
    expires_at: int  # seconds
    budget: KeyBudget | None = None  # None: not counted (a caller that builds its own)


def _refuse(code: str, message: str) -> GatewayError:
    return GatewayError(code, message)


class Unauthenticated(GatewayError):
    """A refusal before the message authenticated (framing, session, AEAD): it is charged to
    the sending client's pre-authentication budget, never to a device's."""


def _replayed() -> GatewayError:
    return _refuse("replayed", "every reading of this message is already stored")


def _seq_conflict() -> GatewayError:
    return _refuse(
        "seq_conflict",
        "some of these sequence numbers are stored (or being stored) and others are not",
    )


def sign_receipt(
    master: PrivateKey,
    group_id: int,
    device: str,
    message_id: bytes,
    first_seq: int,
    last_seq: int,
    stored_at_ms: int,
) -> bytes:
    """A signed v1 receipt (receipt.md) of one committed message; ``stored_at_ms`` must be
    read after the commit.  The ingest core signs with it, and an ingest worker for the
    messages it took off HTTP (gateway/workers.py), so the node's commit thread does not."""
    signed = signed_bytes(
        group_id,
        bytes.fromhex(device[2:]),
        message_id,  # SHA-256 of the bytes as received
        first_seq,
        last_seq,
        stored_at_ms,
        master.public_key.address_bytes,
    )
    return signed + master.sign(signed, RECEIPT_CONTEXT).to_rsv()


def _chain(source: Future[Ack], target: Future[Ack]) -> None:
    """Settle ``target`` as ``source`` settles."""

    def copy(done: Future[Ack]) -> None:
        error = done.exception()
        if error is None:
            target.set_result(done.result())
        else:
            target.set_exception(error)

    source.add_done_callback(copy)


class RemoteVerifier(Protocol):
    """Where :meth:`IngestCore.submit` has checks 1, 2 and 4 run when not in its own process
    (gateway/workers.py): ``order`` keeps one device's messages in one FIFO."""

    def verify(self, data: bytes, topic_device: str | None, order: object) -> Future[Verified]: ...


def _failed(error: GatewayError) -> Future[Ack]:
    done: Future[Ack] = Future()
    done.set_exception(error)
    return done


@dataclass(frozen=True, slots=True)
class _Checked:
    """A message past checks 1 to 4, with what checks 6 and 7 still need."""

    message: Message
    sent_at: int
    units: list[str]
    now: int
    budget: KeyBudget | None  # the session key's, charged once checks 5 to 7 passed
    plaintext_bytes: int


@dataclass(frozen=True, slots=True)
class Verified:
    """A message past checks 1, 2 and 4 (framing, session, AEAD, the device's signature, the
    payload's shape): what :meth:`Verifier.verify` hands on, in this process or from an ingest
    worker process (gateway/workers.py), so plain data only.  The core then runs the checks
    that need the node's state (rate, the chain's word on the device, seqs, values, budget)."""

    message_id: bytes  # SHA-256 of the bytes as received
    session_id: bytes
    device: str
    group_id: int
    payload: bytes
    signature: bytes
    readings: tuple[Reading, ...]
    units: tuple[str, ...]
    sent_at: int
    proof: bytes | None  # the ring proof's bytes, as sent
    plaintext_bytes: int


class Verifier:
    """Checks 1, 2 and 4 over a map of live sessions: everything about a data message that
    needs only its session's keys, none of the node's other state.

    Why a class of its own: the ingest worker processes (gateway/workers.py) each run one,
    fed the sessions by the node, so the costly part of ingest (AEAD, ECDSA, parsing) runs
    beside the node's process; the node's :class:`IngestCore` runs one too, for the
    in-process path, and its session map is the node's authority.
    """

    def __init__(
        self, now_ms: Callable[[], int], *, max_message_bytes: int, max_readings: int
    ) -> None:
        self._now_ms = now_ms
        self.max_message_bytes = max_message_bytes
        self._max_readings = max_readings
        self._sessions: dict[bytes, LiveSession] = {}
        self._swept_at_size = 0  # the session map's size after its last expiry sweep
        self._lock = threading.Lock()  # guards the session map's writers

    def add_session(self, session: LiveSession, *, supersede: bool = True) -> None:
        """See :meth:`IngestCore.add_session`."""
        now_s = self._now_ms() // 1000
        with self._lock:
            sessions = self._sessions
            if supersede or len(sessions) >= 2 * self._swept_at_size:
                for sid in [
                    sid
                    for sid, s in sessions.items()
                    if s.expires_at <= now_s or (supersede and s.device == session.device)
                ]:
                    del sessions[sid]
                self._swept_at_size = max(64, len(sessions))
            sessions[session.session_id] = session

    def end_session_at(self, session_id: bytes, expires_at: int) -> None:
        """Let a session carry telemetry only until ``expires_at`` (a re-keyed session's grace)."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is not None and session.expires_at > expires_at:
                self._sessions[session_id] = dataclasses.replace(session, expires_at=expires_at)

    def live_session(self, session_id: bytes, now_ms: int) -> LiveSession | None:
        """The session if it carries telemetry at ``now_ms`` (check 1's rule)."""
        session = self._sessions.get(session_id)
        if session is None or session.expires_at * 1000 <= now_ms:
            return None
        return session

    def sessions(self) -> list[LiveSession]:
        with self._lock:  # the map is written in place: copy it whole, under its lock
            return list(self._sessions.values())

    def verify(
        self,
        data: bytes,
        topic_device: str | None = None,
        between: Callable[[LiveSession], None] | None = None,
    ) -> Verified:
        """Checks 1, 2 and 4 and the payload's shape; refusals before the AEAD opened are
        :class:`Unauthenticated`.  ``between(session)`` runs once it authenticated, before
        check 4 (the node's rate and check 3, in the spec's order, when in its process)."""
        session, plaintext = self._authenticate(data, topic_device)
        if between is not None:
            between(session)
        plaintext_bytes = len(plaintext)
        proof = None
        if data[:4] == RING_HEADER:
            try:
                ring, used = RingProof.read(plaintext)
            except DecodeError:
                raise _refuse("malformed_message", "the ring proof does not decode") from None
            if session.public_key not in ring.members:
                raise _refuse("invalid_ring", "the ring does not include the device")
            proof, plaintext = plaintext[:used], plaintext[used:]
        # 4. the device signed exactly this payload, for this group
        try:
            payload, raw_sig = split_signed(plaintext)
        except DecodeError as exc:
            raise _refuse(exc.code, exc.message) from None
        try:
            session.public_key.verify(Signature.from_rsv(raw_sig), payload, READING_CONTEXT)
        except (InvalidSignature, DecodeError):
            raise _refuse("invalid_signature", "the device signature does not verify") from None
        try:
            body = Payload.parse(payload, max_readings=self._max_readings)
        except DecodeError as exc:
            raise _refuse(exc.code, exc.message) from None
        if body.group != session.group_id:
            raise _refuse("wrong_group", "the payload is addressed to another group")
        if body.device != session.device:
            raise _refuse("wrong_device", "the payload names another device")
        readings = tuple(Reading(r.seq, r.vital, float(r.value), r.t) for r in body.readings)
        if any(b.seq <= a.seq for a, b in pairwise(readings)):
            raise _refuse("invalid_payload", "seqs within a message strictly increase")
        return Verified(
            hashlib.sha256(data).digest(),
            session.session_id,
            session.device,
            session.group_id,
            payload,
            raw_sig,
            readings,
            tuple(r.unit for r in body.readings),
            body.sent_at,
            proof,
            plaintext_bytes,
        )

    def _authenticate(self, data: bytes, topic_device: str | None) -> tuple[LiveSession, bytes]:
        """Framing, check 1 (the session) and check 2 (the AEAD opens): who sent this."""
        limit = self.max_message_bytes
        if len(data) > limit:
            raise Unauthenticated("message_too_large", f"data messages are at most {limit} bytes")
        if len(data) < HEADER_SIZE + 4 or data[:4] not in (MESSAGE_HEADER, RING_HEADER):
            raise Unauthenticated("malformed_message", "not a data message (VCm 0x01 or 0x02)")
        # 1. the session is known and active
        session = self.live_session(data[4:HEADER_SIZE], self._now_ms())
        if session is None:
            raise Unauthenticated("unknown_session", "unknown or expired session")
        if topic_device is not None and topic_device != session.device:
            raise Unauthenticated("wrong_device", "the topic names another device")
        # 2. it decrypts under the session's key and suite
        try:
            plaintext = session.aead.open(data[HEADER_SIZE:], data[:HEADER_SIZE])
        except DecryptionError:
            raise Unauthenticated("decryption_failed", "decryption failed") from None
        return session, plaintext


class ClientBudget:
    """Each client's budget for messages that fail before they authenticate (telemetry.md,
    "Rate limits"): over it, a client's messages are refused unread ``too_many_requests``.
    The node's ingest core has one, and so has each ingest worker for its HTTP clients."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter

    def admit(self, client: str) -> None:
        """Refuse, unread, a message from a client over its pre-authentication budget."""
        if self._limiter.exhausted(client):
            raise _refuse(
                "too_many_requests",
                "too many unauthenticated messages from this client; retry later",
            )

    def charge(self, client: str) -> None:
        self._limiter.charge(client)

    def refuse(self, client: str, code: str, message: str) -> NoReturn:
        """Refuse a message before it authenticated (the transport's own checks: media type,
        size), charging the client's pre-authentication budget, not any device's."""
        self._limiter.charge(client)
        raise _refuse(code, message)


class SeqBook:
    """One device's stored sequence numbers, and those on their way into the store.

    Stored seqs are kept as sorted, disjoint, inclusive ranges (the store's ``seq_ranges``,
    which survive pruning), not as one high-water mark: a message that arrives after a later
    one fills its gap and is stored, and ``replayed`` is answered only for seqs really stored
    (docs/spec/telemetry.md, check 5).  A device that never skips has a single range.
    """

    __slots__ = ("_ends", "_starts", "pending")

    def __init__(self, ranges: Sequence[tuple[int, int]] = ()) -> None:
        self._starts = [a for a, _ in ranges]
        self._ends = [b for _, b in ranges]
        # seq -> the acknowledgement future of the message carrying it, until it settles
        self.pending: dict[int, Future[Ack]] = {}

    def stored(self, seq: int) -> bool:
        i = bisect_right(self._starts, seq) - 1
        return i >= 0 and seq <= self._ends[i]

    def add(self, seqs: Sequence[int]) -> None:
        """Record strictly increasing ``seqs`` as stored, merging touching ranges."""
        start = prev = seqs[0]
        for seq in seqs[1:]:
            if seq != prev + 1:
                self._add_run(start, prev)
                start = seq
            prev = seq
        self._add_run(start, prev)

    def _add_run(self, first: int, last: int) -> None:
        lo = bisect_left(self._ends, first - 1)  # the first range ending at or after first-1
        hi = bisect_right(self._starts, last + 1)  # ranges before hi start at or before last+1
        if lo < hi:
            first, last = min(first, self._starts[lo]), max(last, self._ends[hi - 1])
        self._starts[lo:hi] = [first]
        self._ends[lo:hi] = [last]

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))


class IngestCore:
    def __init__(
        self,
        store: Store,
        registry: DeviceRegistry,
        rate: RateLimiter,
        now_ms: Callable[[], int],
        *,
        clock_skew_s: int = 300,
        max_message_bytes: int = 64 * 1024,
        max_readings: int = 100,
        preauth: RateLimiter | None = None,
        master: PrivateKey | None = None,
        out_of_band: Callable[[str, Sequence[Reading]], bool] | None = None,
        max_books: int = MAX_BOOKS,
    ) -> None:
        """``rate`` is each device's budget, charged once its message authenticated;
        ``preauth`` each client's budget for messages that fail before that (default
        :data:`PREAUTH_BURST` at :data:`PREAUTH_RATE_PER_S`, on ``rate``'s clock).
        ``master`` signs a receipt for every acknowledgement (a gateway always passes its
        key; without one, acknowledgements carry no receipt: benchmarks of the checks).
        ``out_of_band(patient, readings)``: whether the threshold policy finds a reading
        outside the patient's band; a ring proof on a message it does not is dropped before
        the message is stored (no alert can use it, telemetry.md "Who ring-signs").  Without
        it, every proof is kept.  ``max_books``: devices whose seq books stay in memory."""
        self.metrics = IngestMetrics()  # /metrics: every outcome of submit, both transports
        self._store = store
        self._registry = registry
        self._rate = rate
        # ``is None``, not ``or``: a RateLimiter has a length, so a new (empty) one is falsy.
        self.clients = ClientBudget(
            preauth
            if preauth is not None
            else RateLimiter(PREAUTH_RATE_PER_S, PREAUTH_BURST, rate.clock)
        )
        self._now_ms = now_ms
        self._master = master
        self._master_address = master.public_key.address_bytes if master is not None else b""
        self._out_of_band = out_of_band
        self._skew_ms = clock_skew_s * 1000
        # Checks 1, 2 and 4 over the live sessions (the node's authority on them); ingest worker
        # processes, when attached (:meth:`attach_workers`), run copies fed from here.
        self.verifier = Verifier(
            now_ms, max_message_bytes=max_message_bytes, max_readings=max_readings
        )
        self._workers: RemoteVerifier | None = None
        self._session_listeners: list[Callable[[LiveSession | None, bytes, int], None]] = []
        # What is stored, per device, rebuilt from the store at every start: at most
        # ``max_books`` devices' books, least recently used first out (see MAX_BOOKS).
        self._max_books = max_books
        self._books: OrderedDict[str, SeqBook] = OrderedDict(
            (device, SeqBook(ranges))
            for device, ranges in itertools.islice(store.stored_ranges().items(), max_books)
        )
        self._books_lock = threading.Lock()  # the map itself; a book is under its device's lock
        self._device_locks = tuple(threading.Lock() for _ in range(LOCK_STRIPES))
        self._listeners: list[Callable[[Message], None]] = []
        # Listeners given the journal row id too (the alarm service's replay cursor).
        self._entry_listeners: list[Callable[[StoredMessage], None]] = []
        self._stored: queue.SimpleQueue[StoredMessage | None] = queue.SimpleQueue()
        self._dispatcher: threading.Thread | None = None

    def on_stored(self, listener: Callable[[Message], None]) -> None:
        """Call ``listener`` with each message after it is stored, off the ingest path.

        Listeners (the threshold check, later the alert engine) run on one dispatcher thread,
        so a slow one delays its successors but never an acknowledgement.
        """
        self._listeners.append(listener)
        self._start_dispatcher()

    def on_stored_entry(self, listener: Callable[[StoredMessage], None]) -> None:
        """:meth:`on_stored`, with the message's journal row id (a cursor to replay from)."""
        self._entry_listeners.append(listener)
        self._listeners.append(lambda _: None)  # keeps "any listener?" one check
        self._start_dispatcher()

    def _start_dispatcher(self) -> None:
        if self._dispatcher is None:
            self._dispatcher = threading.Thread(
                target=self._dispatch, name="stored-dispatch", daemon=True
            )
            self._dispatcher.start()

    def _dispatch(self) -> None:
        while (entry := self._stored.get()) is not None:
            calls: list[Callable[[], None]] = [
                *(functools.partial(f, entry) for f in self._entry_listeners),
                *(functools.partial(f, entry.message) for f in self._listeners),
            ]
            for listener in calls:
                try:
                    listener()
                except (ChainUnavailable, StoreUnavailable):  # an outage: health logs it once
                    logging.getLogger(__name__).debug("a stored-message listener met an outage")
                except Exception as exc:
                    # The code only: a message may quote a patient's address (traceback at
                    # debug level, for a developer who asks for it).
                    logger = logging.getLogger(__name__)
                    logger.error("a stored-message listener failed: %s", safe_error(exc))
                    logger.debug("the listener's traceback", exc_info=True)

    def close(self) -> None:
        if self._dispatcher is not None:
            self._stored.put(None)
            self._dispatcher.join(timeout=10)

    def add_session(self, session: LiveSession, *, supersede: bool = True) -> None:
        """Carry ``session``'s telemetry.  ``supersede`` ends the device's other sessions (a
        new association); a re-key, and a restart reloading a session in its grace period,
        keep them (see :meth:`end_session_at`).

        The map is written in place (a reader's ``get`` sees it before or after a write, never
        half-way), so a start loading N sessions costs O(N); a copy of the map per session
        made that O(N²), minutes at 100,000 devices.  Expired sessions are swept when the map
        has doubled since its last sweep, and by a new association, which scans it anyway.
        Attached ingest workers are told (their copies of the map follow this one)."""
        self.verifier.add_session(session, supersede=supersede)
        for listener in self._session_listeners:
            listener(session, session.session_id, int(supersede))

    def end_session_at(self, session_id: bytes, expires_at: int) -> None:
        """Let a session carry telemetry only until ``expires_at`` (a re-keyed session's grace)."""
        self.verifier.end_session_at(session_id, expires_at)
        for listener in self._session_listeners:
            listener(None, session_id, expires_at)

    def on_session(self, listener: Callable[[LiveSession | None, bytes, int], None]) -> None:
        """Call ``listener(session, session_id, supersede)`` for each session added, and
        ``listener(None, session_id, expires_at)`` for each one ended early."""
        self._session_listeners.append(listener)

    def attach_workers(self, workers: RemoteVerifier | None) -> None:
        """Verify messages given to :meth:`submit` in ``workers`` (other processes), not on the
        caller's thread; None: back to this process."""
        self._workers = workers

    def live_session(self, session_id: bytes, now_ms: int) -> LiveSession | None:
        """The session if it carries telemetry at ``now_ms`` (check 1's rule)."""
        return self.verifier.live_session(session_id, now_ms)

    def sessions(self) -> list[LiveSession]:
        """The sessions carrying telemetry (for the gateway's shutdown, which settles counts)."""
        return self.verifier.sessions()

    def _lock_for(self, device: str) -> threading.Lock:
        """``device``'s stripe of the fixed lock table (:data:`LOCK_STRIPES`)."""
        return self._device_locks[hash(device) % LOCK_STRIPES]

    def _book(self, device: str) -> SeqBook:
        """``device``'s book (its lock held), now the most recently used.  A device not in
        memory gets an empty book: the store is the authority, so a replay still meets
        DuplicateReading there, and :meth:`_reload` then reads the device's ranges back."""
        with self._books_lock:
            book = self._books.get(device)
            if book is not None:
                self._books.move_to_end(device)
                return book
            book = self._books[device] = SeqBook()
            if len(self._books) > self._max_books:
                self._evict()
        return book

    def _evict(self) -> None:
        """Forget the least recently used books down to ``max_books`` (map lock held).

        A book is dropped only under its device's lock, taken without waiting, and only with
        nothing in flight: a message being checked or committed keeps its book, so what is
        pending is never lost; such a book is passed over (made recent) and the next tried.
        """
        books = self._books
        for _ in range(2 * (len(books) - self._max_books) + 8):
            if len(books) <= self._max_books:
                return
            device = next(iter(books))
            lock = self._lock_for(device)
            if lock.acquire(blocking=False):
                idle = not books[device].pending
                if idle:
                    del books[device]
                lock.release()
                if idle:
                    continue
            books.move_to_end(device)

    @property
    def max_message_bytes(self) -> int:
        return self.verifier.max_message_bytes

    def admit(self, client: str) -> None:
        """Refuse, unread, a message from a client over its pre-authentication budget."""
        self.clients.admit(client)

    def ingest(
        self, data: bytes, *, topic_device: str | None = None, client: str | None = None
    ) -> Ack:
        """Check, store durably, acknowledge: the blocking form of :meth:`submit`."""
        return self.submit(data, topic_device=topic_device, client=client).result()

    def submit(
        self,
        data: bytes,
        *,
        topic_device: str | None = None,
        client: str | None = None,
        sign: bool = True,
    ) -> Future[Ack]:
        """:meth:`_submit`, each outcome counted for ``/metrics`` (HTTP and MQTT both come
        here): a refusal raised now, or the future's acknowledgement or refusal.  ``sign``
        False: the acknowledgement comes without its receipt, for a caller that receipts
        several at once (:meth:`receipt_for`, the MQTT bridge's cumulative acks).

        With ingest workers attached, checks 1, 2 and 4 run in a worker process and every
        refusal but the pre-authentication limit's comes through the future."""
        key = client or (f"mqtt:{topic_device}" if topic_device is not None else "local")
        try:
            if self._workers is not None:
                self.admit(key)
                acked = self._submit_remote(data, topic_device, key, sign)
            else:
                acked = self._store_checked(self._check(data, topic_device, key), sign)
        except VitalchainError as exc:
            self.metrics.refused(exc.code)
            raise
        acked.add_done_callback(self._count)
        return acked

    def submit_verified(self, verified: Verified, *, sign: bool = True) -> Future[Ack]:
        """The rest of :meth:`submit` for a message an ingest worker verified (its HTTP
        path), counted alike; a refusal raises now.  ``sign`` False: the worker signs the
        receipt itself (:func:`sign_receipt`)."""
        try:
            acked = self._store_checked(self._admit(verified), sign)
        except VitalchainError as exc:
            self.metrics.refused(exc.code)
            raise
        acked.add_done_callback(self._count)
        return acked

    def _submit_remote(
        self, data: bytes, topic_device: str | None, client: str, sign: bool
    ) -> Future[Ack]:
        """Verify in a worker, then the rest here, in the order the worker answers (one
        device's messages go to one worker, keyed by its topic or session, in order)."""
        assert self._workers is not None
        acked: Future[Ack] = Future()
        order = topic_device or data[4:HEADER_SIZE]

        def verified(done: Future[Verified]) -> None:
            try:
                checked = self._admit(done.result())
                stored = self._store_checked(checked, sign)
            except Unauthenticated as exc:
                self.clients.charge(client)
                acked.set_exception(exc)
                return
            except BaseException as exc:
                acked.set_exception(exc)
                return
            _chain(stored, acked)

        self._workers.verify(data, topic_device, order).add_done_callback(verified)
        return acked

    def _count(self, done: Future[Ack]) -> None:
        error = done.exception()
        if error is None:
            self.metrics.accepted(done.result())
        else:
            self.metrics.refused(getattr(error, "code", "internal_error"))

    def _store_checked(self, checked: _Checked, sign: bool = True) -> Future[Ack]:
        """Check 5 against the device's book and checks 6 to 8, then into the store; the
        future resolves once stored.

        The message's seqs are booked as in flight at submission, so the device's next
        message can be checked while this one is still being committed: that is what lets
        MQTT pipeline.
        """
        message = checked.message
        device = message.device
        seqs = [r.seq for r in message.readings]
        acked: Future[Ack] = Future()
        with self._lock_for(device):
            book = self._book(device)
            earlier = self._classify(book, seqs)
            if earlier is None:
                self._check_values(checked)
                if checked.budget is not None:  # 8. the session key may carry one more
                    checked.budget.charge(checked.plaintext_bytes)
                stored = self._store.submit(message)
                for seq in seqs:
                    book.pending[seq] = acked
        if earlier is not None:
            return self._after(earlier)

        def settle(done: Future[int]) -> None:
            error = done.exception()
            refusal: GatewayError | None = None
            with self._lock_for(device):
                current = self._book(device)
                for seq in seqs:
                    if current.pending.get(seq) is acked:
                        del current.pending[seq]
                if error is None:
                    current.add(seqs)
                elif isinstance(error, DuplicateReading):
                    # The store knew better than the book (it is the authority): re-read it.
                    current = self._reload(device)
                    all_stored = all(current.stored(seq) for seq in seqs)
                    refusal = _replayed() if all_stored else _seq_conflict()
            if error is None:
                acked.set_result(self._acknowledge(message, seqs, sign=sign))
                if self._listeners:
                    self._stored.put(StoredMessage(done.result(), message))
            elif refusal is not None:
                acked.set_exception(refusal)
            else:
                acked.set_exception(_refuse("store_unavailable", "the store could not write"))

        stored.add_done_callback(settle)
        return acked

    def _acknowledge(self, message: Message, seqs: list[int], *, sign: bool = True) -> Ack:
        """The acknowledgement of ``message``, just committed, with its signed v1 receipt;
        ``sign`` False leaves it out, for :meth:`receipt_for` to cover with others."""
        # An out-of-band reading with no proof: the device judged by bands it should learn
        # again (an in-band message, the common case, costs one policy lookup per reading).
        judge = self._out_of_band
        prove = (
            message.ring is None and judge is not None and judge(message.patient, message.readings)
        )
        ack = Ack(len(seqs), seqs[-1], message.message_id, first_seq=seqs[0], prove=prove)
        if self._master is None or not sign:
            return ack
        receipt = sign_receipt(
            self._master,
            message.group_id,
            message.device,
            message.message_id,
            seqs[0],
            seqs[-1],
            self._now_ms(),  # after the commit: "stored" is true from here on
        )
        return dataclasses.replace(ack, receipt=receipt)

    def receipt_for(self, group_id: int, device: str, acks: Sequence[Ack]) -> bytes | None:
        """One v2 receipt (receipt.md) over ``acks``, 1..64 acknowledgements of ``device``'s
        messages already committed (from :meth:`submit` with ``sign`` False): one signature
        for them all, which is what brings the MQTT path under one ECDSA sign per message.
        None without a master key, as :meth:`_acknowledge`."""
        if self._master is None:
            return None
        if any(a.first_seq is None for a in acks):
            raise ValueError("only acknowledgements made by this core can be receipted")
        covered = [(a.message_id, a.first_seq or 0, a.last_seq) for a in acks]
        signed = cumulative_signed_bytes(
            group_id,
            bytes.fromhex(device[2:]),
            self._now_ms(),  # after every covered commit: "stored" is true of each
            self._master_address,
            covered,
        )
        return signed + self._master.sign(signed, RECEIPT_CONTEXT).to_rsv()

    def _reload(self, device: str) -> SeqBook:
        """Rebuild ``device``'s book from the store, keeping what is in flight (lock held)."""
        book = SeqBook(self._store.stored_ranges().get(device, []))
        with self._books_lock:
            previous = self._books.get(device)
            if previous is not None:
                book.pending = previous.pending
            self._books[device] = book
            self._books.move_to_end(device)
        return book

    def _classify(self, book: SeqBook, seqs: list[int]) -> Future[Ack] | None:
        """Check 5, against what is stored (lock held): None if no seq is stored or in flight;
        a failed future for a refusal; the acknowledgement future of an identical message
        in flight."""
        stored = sum(1 for seq in seqs if book.stored(seq))
        if stored == len(seqs):
            return _failed(_replayed())
        if stored:
            return _failed(_seq_conflict())
        inflight = {id(f): f for seq in seqs if (f := book.pending.get(seq)) is not None}
        if not inflight:
            return None
        if len(inflight) == 1 and all(seq in book.pending for seq in seqs):
            return next(iter(inflight.values()))  # a second copy of a message being stored
        return _failed(_seq_conflict())

    def _after(self, earlier: Future[Ack]) -> Future[Ack]:
        """The answer to a message whose seqs are stored or in flight: a refusal now, or, for
        a copy of a message still being committed, ``replayed`` once (and only if) that one
        is stored, and that one's refusal otherwise (``store_unavailable``: send again)."""
        if earlier.done() and (error := earlier.exception()) is not None:
            raise error
        acked: Future[Ack] = Future()

        def settle(done: Future[Ack]) -> None:
            error = done.exception()
            acked.set_exception(_replayed() if error is None else error)

        earlier.add_done_callback(settle)
        return acked

    def _check(self, data: bytes, topic_device: str | None, client: str) -> _Checked:
        """Checks 1 to 4 and the payload's shape, in this process.

        Everything before the AEAD opens is paid for by ``client``'s pre-authentication
        budget (only failures are charged); the device's own budget is charged only once its
        message authenticated, so junk carrying a device's session ID never spends it.
        """
        self.admit(client)
        try:
            verified = self.verifier.verify(data, topic_device, self._rate_and_status)
        except Unauthenticated:
            self.clients.charge(client)
            raise
        return self._admit(verified, checked=True)

    def _rate_and_status(self, session: LiveSession) -> None:
        """The device's rate (charged only once its message authenticated) and check 3."""
        if not self._rate.allow(session.device):
            raise _refuse("rate_limited", "too many messages from this device")
        self._registry.check_active(session.device)  # 3. the chain says the device is active

    def _admit(self, verified: Verified, *, checked: bool = False) -> _Checked:
        """What a verified message still needs of the node: its session still live (the
        node's map is the authority; a worker's copy may lag it) and, unless ``checked``
        already (in process), the device's rate and check 3: after check 4 then (a message
        failing both 3 and 4 is refused by 4's code, telemetry.md).  A ring proof on an
        in-band message is dropped."""
        now = self._now_ms()
        session = self.verifier.live_session(verified.session_id, now)
        if session is None or session.device != verified.device:
            raise Unauthenticated("unknown_session", "unknown or expired session")
        if not checked:
            self._rate_and_status(session)
        proof = None
        judge = self._out_of_band
        if verified.proof is not None and (
            judge is None or judge(session.patient, verified.readings)
        ):
            proof = RingProof.read(verified.proof)[0]  # checked by the verifier
        # otherwise in band: nothing an alert could be raised from, so not stored
        message = Message(
            verified.message_id,
            session.device,
            session.group_id,
            session.patient,
            now,
            verified.payload,
            verified.signature,
            verified.readings,
            proof,
        )
        return _Checked(
            message,
            verified.sent_at,
            list(verified.units),
            now,
            session.budget,
            verified.plaintext_bytes,
        )

    def _check_values(self, checked: _Checked) -> None:
        """Checks 6 and 7: device clocks within the window, values plausible in their unit."""
        readings, now = checked.message.readings, checked.now
        # 6. device clocks within the window
        for stamp in (checked.sent_at, *(r.t_ms for r in readings)):
            if abs(stamp - now) > self._skew_ms:
                raise _refuse("clock_skew", "a timestamp is outside the clock-skew window")
        # 7. plausible values, in the vital's unit
        for reading, unit in zip(readings, checked.units, strict=True):
            info = reading.vital.info
            if unit != info.unit:
                raise _refuse("wrong_unit", f"{info.short} is measured in {info.unit}")
            low, high = info.plausible
            if not low <= reading.value <= high:
                raise _refuse("implausible_value", f"{info.short} {reading.value} is not plausible")
