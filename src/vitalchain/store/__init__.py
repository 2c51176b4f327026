"""The store: the gateway's plaintext journal, and the block store providers read.

- :mod:`.base`: the ports, ``Journal`` and ``BlockStore``, and ``Store`` (both, as the gateway
  sees them); tests/unit/store/test_store.py checks them.
- :mod:`.sql`: the one SQL core (SQLAlchemy Core): every table, every block store query, the
  translation of driver errors; :mod:`.migrations`: the schema versions (Alembic, run on open).
- :class:`SqliteJournal`: verified messages in clear, local to the gateway (SQLite WAL, the one
  group commit, ``synchronous=FULL``), pruned once their block is anchored.
- :class:`SqliteStore`: the embedded block store (SQLite + one file per block), the default.
- :class:`~.postgres.PostgresStore`: the block store on PostgreSQL (imported from its module);
  the two differ only in where a block's bytes live (a file, a ``bytea``) and how they connect.
- :func:`open_store` / :class:`GatewayStore`: the two together, kept consistent.
- :mod:`.files`: 0600 files and 0700 directories for everything the gateway writes.
- :mod:`.model`: ``Message``, ``Reading`` (the sealed block's format is ``vitalchain.wire.block``).
"""

from vitalchain.store.composite import GatewayStore, open_store
from vitalchain.store.errors import DuplicateReading, StoreError, StoreUnavailable
from vitalchain.store.journal import SqliteJournal
from vitalchain.store.model import MAX_SEQ, Message, Reading, StoredMessage
from vitalchain.store.sqlite import SqliteStore

__all__ = [
    "MAX_SEQ",
    "DuplicateReading",
    "GatewayStore",
    "Message",
    "Reading",
    "SqliteJournal",
    "SqliteStore",
    "StoreError",
    "StoreUnavailable",
    "StoredMessage",
    "open_store",
]
