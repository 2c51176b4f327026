"""The store's one SQL core (SQLAlchemy Core): every table, the block store's queries, errors.

Before, the SQLite and PostgreSQL block stores were two hand-written copies of the same
queries that had drifted (one mapped any integrity error to a replay, the other read messages
with a different number of queries).  Here each table is defined once (:data:`journal_tables`,
:func:`block_schema`), each block store query is written once (:class:`SqlBlockStore`), and a
driver error is translated once (:func:`translated`, :func:`unique_violation`).  A backend
says only where a block's bytes live (a file beside the database, or a ``bytea`` column) and
how a connection is opened (:func:`sqlite_engine`, :func:`postgres_engine`).

The tables here are what the code reads and writes; the schema a database is given is the
Alembic history in :mod:`vitalchain.store.migrations` (frozen copies, one revision per change).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    REAL,
    BigInteger,
    Column,
    Connection,
    Engine,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    column,
    create_engine,
    delete,
    event,
    exc,
    func,
    inspect,
    select,
    table,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Dialect
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.compiler import SQLCompiler

from vitalchain.crypto.block import read_block
from vitalchain.store import migrations
from vitalchain.store.base import AnchorRecord
from vitalchain.store.errors import StoreError, StoreUnavailable
from vitalchain.store.model import Message, Reading
from vitalchain.vitals import Vital
from vitalchain.wire.block import Block, KeyEntry

__all__ = [
    "BlockSchema",
    "Connections",
    "DriverSql",
    "JournalTables",
    "SqlBlockStore",
    "block_schema",
    "journal_tables",
    "outside_transaction",
    "postgres_engine",
    "sqlite_engine",
    "translated",
    "unique_violation",
    "writing",
]

# BIGINT on PostgreSQL; on SQLite INTEGER, so that ``id INTEGER PRIMARY KEY`` is the rowid.
_INT = BigInteger().with_variant(Integer(), "sqlite")
_WRITE = "vitalchain_write"  # execution option: this transaction writes (SQLite: IMMEDIATE)


# -- tables -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockSchema:
    """The block store's tables; ``body`` is the column holding where a block's bytes are."""

    metadata: MetaData
    blocks: Table
    key_ring: Table
    anchors: Table
    nonces: Table
    body: Column[Any]


def block_schema(body: Literal["file", "data"]) -> BlockSchema:
    """The block store's tables with the block bytes' column: ``file`` (a path beside the
    SQLite database) or ``data`` (the bytes, PostgreSQL ``bytea``)."""
    metadata = MetaData()
    kind: Text | LargeBinary = Text() if body == "file" else LargeBinary()
    blocks = Table(
        "blocks",
        metadata,
        Column("id", _INT, Identity(always=True), primary_key=True),
        Column("group_id", _INT, nullable=False),
        Column("patient", Text, nullable=False),
        Column("number", _INT, nullable=False),
        Column("leaf_index", _INT, nullable=False),
        Column("block_hash", LargeBinary, nullable=False, unique=True),
        Column("leaf", LargeBinary, nullable=False),
        Column(body, kind, nullable=False),
        UniqueConstraint("group_id", "patient", "number"),
        UniqueConstraint("group_id", "leaf_index"),
    )
    key_ring = Table(
        "key_ring",
        metadata,
        Column("block_id", _INT, ForeignKey("blocks.id"), nullable=False),
        Column("recipient", LargeBinary, nullable=False),
        Column("stanza", LargeBinary, nullable=False),
        PrimaryKeyConstraint("block_id", "recipient"),
        sqlite_with_rowid=False,
    )
    anchors = Table(
        "anchors",
        metadata,
        Column("group_id", _INT, nullable=False),
        Column("tree_size", _INT, nullable=False),
        Column("root", LargeBinary, nullable=False),
        Column("tx_hash", LargeBinary, nullable=False),
        Column("anchored_at", _INT, nullable=False),
        PrimaryKeyConstraint("group_id", "tree_size"),
        sqlite_with_rowid=False,
    )
    nonces = Table(
        "nonces",
        metadata,
        Column("nonce", LargeBinary, primary_key=True),
        Column("subject", Text, nullable=False),
        Column("expires_at", _INT, nullable=False),
        Column("used_at", _INT),
        sqlite_with_rowid=False,
    )
    return BlockSchema(metadata, blocks, key_ring, anchors, nonces, blocks.c[body])


@dataclass(frozen=True, slots=True)
class JournalTables:
    """The journal's tables (one MetaData of their own: journal.db is its own database)."""

    metadata: MetaData
    messages: Table
    readings: Table
    seq_ranges: Table


def _journal_tables() -> JournalTables:
    metadata = MetaData()
    messages = Table(
        "messages",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("message_id", LargeBinary, nullable=False, unique=True),
        Column("device", Text, nullable=False),
        Column("group_id", Integer, nullable=False),
        Column("patient", Text, nullable=False),
        Column("received_at", Integer, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("signature", LargeBinary, nullable=False),
        Column("leaf_index", Integer),
        Column("leaf", LargeBinary),
    )
    readings = Table(
        "readings",
        metadata,
        Column("device", Text, nullable=False),
        Column("seq", Integer, nullable=False),
        Column("message", Integer, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        Column("vital", Integer, nullable=False),
        Column("value", REAL, nullable=False),
        Column("t", Integer, nullable=False),
        PrimaryKeyConstraint("device", "seq"),
        sqlite_with_rowid=False,
    )
    seq_ranges = Table(
        "seq_ranges",
        metadata,
        Column("device", Text, nullable=False),
        Column("first_seq", Integer, nullable=False),
        Column("last_seq", Integer, nullable=False),
        PrimaryKeyConstraint("device", "first_seq"),
        sqlite_with_rowid=False,
    )
    Index("seq_ranges_by_last", seq_ranges.c.device, seq_ranges.c.last_seq)
    Index("messages_by_device", messages.c.device, messages.c.id)
    Index("readings_by_message", readings.c.message)
    Index(
        "messages_unsealed",
        messages.c.group_id,
        messages.c.patient,
        messages.c.id,
        sqlite_where=messages.c.leaf_index.is_(None),
    )
    Index(
        "messages_sealed",
        messages.c.group_id,
        messages.c.leaf_index,
        sqlite_where=messages.c.leaf_index.isnot(None),
    )
    return JournalTables(metadata, messages, readings, seq_ranges)


journal_tables = _journal_tables()
"""The journal's tables (``journal.db``, SQLite only: plaintext never leaves the gateway)."""


# -- connections ------------------------------------------------------------------------------


def sqlite_engine(path: Path, *, pragmas: Sequence[str] = ()) -> Engine:
    """A pool of connections to the SQLite file at ``path``: WAL, ``synchronous=FULL`` (a
    commit is on disk when it returns), foreign keys, and ``pragmas``.

    SQLAlchemy emits BEGIN itself (sqlite3's own transaction control disabled, the documented
    recipe), so that a writing transaction (:func:`writing`) is ``BEGIN IMMEDIATE``: it takes
    the write lock up front and waits for it, instead of failing when a read turns into a write.
    A read (:meth:`Connections.reading`) runs in autocommit: each statement is one query.
    """
    engine = create_engine(
        URL.create("sqlite", database=str(path)),
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=8,
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi: sqlite3.Connection, _record: object) -> None:
        dbapi.isolation_level = None
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", *pragmas):
            dbapi.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A read is one statement, a snapshot of its own: no BEGIN (nor its ROLLBACK) for it.
        # The BEGIN goes straight to the driver: through exec_driver_sql it cost a third of a
        # small group commit's time (benchmarks/store.py).
        if conn.get_execution_options().get(_WRITE):
            driver = conn.connection.driver_connection
            assert driver is not None
            driver.execute("BEGIN IMMEDIATE")

    return engine


def postgres_engine(dsn: str) -> Engine:
    """A pool of psycopg connections to ``dsn`` (a libpq URI or keyword string).

    A connection the server dropped fails its caller (:class:`StoreUnavailable`), and
    SQLAlchemy then discards the pool's connections, so the next caller connects afresh (no
    ``pool_pre_ping``: a round trip before every query cost a third of sealing's rate)."""
    engine = create_engine("postgresql+psycopg://")

    @event.listens_for(engine, "do_connect")
    def _conninfo(_dialect: object, _record: object, cargs: list[Any], _: object) -> None:
        cargs[:] = [dsn]  # psycopg's conninfo, either form, as given

    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: object) -> None:
        # Durability is the point of the store: never run with a server default of "off".
        # ("local", "remote_write", "remote_apply" all flush locally, so they are kept.)
        with dbapi.cursor() as cur:
            cur.execute("SHOW synchronous_commit")
            if cur.fetchone() == ("off",):
                cur.execute("SET synchronous_commit TO on")
        dbapi.commit()

    return engine


@contextmanager
def translated() -> Iterator[None]:
    """Driver errors that mean "the database is not there for us" (server gone, connection
    lost, disk I/O, a lock not granted in time) as :class:`StoreUnavailable`: nothing was
    stored, and the same request may succeed later."""
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as error:
        raise StoreUnavailable("the database is unavailable") from error


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """One writing transaction (committed on exit), driver errors :func:`translated`."""
    with translated(), engine.connect() as conn:
        conn.execution_options(**{_WRITE: True})  # in place: the BEGIN below is IMMEDIATE
        with conn.begin():
            yield conn


@dataclass(frozen=True, slots=True)
class DriverSql:
    """A Core statement compiled once to one driver's SQL, for the hot paths that run on the
    driver's cursor (:meth:`Connections.cursor`): sealing, and the journal's reads with a row
    per reading.  Through ``Connection.execute`` each statement paid ~100 µs of SQLAlchemy's
    per-call work (execution context, result and row processing), more than the statement
    itself; the SQL is still written once, from the tables (docs/benchmarks.md).

    ``order`` names the positional parameters (sqlite3's ``?``); None for a named style
    (psycopg's ``%(name)s``).  ``fixed`` holds the parameters the compiler made (a LIMIT's).
    """

    sql: str
    order: tuple[str, ...] | None
    fixed: dict[str, Any]

    @classmethod
    def of(cls, statement: ClauseElement, dialect: Dialect) -> DriverSql:
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler):
            raise RuntimeError("not a SQL statement")
        order = None if compiled.positiontup is None else tuple(compiled.positiontup)
        if dialect.positional and order is None:
            raise RuntimeError("a positional dialect compiled no parameter order")
        fixed = {k: v for k, v in compiled.params.items() if not compiled.binds[k].required}
        return cls(str(compiled), order, fixed)

    def args(self, params: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for ``params`` (a required one missing raises KeyError)."""
        if self.order is None:
            return {**self.fixed, **params}
        given = {**self.fixed, **params} if self.fixed else params
        return tuple(map(given.__getitem__, self.order))


class Connections:
    """A store's two connections, a reader and a writer, each behind a lock that serialises
    its users (a pool checkout and a fresh ``Connection`` per call cost more than the query).

    The reader runs in autocommit (each statement its own snapshot, no BEGIN or ROLLBACK
    round trips); the writer's transactions are :func:`writing`'s.  A connection the server
    dropped fails its caller (:class:`StoreUnavailable`) and is replaced on next use.
    :meth:`cursor` is the same two connections' driver cursors, for :class:`DriverSql`.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._reader: Connection | None = None
        self._writer: Connection | None = None
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()

    def _open(self, write: bool) -> Connection:
        conn = self.engine.connect()
        if write:
            return conn.execution_options(**{_WRITE: True})
        if self.engine.dialect.name == "postgresql":  # SQLite's reads begin nothing already
            return conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn

    def _current(self, write: bool) -> Connection:
        """The reader or the writer (its lock held), opened afresh if the server dropped it."""
        role = "_writer" if write else "_reader"
        conn: Connection | None = getattr(self, role)
        if conn is None or conn.invalidated:
            if conn is not None:
                conn.close()
            setattr(self, role, None)
            conn = self._open(write)
            setattr(self, role, conn)
        return conn

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        with self._read_lock, translated():
            reader = self._current(write=False)
            try:
                yield reader
            finally:
                if reader.in_transaction():
                    reader.rollback()  # SQLAlchemy's bookkeeping only: autocommit

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        with self._write_lock, translated():
            writer = self._current(write=True)
            with writer.begin():
                yield writer

    @contextmanager
    def cursor(self, *, write: bool = False) -> Iterator[Any]:
        """A driver cursor of the reader (autocommit) or of the writer, for :class:`DriverSql`.

        A writer's cursor is one transaction (SQLite: ``BEGIN IMMEDIATE``; psycopg begins on
        the first statement), committed on exit and rolled back on an error.  A driver error
        comes out as SQLAlchemy's (so :func:`translated` and :func:`unique_violation` read it
        as they read any other), and a lost connection is invalidated, to be replaced on next
        use, as SQLAlchemy does for its own statements.
        """
        dialect = self.engine.dialect
        with self._write_lock if write else self._read_lock, translated():
            conn = self._current(write)
            driver = conn.connection.driver_connection
            assert driver is not None
            cur = driver.cursor()
            try:
                if write and dialect.name == "sqlite":
                    cur.execute("BEGIN IMMEDIATE")
                yield cur
                if write:
                    driver.commit()
            except BaseException as error:
                if write:
                    with suppress(Exception):  # a lost connection has nothing to roll back
                        driver.rollback()
                if not isinstance(error, dialect.loaded_dbapi.Error):
                    raise
                lost = dialect.is_disconnect(error, driver, cur)
                if lost:
                    conn.invalidate(error)
                raise exc.DBAPIError.instance(
                    None, None, error, dialect.loaded_dbapi.Error,
                    connection_invalidated=lost, dialect=dialect,
                ) from error  # fmt: skip
            finally:
                with suppress(Exception):
                    cur.close()

    def close(self) -> None:
        for lock, role in ((self._read_lock, "_reader"), (self._write_lock, "_writer")):
            with lock:
                conn = getattr(self, role)
                if conn is not None:
                    conn.close()
                setattr(self, role, None)
        self.engine.dispose()


def outside_transaction(engine: Engine, statement: str) -> None:
    """Run a SQLite statement that refuses to run in a transaction (VACUUM, a checkpoint) on
    the driver connection itself, where SQLAlchemy has not begun one."""
    with translated(), engine.connect() as conn:
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute(statement)


_UNIQUE_SQLITE = {sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY}


def unique_violation(error: BaseException) -> str | None:
    """The table whose unique key (or primary key) ``error`` violated; None for any other
    error, an integrity one included (NOT NULL, CHECK, foreign key: a bug, not a conflict).
    ``error`` is SQLAlchemy's or the driver's own."""
    orig = error.orig if isinstance(error, exc.StatementError) else error
    if isinstance(orig, sqlite3.IntegrityError):
        if getattr(orig, "sqlite_errorcode", None) not in _UNIQUE_SQLITE:
            return None
        # "UNIQUE constraint failed: readings.device, readings.seq"
        return str(orig).partition(": ")[2].partition(".")[0] or None
    if getattr(orig, "sqlstate", None) == "23505":  # psycopg: unique_violation
        diag = getattr(orig, "diag", None)
        name = getattr(diag, "table_name", None)
        return str(name) if name else None
    return None


def _fits(*numbers: int) -> bool:
    """Positions past SQL's BIGINT cannot exist: asking for one is a miss, not a crash."""
    return all(0 <= n < 2**63 for n in numbers)


# -- the legacy plaintext tables (before issue 12) --------------------------------------------

_legacy_messages = table(
    "messages",
    *(column(c) for c in ("id", "message_id", "device", "group_id", "patient", "received_at")),
    *(column(c) for c in ("payload", "signature", "block_id")),
)
_legacy_readings = table(
    "readings", *(column(c) for c in ("device", "seq", "message", "vital", "value", "t"))
)


# -- the block store --------------------------------------------------------------------------


class SqlBlockStore:
    """Every block store query, once, on any SQLAlchemy engine (SQLite or PostgreSQL).

    A backend provides the engine and three hooks saying where a block's bytes live:
    :meth:`_keep_body` (before the row: a row never points at nothing), :meth:`_drop_body`
    (the row was refused) and :meth:`_load_body`.  Opening brings the schema to the head of
    the ``blocks`` history, in one transaction (after :meth:`_lock_schema`).
    """

    def __init__(self, engine: Engine, schema: BlockSchema) -> None:
        try:
            with writing(engine) as conn:
                self._lock_schema(conn)
                migrations.upgrade(conn, "blocks")
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine
        self._db = Connections(engine)
        self._q = _BlockQueries.build(schema, engine.dialect)
        self._closed = False

    # -- per backend ------------------------------------------------------------------------------

    def _lock_schema(self, conn: Connection) -> None:
        """Keep other processes out of the schema until ``conn``'s transaction ends."""

    def _keep_body(self, block: Block) -> str | bytes:
        raise NotImplementedError

    def _drop_body(self, body: str | bytes) -> None:
        """Undo :meth:`_keep_body` for a block whose row was refused."""

    def _load_body(self, body: Any) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._db.close()

    # -- the legacy plaintext tables -------------------------------------------------------------

    def legacy_plaintext(self) -> tuple[list[Message], dict[str, list[int]]] | None:
        """A database from before the journal kept messages and readings here (readable by
        a PostgreSQL operator): its unsealed messages, and every stored seq per device (None:
        no such tables)."""
        m, r = _legacy_messages.c, _legacy_readings.c
        with self._db.reading() as conn:
            if not {"messages", "readings"} <= set(inspect(conn).get_table_names()):
                return None
            rows = conn.execute(
                select(m.id, m.message_id, m.device, m.group_id, m.patient, m.received_at,
                       m.payload, m.signature).where(m.block_id.is_(None)).order_by(m.id)
            ).all()  # fmt: skip
            readings: dict[int, list[Reading]] = {int(row[0]): [] for row in rows}
            seqs: dict[str, list[int]] = {}
            for device, seq, message, vital, value, t in conn.execute(
                select(r.device, r.seq, r.message, r.vital, r.value, r.t).order_by(r.device, r.seq)
            ):
                seqs.setdefault(device, []).append(int(seq))
                if int(message) in readings:
                    readings[int(message)].append(
                        Reading(int(seq), Vital(vital), float(value), int(t))
                    )
        unsealed = [
            Message(bytes(row[1]), row[2], int(row[3]), row[4], int(row[5]), bytes(row[6]),
                    bytes(row[7]), tuple(readings[int(row[0])]))
            for row in rows
            if readings[int(row[0])]
        ]  # fmt: skip
        return unsealed, seqs

    def drop_legacy_plaintext(self) -> None:
        """Drop the legacy plaintext tables."""
        with self._db.writing() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS readings")
            conn.exec_driver_sql("DROP TABLE IF EXISTS messages")

    # -- sealing ---------------------------------------------------------------------------------

    # Sealing's statements run on the driver's cursor (:class:`DriverSql`): through Core they
    # cost a quarter of sealing's rate (docs/benchmarks.md).

    def last_block(self, group_id: int, patient: str) -> Block | None:
        if not _fits(group_id):
            return None
        last = self._q.last_block
        with self._db.cursor() as cur:
            cur.execute(last.sql, last.args({"group_id": group_id, "patient": patient}))
            row = cur.fetchone()
        return None if row is None else read_block(self._load_body(row[0]))

    def next_leaf_index(self, group_id: int) -> int:
        with self._db.cursor() as cur:
            cur.execute(self._q.next_leaf.sql, self._q.next_leaf.args({"group_id": group_id}))
            return int(cur.fetchone()[0])

    def add_block(
        self, block: Block, stanzas: tuple[KeyEntry, ...], message_ids: Sequence[int] = ()
    ) -> None:
        if message_ids:
            raise StoreError(
                "a block store keeps no messages: seal through the gateway's Store",
                code="block_conflict",
            )
        body = self._keep_body(block)
        row = {"group_id": block.group_id, "patient": block.patient, "number": block.number,
               "leaf_index": block.leaf_index, "block_hash": block.hash, "leaf": block.leaf,
               "body": body}  # fmt: skip
        add, ring = self._q.add_block, self._q.add_stanzas
        try:
            with self._db.cursor(write=True) as cur:
                cur.execute(add.sql, add.args(row))
                block_id = int(cur.fetchone()[0])  # RETURNING id
                rows = [
                    ring.args(
                        {"block_id": block_id, "recipient": s.recipient, "stanza": s.encode()}
                    )
                    for s in stanzas
                ]
                if rows:
                    cur.executemany(ring.sql, rows)
        except exc.IntegrityError as error:
            self._drop_body(body)
            if unique_violation(error) in {"blocks", "key_ring"}:
                raise StoreError(
                    "block number or log position already taken", code="block_conflict"
                ) from None
            raise StoreError("the block was refused by the database") from error
        except BaseException:
            self._drop_body(body)
            raise

    # -- blocks and key rings --------------------------------------------------------------------

    def _one_block(self, query: Executable, **params: int | str) -> Block | None:
        if not _fits(*(v for v in params.values() if isinstance(v, int))):
            return None
        with self._db.reading() as conn:
            body = conn.execute(query, params).scalar_one_or_none()
        return None if body is None else read_block(self._load_body(body))

    def block(self, group_id: int, leaf_index: int) -> Block | None:
        return self._one_block(self._q.block, group_id=group_id, leaf_index=leaf_index)

    def patient_block(self, group_id: int, patient: str, number: int) -> Block | None:
        return self._one_block(
            self._q.patient_block, group_id=group_id, patient=patient, number=number
        )

    def blocks(
        self, group_id: int, patient: str, after_number: int = 0, limit: int = 1000
    ) -> list[Block]:
        params = {"group_id": group_id, "patient": patient, "after": after_number, "limit": limit}
        with self._db.reading() as conn:
            bodies = conn.execute(self._q.blocks, params).scalars().all()
        return [read_block(self._load_body(body)) for body in bodies]

    def block_numbers(self, group_id: int, patient: str) -> list[int]:
        params = {"group_id": group_id, "patient": patient}
        with self._db.reading() as conn:
            return [int(n) for n in conn.execute(self._q.block_numbers, params).scalars()]

    def leaf_hashes(self, group_id: int) -> list[bytes]:
        with self._db.reading() as conn:
            leaves = conn.execute(self._q.leaf_hashes, {"group_id": group_id}).scalars()
            return [bytes(leaf) for leaf in leaves]

    def stanzas(self, group_id: int, leaf_index: int) -> tuple[KeyEntry, ...]:
        if not _fits(group_id, leaf_index):
            return ()
        params = {"group_id": group_id, "leaf_index": leaf_index}
        with self._db.reading() as conn:
            found = conn.execute(self._q.stanzas, params).scalars()
            return tuple(KeyEntry.parse(bytes(s)) for s in found)

    def add_stanza(self, group_id: int, leaf_index: int, stanza: KeyEntry) -> None:
        """Add (or replace) one reader's key-ring entry; one statement, so no block can vanish
        between."""
        params = {"group_id": group_id, "leaf_index": leaf_index,
                  "recipient": stanza.recipient, "stanza": stanza.encode()}  # fmt: skip
        with self._db.writing() as conn:
            if conn.execute(self._q.add_stanza, params).rowcount == 0:
                raise StoreError("no such block", code="unknown_block")

    # -- anchors ---------------------------------------------------------------------------------

    def record_anchor(self, record: AnchorRecord) -> None:
        params = {"group_id": record.group_id, "tree_size": record.tree_size, "root": record.root,
                  "tx_hash": record.tx_hash, "anchored_at": record.anchored_at_ms}  # fmt: skip
        with self._db.writing() as conn:
            conn.execute(self._q.record_anchor, params)

    def anchors(self, group_id: int) -> list[AnchorRecord]:
        with self._db.reading() as conn:
            rows = conn.execute(self._q.anchors, {"group_id": group_id}).all()
        return [AnchorRecord(group_id, int(n), bytes(r), bytes(t), int(at)) for n, r, t, at in rows]

    # -- one-time challenges ---------------------------------------------------------------------

    def add_nonce(self, nonce: bytes, subject: str, expires_at_ms: int) -> None:
        params = {"nonce": nonce, "subject": subject, "expires_at": expires_at_ms}
        try:
            with self._db.writing() as conn:
                conn.execute(self._q.add_nonce, params)
        except exc.IntegrityError as error:
            if unique_violation(error) == "nonces":
                raise StoreError("nonce already issued", code="nonce_taken") from None
            raise StoreError("the nonce was refused by the database") from error

    def consume_nonce(self, nonce: bytes, subject: str, now_ms: int) -> bool:
        """One conditional UPDATE: of two concurrent consumers (any process) only one wins."""
        params = {"b_nonce": nonce, "b_subject": subject, "now": now_ms}
        with self._db.writing() as conn:
            return conn.execute(self._q.consume_nonce, params).rowcount == 1

    def purge_nonces(self, now_ms: int) -> int:
        with self._db.writing() as conn:
            return int(conn.execute(self._q.purge_nonces, {"now": now_ms}).rowcount)


@dataclass(frozen=True, slots=True)
class _BlockQueries:
    """Every block store statement, built once per store (a statement object caches its
    compiled form and cache key; building one per call cost more than running it)."""

    last_block: DriverSql
    next_leaf: DriverSql
    add_block: DriverSql
    add_stanzas: DriverSql
    block: Executable
    patient_block: Executable
    blocks: Executable
    block_numbers: Executable
    leaf_hashes: Executable
    stanzas: Executable
    add_stanza: Executable
    record_anchor: Executable
    anchors: Executable
    add_nonce: Executable
    consume_nonce: Executable
    purge_nonces: Executable

    @classmethod
    def build(cls, t: BlockSchema, dialect: Dialect) -> _BlockQueries:
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        b, k, a, n = t.blocks.c, t.key_ring.c, t.anchors.c, t.nonces.c
        group, patient = b.group_id == bindparam("group_id"), b.patient == bindparam("patient")
        at_leaf = b.leaf_index == bindparam("leaf_index")
        ring = insert(t.key_ring).from_select(
            ["block_id", "recipient", "stanza"],
            select(b.id, bindparam("recipient", type_=LargeBinary),
                   bindparam("stanza", type_=LargeBinary)).where(group, at_leaf),
        )  # fmt: skip
        block_columns = ("group_id", "patient", "number", "leaf_index", "block_hash", "leaf")
        return cls(
            last_block=DriverSql.of(
                select(t.body).where(group, patient).order_by(b.number.desc()).limit(1), dialect
            ),
            next_leaf=DriverSql.of(
                select(func.coalesce(func.max(b.leaf_index) + 1, 0)).where(group), dialect
            ),
            add_block=DriverSql.of(
                t.blocks.insert()
                .values(
                    {**{c: bindparam(c) for c in block_columns}, t.body.name: bindparam("body")}
                )
                .returning(b.id),
                dialect,
            ),
            add_stanzas=DriverSql.of(
                t.key_ring.insert().values(
                    {c: bindparam(c) for c in ("block_id", "recipient", "stanza")}
                ),
                dialect,
            ),
            block=select(t.body).where(group, at_leaf),
            patient_block=select(t.body).where(group, patient, b.number == bindparam("number")),
            blocks=select(t.body)
            .where(group, patient, b.number > bindparam("after"))
            .order_by(b.number)
            .limit(bindparam("limit")),
            block_numbers=select(b.number).where(group, patient).order_by(b.number),
            leaf_hashes=select(b.leaf).where(group).order_by(b.leaf_index),
            stanzas=select(k.stanza)
            .join_from(t.key_ring, t.blocks, b.id == k.block_id)
            .where(group, at_leaf)
            .order_by(k.recipient),
            add_stanza=ring.on_conflict_do_update(
                index_elements=[k.block_id, k.recipient], set_={"stanza": ring.excluded.stanza}
            ).execution_options(preserve_rowcount=True),  # an INSERT's count is not kept
            record_anchor=insert(t.anchors)
            .values(
                {
                    c: bindparam(c)
                    for c in ("group_id", "tree_size", "root", "tx_hash", "anchored_at")
                }
            )
            .on_conflict_do_nothing(index_elements=[a.group_id, a.tree_size]),
            anchors=select(a.tree_size, a.root, a.tx_hash, a.anchored_at)
            .where(a.group_id == bindparam("group_id"))
            .order_by(a.tree_size),
            add_nonce=t.nonces.insert().values(
                {c: bindparam(c) for c in ("nonce", "subject", "expires_at")}
            ),
            consume_nonce=update(t.nonces)
            .where(
                n.nonce == bindparam("b_nonce"),
                n.subject == bindparam("b_subject"),
                n.used_at.is_(None),
                n.expires_at > bindparam("now"),
            )
            .values(used_at=bindparam("now")),
            purge_nonces=delete(t.nonces).where(n.expires_at <= bindparam("now")),
        )
