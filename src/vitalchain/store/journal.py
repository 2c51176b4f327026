"""The gateway's journal: verified messages in clear, on its own disk, until they are anchored.

``append`` returns only after the message is committed with ``synchronous=FULL`` (the WAL is
fsynced), so an acknowledged reading survives a crash of the process or the machine.  One
writer thread (the store's only group commit) drains a queue and commits whatever has arrived
as one transaction, so many concurrent callers share one fsync; each caller still waits for
its own commit.

The journal is the only place readings exist in clear, so it is always a local SQLite file
(0600, in the gateway's 0700 data directory), never a shared database, and it forgets a
message once the block holding it is sealed and anchored (:meth:`SqliteJournal.prune`), with
``secure_delete`` on and the WAL truncated so the bytes go too.  Replay protection must outlive
that: ``seq_ranges`` keeps, per device, the stored sequence numbers as disjoint ranges (no
health data), checked inside the writer's transaction, so a replay of a pruned message is
refused like any other.

The tables are the SQL core's (:data:`vitalchain.store.sql.journal_tables`), the schema its
migrations' (``journal`` history), every query a Core statement.  Two shortcuts, measured
(docs/benchmarks.md): the group commit runs its statements, compiled from those tables once,
on the driver's cursor in a transaction of its own (through SQLAlchemy's execute and
transaction, ingest lost a quarter to a third of its rate); and sealing's statements, those
with a row per reading or message, run compiled the same way on the store's own connections'
driver cursors (:class:`~vitalchain.store.sql.DriverSql`).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from itertools import pairwise
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, exc, func, select, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from vitalchain.store import migrations
from vitalchain.store.base import PendingPatient, SealedLeaf
from vitalchain.store.errors import DuplicateReading, StoreError, StoreUnavailable
from vitalchain.store.files import private_database
from vitalchain.store.model import Message, Reading, StoredMessage
from vitalchain.store.sql import (
    Connections,
    DriverSql,
    journal_tables,
    outside_transaction,
    sqlite_engine,
    translated,
    unique_violation,
    writing,
)
from vitalchain.vitals import Vital

__all__ = ["SqliteJournal", "seq_runs"]

_BATCH = 256
_Job = tuple[Message, "Future[int]"]
_M, _R, _S = journal_tables.messages, journal_tables.readings, journal_tables.seq_ranges


class _Replayed(Exception):
    """A seq already in ``seq_ranges``: raised inside the transaction like a key conflict."""


def seq_runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Strictly increasing ``seqs`` as maximal runs of consecutive numbers, inclusive."""
    runs: list[tuple[int, int]] = []
    start = prev = seqs[0]
    for a, b in pairwise(seqs):
        if b != a + 1:
            runs.append((start, a))
            start = b
        prev = b
    runs.append((start, prev))
    return runs


def _subtract(first: int, last: int, known: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``first..last`` outside the sorted, disjoint ranges ``known``."""
    out = []
    for a, b in known:
        if b < first or a > last:
            continue
        if a > first:
            out.append((first, a - 1))
        first = b + 1
        if first > last:
            return out
    out.append((first, last))
    return out


_CONFLICTS = (_Replayed, exc.IntegrityError, sqlite3.IntegrityError)
_UNAVAILABLE = (exc.OperationalError, exc.InterfaceError, sqlite3.OperationalError)


def _refusal(error: BaseException) -> StoreError:
    """Only a stored seq or message id is a replay; any other refusal is a failed write."""
    if isinstance(error, _Replayed) or unique_violation(error) in {_M.name, _R.name}:
        return DuplicateReading("reading or message already stored")
    if isinstance(error, StoreError):
        return error
    if isinstance(error, _UNAVAILABLE):
        return StoreUnavailable(f"store write failed: {error}")
    return StoreError(f"store write failed: {error}")


def _cursor(conn: Connection) -> sqlite3.Cursor:
    """A cursor of the driver connection under ``conn``: the group commit runs on it (its
    transaction, savepoints and statements, compiled from the tables once), the hot path's
    one shortcut past SQLAlchemy; every other journal call goes through it."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver.cursor()


def _messages_in(ids: Select[Any]) -> Select[Any]:
    """The messages whose ids ``ids`` selects, each with its readings, in one query."""
    return (
        select(_M.c.id, _M.c.message_id, _M.c.device, _M.c.group_id, _M.c.patient,
               _M.c.received_at, _M.c.payload, _M.c.signature,
               _R.c.seq, _R.c.vital, _R.c.value, _R.c.t)
        .outerjoin(_R, _R.c.message == _M.c.id)
        .where(_M.c.id.in_(ids.scalar_subquery()))
        .order_by(_M.c.id, _R.c.seq)
    )  # fmt: skip


# Oldest unsealed messages (each has >= 1 reading, so at most max_readings of them) while the
# readings before each one are fewer than max_readings.
_count = select(func.count()).where(_R.c.message == _M.c.id).scalar_subquery()
_oldest = (
    select(_M.c.id, _count.label("n"))
    .where(
        _M.c.group_id == bindparam("group_id"),
        _M.c.patient == bindparam("patient"),
        _M.c.leaf_index.is_(None),
    )
    .order_by(_M.c.id)
    .limit(bindparam("max_readings"))
    .subquery("oldest")
)
_counted = select(
    _oldest.c.id, (func.sum(_oldest.c.n).over(order_by=_oldest.c.id) - _oldest.c.n).label("before")
).subquery("counted")


# The statements with a row per reading or message (the reads that gather a block, the marks
# that seal it), compiled once to sqlite3's SQL: through Core, SQLAlchemy's per-row processing
# of their rows and parameter sets cost as much as the statement itself (docs/benchmarks.md).
_SQLITE = sqlite_dialect.dialect()
_UNSEALED = DriverSql.of(
    _messages_in(select(_counted.c.id).where(_counted.c.before < bindparam("max_readings"))),
    _SQLITE,
)

# The other statements, built once (a statement object caches its compiled form).
_after = select(_M.c.id).where(_M.c.id > bindparam("after")).order_by(_M.c.id)
_MESSAGES = DriverSql.of(_messages_in(_after.limit(bindparam("limit"))), _SQLITE)
_DEVICE_MESSAGES = DriverSql.of(
    _messages_in(_after.where(_M.c.device == bindparam("device")).limit(bindparam("limit"))),
    _SQLITE,
)
_LAST_SEQS = select(_S.c.device, func.max(_S.c.last_seq)).group_by(_S.c.device)
_RANGES = select(_S.c.device, _S.c.first_seq, _S.c.last_seq).order_by(_S.c.device, _S.c.first_seq)
_COUNT_READINGS = select(func.coalesce(func.sum(_S.c.last_seq - _S.c.first_seq + 1), 0))
_PENDING = (
    select(_M.c.group_id, _M.c.patient, func.count(_R.c.seq), func.min(_M.c.received_at))
    .join(_R, _R.c.message == _M.c.id)
    .where(_M.c.leaf_index.is_(None))
    .group_by(_M.c.group_id, _M.c.patient)
)
_SEALED = (
    select(_M.c.group_id, _M.c.leaf_index, _M.c.leaf, func.count())
    .where(_M.c.leaf_index.isnot(None))
    .group_by(_M.c.group_id, _M.c.leaf_index, _M.c.leaf)
    .order_by(_M.c.group_id, _M.c.leaf_index)
)
_MARK = DriverSql.of(  # one row per execution, run as the driver's executemany
    update(_M)
    .where(
        _M.c.id == bindparam("b_id"),
        _M.c.group_id == bindparam("b_group"),
        _M.c.leaf_index.is_(None),
    )
    .values(leaf_index=bindparam("b_leaf_index"), leaf=bindparam("b_leaf")),
    _SQLITE,
)
_UNMARK = (
    update(_M)
    .where(_M.c.group_id == bindparam("b_group"), _M.c.leaf_index == bindparam("b_leaf_index"))
    .values(leaf_index=None, leaf=None)
)
_anchored = (
    _M.c.group_id == bindparam("group_id"),
    _M.c.leaf_index.isnot(None),
    _M.c.leaf_index < bindparam("tree_size"),
)
_PRUNE_READINGS = delete(_R).where(_R.c.message.in_(select(_M.c.id).where(*_anchored)))
_PRUNE_MESSAGES = delete(_M).where(*_anchored)


class SqliteJournal:
    """Messages, readings and per-device stored seq ranges in one local SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_database(path)  # 0600 before SQLite opens it: new -wal, -shm inherit it
        # secure_delete: pruned readings are overwritten, not left in free pages.
        self._engine = sqlite_engine(path, pragmas=("secure_delete=ON",))
        try:
            with writing(self._engine) as conn:
                migrations.upgrade(conn, "journal")
            self._sql = _compile()
            self._db = Connections(self._engine)
        except BaseException:
            self._engine.dispose()
            raise
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._thread.start()

    # -- writing: the group commit ----------------------------------------------------------------

    def append(self, message: Message) -> int:
        """Store ``message`` durably; returns its row id.  A stored (device, seq) raises."""
        return self.submit(message).result()

    def submit(self, message: Message) -> Future[int]:
        """Queue ``message``; the future resolves once it is committed (or refused)."""
        if self._closed:
            raise StoreError("store is closed")
        done: Future[int] = Future()
        self._queue.put((message, done))
        return done

    def _run(self) -> None:
        conn: Connection | None = None
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                jobs = [job]
                stop = False
                while len(jobs) < _BATCH:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    jobs.append(nxt)
                conn = self._commit(conn, jobs)
                if stop:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _commit(self, conn: Connection | None, jobs: list[_Job]) -> Connection | None:
        """One transaction and one fsync for the batch, on the writer's own connection
        (returned; None after a failure, so the next batch opens a fresh one).

        Conflicts are rare (ingest refuses replays before they get here), so the batch is tried
        whole; only if it hits one is it redone with a savepoint per message, so that the
        conflicting message alone is refused.
        """
        try:
            if conn is None:
                with translated():
                    conn = self._engine.connect()
            try:
                outcomes: list[int | BaseException] = self._write(conn, jobs, isolate=False)
            except _CONFLICTS:
                outcomes = self._write(conn, jobs, isolate=True)
        except BaseException as error:  # the whole batch failed: fail every caller
            for _, done in jobs:
                done.set_exception(_refusal(error))
            if conn is not None:
                conn.close()
            return None
        for (_, done), outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)
        return conn

    def _write(
        self, conn: Connection, jobs: list[_Job], *, isolate: bool
    ) -> list[int | BaseException]:
        outcomes: list[int | BaseException] = []
        cur = _cursor(conn)
        cur.execute("BEGIN IMMEDIATE")
        try:
            for message, _ in jobs:
                if not isolate:
                    outcomes.append(self._insert(cur, message))
                    continue
                cur.execute("SAVEPOINT m")
                try:
                    outcomes.append(self._insert(cur, message))
                except _CONFLICTS as error:
                    cur.execute("ROLLBACK TO m")
                    outcomes.append(_refusal(error))
                cur.execute("RELEASE m")
            cur.execute("COMMIT")
        except BaseException:
            if cur.connection.in_transaction:
                cur.execute("ROLLBACK")
            raise
        return outcomes

    def _insert(self, cur: sqlite3.Cursor, m: Message) -> int:
        for first, last in seq_runs([r.seq for r in m.readings]):
            self._add_range(cur, m.device, first, last)
        row = (m.message_id, m.device, m.group_id, m.patient, m.received_at_ms, m.payload,
               m.signature)  # fmt: skip
        row_id = int(self._exec(cur, "message", row).lastrowid or 0)
        cur.executemany(
            self._sql["readings"][0],
            [(m.device, r.seq, row_id, int(r.vital), r.value, r.t_ms) for r in m.readings],
        )
        return row_id

    def _exec(self, cur: sqlite3.Cursor, name: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        sql, suffix = self._sql[name]
        return cur.execute(sql, args + suffix if suffix else args)

    def _add_range(self, cur: sqlite3.Cursor, device: str, first: int, last: int) -> None:
        """Record seqs ``first..last`` as stored, merging with touching ranges; a seq already
        stored (even of a pruned message) raises, so the message is refused as a replay."""
        run = self._exec
        below = run(cur, "range_below", (device, last)).fetchone()
        if below is not None and int(below[0]) >= first:
            raise _Replayed("sequence number already stored")
        left = run(cur, "range_ending", (device, first - 1)).fetchone()
        right = run(cur, "range_starting", (device, last + 1)).fetchone()
        if right is not None:
            run(cur, "range_drop", (device, last + 1))
            last = int(right[0])
        if left is not None:
            run(cur, "range_extend", (last, device, int(left[0])))
        else:
            run(cur, "range_add", (device, first, last))

    def remember_seqs(self, device: str, seqs: Sequence[int]) -> None:
        """Record ``seqs`` of ``device`` as stored without their messages (moving a legacy
        store whose sealed messages are gone); seqs already recorded are skipped."""
        if not seqs:
            return
        known = self.stored_ranges().get(device, [])
        new = [
            run
            for first, last in seq_runs(sorted(set(seqs)))
            for run in _subtract(first, last, known)
        ]
        with self._db.writing() as conn:
            cur = _cursor(conn)
            for first, last in new:
                self._add_range(cur, device, first, last)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._db.close()

    # -- reading --------------------------------------------------------------------------------

    def last_seqs(self) -> dict[str, int]:
        """Highest stored seq per device: what replay protection resumes from after a restart."""
        with self._db.reading() as conn:
            return {device: int(seq) for device, seq in conn.execute(_LAST_SEQS)}

    def stored_ranges(self) -> dict[str, list[tuple[int, int]]]:
        out: dict[str, list[tuple[int, int]]] = {}
        with self._db.reading() as conn:
            for device, first, last in conn.execute(_RANGES):
                out.setdefault(device, []).append((int(first), int(last)))
        return out

    def count_readings(self) -> int:
        with self._db.reading() as conn:
            return int(conn.execute(_COUNT_READINGS).scalar_one())

    def messages(
        self, *, device: str | None = None, after_id: int = 0, limit: int = 1000
    ) -> list[StoredMessage]:
        params = {"after": after_id, "limit": limit}
        if device is None:
            return self._messages(_MESSAGES, params)
        return self._messages(_DEVICE_MESSAGES, {**params, "device": device})

    # -- sealing ------------------------------------------------------------------------------

    def pending_patients(self) -> list[PendingPatient]:
        with self._db.reading() as conn:
            rows = conn.execute(_PENDING).all()
        return [PendingPatient(int(g), p, int(n), int(t)) for g, p, n, t in rows]

    def unsealed(
        self, group_id: int, patient: str, max_readings: int = 10_000
    ) -> list[StoredMessage]:
        # Counting readings in SQL keeps a long backlog from being decoded on every seal.
        params = {"group_id": group_id, "patient": patient, "max_readings": max_readings}
        return self._messages(_UNSEALED, params)

    def _messages(self, query: DriverSql, params: dict[str, Any]) -> list[StoredMessage]:
        """The rows of a :func:`_messages_in` query as messages: one query, whatever their
        number (a message's readings are its consecutive rows)."""
        with self._db.cursor() as cur:
            rows = cur.execute(query.sql, query.args(params)).fetchall()
        out: list[StoredMessage] = []
        readings: list[Reading] = []
        for i, row in enumerate(rows):
            if row[8] is not None:
                readings.append(Reading(int(row[8]), Vital(row[9]), float(row[10]), int(row[11])))
            if i + 1 < len(rows) and rows[i + 1][0] == row[0]:
                continue
            out.append(
                StoredMessage(
                    int(row[0]),
                    Message(bytes(row[1]), row[2], int(row[3]), row[4], int(row[5]), bytes(row[6]),
                            bytes(row[7]), tuple(readings)),
                )
            )  # fmt: skip
            readings = []
        return out

    def mark_sealed(
        self, group_id: int, leaf_index: int, leaf: bytes, message_ids: Sequence[int]
    ) -> None:
        rows = [
            _MARK.args({"b_id": i, "b_group": group_id, "b_leaf_index": leaf_index, "b_leaf": leaf})
            for i in message_ids
        ]
        if not rows:
            return
        with self._db.cursor(write=True) as cur:
            if cur.executemany(_MARK.sql, rows).rowcount != len(rows):  # summed over rows
                # Raised inside the transaction: none of them is marked.
                raise StoreError("a message is unknown or already sealed", code="block_conflict")

    def unmark(self, group_id: int, leaf_index: int) -> None:
        with self._db.writing() as conn:
            conn.execute(_UNMARK, {"b_group": group_id, "b_leaf_index": leaf_index})

    def sealed_leaves(self) -> list[SealedLeaf]:
        with self._db.reading() as conn:
            rows = conn.execute(_SEALED).all()
        return [SealedLeaf(int(g), int(i), bytes(leaf), int(n)) for g, i, leaf, n in rows]

    def prune(self, group_id: int, tree_size: int) -> int:
        """Forget what is sealed below an anchored ``tree_size``: rows, freed pages and WAL."""
        params = {"group_id": group_id, "tree_size": tree_size}
        with self._db.writing() as conn:
            conn.execute(_PRUNE_READINGS, params)
            gone = int(conn.execute(_PRUNE_MESSAGES, params).rowcount)
        if gone:
            # The WAL still holds the deleted pages' old images: copy the zeroed pages back
            # and empty it (a reader mid-query makes this a partial checkpoint; the next
            # prune finishes it).
            outside_transaction(self._engine, "PRAGMA wal_checkpoint(TRUNCATE)")
        return gone


_MESSAGE_COLUMNS = ("message_id", "device", "group_id", "patient", "received_at", "payload",
                    "signature")  # fmt: skip
_READING_COLUMNS = ("device", "seq", "message", "vital", "value", "t")
_RANGE_COLUMNS = ("device", "first_seq", "last_seq")


def _compile() -> dict[str, tuple[str, tuple[Any, ...]]]:
    """The writer's statements, compiled from the tables once, as the driver's SQL with
    positional parameters in the order given here (checked), and the values of any the
    compiler appends (a LIMIT's)."""
    device = _S.c.device == bindparam("device")
    hot: dict[str, tuple[ClauseElement, tuple[str, ...]]] = {
        "message": (_M.insert().values({c: bindparam(c) for c in _MESSAGE_COLUMNS}),
                    _MESSAGE_COLUMNS),
        "readings": (_R.insert().values({c: bindparam(c) for c in _READING_COLUMNS}),
                     _READING_COLUMNS),
        "range_below": (
            select(_S.c.last_seq).where(device, _S.c.first_seq <= bindparam("last"))
            .order_by(_S.c.first_seq.desc()).limit(1),
            ("device", "last"),
        ),
        "range_ending": (select(_S.c.first_seq).where(device, _S.c.last_seq == bindparam("last")),
                         ("device", "last")),
        "range_starting": (
            select(_S.c.last_seq).where(device, _S.c.first_seq == bindparam("first")),
            ("device", "first"),
        ),
        "range_drop": (delete(_S).where(device, _S.c.first_seq == bindparam("first")),
                       ("device", "first")),
        "range_extend": (
            update(_S).where(_S.c.device == bindparam("at_device"),
                             _S.c.first_seq == bindparam("at_first"))
            .values(last_seq=bindparam("last")),
            ("last", "at_device", "at_first"),
        ),
        "range_add": (_S.insert().values({c: bindparam(c) for c in _RANGE_COLUMNS}),
                      _RANGE_COLUMNS),
    }  # fmt: skip
    dialect = sqlite_dialect.dialect()
    out = {}
    for name, (statement, order) in hot.items():
        compiled = statement.compile(dialect=dialect)
        positions = compiled.positiontup if isinstance(compiled, SQLCompiler) else None
        if positions is None or tuple(positions[: len(order)]) != order:
            raise RuntimeError(f"journal statement {name}: parameters {positions}, not {order}")
        extra = positions[len(order) :]
        out[name] = (str(compiled), tuple(compiled.params[p] for p in extra))
    return out
