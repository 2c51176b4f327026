"""The gateway's own durable state: pairing codes, sessions, and devices' patients.

Kept apart from the reading store: it is small, written rarely, and holds secrets (session
keys) that never leave the gateway.  SQLite with ``synchronous=FULL``.  Also the signed
enrolment requests already used (until their clock-skew window has passed), so that one is
single use across restarts.  Whatever an unauthenticated caller can create here expires and
is deleted by :meth:`GatewayState.purge`.

A telemetry session also keeps how much its key has carried (``used_messages``,
``used_blocks``): a reservation made ahead of the messages (:meth:`GatewayState.reserve_usage`),
so that after a crash the count can only be too high, never too low (docs/spec/telemetry.md,
check 8).  A session replaced by a re-key is ``rekeyed``, names its ``successor``, and lives on
only until its grace period ends (docs/spec/onboarding.md, section 5).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from vitalchain.crypto.aead import Suite, Usage
from vitalchain.store.files import private_database

__all__ = ["EXPIRED_CODE_KEPT_S", "Enrolment", "GatewayState", "Purged", "Session", "SessionState"]

# An expired pairing code is kept this long, so a late device hears "expired", not "unknown".
EXPIRED_CODE_KEPT_S = 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS enrolments (
    code_hash  BLOB PRIMARY KEY,
    patient    TEXT NOT NULL,
    label      TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    device     TEXT
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id BLOB PRIMARY KEY,
    device     TEXT NOT NULL,
    device_key BLOB NOT NULL,
    object_id  TEXT NOT NULL,
    suite      INTEGER NOT NULL,
    key        BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    state      TEXT NOT NULL,
    failures   INTEGER NOT NULL DEFAULT 0,
    token      BLOB,
    patient    TEXT,
    used_messages INTEGER NOT NULL DEFAULT 0,
    used_blocks   INTEGER NOT NULL DEFAULT 0,
    successor  BLOB
);
CREATE INDEX IF NOT EXISTS sessions_by_device ON sessions (device);
CREATE TABLE IF NOT EXISTS enrolment_requests (
    request_hash BLOB PRIMARY KEY,
    keep_until   INTEGER NOT NULL
);
"""
# Columns added after the first release, for a gateway.db created before them.
_ADDED_COLUMNS = {
    "used_messages": "INTEGER NOT NULL DEFAULT 0",
    "used_blocks": "INTEGER NOT NULL DEFAULT 0",
    "successor": "BLOB",
}


class SessionState(StrEnum):
    NEW = "new"
    TICKETED = "ticketed"
    ACTIVE = "active"
    REKEYED = "rekeyed"  # replaced by ``successor``; carries telemetry until it expires
    BURNED = "burned"


_UNUSED = Usage()  # frozen, so one shared default is safe


@dataclass(frozen=True, slots=True)
class Session:
    session_id: bytes
    device: str
    device_key: bytes  # compressed
    object_id: int
    suite: Suite
    key: bytes
    created_at: int
    expires_at: int
    state: SessionState
    failures: int
    token: bytes | None
    patient: str | None
    used: Usage = _UNUSED  # what the key carried, as reserved durably (an upper bound)
    successor: bytes | None = None  # the session that re-keyed this one


@dataclass(frozen=True, slots=True)
class Enrolment:
    patient: str
    label: str
    expires_at: int
    used_at: int | None


@dataclass(frozen=True, slots=True)
class Purged:
    """Rows deleted by one :meth:`GatewayState.purge`."""

    enrolments: int
    sessions: int
    enrolment_requests: int


# Sessions that never reached ACTIVE (or were burned, or re-keyed) are useless once expired.
_PURGEABLE_STATES = (
    SessionState.NEW.value,
    SessionState.TICKETED.value,
    SessionState.REKEYED.value,
    SessionState.BURNED.value,
)
# Sessions that carry telemetry while unexpired.
_LIVE_STATES = (SessionState.ACTIVE.value, SessionState.REKEYED.value)


def _session(row: Any) -> Session:
    return Session(
        bytes(row[0]),
        str(row[1]),
        bytes(row[2]),
        int(row[3]),
        Suite(int(row[4])),
        bytes(row[5]),
        int(row[6]),
        int(row[7]),
        SessionState(str(row[8])),
        int(row[9]),
        bytes(row[10]) if row[10] is not None else None,
        str(row[11]) if row[11] is not None else None,
        Usage(int(row[12]), int(row[13])),
        bytes(row[14]) if row[14] is not None else None,
    )


_COLUMNS = (
    "session_id, device, device_key, object_id, suite, key, created_at, expires_at, state, "
    "failures, token, patient, used_messages, used_blocks, successor"
)
# Queries built once from the constant column list above (no user input reaches them).
_INSERT_SESSION = f"INSERT INTO sessions ({_COLUMNS}) VALUES ({', '.join('?' * 15)})"  # noqa: S608
_SELECT_SESSION = f"SELECT {_COLUMNS} FROM sessions WHERE session_id = ?"  # noqa: S608
_SELECT_ACTIVE = f"SELECT {_COLUMNS} FROM sessions WHERE state = ?"  # noqa: S608
_LIVE_WHERE = "WHERE state IN (?, ?) AND expires_at > ?"
_SELECT_LIVE = f"SELECT {_COLUMNS} FROM sessions {_LIVE_WHERE}"  # noqa: S608


def _row(s: Session) -> tuple[object, ...]:
    return (
        s.session_id,
        s.device,
        s.device_key,
        str(s.object_id),
        int(s.suite),
        s.key,
        s.created_at,
        s.expires_at,
        s.state.value,
        s.failures,
        s.token,
        s.patient,
        s.used.messages,
        s.used.blocks,
        s.successor,
    )


class GatewayState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # It holds every session key: 0600 before SQLite opens it (its -wal and -shm follow).
        private_database(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        have = {row[1] for row in self._db.execute("PRAGMA table_info(sessions)")}
        for column, kind in _ADDED_COLUMNS.items():
            if column not in have:  # a gateway.db from before the column: add it in place
                self._db.execute(f"ALTER TABLE sessions ADD COLUMN {column} {kind}")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction under the lock: committed when the block ends
        (a block that rolled back itself has nothing left to commit), rolled back if it raises;
        that is sqlite3's connection context."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            yield

    # -- enrolments -----------------------------------------------------------------------------

    def add_enrolment(
        self,
        code_hash: bytes,
        patient: str,
        label: str,
        expires_at: int,
        *,
        request: tuple[bytes, int] | None = None,
    ) -> bool:
        """Store a pairing code; with ``request=(hash, keep_until)`` (a patient-signed request)
        also record the request as used, in the same transaction.  False, storing nothing, if
        that request was recorded before: a replay."""
        with self._write():
            if request is not None:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO enrolment_requests (request_hash, keep_until) "
                    "VALUES (?, ?)",
                    request,
                )
                if cur.rowcount != 1:
                    self._db.execute("ROLLBACK")
                    return False
            self._db.execute(
                "INSERT INTO enrolments (code_hash, patient, label, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (code_hash, patient, label, expires_at),
            )
            return True

    def enrolment(self, code_hash: bytes) -> Enrolment | None:
        with self._lock:
            row = self._db.execute(
                "SELECT patient, label, expires_at, used_at FROM enrolments WHERE code_hash = ?",
                (code_hash,),
            ).fetchone()
        return None if row is None else Enrolment(row[0], row[1], int(row[2]), row[3])

    def consume_enrolment(
        self, code_hash: bytes, device: str, now: int, session_id: bytes, token: bytes
    ) -> bool:
        """Mark the code used and ticket the session in one transaction; False if raced."""
        with self._write():
            cur = self._db.execute(
                "UPDATE enrolments SET used_at = ?, device = ? "
                "WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?",
                (now, device, code_hash, now),
            )
            if cur.rowcount != 1:
                self._db.execute("ROLLBACK")
                return False
            patient = self._db.execute(
                "SELECT patient FROM enrolments WHERE code_hash = ?", (code_hash,)
            ).fetchone()[0]
            self._db.execute(
                "UPDATE sessions SET state = ?, token = ?, patient = ? WHERE session_id = ?",
                (SessionState.TICKETED.value, token, patient, session_id),
            )
            return True

    # -- sessions -------------------------------------------------------------------------------

    def add_session(self, s: Session) -> None:
        with self._lock:
            self._db.execute(_INSERT_SESSION, _row(s))

    def add_sessions(self, sessions: Iterable[Session]) -> None:
        """Store many sessions in one transaction, one fsync for them all: a bulk import
        (``benchmarks/scale.py`` enrols 100,000 devices so; a row at a time, that is minutes)."""
        with self._write():
            self._db.executemany(_INSERT_SESSION, (_row(s) for s in sessions))

    def session(self, session_id: bytes) -> Session | None:
        with self._lock:
            row = self._db.execute(_SELECT_SESSION, (session_id,)).fetchone()
        return None if row is None else _session(row)

    def active_sessions(self) -> list[Session]:
        with self._lock:
            rows = self._db.execute(_SELECT_ACTIVE, (SessionState.ACTIVE.value,)).fetchall()
        return [_session(r) for r in rows]

    def live_sessions(self, now: int) -> list[Session]:
        """Sessions that carry telemetry at ``now``: active ones, and re-keyed ones still in
        their grace period (what a restarted gateway puts back in memory)."""
        with self._lock:
            rows = self._db.execute(_SELECT_LIVE, (*_LIVE_STATES, now)).fetchall()
        return [_session(r) for r in rows]

    def reserve_usage(self, session_id: bytes, used: Usage) -> None:
        """Record ``used`` as what the session's key has carried: written before the messages
        it covers are accepted, so it is an upper bound of the true count.  Never lowers a
        larger figure already recorded, except through :meth:`settle_usage`."""
        with self._lock:
            self._db.execute(
                "UPDATE sessions SET used_messages = MAX(used_messages, ?), "
                "used_blocks = MAX(used_blocks, ?) WHERE session_id = ?",
                (used.messages, used.blocks, session_id),
            )

    def settle_usage(self, session_id: bytes, used: Usage) -> None:
        """Record the exact count at a clean shutdown, returning the unused reservation (the
        caller guarantees nothing more is accepted under the key without a new reservation)."""
        with self._lock:
            self._db.execute(
                "UPDATE sessions SET used_messages = ?, used_blocks = ? WHERE session_id = ?",
                (used.messages, used.blocks, session_id),
            )

    def rekey(self, old: bytes, new: Session, grace_until: int) -> bool:
        """Replace the active session ``old`` by ``new`` (stored ACTIVE) in one transaction:
        ``old`` becomes REKEYED, names ``new`` as its successor, and expires by ``grace_until``.
        False, storing nothing, if ``old`` is not active (re-keyed already, or ended)."""
        with self._write():
            cur = self._db.execute(
                "UPDATE sessions SET state = ?, successor = ?, "
                "expires_at = MIN(expires_at, ?) WHERE session_id = ? AND state = ?",
                (
                    SessionState.REKEYED.value,
                    new.session_id,
                    grace_until,
                    old,
                    SessionState.ACTIVE.value,
                ),
            )
            if cur.rowcount != 1:
                self._db.execute("ROLLBACK")
                return False
            self._db.execute(_INSERT_SESSION, _row(new))
            return True

    def record_failure(self, session_id: bytes, burn_after: int) -> int:
        with self._lock:
            self._db.execute(
                "UPDATE sessions SET failures = failures + 1, "
                "state = CASE WHEN failures + 1 >= ? THEN ? ELSE state END WHERE session_id = ?",
                (burn_after, SessionState.BURNED.value, session_id),
            )
            row = self._db.execute(
                "SELECT failures FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def activate(self, session_id: bytes, expires_at: int) -> None:
        """The chain accepted the device: its session now carries telemetry, and older ones end."""
        with self._write():
            device = self._db.execute(
                "SELECT device FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            self._db.execute(
                "UPDATE sessions SET state = ? "
                "WHERE device = ? AND state IN (?, ?) AND session_id != ?",
                (SessionState.BURNED.value, device, *_LIVE_STATES, session_id),
            )
            self._db.execute(
                "UPDATE sessions SET state = ?, expires_at = ? WHERE session_id = ?",
                (SessionState.ACTIVE.value, expires_at, session_id),
            )

    # -- expiry ---------------------------------------------------------------------------------

    def purge(self, now: int) -> Purged:
        """Delete what has expired by ``now``: pairing codes (used or not: an expired code is
        refused either way) :data:`EXPIRED_CODE_KEPT_S` after their expiry, sessions that never
        became active (or were re-keyed, once their grace period is over), and used enrolment
        requests whose window has passed (a replay of one is refused as stale from then on)."""
        with self._write():
            enrolments = self._db.execute(
                "DELETE FROM enrolments WHERE expires_at <= ?", (now - EXPIRED_CODE_KEPT_S,)
            ).rowcount
            sessions = self._db.execute(
                "DELETE FROM sessions WHERE expires_at <= ? AND state IN (?, ?, ?, ?)",
                (now, *_PURGEABLE_STATES),
            ).rowcount
            requests = self._db.execute(
                "DELETE FROM enrolment_requests WHERE keep_until < ?", (now,)
            ).rowcount
        return Purged(enrolments, sessions, requests)

    def counts(self) -> dict[str, int]:
        """Rows per table (for health and tests)."""
        with self._lock:
            return {
                table: int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])  # noqa: S608
                for table in ("enrolments", "sessions", "enrolment_requests")
            }
