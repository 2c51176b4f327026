"""The alarm system's durable state: one SQLite file, ``<data_dir>/alarms.db`` (0600, WAL).

An alarm system is trusted only if a crash loses no alarm, so everything the rule engine and
the escalator need to continue exactly where they were lives here: episodes in progress
(counters, hysteresis), devices' last-seen times and stale levels, open alerts (escalation
timers, acknowledgements, receipts), snoozes, every (alert, recipient) delivery, and the
public alert objects (with their key images, so a replayed alert stays refused, and their
on-chain recording status).

Why batching, and which batch: the effects of one stored message (episode changes, a raised
alert, its deliveries, and the journal cursor that says "this message is done") must reach
the disk together, or a kill between two of them either loses the alert (the episode says
ALERTING, nothing was sent) or raises it twice (the alert was sent, the cursor says it was
not).  The thread processing a message therefore *stages* what the sinks report inside
:meth:`AlarmDb.processing`; on exit the staged records join the shared dirty set together
with the cursor advance, atomically.  :meth:`flush` writes the dirty set in ONE transaction
(``synchronous=FULL``): the alert service calls it before any notification goes out, and its
clock thread calls it about once a second otherwise, so a normal reading costs no fsync of
its own.  Anything not yet flushed is recomputed at start: the service replays the journal's
messages after the persisted cursor (state is a function of the journal), so losing the
unflushed tail of a second is losing nothing.

Records arrive from the rule engine and the escalator as frozen dataclasses of plain fields
(alerts/rules.py and alerts/escalation.py define them) and are kept as JSON, one row per record
identity, with a sequence number: sink calls are made under the engine's or escalator's lock,
so their order is the order of the state changes, and a row is only replaced by a record
with a higher number (a record staged on one thread can never overwrite a newer one written
from another).  A retired alert leaves a tombstone with its number for the same reason;
tombstones are purged once nothing older can still be staged.

The journal cursor: stored messages reach the service in journal order except for rare
races, so the cursor is the highest journal row id up to which every message was processed,
plus the few processed ids above it ("ahead"), plus the newest ``received_at`` processed and
the message id at the cursor (SQLite reuses row ids once the newest rows are pruned; the
service uses these to tell a reused id from a processed one, see ``AlertService.start``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from vitalchain.store.files import private_database

__all__ = ["SCHEMA_VERSION", "AlarmDb", "Cursor", "NoticeRow", "StoredAlert"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id    BLOB PRIMARY KEY,
    key_image   BLOB UNIQUE,
    patient     TEXT NOT NULL,
    body        TEXT NOT NULL,
    recorded_tx BLOB,
    kind        TEXT NOT NULL DEFAULT 'threshold',
    priority    TEXT NOT NULL DEFAULT 'medium',
    vital       TEXT,
    condition   TEXT,
    chain       TEXT,
    raised_at   REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS state (
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    data TEXT,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS notices (
    alert_id     BLOB NOT NULL,
    recipient    TEXT NOT NULL,
    tier         INTEGER NOT NULL,
    repeat       INTEGER NOT NULL,
    priority     TEXT NOT NULL,
    first_at     REAL NOT NULL,
    at           REAL NOT NULL,
    receipted_at REAL,
    PRIMARY KEY (alert_id, recipient)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS notices_by_recipient ON notices (recipient, at);
CREATE INDEX IF NOT EXISTS notices_pending ON notices (recipient, first_at)
    WHERE receipted_at IS NULL;
CREATE INDEX IF NOT EXISTS alerts_unrecorded ON alerts (kind) WHERE chain IS NULL;
"""

# The kinds of record the sinks report, and the fields naming one record's identity.
EPISODE, DEVICE, ALERT, DELIVERY, SNOOZE = "episode", "device", "alert", "delivery", "snooze"
_IDENTITY: dict[str, tuple[str, ...]] = {
    EPISODE: ("patient", "vital"),
    DEVICE: ("patient", "device"),
    ALERT: ("alert_id",),
    DELIVERY: ("alert_id", "recipient"),
    SNOOZE: ("by", "patient", "vital", "priority"),
}

R = TypeVar("R")


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _unplain(value: Any) -> Any:
    """JSON back to record fields: lists become tuples (records are frozen)."""
    if isinstance(value, list):
        return tuple(_unplain(v) for v in value)
    if isinstance(value, dict):
        if set(value) == {"hex"}:
            return bytes.fromhex(value["hex"])
        return {k: _unplain(v) for k, v in value.items()}
    return value


def encode_record(record: Any) -> str:
    fields = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    return json.dumps(_plain(fields), separators=(",", ":"), sort_keys=True)


def decode_record(cls: Callable[..., R], data: str) -> R:
    return cls(**{k: _unplain(v) for k, v in json.loads(data).items()})


def _identity(kind: str, record: Any) -> tuple[Any, ...]:
    return tuple(getattr(record, name, None) for name in _IDENTITY[kind])


def _key(identity: tuple[Any, ...]) -> str:
    """An identity as the state table's key (JSON of its plain values)."""
    return json.dumps([_plain(v) for v in identity])


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the service is in the journal (see the module docstring)."""

    row_id: int = 0  # every message with a row id <= this one is processed
    message_id: bytes | None = None  # the journal's message id at row_id, if known
    ahead: tuple[tuple[int, bytes], ...] = ()  # processed (row id, message id) above row_id
    max_received_ms: int = 0  # the newest received_at of any processed message


@dataclass(frozen=True, slots=True)
class StoredAlert:
    body: str  # the public alert object, JSON
    patient: str
    kind: str
    priority: str
    vital: str | None
    condition: str | None  # of a technical alarm
    recorded_tx: bytes | None
    chain: str | None  # None: to record; "recorded"; "none": not for the chain; else a code
    raised_at: float


@dataclass(frozen=True, slots=True)
class NoticeRow:
    alert_id: bytes
    recipient: str
    tier: int
    repeat: int
    priority: str
    first_at: float
    at: float
    receipted_at: float | None


class _Batch:
    """What waits for the next flush: records by identity, row operations in order."""

    def __init__(self) -> None:
        # (kind, identity) -> (sequence number, the record, or None for a tombstone); encoded
        # only when flushed, so a record changed many times between flushes costs one encoding.
        self.records: dict[tuple[str, tuple[Any, ...]], tuple[int, Any]] = {}
        self.ops: list[tuple[str, tuple[Any, ...]]] = []
        self.key_images: set[bytes] = set()
        self.urgent = False  # holds more than times (a counter, an alert): flush it now

    def merge(self, other: _Batch) -> None:
        self.urgent = self.urgent or other.urgent
        for key, (seq, data) in other.records.items():
            held = self.records.get(key)
            if held is None or held[0] < seq:
                self.records[key] = (seq, data)
        self.ops.extend(other.ops)
        self.key_images |= other.key_images

    def __bool__(self) -> bool:
        return bool(self.records or self.ops)


_SHAPE_FIELDS: dict[type, tuple[str, ...]] = {}


def _shape(record: Any) -> tuple[Any, ...]:
    """An episode record without its newest-reading time: what a plain in-range reading
    does not change."""
    names = _SHAPE_FIELDS.get(type(record))
    if names is None:
        skip = {"last_at", *_IDENTITY[EPISODE]}
        names = tuple(f.name for f in dataclasses.fields(record) if f.name not in skip)
        _SHAPE_FIELDS[type(record)] = names
    return tuple(getattr(record, name) for name in names)


_UPSERT_STATE = (
    "INSERT INTO state (kind, key, seq, data) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET seq = excluded.seq, data = excluded.data "
    "WHERE excluded.seq > state.seq"
)
_UPSERT_NOTICE = (
    "INSERT INTO notices (alert_id, recipient, tier, repeat, priority, first_at, at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id, recipient) DO UPDATE SET "
    "tier = excluded.tier, repeat = excluded.repeat, priority = excluded.priority, "
    "at = excluded.at"
)
_INSERT_ALERT = (
    "INSERT INTO alerts (alert_id, key_image, patient, body, kind, priority, vital, condition,"
    " chain, raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class AlarmDb:
    """One gateway's alarm state; implements the rule engine's and the escalator's sinks.

    Thread-safe.  ``legacy``: an ``alerts.db`` of an older version whose alerts are imported
    the first time this file is opened (they keep their key images and their public GET).
    """

    def __init__(self, path: Path, *, legacy: Path | None = None) -> None:
        self.path = path
        private_database(path)  # 0600 before SQLite opens it: its -wal and -shm inherit it
        # Two connections: flushes write on one while requests read on the other (WAL), and
        # neither holds the lock the sinks take: a flush never stalls the rule engine.
        self._db = _connect(path)  # writes, under _write
        self._lock = threading.Lock()  # the batch and the cursor
        self._write = threading.Lock()  # flushes, in the order their batches were taken
        self._read = threading.Lock()  # the reading connection (taken after _lock, never before)
        self._writing: _Batch | None = None  # the batch being written, for key-image checks
        self._local = threading.local()
        with self._lock:
            self._migrate(legacy)
            row = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM state").fetchone()
            self._seq = int(row[0])
            self._tombstones_before = self._seq + 1
            self._db.execute("DELETE FROM state WHERE data IS NULL")  # nothing is staged yet
            self._cursor = self._read_cursor()
        self._rd = _connect(path)
        self._batch = _Batch()
        self._cursor_dirty = False
        self._closed = False
        # episode identity -> _shape, as last reported or stored
        self._shapes: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._normal: tuple[Any, ...] | None = None  # the shape of an episode at rest

    # -- schema ----------------------------------------------------------------------------

    def _migrate(self, legacy: Path | None) -> None:
        found = self._db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        version = None
        if found is not None:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            version = int(row[0]) if row is not None else None
        if version is not None and version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"{self.path.name} has schema {version}, newer than this version's "
                f"{SCHEMA_VERSION}: run the newer vitalchain"
            )
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            if version is None:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                    (str(SCHEMA_VERSION),),
                )
                if legacy is not None and legacy.exists():
                    self._import_legacy(legacy)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _import_legacy(self, legacy: Path) -> None:
        """The alerts of an ``alerts.db`` (one table: alert id, key image, patient, public
        object, recording tx): kept as they were, so replays stay refused."""
        private_database(legacy)
        old = sqlite3.connect(legacy)
        try:
            rows = old.execute(
                "SELECT alert_id, key_image, patient, body, recorded_tx FROM alerts"
            ).fetchall()
        except sqlite3.DatabaseError:
            rows = []  # not an alert log (or empty): nothing to bring over
        finally:
            old.close()
        for alert_id, key_image, patient, body, recorded_tx in rows:
            public = json.loads(body)
            kind = str(public.get("kind", "threshold"))
            if recorded_tx is not None:
                chain = "recorded"
            elif kind == "threshold":
                chain = None  # recorded at the next start, if its ring holds
            else:
                chain = "none"
            self._db.execute(
                "INSERT OR IGNORE INTO alerts (alert_id, key_image, patient, body, recorded_tx,"
                " kind, priority, vital, chain, raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (alert_id, key_image, patient, body, recorded_tx, kind, "medium", None, chain,
                 float(public.get("raised_at", 0)) / 1000),
            )  # fmt: skip
        self._db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('legacy_imported', ?)",
            (str(len(rows)),),
        )

    def _read_one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """The first row of a query on the reading connection (None if none), under its lock."""
        with self._read:
            return self._rd.execute(sql, params).fetchone()

    def _read_all(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Every row of a query on the reading connection, under its lock."""
        with self._read:
            return self._rd.execute(sql, params).fetchall()

    @property
    def schema_version(self) -> int:
        row = self._read_one("SELECT value FROM meta WHERE key = 'schema'")
        return int(row[0])

    def meta(self, key: str) -> str | None:
        row = self._read_one("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    # -- staging ---------------------------------------------------------------------------

    def _target(self) -> _Batch:
        """The calling thread's staged batch while it processes a message, else the shared
        one (the caller holds ``_lock``)."""
        staged: _Batch | None = getattr(self._local, "batch", None)
        return staged if staged is not None else self._batch

    @contextlib.contextmanager
    def processing(self, row_id: int, message_id: bytes, received_at_ms: int) -> Iterator[None]:
        """Stage what the sinks report on this thread until the block ends; then it joins the
        dirty set together with "journal row ``row_id`` is processed", atomically, whether
        the block ended normally or not (the engine's state moved either way)."""
        if getattr(self._local, "batch", None) is not None:
            raise RuntimeError("processing() does not nest")
        self._local.batch = _Batch()
        try:
            yield
        finally:
            staged: _Batch = self._local.batch
            self._local.batch = None
            with self._lock:
                self._batch.merge(staged)
                self._advance(row_id, message_id, received_at_ms)

    def _advance(self, row_id: int, message_id: bytes, received_at_ms: int) -> None:
        cursor = self._cursor
        ahead = dict(cursor.ahead)
        at, mid = cursor.row_id, cursor.message_id
        if row_id <= at and row_id not in ahead:
            # SQLite gave a pruned row's id to a new message: every row below it was
            # processed before, so the cursor restarts just under it.
            at, mid, ahead = row_id - 1, None, {}
        ahead[row_id] = message_id
        while at + 1 in ahead:
            at += 1
            mid = ahead.pop(at)
        self._cursor = Cursor(
            at, mid, tuple(sorted(ahead.items())), max(cursor.max_received_ms, received_at_ms)
        )
        self._cursor_dirty = True

    def cursor(self) -> Cursor:
        with self._lock:
            return self._cursor

    def _read_cursor(self) -> Cursor:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'cursor'").fetchone()
        if row is None:
            return Cursor()
        data = json.loads(row[0])
        return Cursor(
            int(data["row_id"]),
            bytes.fromhex(data["message_id"]) if data["message_id"] else None,
            tuple((int(i), bytes.fromhex(m)) for i, m in data["ahead"]),
            int(data["max_received_ms"]),
        )

    def _record(self, kind: str, record: Any) -> None:
        with self._lock:
            self._seq += 1
            self._target().records[(kind, _identity(kind, record))] = (self._seq, record)

    # -- the sinks (RuleSink, EscalationSink) ----------------------------------------------

    def episode_changed(self, state: Any) -> None:
        """A counter, a direction or an open alert changed: the batch is urgent (flushed
        before the next message), since the journal may prune the message before a lazy
        flush would come.  Only the newest-reading time changed: lazy."""
        identity = _identity(EPISODE, state)
        shape = _shape(state)
        with self._lock:
            if self._normal is None:
                self._normal = _shape(dataclasses.replace(state, **_rest_of(state)))
            previous = self._shapes.get(identity, self._normal)
            self._shapes[identity] = shape
            self._seq += 1
            target = self._target()
            target.records[(EPISODE, identity)] = (self._seq, state)
            if shape != previous:
                target.urgent = True

    def urgent(self) -> bool:
        """Whether something staged for the shared batch should be flushed now."""
        with self._lock:
            return self._batch.urgent

    def device_seen(self, seen: Any) -> None:
        self._record(DEVICE, seen)

    def alert_changed(self, record: Any) -> None:
        self._record(ALERT, record)

    def delivery_changed(self, record: Any) -> None:
        self._record(DELIVERY, record)

    def snooze_changed(self, record: Any) -> None:
        self._record(SNOOZE, record)

    def alert_retired(self, alert_id: str) -> None:
        """The escalator forgot the alert (acknowledged and resolved): so does the state; the
        public object and the delivery history stay."""
        with self._lock:
            self._seq += 1
            target = self._target()
            target.records[(ALERT, (alert_id,))] = (self._seq, None)
            prefix = _key((alert_id, ""))[:-4]  # '["<id>",': every delivery of it
            target.ops.append(
                ("UPDATE state SET data = NULL, seq = ? WHERE kind = ? AND key LIKE ? ESCAPE '\\'",
                 (self._seq, DELIVERY, _like_prefix(prefix)))
            )  # fmt: skip
            for k in [k for k in target.records if k[0] == DELIVERY and k[1][0] == alert_id]:
                target.records[k] = (self._seq, None)

    # -- alerts and their deliveries -------------------------------------------------------

    def add_alert(
        self,
        alert_id: bytes,
        key_image: bytes | None,
        patient: str,
        body: str,
        *,
        kind: str,
        priority: str,
        vital: str | None,
        chain: str | None,
        raised_at: float,
        condition: str | None = None,
    ) -> bool:
        """Stage a new public alert; False if its key image is already used (a replay)."""
        with self._lock:
            if key_image is not None:
                target = self._target()
                writing = self._writing.key_images if self._writing is not None else set()
                if key_image in target.key_images or key_image in self._batch.key_images:
                    return False
                if key_image in writing:
                    return False
                taken = self._read_one("SELECT 1 FROM alerts WHERE key_image = ?", (key_image,))
                if taken is not None:
                    return False
                target.key_images.add(key_image)
            self._target().ops.append(
                (_INSERT_ALERT,
                 (alert_id, key_image, patient, body, kind, priority, vital, condition, chain,
                  raised_at))
            )  # fmt: skip
            return True

    def delivered(
        self, alert_id: bytes, recipient: str, tier: int, repeat: int, priority: str, at: float
    ) -> None:
        """Stage one delivery (a repeat or a new tier updates the recipient's row)."""
        with self._lock:
            self._target().ops.append(
                (_UPSERT_NOTICE, (alert_id, recipient, tier, repeat, priority, at, at))
            )

    def receipted(self, alert_id: bytes, recipient: str, at: float) -> None:
        with self._lock:
            self._target().ops.append(
                ("UPDATE notices SET receipted_at = ? WHERE alert_id = ? AND recipient = ?"
                 " AND receipted_at IS NULL", (at, alert_id, recipient))
            )  # fmt: skip

    def recorded(self, alert_id: bytes, tx_hash: bytes | None) -> None:
        """On chain (``tx_hash`` None: the chain had it already).  Written at once; after
        :meth:`close` (an outcome arriving during shutdown) it is left for the next start,
        which submits the alert again under the same outbox key."""
        with self._write:
            if self._closed:
                return
            self._db.execute(
                "UPDATE alerts SET recorded_tx = COALESCE(?, recorded_tx), chain = 'recorded'"
                " WHERE alert_id = ?",
                (tx_hash, alert_id),
            )

    def not_recorded(self, alert_id: bytes, code: str) -> None:
        """Not for the chain, and why (a ring that does not hold, a revert): not retried."""
        with self._write:
            if self._closed:
                return
            self._db.execute("UPDATE alerts SET chain = ? WHERE alert_id = ?", (code, alert_id))

    # -- writing ---------------------------------------------------------------------------

    def flush(self) -> bool:
        """Write everything dirty in one transaction; True if there was something."""
        with self._write:
            if self._closed:
                return False  # a late caller at shutdown: the next start replays it
            with self._lock:
                batch, self._batch = self._batch, _Batch()
                cursor = self._cursor if self._cursor_dirty else None
                self._cursor_dirty = False
                if not batch and cursor is None:
                    return False
                self._writing = batch
            try:
                rows = [
                    (kind, _key(identity), seq, None if record is None else encode_record(record))
                    for (kind, identity), (seq, record) in batch.records.items()
                ]
                cur = self._db.cursor()
                cur.execute("BEGIN IMMEDIATE")
                try:
                    for sql, params in batch.ops:
                        cur.execute(sql, params)
                    cur.executemany(_UPSERT_STATE, rows)
                    if cursor is not None:
                        cur.execute(
                            "INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)",
                            (_cursor_json(cursor),),
                        )
                    cur.execute("COMMIT")
                except BaseException:
                    cur.execute("ROLLBACK")
                    with self._lock:
                        # Keep what failed for the next try (a full disk may clear).
                        batch.merge(self._batch)
                        self._batch = batch
                        self._cursor_dirty = self._cursor_dirty or cursor is not None
                    raise
            finally:
                with self._lock:
                    self._writing = None
            return True

    def purge(self, *, notices_before: float) -> None:
        """Tombstones nothing can still overtake, and delivery rows older than retention."""
        with self._write:
            with self._lock:
                before, self._tombstones_before = self._tombstones_before, self._seq + 1
            self._db.execute("DELETE FROM state WHERE data IS NULL AND seq < ?", (before,))
            self._db.execute("DELETE FROM notices WHERE at < ?", (notices_before,))

    # -- reading (what is flushed; callers flush first when they need the latest) ----------

    def load(self, kind: str, cls: Callable[..., R]) -> list[R]:
        rows = self._read_all(
            "SELECT data FROM state WHERE kind = ? AND data IS NOT NULL ORDER BY seq", (kind,)
        )
        records = [decode_record(cls, data) for (data,) in rows]
        with self._lock:
            if kind == EPISODE:
                for record in records:
                    self._shapes[_identity(kind, record)] = _shape(record)
        return records

    def drop(self, kind: str, identities: list[tuple[Any, ...]]) -> None:
        """Forget records (orphans found at start); written at once."""
        with self._write:
            self._db.executemany(
                "DELETE FROM state WHERE kind = ? AND key = ?",
                [(kind, _key(ident)) for ident in identities],
            )

    def alert(self, alert_id: bytes) -> StoredAlert | None:
        row = self._read_one(
            "SELECT body, patient, kind, priority, vital, condition, recorded_tx, chain,"
            " raised_at FROM alerts WHERE alert_id = ?",
            (alert_id,),
        )
        if row is None:
            return None
        body, patient, kind, priority, vital, condition, tx, chain, raised_at = row
        return StoredAlert(
            body, patient, kind, priority, vital, condition, tx, chain, float(raised_at)
        )

    def has_alert(self, alert_id: bytes) -> bool:
        return self._read_one("SELECT 1 FROM alerts WHERE alert_id = ?", (alert_id,)) is not None

    def unrecorded(self) -> list[str]:
        """Public objects (JSON) of threshold alerts still to be recorded on chain."""
        rows = self._read_all(
            "SELECT body FROM alerts WHERE chain IS NULL AND kind = 'threshold' ORDER BY raised_at"
        )
        return [body for (body,) in rows]

    def pending_for(self, recipient: str) -> list[NoticeRow]:
        rows = self._read_all(
            _NOTICES + " WHERE recipient = ? AND receipted_at IS NULL ORDER BY first_at",
            (recipient,),
        )
        return [_notice(row) for row in rows]

    def since(self, recipient: str, since: float, limit: int) -> list[NoticeRow]:
        rows = self._read_all(
            _NOTICES + " WHERE recipient = ? AND at >= ? ORDER BY at LIMIT ?",
            (recipient, since, limit),
        )
        return [_notice(row) for row in rows]

    def notice(self, alert_id: bytes, recipient: str) -> NoticeRow | None:
        row = self._read_one(
            _NOTICES + " WHERE alert_id = ? AND recipient = ?", (alert_id, recipient)
        )
        return None if row is None else _notice(row)

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        with self._write, self._read:
            self._closed = True
            self._db.close()
            self._rd.close()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


_NOTICES = (
    "SELECT alert_id, recipient, tier, repeat, priority, first_at, at, receipted_at FROM notices"
)
"""A query of notice rows, in :func:`_notice`'s column order (its WHERE clause follows)."""


def _notice(row: tuple[Any, ...]) -> NoticeRow:
    alert_id, recipient, tier, repeat, priority, first_at, at, receipted_at = row
    return NoticeRow(
        bytes(alert_id),
        recipient,
        int(tier),
        int(repeat),
        priority,
        float(first_at),
        float(at),
        None if receipted_at is None else float(receipted_at),
    )


def _rest_of(state: Any) -> dict[str, Any]:
    """The fields of an episode record back at their defaults (no run, no open alert)."""
    rest = {}
    for f in dataclasses.fields(state):
        if f.default is not dataclasses.MISSING:
            rest[f.name] = f.default
    return rest


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _cursor_json(cursor: Cursor) -> str:
    return json.dumps(
        {
            "row_id": cursor.row_id,
            "message_id": cursor.message_id.hex() if cursor.message_id else None,
            "ahead": [[i, m.hex()] for i, m in cursor.ahead],
            "max_received_ms": cursor.max_received_ms,
        }
    )
