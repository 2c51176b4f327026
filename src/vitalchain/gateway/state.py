"""The gateway's own durable state: pairing codes, sessions, and devices' patients.

Kept apart from the reading store: it is small, written rarely, and holds secrets (session
keys) that never leave the gateway.  SQLite with ``synchronous=FULL``.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from vitalchain.crypto.aead import Suite

__all__ = ["Enrolment", "GatewayState", "Session", "SessionState"]

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
    patient    TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_device ON sessions (device);
"""


class SessionState(StrEnum):
    NEW = "new"
    TICKETED = "ticketed"
    ACTIVE = "active"
    BURNED = "burned"


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


@dataclass(frozen=True, slots=True)
class Enrolment:
    patient: str
    label: str
    expires_at: int
    used_at: int | None


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
    )


_COLUMNS = (
    "session_id, device, device_key, object_id, suite, key, created_at, expires_at, state, "
    "failures, token, patient"
)
# Queries built once from the constant column list above (no user input reaches them).
_INSERT_SESSION = f"INSERT INTO sessions ({_COLUMNS}) VALUES ({', '.join('?' * 12)})"  # noqa: S608
_SELECT_SESSION = f"SELECT {_COLUMNS} FROM sessions WHERE session_id = ?"  # noqa: S608
_SELECT_ACTIVE = f"SELECT {_COLUMNS} FROM sessions WHERE state = ?"  # noqa: S608


class GatewayState:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    # -- enrolments -----------------------------------------------------------------------------

    def add_enrolment(self, code_hash: bytes, patient: str, label: str, expires_at: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO enrolments (code_hash, patient, label, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (code_hash, patient, label, expires_at),
            )

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
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
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
                self._db.execute("COMMIT")
                return True
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- sessions -------------------------------------------------------------------------------

    def add_session(self, s: Session) -> None:
        with self._lock:
            self._db.execute(
                _INSERT_SESSION,
                (
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
                ),
            )

    def session(self, session_id: bytes) -> Session | None:
        with self._lock:
            row = self._db.execute(_SELECT_SESSION, (session_id,)).fetchone()
        return None if row is None else _session(row)

    def active_sessions(self) -> list[Session]:
        with self._lock:
            rows = self._db.execute(_SELECT_ACTIVE, (SessionState.ACTIVE.value,)).fetchall()
        return [_session(r) for r in rows]

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
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            device = self._db.execute(
                "SELECT device FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            self._db.execute(
                "UPDATE sessions SET state = ? WHERE device = ? AND state = ? AND session_id != ?",
                (SessionState.BURNED.value, device, SessionState.ACTIVE.value, session_id),
            )
            self._db.execute(
                "UPDATE sessions SET state = ?, expires_at = ? WHERE session_id = ?",
                (SessionState.ACTIVE.value, expires_at, session_id),
            )
            self._db.execute("COMMIT")
