"""One durable queue for one key's on-chain writes: the gateway master's alert records, anchors
and device associations (issue 13).

Why: every chain write used to be a blocking call under one process-wide lock, held for up to
120 s while a receipt was awaited, so an anchor could hold up an alert record, and a chain
outage lost the writes that fell in it.  Here:

- :meth:`ChainOutbox.submit` only inserts a row into SQLite (committed with ``synchronous=FULL``
  before it returns) and hands back a :class:`Ticket`: nothing that notifies a person ever
  waits for the chain.  A key names the write (``alert:<id>``, ``anchor:<group>:<size>``,
  ``associate:<session>``); submitting a key again gives the same entry, so a retry after a
  crash or a lost HTTP answer never writes twice.
- A sender thread (``chain-outbox``) takes the entries in submission order: nonce, signature,
  the signed raw transaction and its hash are persisted *before* it is broadcast, so after a
  crash the very same transaction (same nonce, same hash) is broadcast again, and it can be
  mined at most once.  Up to ``max_in_flight`` are sent before the first is mined
  (pipelining); the ledger's nonce lock is held only while a nonce is taken and its
  transaction signed and sent.
- A receipt thread (``chain-receipts``) asks for the receipts of every transaction in flight
  in one poll (:meth:`Ledger.receipts`: one JSON-RPC batch on a node) and resolves the tickets
  in nonce order: mined with status 1 gives a :class:`~vitalchain.ledger.ledger.TxResult`; a
  revert gives the contract's typed error, decoded by running the call again at its block.  A
  refusal resolves only its own entry; the later ones go on.
- Simulation (``eth_call`` before signing, so that a refusal known beforehand costs no
  transaction) follows one rule: an entry is simulated when nothing is in flight (with
  transactions pending, the latest state is not the one it will run on) **and** it is not of a
  kind the gateway builds itself (:data:`PRESUMED_KINDS`: ``recordAlert`` and ``anchor``) that
  has passed since the last refusal of that kind.  So the first entry of those kinds after a
  start, and every one after a refusal (simulated or mined with status 0) until one is mined,
  is simulated; then they go unsimulated (at 10 alerts/s an ``eth_call`` for each was a third
  of the outbox's CPU), and should one still be refused, it is mined with status 0 and decoded
  as above: the same typed error, for the cost of one transaction.  Every other kind (an
  association, from a device's request) is always simulated when nothing is in flight.
- A chain that does not answer (:class:`ChainUnavailable`, a connection error, a timeout) leaves
  every entry queued: both threads back off (``retry_s`` doubling up to ``8 * retry_s``), one
  line is logged when the writes start waiting and one when they resume, and everything goes
  out in order when the node is back; transactions the node may have lost (a restarted dev
  node forgets its pool) are broadcast again.  A transaction whose nonce the chain has used for
  another one (another process with this key) is dead and is signed again with a new nonce.

The caller makes ``path`` private (``store.files.private_database`` first).  One outbox per key
and database; the database remembers the key's address and the chain ID and refuses others.
"""

from __future__ import annotations

import bisect
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from vitalchain.crypto.keys import PrivateKey
from vitalchain.errors import VitalchainError
from vitalchain.ledger.errors import (
    ERROR_CLASSES,
    ChainUnavailable,
    ContractError,
    LedgerError,
    TransactionFailed,
)
from vitalchain.ledger.ledger import TxResult
from vitalchain.ledger.ports import TransactionLedger
from vitalchain.logs import Transitions, safe_error

__all__ = ["ChainOutbox", "ChainWriter", "Outcome", "Ticket"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_QUEUED, _SENT, _MINED, _FAILED = "queued", "sent", "mined", "failed"
# Every way a node goes away: the RPC backend turns transport failures into ChainUnavailable;
# OSError covers ConnectionError, TimeoutError and requests' exceptions that escape it.
_OUTAGES: tuple[type[BaseException], ...] = (ChainUnavailable, OSError)
_MAX_REJECTIONS = 5  # nonce races with another sender of this key before an entry gives up
# The kinds whose refusals are rare (the gateway builds them from its own state) and which are
# not simulated again once one has passed (the module docstring's rule).
PRESUMED_KINDS: frozenset[tuple[str, str]] = frozenset(
    {("AlertRegistry", "recordAlert"), ("AnchorLog", "anchor")}
)
# Words of a node's refusal that a fresh try (new nonce, fees read again) may cure.
_RETRYABLE = ("nonce", "underpriced", "known", "already", "base fee", "fee too low")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    contract TEXT NOT NULL,
    function TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL,
    nonce INTEGER,
    raw BLOB,
    tx_hash BLOB,
    block_number INTEGER,
    gas_used INTEGER,
    error TEXT,
    submitted_at REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS entries_open ON entries (state, seq);
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an entry ended: ``tx`` when mined with status 1, else ``error`` (a decoded revert
    such as :class:`~vitalchain.ledger.errors.AlertError`, or :class:`TransactionFailed`)."""

    key: str
    tx: TxResult | None
    error: VitalchainError | None


class Ticket:
    """One entry's future.  :meth:`result` waits (without holding any lock of the outbox).

    A wait with a timeout makes the outbox try the chain at once (rather than at the end of
    its backoff), and ends early, as not finished, if a try made since the wait began found the
    chain unreachable: a caller that needs an answer (an HTTP request) gets
    ``chain_unavailable`` as quickly as a direct call would, while the entry stays queued; asking
    again with the same key later gives the same entry.
    """

    _SLICE_S = 0.05  # how often a waiter looks whether the chain was found unreachable

    def __init__(self, key: str, outbox: _Probe | None = None) -> None:
        self.key = key
        self._done = threading.Event()
        self._outcome: Outcome | None = None
        self._callbacks: list[Callable[[Outcome], None]] = []
        self._lock = threading.Lock()
        self._outbox = outbox

    def done(self) -> bool:
        return self._done.is_set()

    def _wait(self, timeout: float | None) -> bool:
        if timeout is None:
            return self._done.wait()
        started = time.monotonic()
        deadline = started + timeout
        if self._outbox is not None and not self._done.is_set():
            self._outbox.nudge()
        while not self._done.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or (self._outbox is not None and self._outbox.failed_since(started)):
                return self._done.is_set()
            self._done.wait(min(left, self._SLICE_S))
        return True

    def outcome(self, timeout: float | None = None) -> Outcome | None:
        """The outcome, or None if the entry is still queued or in flight after ``timeout``
        (or, with a timeout, as soon as the outbox finds the chain unreachable)."""
        self._wait(timeout)
        return self._outcome

    def result(self, timeout: float | None = None) -> TxResult:
        """The mined transaction; raises the entry's error, or :class:`ChainUnavailable` if it
        is not mined within ``timeout`` or the chain is found unreachable first (the entry
        stays queued and still goes out)."""
        if not self._wait(timeout):
            raise ChainUnavailable("the chain did not take the transaction; it stays queued")
        outcome = self._outcome
        assert outcome is not None
        if outcome.error is not None:
            raise outcome.error
        assert outcome.tx is not None
        return outcome.tx

    def _add(self, callback: Callable[[Outcome], None]) -> None:
        with self._lock:
            if self._outcome is None:
                self._callbacks.append(callback)
                return
            outcome = self._outcome
        _run_callback(callback, outcome)

    def _resolve(self, outcome: Outcome) -> None:
        with self._lock:
            if self._outcome is not None:
                return
            self._outcome = outcome
            callbacks, self._callbacks = self._callbacks, []
        self._done.set()
        for callback in callbacks:
            _run_callback(callback, outcome)


class _Probe:
    """What a ticket asks its outbox while it waits (ChainOutbox implements it)."""

    def nudge(self) -> None:
        """Try the chain now, not at the end of the backoff."""

    def failed_since(self, started: float) -> bool:
        """Whether a try to reach the chain failed after ``started`` (time.monotonic())."""
        return False


def _run_callback(callback: Callable[[Outcome], None], outcome: Outcome) -> None:
    try:
        callback(outcome)
    except Exception as exc:  # one caller's bug must not stop the outbox's threads
        log.error(
            "chain outbox: on_done of a %s entry failed: %s", _kind(outcome.key), safe_error(exc)
        )


def _kind(key: str) -> str:
    """What a log line may show of a key: its prefix (a key may hold a device address)."""
    return key.split(":", 1)[0]


class ChainWriter(Protocol):
    """What a service needs to write through the outbox (a test may hand a fake)."""

    def submit(
        self,
        key: str,
        contract: str,
        function: str,
        *args: Any,
        on_done: Callable[[Outcome], None] | None = None,
    ) -> Ticket: ...

    def tickets(self, prefix: str = "") -> list[Ticket]:
        """The unfinished entries whose key starts with ``prefix``, oldest first."""
        ...


# -- persistence of arguments and errors --------------------------------------------------------


def _encode(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b": bytes(value).hex()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"d": {k: _encode(v) for k, v in value.items()}}
    if value is None or isinstance(value, bool | int | str):
        return value
    raise LedgerError(f"cannot queue an argument of type {type(value).__name__}", code="bad_call")


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "b" in value:
            return bytes.fromhex(value["b"])
        return {k: _decode(v) for k, v in value["d"].items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _error_json(error: VitalchainError) -> str:
    if isinstance(error, ContractError):
        body: dict[str, Any] = {
            "contract": error.contract,
            "reason": error.reason,
            "fields": _encode(error.fields),
        }
    else:
        body = {"code": error.code, "message": error.message}
    return json.dumps(body)


def _error_from(text: str) -> VitalchainError:
    body = json.loads(text)
    if "contract" in body:
        cls = ERROR_CLASSES.get(body["contract"], ContractError)
        return cls(body["contract"], body["reason"], _decode(body["fields"]))
    cls2 = TransactionFailed if body["code"] == TransactionFailed.code else LedgerError
    return cls2(body["message"], code=body["code"])


@dataclass(eq=False, slots=True)
class _Entry:
    seq: int
    key: str
    contract: str
    function: str
    args: list[Any]
    outbox: _Probe
    nonce: int | None = None
    raw: bytes | None = None
    tx_hash: bytes | None = None
    unsent: bool = False  # signed and persisted, but the node may not have it: broadcast again
    simulated: bool = False  # passed its eth_call before it was sent
    calldata: bytes | None = None  # ABI-encoded once, for the simulation and the signature
    sent_at: float = 0.0  # time.monotonic() of the last broadcast
    rejections: int = 0
    ticket: Ticket = field(init=False)

    def __post_init__(self) -> None:
        self.ticket = Ticket(self.key, self.outbox)


class ChainOutbox(_Probe):
    """The durable, pipelined queue of one key's transactions (see the module docstring)."""

    def __init__(
        self,
        ledger: TransactionLedger,
        sender: PrivateKey,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        max_in_flight: int = 16,
        retry_s: float = 1.0,
        poll_s: float = 0.05,
        rebroadcast_s: float = 10.0,
        keep_done_s: float = 7 * 86400.0,
    ) -> None:
        """``clock`` stamps the rows; ``poll_s`` is the receipt poll interval, ``rebroadcast_s``
        how long a sent transaction may stay unmined before it is broadcast again, and
        ``keep_done_s`` how long finished entries are kept (the idempotency window)."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.ledger = ledger
        self.sender = sender
        self.address = sender.address
        self.path = path
        self.clock = clock
        self.max_in_flight = max_in_flight
        self.retry_s = retry_s
        self.poll_s = poll_s
        self.rebroadcast_s = rebroadcast_s
        self._max_backoff_s = 8 * retry_s
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._check_meta()
        # Everything below and the database connection are guarded by _cv.
        self._cv = threading.Condition()
        self._open: dict[str, _Entry] = {}  # queued or in flight, by key
        self._queue: list[_Entry] = []  # queued, by seq (submission order)
        self._flight: list[_Entry] = []  # sent, not yet mined, by nonce
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._waiting = Transitions()  # "chain" -> code while the node does not answer
        self._waiting_since = 0.0
        self._failed_at = 0.0  # time.monotonic() of the last try that found the chain away
        self._nudges = 0  # a waiter asked for a try now (cuts a backoff short)
        self.max_in_flight_seen = 0  # for tests and benchmarks: the pipeline's depth reached
        self._trusted: set[tuple[str, str]] = set()  # presumed kinds that passed (under _cv)
        self._prune(keep_done_s)
        self._load()

    # -- set-up -------------------------------------------------------------------------------

    def _check_meta(self) -> None:
        want = {
            "schema_version": str(SCHEMA_VERSION),
            "sender": self.address,
            "chain_id": str(self.ledger.chain_id),
        }
        have = dict(self._db.execute("SELECT name, value FROM meta").fetchall())
        for name, value in want.items():
            if name not in have:
                self._db.execute("INSERT INTO meta (name, value) VALUES (?, ?)", (name, value))
            elif have[name] != value:
                self._db.close()
                raise LedgerError(
                    f"{self.path} is the chain outbox of another {name.replace('_', ' ')}"
                    f" ({have[name]}, not {value})",
                    code="outbox_mismatch",
                )

    def _prune(self, keep_done_s: float) -> None:
        cutoff = self.clock() - keep_done_s
        self._db.execute(
            "DELETE FROM entries WHERE state IN (?, ?) AND finished_at < ?",
            (_MINED, _FAILED, cutoff),
        )

    def _load(self) -> None:
        """Unfinished entries of an earlier run: queued ones in order, sent ones to be
        broadcast again exactly as signed (and their nonces never given out again)."""
        rows = self._db.execute(
            "SELECT seq, key, contract, function, args, state, nonce, raw, tx_hash FROM entries"
            " WHERE state IN (?, ?) ORDER BY seq",
            (_QUEUED, _SENT),
        ).fetchall()
        for seq, key, contract, function, args, state, nonce, raw, tx_hash in rows:
            entry = _Entry(seq, key, contract, function, _decode(json.loads(args)), self)
            self._open[key] = entry
            if state == _SENT:
                entry.nonce, entry.raw, entry.tx_hash = int(nonce), bytes(raw), bytes(tx_hash)
                entry.unsent = True
                self._flight.append(entry)
            else:
                self._queue.append(entry)
        self._flight.sort(key=lambda e: e.nonce or 0)
        if self._flight:
            top = max(e.nonce or 0 for e in self._flight)
            self.ledger.use_nonce(self.address, top, persisted=True)

    def start(self) -> None:
        """Start the sender and receipt threads (they never raise; the chain may be down)."""
        with self._cv:
            if self._threads or self._closed:
                return
            self._threads = [
                threading.Thread(target=self._send_loop, name="chain-outbox", daemon=True),
                threading.Thread(target=self._receipt_loop, name="chain-receipts", daemon=True),
            ]
        for thread in self._threads:
            thread.start()

    # -- the public side ----------------------------------------------------------------------

    def submit(
        self,
        key: str,
        contract: str,
        function: str,
        *args: Any,
        on_done: Callable[[Outcome], None] | None = None,
    ) -> Ticket:
        """Queue ``contract.function(*args)`` under ``key``: durable when this returns, one
        SQLite insert.  A key already known gives its entry (whatever the arguments), and
        ``on_done`` runs at once if that one has finished; else on the outbox's thread."""
        if not self.ledger.has_contract(contract):
            raise LedgerError(f"unknown contract {contract}", code="bad_call")
        encoded = json.dumps(_encode(list(args)))
        with self._cv:
            if self._closed:
                raise LedgerError("the chain outbox is closed", code="outbox_closed")
            entry = self._open.get(key)
            if entry is not None:
                ticket = entry.ticket
            else:
                ticket = self._known(key) or self._insert(key, contract, function, encoded, args)
        if on_done is not None:
            ticket._add(on_done)
        return ticket

    def _known(self, key: str) -> Ticket | None:
        """The ticket of a finished entry, resolved from its row (None: no such key)."""
        row = self._db.execute(
            "SELECT state, tx_hash, block_number, gas_used, error FROM entries WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        state, tx_hash, block_number, gas_used, error = row
        ticket = Ticket(key, self)
        if state == _MINED:
            ticket._resolve(Outcome(key, TxResult(bytes(tx_hash), block_number, gas_used), None))
        else:
            ticket._resolve(Outcome(key, None, _error_from(error)))
        return ticket

    def _insert(
        self, key: str, contract: str, function: str, encoded: str, args: tuple[Any, ...]
    ) -> Ticket:
        cursor = self._db.execute(
            "INSERT INTO entries (key, contract, function, args, state, submitted_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key, contract, function, encoded, _QUEUED, self.clock()),
        )
        assert cursor.lastrowid is not None
        entry = _Entry(cursor.lastrowid, key, contract, function, list(args), self)
        self._open[key] = entry
        self._queue.append(entry)  # seq grows: stays sorted
        self._cv.notify_all()
        return entry.ticket

    def tickets(self, prefix: str = "") -> list[Ticket]:
        """The unfinished entries whose key starts with ``prefix``, in submission order (a
        restarted sealer adopts the anchor it had queued)."""
        with self._cv:
            entries = sorted(self._open.values(), key=lambda e: e.seq)
            return [e.ticket for e in entries if e.key.startswith(prefix)]

    def pending(self) -> int:
        """Entries queued or sent but not yet mined."""
        with self._cv:
            return len(self._open)

    def nudge(self) -> None:
        with self._cv:
            self._nudges += 1
            self._cv.notify_all()

    def failed_since(self, started: float) -> bool:
        return self._failed_at > started

    def status(self) -> dict[str, Any]:
        """For health: ``queued``, ``in_flight``, and ``waiting`` (the code while the chain
        does not answer, else None) with ``waiting_s``."""
        with self._cv:
            queued, flight = len(self._queue), len(self._flight)
        waiting = self._waiting.current().get("chain")
        since = time.monotonic() - self._waiting_since if waiting else 0.0
        return {"queued": queued, "in_flight": flight, "waiting": waiting, "waiting_s": since}

    def drain(self, timeout: float) -> None:
        """Wait until nothing is pending, or ``timeout`` seconds (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._open and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cv.wait(left)

    def close(self) -> None:
        """Stop the threads; unfinished entries stay in the database for the next start."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            self._cv.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        with self._cv:
            self._db.close()

    # -- bookkeeping (under _cv) --------------------------------------------------------------

    def _update(self, entry: _Entry, **columns: Any) -> None:
        names = ", ".join(f"{name} = ?" for name in columns)
        sql = f"UPDATE entries SET {names} WHERE seq = ?"  # noqa: S608 - our column names
        self._db.execute(sql, (*columns.values(), entry.seq))

    def _mark_sent(self, entry: _Entry, nonce: int, raw: bytes, tx_hash: bytes) -> None:
        with self._cv:
            self._update(entry, state=_SENT, nonce=nonce, raw=raw, tx_hash=tx_hash)
            entry.nonce, entry.raw, entry.tx_hash, entry.unsent = nonce, raw, tx_hash, True
            self._queue.remove(entry)
            self._flight.append(entry)  # nonces grow under the ledger's nonce lock
            self.max_in_flight_seen = max(self.max_in_flight_seen, len(self._flight))

    def _requeue(self, entry: _Entry) -> None:
        """Back to the queue, unsigned: refused by the node, or its nonce went to another."""
        with self._cv:
            self._update(entry, state=_QUEUED, nonce=None, raw=None, tx_hash=None)
            entry.nonce = entry.raw = entry.tx_hash = None
            entry.unsent = False
            if entry in self._flight:
                self._flight.remove(entry)
            bisect.insort(self._queue, entry, key=lambda e: e.seq)
            self._cv.notify_all()

    def _finish(self, entry: _Entry, outcome: Outcome) -> None:
        with self._cv:
            if self._open.get(entry.key) is not entry:
                return
            if outcome.tx is not None:
                self._update(
                    entry,
                    state=_MINED,
                    tx_hash=outcome.tx.tx_hash,
                    block_number=outcome.tx.block_number,
                    gas_used=outcome.tx.gas_used,
                    raw=None,
                    finished_at=self.clock(),
                )
            else:
                assert outcome.error is not None
                self._update(
                    entry, state=_FAILED, error=_error_json(outcome.error), raw=None,
                    finished_at=self.clock(),
                )  # fmt: skip
            del self._open[entry.key]
            kind = (entry.contract, entry.function)
            if kind in PRESUMED_KINDS:
                if outcome.tx is not None:
                    self._trusted.add(kind)
                else:  # refused: simulate this kind again until one passes
                    self._trusted.discard(kind)
            if entry in self._flight:
                self._flight.remove(entry)
            if entry in self._queue:
                self._queue.remove(entry)
            self._cv.notify_all()
        if outcome.error is not None:  # the caller decides what a refusal means; no log here
            log.debug(
                "chain outbox: a %s entry was refused: %s", _kind(entry.key), outcome.error.code
            )
        entry.ticket._resolve(outcome)

    # -- the chain waits ----------------------------------------------------------------------

    def _down(self, exc: BaseException) -> None:
        self._failed_at = time.monotonic()
        code = safe_error(exc) if isinstance(exc, VitalchainError) else ChainUnavailable.code
        if self._waiting.change("chain", code) == "":
            self._waiting_since = time.monotonic()
            log.warning(
                "chain writes wait: the node does not answer (%s); %d queued, retrying",
                code,
                self.pending(),
            )

    def _up(self) -> None:
        if self._waiting.change("chain", None):
            log.info(
                "chain writes resume after %.1f s; %d queued",
                time.monotonic() - self._waiting_since,
                self.pending(),
            )

    def _pause(self, seconds: float, *, backoff: bool = True) -> bool:
        """Sleep up to ``seconds``; False once closed.  A backoff is cut short only by
        :meth:`nudge` or :meth:`close` (new submissions do not: an outage is not retried once
        per submission); the receipt poll's interval by any change (a transaction sent)."""
        with self._cv:
            seen = self._nudges
            if self._closed or seconds <= 0:
                pass
            elif backoff:
                self._cv.wait_for(lambda: self._closed or self._nudges != seen, seconds)
            else:
                self._cv.wait(seconds)
            return not self._closed

    # -- the sender thread --------------------------------------------------------------------

    def _ready(self) -> _Entry | None:
        """The next entry to send, if the pipeline has room and every in-flight one is known
        to the node (an unconfirmed broadcast is retried first, so nonces reach it in order)."""
        if not self._queue or len(self._flight) >= self.max_in_flight:
            return None
        if any(e.unsent for e in self._flight):
            return None
        return self._queue[0]

    def _send_loop(self) -> None:
        backoff = 0.0
        while True:
            with self._cv:
                entry = self._ready()
                while not self._closed and entry is None:
                    self._cv.wait()
                    entry = self._ready()
                if self._closed or entry is None:
                    return
                kind = (entry.contract, entry.function)
                simulate = not self._flight and kind not in self._trusted
            try:
                self._send(entry, simulate=simulate)
            except _OUTAGES as exc:
                self._down(exc)
                backoff = min(max(backoff * 2, self.retry_s), self._max_backoff_s)
                if not self._pause(backoff):
                    return
                continue
            except Exception as exc:  # never let the thread die; the entry gives up
                try:
                    self._finish(entry, self._failure(entry, exc))
                except Exception as again:  # the database itself fails (disk full)
                    log.error("chain outbox: cannot record an outcome: %s", safe_error(again))
                    if not self._pause(self._max_backoff_s):
                        return
            backoff = 0.0

    def _send(self, entry: _Entry, *, simulate: bool) -> None:
        """Simulate (the module docstring's rule), then under the nonce lock: nonce, sign,
        persist, broadcast.  A refusal finishes the entry; an outage raises."""
        if entry.calldata is None:
            entry.calldata = self.ledger.calldata(entry.contract, entry.function, *entry.args)
        if simulate:
            try:
                self.ledger.simulate(
                    self.address, entry.contract, entry.function, *entry.args,
                    calldata=entry.calldata,
                )  # fmt: skip
            except _OUTAGES:
                raise
            except VitalchainError as exc:
                self._up()
                self._finish(entry, Outcome(entry.key, None, exc))
                return
            entry.simulated = True
        refused: Exception | None = None
        with self.ledger.nonce_lock:
            nonce = self.ledger.next_nonce(self.address)
            raw, tx_hash = self.ledger.sign_call(
                self.sender, nonce, entry.contract, entry.function, *entry.args,
                calldata=entry.calldata,
            )  # fmt: skip
            self._mark_sent(entry, nonce, raw, tx_hash)  # durable before the node sees it
            self.ledger.use_nonce(self.address, nonce, persisted=True)
            try:
                self.ledger.broadcast(raw)
            except _OUTAGES:
                raise  # stays sent and unconfirmed: broadcast again when the node is back
            except Exception as exc:
                if not self._known_to_node(entry):
                    self.ledger.release_nonce(self.address, nonce)
                    self._requeue(entry)
                    refused = exc
            if refused is None:
                entry.unsent, entry.sent_at = False, time.monotonic()
        self._up()
        if refused is not None:
            self._rejected(entry, refused)  # outside the lock: it may run callbacks
            return
        with self._cv:
            self._cv.notify_all()

    def _known_to_node(self, entry: _Entry) -> bool:
        """Whether the node has this very transaction (pooled or mined), after a broadcast
        that it refused: a second broadcast of one it already had is refused too."""
        assert entry.tx_hash is not None
        return self.ledger.has_transaction(entry.tx_hash)

    def _rejected(self, entry: _Entry, exc: Exception) -> None:
        """The node refused to take the transaction: a nonce race is retried, anything else
        (too little ether, a node rule) finishes the entry with a clear error."""
        text = str(exc).lower()
        entry.rejections += 1
        nonce_race = any(w in text for w in _RETRYABLE)
        if nonce_race and entry.rejections < _MAX_REJECTIONS:
            return  # at the head of the queue again, with a nonce read afresh
        self._finish(entry, self._failure(entry, exc))

    def _failure(self, entry: _Entry, exc: Exception) -> Outcome:
        if isinstance(exc, VitalchainError):
            return Outcome(entry.key, None, exc)
        text = str(exc).lower()
        if "afford" in text or "insufficient funds" in text:
            error: VitalchainError = LedgerError(
                f"{self.address} has too little ether to pay for gas", code="insufficient_funds"
            )
        else:
            first = (str(exc).splitlines() or [""])[0][:160]
            error = TransactionFailed(
                f"{entry.contract}.{entry.function}: the node refused it ({type(exc).__name__}:"
                f" {first})"
            )
        return Outcome(entry.key, None, error)

    # -- the receipt thread -------------------------------------------------------------------

    def _receipt_loop(self) -> None:
        backoff = 0.0
        while True:
            with self._cv:
                while not self._closed and not self._flight:
                    self._cv.wait()
                if self._closed:
                    return
                flight = list(self._flight)
            try:
                self._poll(flight)
            except _OUTAGES as exc:
                self._down(exc)
                with self._cv:
                    for entry in self._flight:  # a restarted node may have lost its pool
                        entry.unsent = True
                backoff = min(max(backoff * 2, self.retry_s), self._max_backoff_s)
                if not self._pause(backoff):
                    return
                continue
            except Exception as exc:  # never let the thread die
                log.error("chain outbox: receipt poll failed: %s", safe_error(exc))
                backoff = min(max(backoff * 2, self.retry_s), self._max_backoff_s)
                if not self._pause(backoff):
                    return
                continue
            backoff = 0.0
            self._up()
            if not self._pause(self.poll_s, backoff=False):
                return

    def _poll(self, flight: list[_Entry]) -> None:
        """Every receipt in flight in one request, then in nonce order up to the first
        transaction not mined yet (the later ones cannot be mined before it); that one is
        broadcast again if unconfirmed or old (and its receipt asked again after that)."""
        hashes = [e.tx_hash for e in flight if e.tx_hash is not None]
        receipts = dict(zip(hashes, self.ledger.receipts(hashes), strict=True))
        for entry in flight:
            assert entry.tx_hash is not None
            stale = time.monotonic() - entry.sent_at >= self.rebroadcast_s
            receipt = receipts.get(entry.tx_hash)
            if entry.unsent or stale:  # first make sure the node has it, as before a restart
                if not self._rebroadcast(entry):
                    continue  # dead, back in the queue
                if receipt is None:
                    receipt = self.ledger.receipt(entry.tx_hash)
            if receipt is None:
                if stale:
                    self._fill_gap(entry)
                return
            if receipt["status"] == 1:
                tx = TxResult(entry.tx_hash, int(receipt["blockNumber"]), int(receipt["gasUsed"]))
                self._finish(entry, Outcome(entry.key, tx, None))
            else:
                error = self.ledger.revert_error(
                    self.address, entry.contract, entry.function, entry.args, receipt
                )
                self._finish(entry, Outcome(entry.key, None, error))

    def _rebroadcast(self, entry: _Entry) -> bool:
        """Broadcast the persisted raw transaction again (same nonce, same hash), if it is
        still unconfirmed or old.  False if the chain has used its nonce for another
        transaction: then it goes back to the queue, to be signed anew.  The nonce lock is
        held for the broadcast only (it orders broadcasts); the checks after a refused one
        are made without it."""
        with self.ledger.nonce_lock:
            with self._cv:
                if self._open.get(entry.key) is not entry or entry.raw is None:
                    return False
                if not entry.unsent and time.monotonic() - entry.sent_at < self.rebroadcast_s:
                    return True  # the sender's own broadcast went through meanwhile
                raw = entry.raw
            try:
                self.ledger.broadcast(raw)
                refused = False
            except _OUTAGES:
                raise
            except Exception:  # already pooled, already mined, or dead
                refused = True
            entry.unsent, entry.sent_at = False, time.monotonic()
        if refused and self._dead(entry):
            log.warning(
                "chain outbox: the nonce of a %s entry went to another transaction;"
                " signing it again",
                _kind(entry.key),
            )
            self._requeue(entry)
            return False
        with self._cv:
            self._cv.notify_all()
        return True

    def _dead(self, entry: _Entry) -> bool:
        """Neither mined nor known to the node, and its nonce is used: it can never be mined."""
        assert entry.tx_hash is not None
        assert entry.nonce is not None
        return (
            self.ledger.receipt(entry.tx_hash) is None
            and not self.ledger.has_transaction(entry.tx_hash)
            and self.ledger.transaction_count(self.address) > entry.nonce
        )

    def _fill_gap(self, entry: _Entry) -> None:
        """The oldest transaction waits on nonces below it that no transaction holds (another
        sender of this key lost its own): fill them with empty transfers to ourselves."""
        assert entry.nonce is not None
        with self.ledger.nonce_lock:
            start = self.ledger.transaction_count(self.address, "pending")
            for nonce in range(start, entry.nonce):
                raw = self.ledger.sign_filler(self.sender, nonce)
                log.warning("chain outbox: filling the free nonce %d below an entry", nonce)
                self.ledger.broadcast(raw)
                self.ledger.use_nonce(self.address, nonce)
