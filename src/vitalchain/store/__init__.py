"""The cloud store: verified device messages kept durably, sealed blocks, anchors.

- :class:`~.base.Store`: the port every backend provides (tests/store_suite.py checks it).
- :class:`SqliteStore`: the embedded default (SQLite WAL, group commit, ``synchronous=FULL``).
- :class:`~.postgres.PostgresStore`: the same on PostgreSQL (imported from its module).
- :mod:`.blocks`: the sealed block format; :mod:`.model`: ``Message``, ``Reading``.
"""

from vitalchain.store.errors import DuplicateReading, StoreError
from vitalchain.store.model import MAX_SEQ, Message, Reading, StoredMessage
from vitalchain.store.sqlite import SqliteStore

__all__ = [
    "MAX_SEQ",
    "DuplicateReading",
    "Message",
    "Reading",
    "SqliteStore",
    "StoreError",
    "StoredMessage",
]
